"""Model-predictive planning in the real env with a world model: random shooting and CEM.

At every real step the planner

1. encodes the real observation o_t as a frame of tokens f_t (the checkpoint's codec);
2. forks the *tracking state* (the model state that has consumed the real frames < t and the
   actions taken after them) into ``population`` branches (``ModelState.repeat``);
3. rolls out ``population`` candidate action sequences a_0..a_{H-1} in one batched pass per
   horizon step: ``step(f_t, a_0)`` -> sampled f_{t+1}, r_0, d_0; ``step(f_{t+1}, a_1)`` -> ...
   (the model's step(frame_k, action_k) predicts frame k+1, the reward and the termination of
   that step). Branch frames are sampled over the codec's legal tokens only, by the same
   ``worldsim.simulator.Simulator.step`` the dream envs use (temperature 0: argmax);
4. scores each sequence by its discounted return Σ_k γ^k r_k · alive_k, where alive_k is the
   probability that the branch is still running before step k: ``termination="expected"``
   multiplies it by 1 - sigmoid(done_k) at every step (expected return under the predicted
   survival), ``"threshold"`` cuts it to 0 after sigmoid(done) > 0.5, ``"sample"`` after a
   Bernoulli draw. The terminating step's own reward counts, so a done with positive reward
   (MiniGrid's goal) is a success, a done with none (lava, timeout) ends the income;
5. takes the first action of the best sequence seen, acts, and advances the tracking state by
   ``step(f_t, a_0)`` with the real frame and the action actually taken, so the model keeps
   tracking reality rather than its own dream.

Optimisers (``PlannerConfig.optimizer``), each over ``iterations`` rounds of ``population``
sequences (one batched model step per horizon step per round):

- ``"random"``: random shooting, every round uniform over the actions;
- ``"cem"``: the cross-entropy method over a categorical distribution per time step: each round
  samples from it, keeps the ``elite_frac`` best and moves the distribution towards the elites'
  action frequencies (``smoothing`` keeps that share of the old one; ``min_prob`` floors it).
  With ``warm_start`` the distribution is shifted by one step to seed the next real step.

With an ``agent`` (a native-PPO folder, e.g. trained in this model's dream), sparse rewards beyond
the horizon still count: its critic values the state each branch reaches, added to the branch's
return as γ^H · alive_H · V(s_H), and a share ``agent_share`` of every round's branches follows the
agent's own policy inside the model (sampled, step by step, from the frames the model predicts),
so the search starts from what the agent would do and improves on it.

Everything random draws from one torch Generator seeded by ``PlannerConfig.seed`` (and again by
``reset(obs, seed=...)``), so the same seed and observations give the same actions.

    planner = Planner("runs/minigrid/ckpt", config=PlannerConfig(optimizer="cem", horizon=8))
    print(run_episode(planner, "MiniGrid-Empty-8x8-v0", seed=0))   # {'return': ..., 'success': ...}
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldsim.checks import positive_int
from worldsim.codecs import real_frame
from worldsim.dream_env import make_real_env
from worldsim.model import WorldModel
from worldsim.runtime import check_precision
from worldsim.simulator import Simulator

OPTIMIZERS = ("random", "cem")
TERMINATIONS = ("expected", "threshold", "sample")


@dataclass
class PlannerConfig:
    optimizer: str = "cem"          # "random" (random shooting) or "cem"
    horizon: int = 8                # actions per candidate sequence
    population: int = 64            # candidate sequences per round (the batch of the rollouts)
    iterations: int = 3             # rounds per real step (CEM refits between rounds)
    elite_frac: float = 0.1         # CEM: share of a round kept as elites (at least one)
    smoothing: float = 0.5          # CEM: share of the old distribution kept at each refit
    min_prob: float = 0.01          # CEM: floor of every action's probability (then renormalised)
    warm_start: bool = True         # CEM: start each real step from the last one's shifted distribution
    gamma: float = 0.99             # discount of predicted rewards
    termination: str = "expected"   # "expected" (survival probability), "threshold" or "sample"
    temperature: float = 1.0        # sampling of branch frames; 0: argmax
    seed: int = 0
    precision: str = "auto"         # worldsim.runtime: "auto" (bf16 autocast on CUDA), "float32" or "bfloat16"
    agent: str | None = None        # native-PPO agent folder: its critic values the horizon, its policy proposes
    agent_share: float = 0.5        # with an agent: the share of each round's branches its policy acts in

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}")
        if self.termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {TERMINATIONS}; got {self.termination!r}")
        check_precision(self.precision)
        for name in ("horizon", "population", "iterations"):
            positive_int(name, getattr(self, name))
        if not 0 < self.elite_frac <= 1:
            raise ValueError(f"elite_frac must lie in (0, 1]; got {self.elite_frac!r}")
        if not 0 <= self.smoothing < 1:
            raise ValueError(f"smoothing must lie in [0, 1); got {self.smoothing!r}")
        if not 0 <= self.min_prob < 1:
            raise ValueError(f"min_prob must lie in [0, 1); got {self.min_prob!r}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must lie in [0, 1]; got {self.gamma!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) \
                or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0; got {self.temperature!r}")
        if self.agent is not None and (not isinstance(self.agent, (str, os.PathLike))
                                       or not os.path.isfile(os.path.join(self.agent, "agent.json"))):
            raise ValueError(f"agent must be a folder written by `worldsim agent train --algo native-ppo` (with "
                             f"its agent.json); got {self.agent!r}")
        if not 0 <= self.agent_share <= 1:
            raise ValueError(f"agent_share must lie in [0, 1]; got {self.agent_share!r}")


class Planner:
    """MPC in the real env with a world model. See the module docstring.

    model: a WorldModel, a checkpoint folder (``save_pretrained``), a shipped model's id, or any
    object with ``config`` (``num_actions``), ``initial_state(batch, device, dtype)`` and
    ``step(state, frame, action)`` returning (WorldModelOutput, state) with a batch-first state
    that has ``repeat``.
    codec: None takes the checkpoint's (``config.metadata["codec"]``).
    """

    def __init__(self, model: Any, *, codec=None, config: PlannerConfig | None = None,
                 device: str | torch.device = "auto"):
        self.config = config = config or PlannerConfig()
        config.validate()
        # "expected" scores by survival probability; sampled branches then end only by threshold.
        settings = dict(codec=codec, device=device, precision=config.precision, temperature=config.temperature,
                        termination="threshold" if config.termination == "expected" else config.termination)
        if isinstance(model, (WorldModel, str, os.PathLike)):
            self.simulator = Simulator.from_checkpoint(model, **settings)
        else:   # a model-like object (see above), used as is
            self.simulator = Simulator(model=model, **settings)
        self.model, self.codec, self.device = self.simulator.model, self.simulator.codec, self.simulator.device
        if self.simulator.action_box is not None:
            raise ValueError(f"the planner searches sequences of Discrete actions; this model acts in a Box "
                             f"{self.simulator.action_box.to_json()}")
        self.num_actions = self.simulator.num_actions
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(config.seed))
        self.state = None          # tracking state: real frames < t and the actions taken after them
        self.steps = 0             # real steps taken since reset
        self.last_plan: dict[str, Any] = {}
        self._probs: torch.Tensor | None = None   # CEM distribution [horizon, actions]
        self.agent = None if config.agent is None else self._load_agent(config.agent)

    # ------------------------------------------------------------------------------ public

    def reset(self, obs: Any = None, seed: int | None = None) -> None:
        """Start tracking a new real episode (obs: its first observation, checked to encode);
        a seed reseeds the planner's generator."""
        if seed is not None:
            self.generator.manual_seed(int(seed))
        if obs is not None:
            self._encode(obs)
        self.track(1)

    def track(self, episodes: int) -> None:
        """Start tracking `episodes` real episodes at once, one state row each (`act_rows` plans for
        any subset of them in one batch; `restart` begins a new episode in a row)."""
        positive_int("episodes", episodes)
        self.state = self.simulator.initial_state(episodes)
        self._probs = self._uniform(episodes)
        self.steps = 0
        self.last_plan = {}

    def restart(self, rows: torch.Tensor) -> None:
        """Rows [R] (indices) begin new real episodes: their tracking state and CEM distribution reset."""
        mask = torch.zeros(self.state.batch_size, dtype=torch.bool, device=self.device)
        mask[torch.as_tensor(rows, device=self.device)] = True
        self.state.reset(mask)
        self._probs[mask] = self._uniform(int(mask.sum()))

    @torch.no_grad()
    def act(self, obs: Any) -> int:
        """Plan from the real observation o_t, return the chosen action and advance the tracking
        state by (f_t, action). Calls reset(obs) first if the planner was never reset."""
        if self.state is None:
            self.reset(obs)
        self._check_single("act")
        frame = self._encode(obs)
        action = int(self.act_rows(frame[None], torch.zeros(1, dtype=torch.long, device=self.device))[0])
        self._single_plan()
        self.steps += 1
        return action

    @torch.no_grad()
    def act_rows(self, frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """For the tracked episodes `rows` [R], whose real frames now are `frames` [R, H, W] (on the
        device): plan in one batch, advance those rows' tracking states by (frame, chosen action) and
        return the actions [R]."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        state = self.state[rows]
        actions = self._plan(state, frames, rows)
        self.simulator.advance(state, frames, actions)
        self.state[rows] = state
        return actions

    @torch.no_grad()
    def plan(self, frame: torch.Tensor) -> int:
        """The first action of the best sequence from the current frame f_t [H, W] (on the device),
        branching from the tracking state of a single tracked episode, which is left untouched."""
        self._check_single("plan")
        action = int(self._plan(self.state, frame[None], torch.zeros(1, dtype=torch.long, device=self.device))[0])
        self._single_plan()
        return action

    def _plan(self, state, frames: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Best first actions [R] for R episodes at once: state (their tracking states, batch R) and
        frames [R, H, W]; `rows` says whose CEM distributions to read and shift."""
        c, A, R = self.config, self.num_actions, len(rows)
        probs = self._probs[rows] if (c.optimizer == "cem" and c.warm_start) else self._uniform(R)
        n_elite = max(1, math.ceil(c.elite_frac * c.population))
        n_agent = round(c.agent_share * c.population) if self.agent is not None else 0
        n = c.population - n_agent
        best_return = torch.full((R,), -math.inf, device=self.device)
        best_seq = torch.zeros(R, c.horizon, dtype=torch.long, device=self.device)
        every = torch.arange(R, device=self.device)
        for _ in range(c.iterations):
            if c.optimizer == "random":
                seqs = torch.randint(A, (R, n, c.horizon), generator=self.generator, device=self.device)
            else:
                seqs = torch.multinomial(probs.reshape(R * c.horizon, A), n, replacement=True,
                                         generator=self.generator).view(R, c.horizon, n).transpose(1, 2)
            returns = self._branches(state, frames, n, lambda k, _: seqs[:, :, k].reshape(-1))[1]
            if n_agent:
                agent_seqs, agent_returns = self._agent_branches(state, frames, n_agent)
                seqs, returns = torch.cat([seqs, agent_seqs], 1), torch.cat([returns, agent_returns], 1)
            top, i = returns.max(1)
            better = top > best_return
            best_return = torch.where(better, top, best_return)
            best_seq[better] = seqs[every, i][better]
            if c.optimizer == "cem":
                elite = returns.topk(n_elite, dim=1).indices                              # [R, E]
                elites = seqs.gather(1, elite[..., None].expand(-1, -1, c.horizon))       # [R, E, H]
                freq = torch.nn.functional.one_hot(elites, A).float().mean(1)           # [R, H, A]
                probs = c.smoothing * probs + (1 - c.smoothing) * freq
                probs = probs.clamp_min(c.min_prob)
                probs = probs / probs.sum(-1, keepdim=True)
        if c.optimizer == "cem":
            self._probs[rows] = torch.cat([probs[:, 1:], self._uniform(R)[:, :1]], 1)
        self.last_plan = {"return": best_return, "sequence": best_seq, "probs": probs if c.optimizer == "cem" else None}
        return best_seq[:, 0]

    def _check_single(self, method: str) -> None:
        if self.state is None:
            raise RuntimeError(f"call reset() before {method}()")
        if self.state.batch_size != 1:
            raise RuntimeError(f"{method}() serves a single tracked episode; this planner tracks "
                               f"{self.state.batch_size} (track()): use act_rows()")

    def _single_plan(self) -> None:
        """last_plan of a single episode's step as plain values: its best return, sequence and CEM distribution."""
        p = self.last_plan
        self.last_plan = {"return": float(p["return"][0]), "sequence": p["sequence"][0].tolist(),
                          "probs": None if p["probs"] is None else p["probs"][0].cpu()}

    def _uniform(self, episodes: int) -> torch.Tensor:
        return torch.full((episodes, self.config.horizon, self.num_actions), 1.0 / self.num_actions,
                          device=self.device)

    @torch.no_grad()
    def rollout(self, frame: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted returns [P] of action sequences [P, horizon] from frame f_t [H, W] of a single
        tracked episode: one batched model step per horizon step, branching from a copy of its state."""
        self._check_single("rollout")
        return self._branches(self.state, frame[None], len(actions), lambda k, _: actions[:, k])[1][0]

    @torch.no_grad()
    def rollout_agent(self, frame: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """n branches of a single tracked episode in which the agent's policy acts on the frames the
        model predicts: (the actions it took [n, horizon], their predicted returns [n])."""
        self._check_single("rollout_agent")
        taken, returns = self._agent_branches(self.state, frame[None], n)
        return taken[0], returns[0]

    def _agent_branches(self, state, frames: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        from .ppo import sample_actions

        def act(k, branch_frames):
            logits, _ = self.agent.network(self._agent_view(branch_frames))
            return sample_actions(logits, self.generator)
        return self._branches(state, frames, n, act)

    def _branches(self, state, frames: torch.Tensor, n: int, choose) -> tuple[torch.Tensor, torch.Tensor]:
        """n branches from each of R episodes (state: batch R, frames [R, H, W]); `choose(k, frames)`
        gives the actions [R * n] of step k, episode-major. Returns (the actions taken [R, n, horizon],
        the returns [R, n]: discounted predicted rewards, plus, with an agent, its critic's value of
        where each branch stands at the horizon)."""
        c, R = self.config, len(frames)
        branch_state = state.repeat(n)
        branch_frames = frames.repeat_interleave(n, 0)
        returns = torch.zeros(R * n, device=self.device)
        alive = torch.ones(R * n, device=self.device)
        taken = torch.empty(R * n, c.horizon, dtype=torch.long, device=self.device)
        discount = 1.0
        for k in range(c.horizon):
            taken[:, k] = choose(k, branch_frames)
            branch_frames, reward, terminated, info = self.simulator.step(branch_state, branch_frames, taken[:, k],
                                                                          self.generator)
            p_done = info["done_prob"]
            returns += discount * alive * reward
            alive = alive * ((1 - p_done) if c.termination == "expected" else (~terminated).float())
            discount *= c.gamma
        if self.agent is not None:       # what lies beyond the horizon, as the agent's critic values it
            returns += discount * alive * self.agent.network.value(self._agent_view(branch_frames)).float()
        return taken.view(R, n, c.horizon), returns.view(R, n)

    def _agent_view(self, frames: torch.Tensor) -> torch.Tensor:
        """What the agent observes of frames [n, H, W]: its symbolic images, on the device."""
        return self.simulator.decode_torch(frames)[0]

    def _load_agent(self, folder):
        from .ppo import NativePolicy
        from .training import load_policy

        agent, _ = load_policy(folder, device=self.device)
        if not isinstance(agent, NativePolicy):
            raise ValueError(f"agent {os.fspath(folder)!r} is not a native-PPO policy (`worldsim agent train --algo "
                             "native-ppo`): the planner reads its critic")
        view = tuple(self._agent_view(torch.zeros(1, *self.codec.frame_shape, dtype=torch.long,
                                                   device=self.device)).shape[1:])
        if tuple(agent.network.observation_shape) != view or agent.network.num_actions != self.num_actions:
            raise ValueError(f"agent {os.fspath(folder)!r} observes {tuple(agent.network.observation_shape)} and has "
                             f"{agent.network.num_actions} actions; this model gives {view} and "
                             f"{self.num_actions}")
        return agent

    # ------------------------------------------------------------------------------ helpers

    def _encode(self, obs: Any) -> torch.Tensor:
        """A real observation (or a frame of tokens [H, W]) -> LongTensor[H, W] on the device."""
        if isinstance(obs, (torch.Tensor, np.ndarray)) and tuple(obs.shape) == tuple(self.codec.frame_shape):
            frame = torch.as_tensor(obs)
        else:
            if not isinstance(obs, Mapping):
                raise ValueError(f"the planner needs the real env's observation dict (or a token frame "
                                 f"{tuple(self.codec.frame_shape)}); got {type(obs).__name__}")
            frame = self.codec.encode(obs)
        if frame.dtype.is_floating_point or frame.dtype == torch.bool:
            raise ValueError(f"token frames must be integers; got {frame.dtype}")
        return frame.long().to(self.device)


def run_episode(planner: Planner, env: gym.Env | str, seed: int | None = None,
                max_steps: int | None = None) -> dict:
    """One real episode acted by the planner. env: a Gymnasium env or an env id. Returns
    dict(return, success, steps, terminated, truncated); success: it terminated with a positive
    last reward (MiniGrid's goal). max_steps stops it early (counted as truncated)."""
    own = isinstance(env, str)
    if own:
        env = make_real_env(env)
    try:
        obs, _ = env.reset(seed=seed)
        planner.reset(real_frame(planner.codec, obs, env))      # a world-view model needs the env's state
        episode = _Episode()
        while not episode.over:
            obs, reward, terminated, truncated, _ = env.step(planner.act(real_frame(planner.codec, obs, env)))
            episode.add(reward, terminated, truncated, max_steps)
        return episode.result()
    finally:
        if own:
            env.close()


def run_episodes(planner: Planner, env_id: str, seeds, batch: int = 32, max_steps: int | None = None,
                 **env_kwargs) -> list[dict]:
    """Real episodes from `seeds` (one per seed), up to `batch` of them planned at once: the planner
    tracks one state row per running episode, and every real step plans for all of them in one batch
    (their branches side by side), so a GPU scores a hundred episodes about as fast as a few. A row
    whose episode ends starts the next seed. Returns run_episode's dicts, in the order of `seeds`."""
    seeds = [int(s) for s in seeds]
    positive_int("batch", batch)
    envs = [make_real_env(env_id, **env_kwargs) for _ in range(min(batch, len(seeds)))]
    results: list[dict | None] = [None] * len(seeds)
    waiting = list(range(len(seeds)))[::-1]             # episode indices still to start (pop from the end)
    running: dict[int, tuple[int, _Episode]] = {}      # row -> (episode index, its tally)
    frames: dict[int, torch.Tensor] = {}
    try:
        planner.track(len(envs))

        def start(row: int) -> None:
            i = waiting.pop()
            obs, _ = envs[row].reset(seed=seeds[i])
            running[row], frames[row] = (i, _Episode()), planner._encode(real_frame(planner.codec, obs, envs[row]))
            planner.restart([row])

        for row in range(len(envs)):
            start(row)
        while running:
            rows = sorted(running)
            actions = planner.act_rows(torch.stack([frames[r] for r in rows]), torch.tensor(rows)).tolist()
            for row, action in zip(rows, actions):
                i, episode = running[row]
                obs, reward, terminated, truncated, _ = envs[row].step(action)
                episode.add(reward, terminated, truncated, max_steps)
                if episode.over:
                    results[i] = episode.result()
                    del running[row]
                    if waiting:
                        start(row)
                else:
                    frames[row] = planner._encode(real_frame(planner.codec, obs, envs[row]))
    finally:
        for env in envs:
            env.close()
    return results


class _Episode:
    """The tally of one real episode: return, steps, how it ended (max_steps cuts it, as truncated)."""

    def __init__(self):
        self.total, self.steps, self.terminated, self.truncated, self.reward = 0.0, 0, False, False, 0.0

    def add(self, reward, terminated, truncated, max_steps: int | None) -> None:
        self.total += float(reward)
        self.steps += 1
        self.reward, self.terminated, self.truncated = float(reward), bool(terminated), bool(truncated)
        if max_steps is not None and self.steps >= max_steps and not self.terminated:
            self.truncated = True

    @property
    def over(self) -> bool:
        return self.terminated or self.truncated

    def result(self) -> dict:
        return {"return": self.total, "success": bool(self.terminated and self.reward > 0), "steps": self.steps,
                "terminated": self.terminated, "truncated": self.truncated}


def evaluate_planner(checkpoint, env_id: str, episodes: int = 100, seed: int = 0,
                     config: PlannerConfig | None = None, batch: int = 32, device: str = "auto",
                     max_episode_steps: int | None = None, out: str | os.PathLike | None = None) -> dict:
    """The planner with the world model `checkpoint` acting in the real env `env_id` for `episodes`
    episodes (episode i reset with seed seed + i, `batch` planned at once): agents.evaluation's report
    (success with its Wilson interval, return, lengths, per episode) plus the planner's settings and
    seconds per episode; with `out`, also written as JSON."""
    from .evaluation import episodes_summary, write_result

    positive_int("episodes", episodes)
    positive_int("seed", seed, allow_zero=True)          # gymnasium refuses negative reset seeds
    config = config or PlannerConfig()
    planner = Planner(checkpoint, config=config, device=device)
    seeds = [int(seed) + i for i in range(int(episodes))]
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    began = time.perf_counter()
    results = run_episodes(planner, env_id, seeds, batch=batch, **kwargs)
    seconds = time.perf_counter() - began
    summary = episodes_summary([r["return"] for r in results], [r["steps"] for r in results],
                               [r["terminated"] for r in results])
    result = {"env_id": env_id, "where": "real", "seed": int(seed), "checkpoint": os.fspath(checkpoint),
              "planner": asdict(config), "batch": int(batch), "device": str(planner.device),
              "seconds": seconds, **summary, "seeds": seeds}
    if out is not None:
        write_result(out, result)
    return result
