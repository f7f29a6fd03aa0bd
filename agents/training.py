"""Train an agent on a MiniGrid task, in the dream (a world-model checkpoint) or in the real env:
Stable-Baselines3's PPO, A2C or DQN, or the native PPO (``agents/ppo.py``, ``algo="native-ppo"``).

``train_agent(env_id, where="dream"|"real", algo="ppo"|"a2c"|"dqn"|"native-ppo", steps=..., out=DIR, ...)``
writes the policy (``DIR/policy.zip``, SB3's own format, or ``DIR/policy.safetensors``), ``DIR/agent.json``
(env id, where it was trained, algo, steps, seed, checkpoint, hyperparameters) and TensorBoard logs
under ``DIR/tb``; ``load_policy`` reads either back.

Both envs give the agent the same observation: MiniGrid's 7x7x3 symbolic egocentric image (object,
colour, state per cell), via ``ImgObsWrapper`` in the real env and ``image_only=True`` in the dream,
so a policy trained in one runs unchanged in the other.

Policy: actor-critic / Q-network heads on the features of ``agents/features.py`` (a small CNN for
7x7 symbolic grids, or the scaled grid flattened for an MLP).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import LinearSchedule

from worldsim.checks import output_folder, positive_int
from worldsim.json_io import write_json
from worldsim.runtime import resolve_device
from worldsim.stop_signals import TrainingStopped
from worldsim.zoo import resolve_checkpoint

# Saved SB3 zips name their features extractor by this module's path: keep the classes importable here.
from .features import FEATURES, SYMBOLIC_FEATURES, MiniGridCNN, MiniGridFlat  # noqa: F401
from .observations import checkpoint_image_shape, real_image_shape
from .observations import describe as describe_observation

ALGOS = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
WHERE = ("dream", "real")
POLICY_FILE = "policy.zip"
INFO_FILE = "agent.json"

# Starting hyperparameters. PPO follows rl-baselines3-zoo's `hyperparams/ppo.yml` MiniGrid entries
# (MiniGrid-DoorKey-5x5-v0, marked "Following https://github.com/lcswillems/rl-starter-files"; n_envs 8,
# n_steps 128, batch_size 64, gae_lambda 0.95, gamma 0.99, n_epochs 10, ent_coef 0.0, learning_rate 2.5e-4,
# clip_range 0.2). The zoo entry also sets `normalize: true` (VecNormalize); we instead scale the symbolic
# channels by their fixed value ranges inside the features extractor, which is the same in dream and real.
# A2C and DQN: Stable-Baselines3's defaults, except a smaller DQN replay buffer (1e6 7x7x3 images is
# more than a MiniGrid task needs) and a 1000-step warm-up before learning.
DEFAULT_HYPERPARAMS: dict[str, dict[str, Any]] = {
    "ppo": dict(n_steps=128, batch_size=64, gae_lambda=0.95, gamma=0.99, n_epochs=10, ent_coef=0.0,
                learning_rate=2.5e-4, clip_range=0.2),
    "a2c": dict(),
    "dqn": dict(buffer_size=100_000, learning_starts=1000),
}
DEFAULT_NUM_ENVS = 8   # the zoo's n_envs for MiniGrid
# The native PPO (agents/ppo.py): its own defaults (PPOSettings), and rl-starter-files' 16 envs.
NATIVE_PPO = "native-ppo"
NATIVE_NUM_ENVS = 16
ALGO_CHOICES = (*ALGOS, NATIVE_PPO)


def default_num_envs(algo: str) -> int:
    return NATIVE_NUM_ENVS if algo == NATIVE_PPO else DEFAULT_NUM_ENVS


def parse_hyperparams(text: str | None, algo: str = "ppo") -> dict[str, Any]:
    """'n_steps=256,ent_coef=0.01' -> {"n_steps": 256, "ent_coef": 0.01} for `algo`'s constructor.

    Values are Python literals (numbers, True/False, None, strings in quotes). A key the algorithm
    does not take, or a value that is not a literal, is a ValueError naming it."""
    if not text:
        return {}
    if algo not in ALGO_CHOICES:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(ALGO_CHOICES)}")
    if algo == NATIVE_PPO:
        from .ppo import PPOSettings

        accepted, owner = {f.name for f in dataclasses.fields(PPOSettings)}, "the native PPO"
    else:
        accepted = set(inspect.signature(ALGOS[algo].__init__).parameters) - {"self", "policy", "env"}
        owner = ALGOS[algo].__name__
    params: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"hyperparameter {item!r}: expected KEY=VALUE")
        if key not in accepted:
            raise ValueError(f"hyperparameter {key!r}: {owner} takes no such argument")
        try:
            params[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"hyperparameter {key}={value.strip()!r}: not a Python literal "
                             "(a number, True/False/None, or a quoted string)") from None
    return params

SCHEDULED = ("learning_rate", "clip_range")     # PPO settings that may be a schedule over training
# SB3 settings that are counts (name: whether 0 is allowed), checked here: SB3's own asserts miss
# some (a negative n_epochs trains nothing) and name others only among all the settings.
SB3_COUNTS = {"n_steps": False, "batch_size": False, "n_epochs": False, "buffer_size": False,
              "gradient_steps": False, "target_update_interval": False, "learning_starts": True}


def check_sb3_hyperparams(params: dict[str, Any]) -> None:
    """A ValueError naming the setting and its value for a count that is not a positive integer, or
    a learning rate or clip range that is neither a positive number nor 'lin_X'."""
    for key, allow_zero in SB3_COUNTS.items():
        if key in params:
            positive_int(f"hyperparameter {key}", params[key], allow_zero=allow_zero)
    for key in SCHEDULED:
        value = params.get(key)
        if value is None or isinstance(value, str):            # absent, or 'lin_X' (with_schedules checks it)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"hyperparameter {key} must be a positive number or 'lin_X' (a linear decay from X "
                             f"to 0); got {value!r}")


def with_schedules(params: dict[str, Any]) -> dict[str, Any]:
    """rl-baselines3-zoo's convention: a learning rate or clip range written 'lin_X' falls linearly
    from X at the start of training to 0 at its end (SB3's LinearSchedule); anything else is kept.
    Annealing keeps a converged policy from being shaken apart by its last updates."""
    out = dict(params)
    for key in SCHEDULED:
        value = out.get(key)
        if isinstance(value, str):
            if not value.startswith("lin_"):
                raise ValueError(f"hyperparameter {key}={value!r}: a number, or 'lin_X' for a linear decay from X to 0")
            try:
                start = float(value[len("lin_"):])
            except ValueError:
                raise ValueError(f"hyperparameter {key}={value!r}: 'lin_X' needs a number X, e.g. 'lin_2.5e-4'") from None
            out[key] = LinearSchedule(start, 0.0, 1.0)
    return out


class ProgressLines(BaseCallback):
    """Prints a line every `every_s` seconds while an agent trains (steps done, mean return of the last
    training episodes, speed, time left) and one when it ends, so that a long run on a slow or busy
    machine is never silent. The lines come from a background thread: Stable-Baselines3 calls
    callbacks only while it collects steps, not while it updates the policy. Call `close()` if
    training stops early (train_agent does)."""

    def __init__(self, label: str, total_steps: int, say=print, every_s: float = 10.0):
        super().__init__()
        self.label, self.total_steps, self.say, self.every_s = label, int(total_steps), say, float(every_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _on_training_start(self) -> None:
        self.start = time.monotonic()
        self.say(f"{self.label}: starting, {self.total_steps:,} steps")
        self._thread = threading.Thread(target=self._report, name="training-progress", daemon=True)
        self._thread.start()

    def _report(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.model.num_timesteps < self.total_steps:       # the closing line says the rest
                self.say(self._line(time.monotonic()))

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.close()
        self.say(self._line(time.monotonic()) + " (done)")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _line(self, now: float) -> str:
        done, elapsed = int(self.model.num_timesteps), now - self.start
        speed = done / elapsed if elapsed > 0 else 0.0
        episodes = [ep["r"] for ep in list(self.model.ep_info_buffer)]     # list(): one atomic copy
        recent = f"mean return {np.mean(episodes):z.2f} over the last {len(episodes)} episodes" if episodes \
            else "no episode finished yet"
        left = max(self.total_steps - done, 0) / speed if speed > 0 else float("nan")
        eta = f", about {_duration(left)} left" if done < self.total_steps and np.isfinite(left) else ""
        return (f"{self.label}: {done:,}/{self.total_steps:,} steps, {recent}, {speed:,.0f} steps/s, "
                f"{_duration(elapsed)} so far{eta}")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def policy_kwargs_for(features: str) -> dict[str, Any]:
    if features not in SYMBOLIC_FEATURES:
        raise ValueError(f"Stable-Baselines3 agents here take features {SYMBOLIC_FEATURES}; got {features!r}")
    if features == "cnn":
        # rl-starter-files: 64 image features, then 64-unit actor and critic heads.
        return dict(features_extractor_class=MiniGridCNN, net_arch=[64], normalize_images=False)
    return dict(features_extractor_class=MiniGridFlat, net_arch=[64, 64], normalize_images=False)


def check_place(where: str, checkpoint: Any, doing: str) -> None:
    """`where` is dream or real, and a checkpoint folder comes exactly with the dream."""
    if where not in WHERE:
        raise ValueError(f"where must be one of {WHERE}; got {where!r}")
    if where == "dream" and checkpoint is None:
        raise ValueError(f"{doing} in the dream needs a world-model checkpoint (--checkpoint DIR)")
    if where == "real" and checkpoint is not None:
        raise ValueError(f"a checkpoint is only used in the dream; drop it or use where='dream' for {doing}")
    if checkpoint is not None and isinstance(checkpoint, (str, os.PathLike)) and not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"checkpoint {os.fspath(checkpoint)!r} does not exist "
                                "(expected a folder written by WorldModel.save_pretrained)")


def _check_args(env_id, where, algo, steps, checkpoint, num_envs, seed, device):
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id must be a real env id such as 'MiniGrid-Empty-8x8-v0'; got {env_id!r}")
    if algo not in ALGO_CHOICES:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(ALGO_CHOICES)}")
    positive_int("steps", steps)
    positive_int("num_envs", num_envs)
    positive_int("seed", seed, allow_zero=True)      # gymnasium refuses negative reset seeds
    resolve_device(device)                           # a bad name fails here, not deep inside SB3
    check_place(where, checkpoint, "training")


def _features_for(features: str | None, image_shape: tuple[int, int, int] | None, algo: str) -> str:
    """The features an agent gets: as asked, or by default 'pixels' for an image model's dream and 'cnn'
    otherwise; ValueError when they do not read what the agent sees."""
    if features is None:
        features = "cnn" if image_shape is None else "pixels"
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}; got {features!r}")
    if image_shape is not None and features in SYMBOLIC_FEATURES:
        raise ValueError(f"features {features!r} read MiniGrid's symbolic cells; this dream shows images of "
                         f"{image_shape}: use features 'pixels'")
    if image_shape is None and features == "pixels":
        raise ValueError("features 'pixels' read images; this agent sees MiniGrid's symbolic cells: use 'cnn' or 'mlp'")
    if image_shape is not None and algo != NATIVE_PPO:
        raise ValueError(f"an agent that sees images trains with algo {NATIVE_PPO!r}; got {algo!r}")
    return features


def make_env(env_id: str, where: str = "real", num_envs: int = 1, seed: int | None = 0,
             checkpoint=None, device: str = "auto", max_episode_steps: int | None = None,
             dream_settings: dict | None = None):
    """The SB3 VecEnv an agent trains on: the real env (DummyVecEnv of Monitor(ImgObsWrapper(env)))
    or the dream (DreamSB3VecEnv with image_only=True); both give 7x7x3 symbolic images."""
    if where == "real":
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
        from minigrid.wrappers import ImgObsWrapper
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import DummyVecEnv

        env_kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
        try:
            gym.spec(env_id)
        except gym.error.Error as e:
            raise ValueError(f"unknown real env {env_id!r} ({e})") from None
        return make_vec_env(env_id, n_envs=num_envs, seed=seed, wrapper_class=ImgObsWrapper,
                            env_kwargs=env_kwargs, vec_env_cls=DummyVecEnv)
    from .sb3_vec_env import DreamSB3VecEnv

    venv = DreamSB3VecEnv(checkpoint=checkpoint, num_envs=num_envs, real_env_id=env_id, image_only=True,
                          device=device, max_episode_steps=max_episode_steps, **(dream_settings or {}))
    venv.seed(seed)
    return venv


def train_agent(env_id: str, where: str = "dream", algo: str = "ppo", steps: int = 100_000,
                out: str | os.PathLike = "runs/agent", checkpoint=None, num_envs: int | None = None,
                seed: int = 0, device: str = "auto", features: str | None = None, hyperparams: dict | None = None,
                max_episode_steps: int | None = None, verbose: int = 0, progress=None,
                uncertainty_penalty: float = 0.0, uncertainty_limit: float | None = None,
                init_from: str | os.PathLike | None = None, temperature: float | None = None,
                state_starts=None, state_start_fraction: float = 0.5, novelty_bonus: float = 0.0,
                novelty_uncertainty: float = 0.0, interaction_bonus: float = 0.0,
                interaction_counts=None, starts: str | os.PathLike | None = None,
                fresh_critic: bool = False, callbacks: list[BaseCallback] | None = None) -> dict[str, Any]:
    """Train `algo` for `steps` env steps in the dream (`checkpoint`: a folder, or a shipped model's id;
    None: the model shipped for `env_id`) or the real env `env_id`.

    Writes the policy (SB3: out/policy.zip; native-ppo: out/policy.safetensors), out/agent.json and
    TensorBoard logs in out/tb; returns agent.json's contents (plus "policy_path"). The native PPO stopped
    by SIGTERM or Ctrl-C saves the policy so far (agent.json: "stopped_early") and raises TrainingStopped. `hyperparams`
    override the defaults (DEFAULT_HYPERPARAMS[algo]; 'lin_X' for an SB3 learning rate or clip range
    decaying linearly from X to 0; native-ppo: the fields of agents.ppo.PPOSettings). `num_envs`
    defaults to 8 (SB3, rl-baselines3-zoo) or 16 (native-ppo). `device` is used by both the policy
    and the dream model. `progress`: a function taking a line of text (e.g. print), called about
    every 10 s while training. `uncertainty_penalty` and `uncertainty_limit` make the dream pessimistic
    (`worldsim.DreamVectorEnv`): the reward loses penalty x the model's uncertainty about each next
    frame, and an episode past the limit is truncated. `init_from`: native-ppo only, a folder it wrote
    whose policy is the starting point (fine-tuning) instead of a fresh network; with `fresh_critic` only its
    features and actor carry over and the value function starts afresh (the policy was trained for another
    reward, such as an explorer's). `temperature`: the
    dream's sampling temperature (0: argmax; None: the dream's default). `state_starts` (world-view
    models: dataset folders): a share `state_start_fraction` of dream episodes starts from recorded
    states of those episodes instead of real resets (`worldsim.state_starts`). `novelty_bonus`: a dream
    step also pays this when its frame is new to the episode, and `novelty_uncertainty` that many
    times the model's uncertainty on such a step (an explorer's rewards). `interaction_bonus`: a dream
    step also pays this / sqrt(1 + count) for an interaction new to the episode, counted over the
    real datasets `interaction_counts` (folders; `worldsim.interactions`). `starts`: a dataset folder
    whose episodes' first frames are where dream episodes start, instead of resets of the real env (a
    dream resets the real env 256 times before it starts: minutes where resets are slow).
    `callbacks`: Stable-Baselines3 callbacks called while an SB3 algorithm trains (e.g. to score it
    at fixed steps); the native PPO takes none.
    """
    if where == "dream":
        checkpoint = resolve_checkpoint(checkpoint, env_id if isinstance(env_id, str) else None)
    num_envs = default_num_envs(algo) if num_envs is None else num_envs
    _check_args(env_id, where, algo, steps, checkpoint, num_envs, seed, device)
    pessimism = {"uncertainty_penalty": uncertainty_penalty, "uncertainty_limit": uncertainty_limit}
    if init_from is not None and algo != NATIVE_PPO:
        raise ValueError(f"init_from continues a native-ppo policy; algo is {algo!r}")
    if callbacks and algo == NATIVE_PPO:
        raise ValueError("callbacks are Stable-Baselines3 callbacks; the native PPO takes none (agents.ppo.train_ppo "
                         "has on_iteration)")
    if fresh_critic and init_from is None:
        raise ValueError("fresh_critic starts the value function of an init_from policy afresh: pass init_from")
    if where != "dream" and (uncertainty_penalty or uncertainty_limit is not None or temperature is not None
                             or state_starts is not None or novelty_bonus or novelty_uncertainty
                             or interaction_bonus or starts is not None):
        raise ValueError("uncertainty_penalty, uncertainty_limit, temperature, starts, state_starts, novelty_bonus, "
                         "novelty_uncertainty and interaction_bonus act on the dream: use them with where='dream'")
    if isinstance(state_starts, (str, os.PathLike)):
        state_starts = [state_starts]
    start_settings = {**({} if starts is None else {"starts": str(starts)}),
                      **({} if state_starts is None else {"state_starts": [str(d) for d in state_starts],
                                                           "state_start_fraction": state_start_fraction})}
    image_shape = checkpoint_image_shape(checkpoint) if where == "dream" else real_image_shape(env_id)
    features = _features_for(features, image_shape, algo)
    if isinstance(interaction_counts, (str, os.PathLike)):
        interaction_counts = [interaction_counts]
    if interaction_bonus and not interaction_counts:
        raise ValueError("interaction_bonus pays for interactions the real data lacks: pass interaction_counts, the "
                         "dataset folders to count them over")
    novelty = {"novelty_bonus": novelty_bonus, "novelty_uncertainty": novelty_uncertainty,
               "interaction_bonus": interaction_bonus}
    dream_settings = {**pessimism, **({} if temperature is None else {"temperature": temperature}), **start_settings,
                      **{k: v for k, v in novelty.items() if v},
                      **({"interaction_counts": [str(d) for d in interaction_counts]} if interaction_bonus else {})}
    out = output_folder(out)
    start = time.time()
    train = _train_native if algo == NATIVE_PPO else _train_sb3
    extra = {"init_from": init_from, "keep_critic": not fresh_critic} if algo == NATIVE_PPO \
        else {"callbacks": callbacks or []}
    info = train(env_id, where, algo, steps, out, checkpoint, num_envs, seed, device, features,
                 hyperparams or {}, max_episode_steps, verbose, progress, dream_settings if where == "dream" else None,
                 image_shape, **extra)
    info = {
        "env_id": env_id, "where": where, "algo": algo, "steps": int(steps), **info, "seed": seed,
        "num_envs": int(num_envs),
        "checkpoint": None if checkpoint is None else (os.path.abspath(checkpoint)
                                                       if isinstance(checkpoint, (str, os.PathLike)) else repr(checkpoint)),
        "features": features, "max_episode_steps": max_episode_steps,
        **({"pessimism": pessimism, "dream_temperature": temperature, **novelty,
            **({"interaction_counts": [os.path.abspath(d) for d in interaction_counts]} if interaction_bonus else {}),
            "starts": None if starts is None else os.path.abspath(starts),
            "state_starts": None if state_starts is None else {
                "datasets": [os.path.abspath(d) for d in state_starts], "fraction": state_start_fraction}}
           if where == "dream" else {}),
        **({"init_from": os.path.abspath(init_from), "fresh_critic": bool(fresh_critic)} if init_from is not None
           else {}),
        "observation": describe_observation(image_shape),
        "tensorboard": "tb", "train_seconds": round(time.time() - start, 3),
    }
    write_json(out / INFO_FILE, info)
    if "stopped_early" in info:
        raise TrainingStopped(info["stopped_early"]["signal_number"], info["stopped_early"]["steps"], checkpoint=out,
                              work=f"{algo} training")
    return {**info, "policy_path": str(out / info["policy"])}


def stopped_early(folder: str | os.PathLike) -> bool:
    """Whether the agent in `folder` was saved by a training that a stop signal cut short."""
    info = agent_info_file(folder)
    return info.is_file() and "stopped_early" in json.loads(info.read_text())


def _train_sb3(env_id, where, algo, steps, out, checkpoint, num_envs, seed, device, features, hyperparams,
               max_episode_steps, verbose, progress, dream_settings, image_shape, callbacks) -> dict[str, Any]:
    import stable_baselines3

    params = {**DEFAULT_HYPERPARAMS[algo], **hyperparams}
    check_sb3_hyperparams(params)
    venv = make_env(env_id, where, num_envs, seed, checkpoint, device, max_episode_steps, dream_settings)
    label = f"{algo.upper()} in the {'dream' if where == 'dream' else 'real env'}"
    callback = None if progress is None else ProgressLines(label, steps, progress)
    try:
        try:
            model = ALGOS[algo]("MlpPolicy", venv, seed=seed, device=device, tensorboard_log=str(out / "tb"),
                                policy_kwargs=policy_kwargs_for(features), verbose=verbose, **with_schedules(params))
        except (AssertionError, TypeError) as e:        # SB3 checks its arguments with asserts
            raise ValueError(f"{ALGOS[algo].__name__} refuses the hyperparameters {params}: {e}") from None
        model.learn(total_timesteps=int(steps), tb_log_name=f"{algo}_{where}",
                    callback=[c for c in (callback, *callbacks) if c is not None])
        model.save(out / POLICY_FILE)
    finally:
        if callback is not None:
            callback.close()
        venv.close()
    return {"num_timesteps": int(model.num_timesteps), "hyperparams": params, "device": str(model.device),
            "policy": POLICY_FILE, "stable_baselines3": stable_baselines3.__version__}


def _train_native(env_id, where, algo, steps, out, checkpoint, num_envs, seed, device, features, hyperparams,
                  max_episode_steps, verbose, progress, dream_settings, image_shape, init_from=None,
                  keep_critic=True) -> dict[str, Any]:
    from torch.utils.tensorboard import SummaryWriter

    from .ppo import WEIGHTS_FILE, NativePolicy, PPOSettings, save_policy, train_ppo
    from .torch_envs import make_torch_env

    settings = PPOSettings.from_overrides(hyperparams)
    envs = make_torch_env(env_id, where, num_envs, checkpoint=checkpoint, device=device,
                          max_episode_steps=max_episode_steps, dream_settings=dream_settings,
                          image_shape=image_shape if where == "real" else None)
    label = f"native PPO in the {'dream' if where == 'dream' else 'real env'}"
    say = progress if progress is not None else (print if verbose else None)
    writer = SummaryWriter(str(out / "tb" / f"{algo}_{where}"))
    try:
        initial = None
        if init_from is not None:
            loaded, _ = load_policy(init_from, device="cpu")
            if not isinstance(loaded, NativePolicy):
                raise ValueError(f"init_from {str(init_from)!r} is not a native-ppo policy folder")
            initial = loaded.network
        stopped = {}
        try:
            policy, history = train_ppo(envs, total_steps=int(steps), settings=settings, seed=seed, features=features,
                                        progress=say, label=label, writer=writer, initial=initial,
                                        keep_critic=keep_critic)
        except TrainingStopped as e:      # a stop signal: the policy so far is saved, marked as such
            (policy, history), stopped = e.partial, {"stopped_early": {"signal_number": e.signal_number,
                                                                       "steps": e.step}}
        save_policy(policy, out)
    finally:
        writer.close()
        envs.close()
    return {"num_timesteps": history[-1]["steps"], "hyperparams": dataclasses.asdict(settings),
            "device": str(envs.device), "policy": WEIGHTS_FILE, "network": policy.spec(), "history": history,
            **stopped}


def agent_info_file(policy: str | os.PathLike) -> Path:
    """The agent.json that describes a policy: in the folder, or beside the file."""
    policy = Path(policy)
    return policy / INFO_FILE if policy.is_dir() else policy.with_name(INFO_FILE)


def sb3_algorithm(path: Path):
    """The SB3 class that saved the zip `path`, told by the hyperparameters in its JSON ``data`` entry
    (read without unpickling anything)."""
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
        raise ValueError(f"{os.fspath(path)!r} is not a Stable-Baselines3 model zip ({e})") from None
    if "clip_range" in data:
        return PPO
    if "exploration_fraction" in data:       # DQN's own (SAC also has a target_update_interval)
        return DQN
    if "rollout_buffer_class" in data or "rms_prop_eps" in data or "n_steps" in data:
        return A2C
    raise ValueError(f"{os.fspath(path)!r} is a Stable-Baselines3 zip, but not of PPO, A2C or DQN")


def load_policy(path, device: str = "auto"):
    """(policy, agent.json dict or {}) from a folder written by train_agent, or an SB3 .zip.

    A native-PPO folder loads from safetensors and JSON. An SB3 zip holds pickles (SB3's format),
    which run code as they load: load only zips you trust. Its algorithm is read from agent.json or
    from the zip's JSON metadata, so it is unpickled once."""
    path = Path(path)
    info_file = agent_info_file(path)
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    if not isinstance(info, dict):
        raise ValueError(f"{info_file} must hold a JSON object; got {type(info).__name__}")
    zip_file = path / POLICY_FILE if path.is_dir() else path
    algo = info.get("algo")
    if path.suffix == ".zip" and algo == NATIVE_PPO:
        algo = None                        # a zip given by name is an SB3 zip, whatever lies beside it
    if algo == NATIVE_PPO:
        from .ppo import NativePolicy

        return NativePolicy.load(info_file.parent, info, device=device), info
    if not zip_file.is_file():
        raise FileNotFoundError(f"no policy at {os.fspath(zip_file)!r} (expected a folder written by "
                                "`worldsim agent train` or an SB3 .zip)")
    if algo is not None and algo not in ALGOS:
        raise ValueError(f"{info_file}: unknown algo {algo!r}; known: {sorted(ALGO_CHOICES)}")
    cls = ALGOS[algo] if algo is not None else sb3_algorithm(zip_file)
    return cls.load(zip_file, device=device), info
