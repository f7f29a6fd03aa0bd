"""`worldsim learn`: model-based RL from scratch, measured in real env steps.

Round 0 collects episodes with the random policy (or a scripted one, ``initial_policy``, mixed with
random actions: ``initial_epsilon``). Every round then
1. trains the world model on all the data so far (warm-started from the last round's model),
2. trains the native PPO inside that model's dream (dream steps cost no real steps; with
   ``dream_state_starts``, that share of its episodes starts from recorded states of the data so far;
   with ``explore_bonus`` or ``explore_novelty``, a second agent, the explorer, trains in a dream that
   pays for the model's uncertainty about each next frame (it goes where the model is unsure: where
   rare events such as a reward the model has not learned yet are found; as the data covers those
   states the bonus fades on its own) and for each frame new to its episode (it learns to cover what
   it can reach: past the key and the door to where a sparse reward waits), and with
   ``explore_interactions`` for each interaction (what it holds, what is ahead, the action) that the
   real data holds few of, the first time in an episode (it goes and tries what the data lacks, such
   as toggling a locked door with its key, whatever the model predicts). The explorer only
   collects: the agent that is scored never sees a bonus, which would lure it away from a reward it
   already knows. With ``agent_from_explorer`` the explorer trains first and the agent starts from
   its network: it keeps the explorer's skills and trains on the task's reward alone; while no
   step of the data so far has earned a reward, the model cannot pay for one, so the round's agent
   is the explorer itself (``explorer_until_reward``) instead of a copy that PPO would wear down
   with nothing to learn),
3. scores the agent in the real env on held-out seeds (reported apart: not training data), and in
   its own dream from the same seeds: the optimism gap (dream - real success),
4. collects the next round's episodes in the real env with that agent (and a share
   ``explore_share`` of them with the explorer, into a dataset of its own), mixed with random
   actions at a rate that decays round by round,
until the budget of real steps is spent (or, with ``stop_at_success``, a round's real success
reaches that rate). It composes the commands a user can run alone: `collect`
(one dataset folder per round: a dataset holds one policy's episodes), `train` (`init_from`) and
`agent train`.

The run folder is the state. Each phase of a round writes its result atomically and is skipped when
that result is there, so a run killed at any point continues with `learn` on the same folder: a
dataset continues where its last shard ended, a world model from its last checkpoint, and an agent,
which is quick to train in the dream, from its start with the same seed. learn.json holds the
settings; running on a folder of another env or other settings is refused. With ``gpus`` > 1 each
round's world model trains data-parallel in its own processes (`worldsim train --gpus`).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from worldsim.checkpoint import atomic_write
import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
import torch

from worldsim.checks import check_field_types, output_folder, positive_int
from worldsim.data.dataset import EpisodeDataset, read_manifest
from worldsim.json_io import write_json
from worldsim.runtime import resolve_device
from worldsim.svg_plot import write_line_plot

LEARN_FILE = "learn.json"
METRICS_FILE = "metrics.jsonl"
FEEDING = ("explorer", "collect")     # a round's phases that feed the next round's data
EXPLORE_DATA = "explore_data"        # a round's episodes collected by the explorer (a dataset holds one policy's)
PHASE_SECONDS_FILE = "phase_seconds.json"    # per round: wall seconds each phase took, for where time goes
PHASE_NAMES = {"collect": "collecting real episodes", "world_model": "training the world model",
               "explorer": "training the explorer in the dream", "agent": "training the agent in the dream",
               "evaluate": "scoring on the held-out seeds",
               "replay": "replaying real actions open loop in its dream"}     # as progress lines say them
REPLAY_FILE = "eval_replay.json"     # per round: real actions replayed in the round's dream (train.replay)
# Held-out evaluation seeds: far from the collection seeds (0, 1, 2, ...), so no evaluated layout is trained on.
EVAL_SEED = 1_000_000
DREAM_VIEWS = ("world", "ego")                         # collect's views a dream runs on (the map view is not one)
INITIAL_POLICIES = ("random", "explore", "expert")     # round 0's data: collect's policies that need no agent
FROM_EXPLORER_CRITIC_WARMUP = 5      # PPO iterations that fit an agent's fresh value function before its policy moves


# What learn fills in where a setting is left to it. The dream's training by device: on a GPU the size
# of the runs in docs/learn (1,024 dream envs, 4 M steps a round, rollouts of 64, minibatches of 8,192),
# on a CPU one it can afford.
DREAM_SIZES = {"cuda": {"dream_steps": 4_000_000, "dream_envs": 1024, "ppo": {"num_steps": 64, "minibatch_size": 8192}},
               "cpu": {"dream_steps": 200_000, "dream_envs": 64, "ppo": {}}}
# The world model's training, under the user's `train` settings: windows of 64 frames, a higher learning
# rate than `worldsim train`'s, and the auxiliary reconstruction of an earlier frame (those runs' settings).
TRAIN_DEFAULTS = {"lr": 1e-3, "curriculum": [[0, 64]], "aux_loss_weight": 0.1}
WORLD_VIEW_STATE_STARTS = 0.5        # share of dream episodes started from recorded states, in the world view


class LearnError(ValueError):
    """Bad settings or a run folder that does not belong to them; the message says which."""


def _is_minigrid(env_id: str) -> bool:
    from minigrid.minigrid_env import MiniGridEnv

    try:
        env = gym.make(env_id)
    except ImportError:                  # a package the env needs is missing: not one learn can run either way
        return False
    try:
        return isinstance(env.unwrapped, MiniGridEnv)
    finally:
        env.close()


@dataclass
class LearnConfig:
    env_id: str
    real_steps: int = 150_000            # budget of real env steps for training data
    initial_episodes: int = 30           # round 0: episodes of the initial policy
    initial_policy: str = "random"       # ... "random", "explore" or "expert" (collect's scripted policies)
    initial_epsilon: str = "0"           # ... mixed with random actions: a rate E or a range "LOW:HIGH"
    round_episodes: int = 20             # each later round: episodes collected with the agent
    epsilon: float = 0.3                 # random-action rate of the agent's collection in round 1 ...
    epsilon_decay: float = 0.5           # ... times this each later round
    min_epsilon: float = 0.05
    model_steps: int = 1000              # world-model optimizer steps in round 1
    finetune_steps: int = 300            # ... and in each later round (warm-started)
    model: dict[str, Any] = field(default_factory=dict)     # world-model size overrides (round 1)
    train: dict[str, Any] = field(default_factory=dict)     # other TrainConfig overrides (over TRAIN_DEFAULTS)
    dream_steps: int | None = None       # native PPO steps in the dream each round (None: DREAM_SIZES by device)
    dream_envs: int | None = None        # ... in this many dream envs
    ppo: dict[str, Any] = field(default_factory=dict)       # PPOSettings overrides (over DREAM_SIZES' by device)
    warm_start_agent: bool = False       # each round's agent starts from the last round's
    agent_from_explorer: bool | None = None  # ... or from this round's explorer, trained first (None: if one is)
    explorer_until_reward: bool = True   # ... which is itself the round's agent while the data holds no reward
    dream_state_starts: float | None = None  # share of dream episodes starting from recorded states of the data
    #                                          (world view only; None: 0.5 in the world view, else 0)
    explore_bonus: float = 0.0           # an explorer's dream pays this x the model's uncertainty ...
    explore_bonus_once: bool = False     # ... on frames new to its episode only (else on every step)
    explore_novelty: float = 0.0         # ... and this per frame new to its episode
    explore_interactions: float = 1.0    # ... and this / sqrt(1 + count) per interaction new to its episode,
    #                                      counted over the real data so far (all three 0: no explorer)
    explore_share: float = 0.5           # ... and it collects this share of each round's episodes
    eval_episodes: int = 100
    replay_episodes: int = 16            # real episodes (random play, and the agent's) replayed in each round's
    replay_horizon: int = 128            # ... dream for this many steps: its open-loop fidelity (0: not scored)
    stop_at_success: float = 0.0         # stop once a round's real success reaches this (0: spend the whole budget)
    view: str = "world"                  # what a frame records (collect's --view): the whole grid, or "ego"
    seed: int = 0
    device: str = "auto"
    gpus: int = 1                        # world-model updates data-parallel over this many processes (GPUs)

    def __post_init__(self) -> None:
        check_field_types(self, "LearnConfig", LearnError)
        self._fill_defaults()
        if self.env_id not in gym.registry:
            raise LearnError(f"env_id {self.env_id!r} is not a registered gymnasium id; learn takes a MiniGrid "
                             "env id such as MiniGrid-DoorKey-8x8-v0")
        if not _is_minigrid(self.env_id):
            raise LearnError(f"env_id {self.env_id!r} is not a MiniGrid env; learn records MiniGrid's views and reads "
                             "its grid. For an env of images, run collect --tokenizer, train and agent train --starts "
                             "(as scripts/gpu_crafter.sh does)")
        for name in ("real_steps", "initial_episodes", "round_episodes", "model_steps", "finetune_steps",
                     "dream_steps", "dream_envs", "eval_episodes", "gpus", "replay_episodes", "replay_horizon"):
            try:
                positive_int(name, getattr(self, name), allow_zero=name == "replay_episodes")
            except ValueError as e:
                raise LearnError(str(e)) from None
        if self.seed < 0:
            raise LearnError(f"seed must be >= 0; got {self.seed}")
        if self.gpus > 1 and resolve_device(self.device).type == "cuda" and self.gpus > torch.cuda.device_count():
            raise LearnError(f"gpus {self.gpus} asks for more GPUs than this machine has "
                             f"({torch.cuda.device_count()})")
        if self.initial_policy not in INITIAL_POLICIES:
            raise LearnError(f"initial_policy must be one of {list(INITIAL_POLICIES)}; got {self.initial_policy!r}")
        from .collect_policies import parse_epsilon
        try:
            parse_epsilon(self.initial_epsilon)
        except ValueError as e:
            raise LearnError(f"initial_epsilon: {e}") from None
        if self.view not in DREAM_VIEWS:
            raise LearnError(f"view must be one of {list(DREAM_VIEWS)} (what a frame records); got {self.view!r}")
        for name in ("epsilon", "epsilon_decay", "min_epsilon"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise LearnError(f"{name} must be in [0, 1]; got {value}")
        if not 0 <= self.stop_at_success <= 1:
            raise LearnError(f"stop_at_success must be in [0, 1] (a real success rate; 0 spends the whole budget); got "
                             f"{self.stop_at_success}")
        if not 0 <= self.dream_state_starts <= 1:
            raise LearnError(f"dream_state_starts must be in [0, 1] (a share of dream episodes); got "
                             f"{self.dream_state_starts}")
        if self.explore_bonus < 0:
            raise LearnError(f"explore_bonus must be >= 0 (reward per nat of the model's mean per-cell "
                             f"uncertainty); got {self.explore_bonus}")
        if not (np.isfinite(self.explore_novelty) and self.explore_novelty >= 0):
            raise LearnError(f"explore_novelty must be a finite number >= 0 (the explorer's reward per frame new to "
                             f"its episode); got {self.explore_novelty}")
        if not (np.isfinite(self.explore_interactions) and self.explore_interactions >= 0):
            raise LearnError(f"explore_interactions must be a finite number >= 0 (the explorer's reward for an "
                             f"interaction the real data lacks); got {self.explore_interactions}")
        if not 0 < self.explore_share < 1:
            raise LearnError(f"explore_share must be in (0, 1) (the explorer's share of a round's episodes); got "
                             f"{self.explore_share}")
        if self.agent_from_explorer and self.warm_start_agent:
            raise LearnError("agent_from_explorer and warm_start_agent both choose where each round's agent starts: "
                             "set one")
        if self.agent_from_explorer and not self.explores:
            raise LearnError("agent_from_explorer starts each round's agent from the round's explorer: train one "
                             "(explore_bonus, explore_novelty or explore_interactions > 0)")
        if self.dream_state_starts and self.view != "world":
            raise LearnError(f"dream_state_starts needs view 'world' (a frame of the agent's view is no state to "
                             f"start from); view is {self.view!r}")
        # The parts' own checks, now rather than rounds later.
        from agents.ppo import PPOSettings

        from .config import TrainConfig
        owned = {"data", "steps", "model", "init_from", "seed", "device"} & set(self.train)
        if owned:
            raise LearnError(f"train settings {sorted(owned)} are set by learn itself (model: use the model setting)")
        try:
            TrainConfig(**self.train, model=dict(self.model))
            PPOSettings.from_overrides(self.ppo)
        except (TypeError, ValueError) as e:
            raise LearnError(f"bad setting: {e}") from None

    def _fill_defaults(self) -> None:
        """Replace the settings left to learn (None) by their values, so that learn.json records what ran."""
        sizes = DREAM_SIZES["cuda" if resolve_device(self.device).type == "cuda" else "cpu"]
        for name in ("dream_steps", "dream_envs"):
            if getattr(self, name) is None:
                setattr(self, name, sizes[name])
        if self.dream_state_starts is None:
            self.dream_state_starts = WORLD_VIEW_STATE_STARTS if self.view == "world" else 0.0
        for name in ("model", "train", "ppo"):
            if not isinstance(getattr(self, name), dict):
                raise LearnError(f"{name} must be a dict of settings; got {getattr(self, name)!r}")
        self.train = {**TRAIN_DEFAULTS, **self.train}
        self.ppo = {**sizes["ppo"], **self.ppo}
        if self.agent_from_explorer is None:
            self.agent_from_explorer = self.explores and not self.warm_start_agent
        if not isinstance(self.agent_from_explorer, bool):
            raise LearnError(f"LearnConfig: agent_from_explorer must be true or false; got "
                             f"{self.agent_from_explorer!r}")
        if isinstance(self.dream_state_starts, bool) or not isinstance(self.dream_state_starts, (int, float)):
            raise LearnError(f"LearnConfig: dream_state_starts must be a number in [0, 1]; got "
                             f"{self.dream_state_starts!r}")

    @property
    def explores(self) -> bool:
        """Whether each round trains an explorer (some bonus is paid)."""
        return bool(self.explore_bonus or self.explore_novelty or self.explore_interactions)

    def epsilon_at(self, round_index: int) -> float:
        """The random-action rate of round `round_index`'s collection (round 1 is the agent's first)."""
        return max(self.min_epsilon, self.epsilon * self.epsilon_decay ** max(0, round_index - 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Settings added to LearnConfig after run folders were made: the value such a folder ran with.
SETTINGS_ADDED_LATER = {"dream_state_starts": 0.0, "explore_bonus": 0.0, "explore_share": 0.5, "explore_novelty": 0.0,
                        "explore_bonus_once": False, "explore_interactions": 0.0, "agent_from_explorer": False,
                        "explorer_until_reward": False, "stop_at_success": 0.0, "gpus": 1, "replay_episodes": 0,
                        "replay_horizon": 128}


def _settings_added_later(saved: dict[str, Any]) -> dict[str, Any]:
    """The settings a run folder's learn.json predates, at the values that run used."""
    return {name: value for name, value in SETTINGS_ADDED_LATER.items() if name not in saved}


def _holds_reward(data_dirs: list[Path]) -> bool:
    """Whether any step in these datasets earned a reward (a world model learns its reward from them)."""
    for root in data_dirs:
        data = EpisodeDataset(root)
        if any(data.episode(i).rewards.any() for i in range(data.num_episodes)):
            return True
    return False


def _real_steps(data_dir: Path) -> int:
    """Real env steps a round's dataset holds (0 before it exists)."""
    if not (data_dir / "manifest.json").is_file():
        return 0
    return int(read_manifest(data_dir)["totals"]["steps"])


class UniformPolicy:
    """Round 0's policy, scored for the curve's starting point: uniform random actions."""

    def __init__(self, num_actions: int, seed: int):
        self.num_actions = num_actions
        self.rng = np.random.default_rng([seed, 7])

    def predict(self, obs, deterministic: bool = False):
        return self.rng.integers(self.num_actions, size=len(obs)), None


class Learner:
    """One run of the loop in a folder; `run()` continues it from whatever the folder holds."""

    def __init__(self, config: LearnConfig, out: str | Path, progress: Callable[[str], None] | None = print):
        self.config = config
        self.out = output_folder(out, "out", LearnError)
        self.say = progress or (lambda line: None)
        saved = self.out / LEARN_FILE
        if saved.exists():
            try:
                before = json.loads(saved.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise LearnError(f"{saved} cannot be read ({e}); not a `worldsim learn` run folder") from None
            now = config.to_dict()
            before = {**_settings_added_later(before), **before}
            if before != now:
                changed = [f"{k}: {before.get(k)!r} there, {now.get(k)!r} now" for k in sorted(set(before) | set(now))
                           if before.get(k) != now.get(k)]
                raise LearnError(f"{self.out} holds a learn run with other settings ({'; '.join(changed)}); continue "
                                 "it with the same settings or choose another --out")
        else:
            write_json(saved, config.to_dict())

    # ---- the folder ----

    def round_dir(self, k: int) -> Path:
        return self.out / f"round-{k:02d}"

    def data_dirs(self, upto: int) -> list[Path]:
        """Every dataset of rounds 0..upto: the agent's, and the explorer's where it collected."""
        explored = [self.round_dir(k) / EXPLORE_DATA for k in range(1, upto + 1)]
        return [self.round_dir(k) / "data" for k in range(upto + 1)] + [d for d in explored if d.is_dir()]

    def real_steps_used(self, upto: int) -> int:
        return sum(_real_steps(d) for d in self.data_dirs(upto))

    def say_round(self, k: int, text: str) -> None:
        """A progress line about round k, timestamped."""
        self.say(f"{time.strftime('%H:%M:%S')} round {k}: {text}")

    def timed(self, k: int, phase: str, work: Callable[[], Any]) -> Any:
        """Run one phase of round k and add its wall seconds to the round's phase_seconds.json. A phase
        skipped on resume adds ~0; one interrupted and resumed adds the time of the resumed part only.
        Only a phase not finished before is announced (the file lists a phase once it has finished)."""
        if phase not in self.phase_seconds(k):
            self.say_round(k, PHASE_NAMES[phase])
        began = time.time()
        result = work()
        seconds = self.phase_seconds(k)
        seconds[phase] = round(seconds.get(phase, 0.0) + time.time() - began, 1)
        self.round_dir(k).mkdir(parents=True, exist_ok=True)
        write_json(self.round_dir(k) / PHASE_SECONDS_FILE, seconds)
        return result

    def phase_seconds(self, k: int) -> dict[str, float]:
        path = self.round_dir(k) / PHASE_SECONDS_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    # ---- phases ----

    def collect(self, k: int, policy: str, epsilon: str | float | None, explorer: str | None = None) -> None:
        """Round k's episodes in the real env: `policy`'s into round-k/data and, with an `explorer`,
        its share of them into round-k/explore_data (a dataset holds one policy's episodes)."""
        from .collect import collect

        c = self.config
        episodes = c.initial_episodes if k == 0 else c.round_episodes
        # the agent keeps at least one episode, so every round has its dataset
        explored = min(round(episodes * c.explore_share), episodes - 1) if explorer is not None else 0
        # Each round's episodes have their own seeds: layouts never repeat across rounds.
        first_seed = c.seed * 10_000_000 + (0 if k == 0 else c.initial_episodes + (k - 1) * c.round_episodes)
        for who, out, count, seed in ((policy, "data", episodes - explored, first_seed),
                                      (explorer, EXPLORE_DATA, explored, first_seed + episodes - explored)):
            if count:
                collect(c.env_id, policy=who, episodes=count, out=self.round_dir(k) / out, seed=seed,
                        epsilon=epsilon, num_envs=8, progress=False, view=c.view)

    def train_model(self, k: int) -> Path:
        from .run_folder import latest_checkpoint
        from .trainer import Trainer

        c = self.config
        run = self.round_dir(k) / "model_run"
        model_dir = run / "model"
        if model_dir.is_dir():
            return model_dir
        data = [str(d) for d in self.data_dirs(k - 1)]
        settings = {"progress": False, "tensorboard": False, **c.train, "seed": c.seed + k, "device": c.device}
        if k == 1:
            settings.update(steps=c.model_steps, model=dict(c.model))
        else:
            settings.update(steps=c.finetune_steps, init_from=str(self.round_dir(k - 1) / "model_run" / "model"),
                            warmup_steps=min(settings.get("warmup_steps", 100), c.finetune_steps // 10))
        if c.gpus > 1:
            self._train_model_data_parallel(k, run, data, settings)
            return model_dir
        if latest_checkpoint(run) is not None:
            trainer = Trainer.resume(run, data=data)
        else:
            trainer = Trainer(settings, data=data, out=run)
        trainer.fit()
        return model_dir

    def _train_model_data_parallel(self, k: int, run: Path, data: list[str], settings: dict[str, Any]) -> None:
        """Round k's world model trained by `worldsim train --gpus` in its own processes (torchrun, one rank
        per GPU, gradients averaged: `train.distributed`); its run folder continues like the one-process one."""
        from .distributed import torchrun_command
        from .run_folder import latest_checkpoint

        if latest_checkpoint(run) is not None:
            args = ["--resume", str(run)]
        else:
            settings_file = self.round_dir(k) / "model_run_settings.json"
            settings_file.parent.mkdir(parents=True, exist_ok=True)
            write_json(settings_file, settings)
            args = ["--config", str(settings_file), "--out", str(run)]
        code = subprocess.call(torchrun_command(self.config.gpus, [*args, "--data", *data]))
        if code != 0 or not (run / "model").is_dir():
            raise LearnError(f"round {k}: the world model's {self.config.gpus} training processes failed (exit code "
                             f"{code}); its run folder {run} continues when learn is run again")

    def train_agent(self, k: int, model_dir: Path, role: str = "agent") -> Path:
        """Round k's native PPO in the dream of `model_dir`: the scored agent (role "agent"), or the
        explorer (role "explorer"), whose dream pays `explore_bonus` x the model's uncertainty (on
        every step, or with `explore_bonus_once` on frames new to its episode only) and
        `explore_novelty` per frame new to its episode, and `explore_interactions` / sqrt(1 + count) per
        interaction new to its episode, counted over the real data so far."""
        from agents.training import NATIVE_PPO, agent_info_file, stopped_early, train_agent

        c = self.config
        agent_dir = self.round_dir(k) / role
        # Done, unless a stop signal cut it short: then it trains again from its start, as a straight run would.
        if agent_info_file(agent_dir).is_file() and not stopped_early(agent_dir):
            return agent_dir
        exploring = role == "explorer"
        # Where the network starts: fresh, the last round's network of the same role, or (the agent with
        # agent_from_explorer) this round's explorer, which has learned to reach what the data lacks.
        previous, hyperparams = None, dict(c.ppo)
        if k > 1 and c.warm_start_agent:
            previous = self.round_dir(k - 1) / role
        elif c.agent_from_explorer and not exploring:
            previous = self.round_dir(k) / "explorer"             # trained first in this round (run)
            # the explorer's values price its bonuses: the agent keeps its skills but learns its own values,
            # before its policy follows them
            hyperparams = {"critic_warmup": FROM_EXPLORER_CRITIC_WARMUP, **hyperparams}
        train_agent(c.env_id, where="dream", algo=NATIVE_PPO, steps=c.dream_steps, out=agent_dir,
                    checkpoint=str(model_dir), num_envs=c.dream_envs, seed=c.seed + k, device=c.device,
                    hyperparams=hyperparams, init_from=previous,
                    fresh_critic=previous is not None and c.agent_from_explorer and not exploring,
                    # the bonus is a penalty with its sign flipped, or paid on new frames only
                    uncertainty_penalty=0.0 - c.explore_bonus if exploring and not c.explore_bonus_once else 0.0,
                    novelty_uncertainty=c.explore_bonus if exploring and c.explore_bonus_once else 0.0,
                    novelty_bonus=c.explore_novelty if exploring else 0.0,
                    interaction_bonus=c.explore_interactions if exploring else 0.0,
                    interaction_counts=self.data_dirs(k - 1) if exploring and c.explore_interactions else None,
                    **({"state_starts": self.data_dirs(k - 1), "state_start_fraction": c.dream_state_starts}
                       if c.dream_state_starts else {}))
        return agent_dir

    def evaluate(self, k: int, agent, model_dir: Path | None = None) -> dict[str, Any]:
        """The agent (a folder, or round 0's uniform policy) in the real env on the held-out seeds; with
        `model_dir`, also in that model's dream from the same seeds (its result under "dream")."""
        from agents.evaluation import evaluate_policy

        c = self.config
        policy = str(agent) if isinstance(agent, Path) else agent
        where = [("real", self.round_dir(k) / "eval_real.json")]
        if model_dir is not None:
            where.append(("dream", self.round_dir(k) / "eval_dream.json"))
        results = {}
        for place, path in where:
            results[place] = json.loads(path.read_text()) if path.is_file() else evaluate_policy(
                policy, c.env_id, episodes=c.eval_episodes, where=place, seed=EVAL_SEED + c.seed * 10_000,
                deterministic=False, device=c.device, out=path, batch=c.eval_episodes,   # every episode at once
                **({"checkpoint": str(model_dir)} if place == "dream" else {}))
        return {**results["real"], **({"dream": results["dream"]} if "dream" in results else {})}

    def replay(self, k: int, model_dir: Path, agent_dir: Path) -> dict[str, Any]:
        """Round k's world model, open loop: the real actions of episodes from the first held-out seeds,
        played by the random policy (long episodes of the kind round 0's data holds) and by the round's
        agent (where it goes), replayed in its dream with the dream's own decoder."""
        from worldsim.simulator import Simulator

        from .replay import real_episodes, replay_in_dream

        path = self.round_dir(k) / REPLAY_FILE
        if path.is_file():
            return json.loads(path.read_text())
        c = self.config
        sim = Simulator.from_checkpoint(model_dir, device=c.device)
        seeds = [EVAL_SEED + c.seed * 10_000 + i for i in range(c.replay_episodes)]
        result: dict[str, Any] = {"episodes": c.replay_episodes, "horizon": c.replay_horizon,
                                  "temperature": sim.temperature, "seeds": [seeds[0], seeds[-1]], "policies": {}}
        for name, spec in (("random", "random"), ("agent", str(agent_dir))):
            # Real episodes end at the horizon: nothing after it is replayed.
            episodes = real_episodes(c.env_id, spec, seeds, sim.codec, sim.num_actions, c.replay_horizon)
            result["policies"][name] = replay_in_dream(sim, episodes, c.replay_horizon, seed=c.seed)
        write_json(path, result)
        return json.loads(path.read_text())       # as a resumed run reads it (JSON's string keys)

    # ---- the loop ----

    def run(self) -> list[dict[str, Any]]:
        """Rounds until the real-step budget is spent; returns one record per round (also in metrics.jsonl)."""
        c = self.config
        start = time.time()
        self.timed(0, "collect", lambda: self.collect(0, c.initial_policy, c.initial_epsilon))
        start_result = self.timed(0, "evaluate", lambda: self.evaluate(0, UniformPolicy(self.env_actions(), seed=c.seed)))
        records: list[dict[str, Any]] = [self._record(0, 0, None, None, start_result, time.time() - start)]
        k = 1
        while True:
            used = self.real_steps_used(k - 1)
            model_dir = self.timed(k, "world_model", lambda: self.train_model(k))
            # With agent_from_explorer the explorer trains first: the agent starts from it.
            explorer = self.timed(k, "explorer", lambda: self.train_agent(k, model_dir, "explorer")) \
                if c.agent_from_explorer else None
            agent_dir = self.timed(k, "agent", lambda: self.train_agent(k, model_dir)) \
                if explorer is None or not c.explorer_until_reward or self.data_pays(k) else explorer
            result = self.timed(k, "evaluate", lambda: self.evaluate(k, agent_dir, model_dir))
            replay = self.timed(k, "replay", lambda: self.replay(k, model_dir, agent_dir)) \
                if c.replay_episodes else None
            record = self._record(k, used, model_dir, agent_dir, result, time.time() - start, replay)
            records.append(record)
            self._write_metrics(records)
            self.say_round(k, f"{used:,} real steps, real success {record['real_success']:.3f} "
                           f"({record['eval_episodes']} held-out episodes, "
                           f"{record['eval_steps']:,} steps not counted), "
                           f"in its dream {record['dream_eval_success']:.3f} (gap {record['optimism_gap']:+.3f})"
                           + ("; no reward in the data yet, so the agent is the explorer"
                              if agent_dir == explorer else ""))
            if replay is not None:
                self.say_round(k, "real actions replayed open loop in its dream, cell accuracy: "
                               + "; ".join(f"{name} {_replay_line(row)}" for name, row in replay["policies"].items()))
            if used >= c.real_steps:
                break
            if c.stop_at_success and record["real_success"] >= c.stop_at_success:
                self.say_round(k, f"real success {record['real_success']:.3f} reached stop_at_success "
                                  f"{c.stop_at_success}; stopping")
                break
            if c.explores and explorer is None:
                explorer = self.timed(k, "explorer", lambda: self.train_agent(k, model_dir, "explorer"))
            self.timed(k, "collect", lambda: self.collect(k, str(agent_dir), c.epsilon_at(k),
                                                          explorer and str(explorer)))
            k += 1
        return records

    def data_pays(self, k: int) -> bool:
        """Whether the data round k's model learned from holds a reward: without one its dream pays
        nothing, and the task's reward alone gives PPO nothing to learn."""
        return _holds_reward(self.data_dirs(k - 1))

    def env_actions(self) -> int:
        return int(read_manifest(self.round_dir(0) / "data")["num_actions"])

    def _record(self, k, used, model_dir, agent_dir, result, seconds, replay=None) -> dict[str, Any]:
        """Round k's line of metrics.jsonl (round 0: the uniform random policy, before any learning)."""
        info = json.loads((agent_dir / "agent.json").read_text()) if agent_dir is not None else {}
        # What fed this round came from the last: its collection, and its explorer unless this round's
        # agent started from this round's explorer (agent_from_explorer trains it before the agent).
        feeding = ("collect",) if self.config.agent_from_explorer else FEEDING
        last = info["history"][-1] if info.get("history") else {}
        metrics = self.round_dir(k) / "model_run" / METRICS_FILE
        evals = [json.loads(line) for line in metrics.read_text().splitlines() if '"eval/acc"' in line] \
            if metrics.is_file() else []
        return {
            "round": k, "real_steps": used,
            "agent": agent_dir.name if agent_dir is not None else "random",     # "explorer": no reward to learn yet
            "real_success": result["success_rate"],
            "real_success_ci": result["success_ci"], "real_return": result["mean_return"],
            "eval_episodes": result["episodes"], "eval_steps": int(sum(result["lengths"])),
            "dream_success": last.get("success_rate"),      # the PPO's last iteration (None: no episode ended)
            # The same held-out seeds in the round's own dream: success there, and dream - real.
            "dream_eval_success": result["dream"]["success_rate"] if "dream" in result else None,
            "optimism_gap": result["dream"]["success_rate"] - result["success_rate"] if "dream" in result else None,
            "model_acc": evals[-1].get("eval/acc") if evals else None,
            "model_rollout_acc": evals[-1].get("rollout/acc") if evals else None,
            # Real actions replayed open loop in this round's dream, by policy: cell accuracy and the
            # exact-frame rate at the reported steps, and the median first step that differs.
            "replay": None if replay is None else {
                name: {"cell_accuracy": {s: v["cell_accuracy"] for s, v in row["by_step"].items()},
                       "exact_frame": {s: v["exact_frame"] for s, v in row["by_step"].items()},
                       "median_first_divergence": row["median_first_divergence"]}
                for name, row in replay["policies"].items()},
            "wall_seconds_this_process": round(seconds, 1),
            # this round's world model, agent and evaluation, and what fed it: round k-1's collection
            # (and the explorer trained for it)
            "phase_seconds": {**({name: t for name, t in self.phase_seconds(k - 1).items() if name in feeding}
                                 if k > 0 else {}),
                              **{name: t for name, t in self.phase_seconds(k).items() if name not in feeding}},
        }

    def _write_metrics(self, records: list[dict[str, Any]]) -> None:
        """metrics.jsonl (one line per round), curve.svg (real success vs real steps) and TensorBoard
        scalars, all rewritten from the records of every round so far: a resumed run writes the same."""
        from torch.utils.tensorboard import SummaryWriter

        text = "".join(json.dumps(r) + "\n" for r in records)
        atomic_write(self.out / METRICS_FILE, lambda tmp: Path(tmp).write_text(text))
        points = [(r["real_steps"], r["real_success"]) for r in records]
        dream = [(r["real_steps"], r["dream_eval_success"]) for r in records if r.get("dream_eval_success") is not None]
        write_line_plot(self.out / "curve.svg", f"worldsim learn: {self.config.env_id}", "real env steps",
                        [("#1f77b4", points), ("#ff7f0e", dream)],
                        [("#1f77b4", "real success (held-out seeds)"),
                         ("#ff7f0e", "success in its dream (the same seeds)")],
                        x_range=(0, max(p[0] for p in points) or 1), y_range=(0, 1))
        last = records[-1]
        with SummaryWriter(str(self.out / "tb")) as writer:          # one point per round, at its real steps
            for key in ("real_success", "real_return", "dream_success", "dream_eval_success", "optimism_gap",
                    "model_acc", "model_rollout_acc"):
                if last[key] is not None:
                    writer.add_scalar(f"learn/{key}", last[key], global_step=last["real_steps"])
            for name, row in (last.get("replay") or {}).items():
                for step, accuracy in row["cell_accuracy"].items():
                    writer.add_scalar(f"learn/replay_{name}_cell_accuracy_at_{step}", accuracy,
                                      global_step=last["real_steps"])


def _replay_line(row: dict[str, Any]) -> str:
    """'0.998 at step 1, 0.981 at step 128' from one policy's replay_in_dream result."""
    shown = [(int(s), v["cell_accuracy"]) for s, v in row["by_step"].items()]
    shown = [shown[0], shown[-1]] if len(shown) > 1 else shown
    return ", ".join(f"{acc:.3f} at step {s}" for s, acc in shown) or "no step replayed"


def learn(config: LearnConfig | dict, out: str | Path, progress: Callable[[str], None] | None = print) -> list[dict]:
    """Run (or continue) the loop of `config` in the folder `out`; see the module docstring."""
    if isinstance(config, dict):
        config = LearnConfig(**config)
    return Learner(config, out, progress).run()
