"""Train a Stable-Baselines3 agent on a MiniGrid task, in the dream (a world-model checkpoint) or in the real env.

``train_agent(env_id, where="dream"|"real", algo="ppo"|"a2c"|"dqn", steps=..., out=DIR, checkpoint=...)``
writes ``DIR/policy.zip`` (SB3's own format), ``DIR/agent.json`` (env id, where it was trained, algo,
steps, seed, checkpoint, hyperparameters) and TensorBoard logs under ``DIR/tb``.

Both envs give the agent the same observation: MiniGrid's 7x7x3 symbolic egocentric image (object,
colour, state per cell), via ``ImgObsWrapper`` in the real env and ``image_only=True`` in the dream,
so a policy trained in one runs unchanged in the other.

Policy: SB3's actor-critic / Q-network heads on a small features extractor for 7x7 symbolic grids
(``MiniGridCNN``, default: three 2x2 convolutions with a 2x2 max-pool after the first, the image
model of lcswillems' rl-starter-files, on channels scaled by their value ranges), or ``MiniGridFlat``
(the scaled grid flattened, for an MLP).
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.utils import LinearSchedule

from worldsim.checks import positive_int
from worldsim.zoo import resolve_checkpoint

ALGOS = {"ppo": PPO, "a2c": A2C, "dqn": DQN}
WHERE = ("dream", "real")
FEATURES = ("cnn", "mlp")
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


def parse_hyperparams(text: str | None, algo: str = "ppo") -> dict[str, Any]:
    """'n_steps=256,ent_coef=0.01' -> {"n_steps": 256, "ent_coef": 0.01} for `algo`'s constructor.

    Values are Python literals (numbers, True/False, None, strings in quotes). A key the algorithm
    does not take, or a value that is not a literal, is a ValueError naming it."""
    if not text:
        return {}
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(ALGOS)}")
    accepted = set(inspect.signature(ALGOS[algo].__init__).parameters) - {"self", "policy", "env"}
    params: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"hyperparameter {item!r}: expected KEY=VALUE")
        if key not in accepted:
            raise ValueError(f"hyperparameter {key!r}: {ALGOS[algo].__name__} takes no such argument")
        try:
            params[key] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"hyperparameter {key}={value.strip()!r}: not a Python literal "
                             "(a number, True/False/None, or a quoted string)") from None
    return params

SCHEDULED = ("learning_rate", "clip_range")     # PPO settings that may be a schedule over training


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


# MiniGrid symbolic channel ranges: OBJECT_TO_IDX (0..10), COLOR_TO_IDX (0..5), STATE_TO_IDX (0..2).
CHANNEL_MAX = (10.0, 5.0, 2.0)


def _channels_first(space: spaces.Box) -> bool:
    """SB3 wraps image-like envs in VecTransposeImage (HWC -> CHW); accept either layout."""
    shape = space.shape
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise ValueError(f"MiniGrid features expect a (7, 7, 3) or (3, 7, 7) symbolic image; got {shape}")
    return shape[0] == 3 and shape[-1] != 3


class _ScaledGrid(torch.nn.Module):
    """[B, H, W, 3] or [B, 3, H, W] symbolic cells -> [B, 3, H, W] floats in [0, 1]."""

    def __init__(self, channels_first: bool):
        super().__init__()
        self.channels_first = channels_first
        self.register_buffer("scale", torch.tensor(CHANNEL_MAX).view(1, 3, 1, 1), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)
        return x / self.scale


class MiniGridCNN(BaseFeaturesExtractor):
    """rl-starter-files' image model: Conv(3->16, 2x2), ReLU, MaxPool 2x2, Conv(16->32, 2x2), ReLU,
    Conv(32->64, 2x2), ReLU; 7x7 -> 6x6 -> 3x3 -> 2x2 -> 1x1, so 64 features for the default view."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 64):
        channels_first = _channels_first(observation_space)
        h, w = observation_space.shape[1:] if channels_first else observation_space.shape[:2]
        if min(h, w) < 5:
            raise ValueError(f"MiniGridCNN needs a view of at least 5x5 cells; got {h}x{w}")
        convs = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 2), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 2), torch.nn.ReLU(), torch.nn.Flatten())
        with torch.no_grad():
            n_flat = convs(torch.zeros(1, 3, h, w)).shape[1]
        super().__init__(observation_space, n_flat)
        self.net = torch.nn.Sequential(_ScaledGrid(channels_first), convs)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class MiniGridFlat(BaseFeaturesExtractor):
    """The scaled symbolic grid, flattened (for an MLP on top)."""

    def __init__(self, observation_space: spaces.Box):
        channels_first = _channels_first(observation_space)
        super().__init__(observation_space, int(np.prod(observation_space.shape)))
        self.net = torch.nn.Sequential(_ScaledGrid(channels_first), torch.nn.Flatten())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


def policy_kwargs_for(features: str) -> dict[str, Any]:
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}; got {features!r}")
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


def _check_args(env_id, where, algo, steps, checkpoint, num_envs):
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id must be a real env id such as 'MiniGrid-Empty-8x8-v0'; got {env_id!r}")
    if algo not in ALGOS:
        raise ValueError(f"unknown algo {algo!r}; choose one of {sorted(ALGOS)}")
    positive_int("steps", steps)
    positive_int("num_envs", num_envs)
    check_place(where, checkpoint, "training")


def make_env(env_id: str, where: str = "real", num_envs: int = 1, seed: int | None = 0,
             checkpoint=None, device: str = "auto", max_episode_steps: int | None = None):
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
                          device=device, max_episode_steps=max_episode_steps)
    venv.seed(seed)
    return venv


def train_agent(env_id: str, where: str = "dream", algo: str = "ppo", steps: int = 100_000,
                out: str | os.PathLike = "runs/agent", checkpoint=None, num_envs: int = DEFAULT_NUM_ENVS,
                seed: int = 0, device: str = "auto", features: str = "cnn", hyperparams: dict | None = None,
                max_episode_steps: int | None = None, verbose: int = 0, progress=None) -> dict[str, Any]:
    """Train `algo` for `steps` env steps in the dream (`checkpoint`: a folder, or a shipped model's id;
    None: the model shipped for `env_id`) or the real env `env_id`.

    Writes out/policy.zip, out/agent.json and TensorBoard logs in out/tb; returns agent.json's
    contents (plus "policy_path"). `hyperparams` override the MiniGrid defaults
    (DEFAULT_HYPERPARAMS[algo]; 'lin_X' for a learning rate or clip range decaying linearly from X to 0);
    `device` is used by both the policy and the dream model. `progress`: a function taking a line of
    text (e.g. print), called about every 10 s while training.
    """
    if where == "dream":
        checkpoint = resolve_checkpoint(checkpoint, env_id if isinstance(env_id, str) else None)
    _check_args(env_id, where, algo, steps, checkpoint, num_envs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = {**DEFAULT_HYPERPARAMS[algo], **(hyperparams or {})}
    venv = make_env(env_id, where, num_envs, seed, checkpoint, device, max_episode_steps)
    label = f"{algo.upper()} in the {'dream' if where == 'dream' else 'real env'}"
    callback = None if progress is None else ProgressLines(label, steps, progress)
    start = time.time()
    try:
        model = ALGOS[algo]("MlpPolicy", venv, seed=seed, device=device, tensorboard_log=str(out / "tb"),
                            policy_kwargs=policy_kwargs_for(features), verbose=verbose, **with_schedules(params))
        model.learn(total_timesteps=int(steps), tb_log_name=f"{algo}_{where}", callback=callback)
        model.save(out / POLICY_FILE)
    finally:
        if callback is not None:
            callback.close()
        venv.close()
    import stable_baselines3

    info = {
        "env_id": env_id, "where": where, "algo": algo, "steps": int(steps),
        "num_timesteps": int(model.num_timesteps), "seed": seed, "num_envs": int(num_envs),
        "checkpoint": None if checkpoint is None else (os.path.abspath(checkpoint)
                                                       if isinstance(checkpoint, (str, os.PathLike)) else repr(checkpoint)),
        "features": features, "hyperparams": params, "max_episode_steps": max_episode_steps,
        "device": str(model.device), "observation": "7x7x3 symbolic image (ImgObsWrapper / image_only=True)",
        "policy": POLICY_FILE, "tensorboard": "tb", "train_seconds": round(time.time() - start, 3),
        "stable_baselines3": stable_baselines3.__version__,
    }
    with open(out / INFO_FILE, "w") as f:
        json.dump(info, f, indent=2)
    return {**info, "policy_path": str(out / POLICY_FILE)}


def load_policy(path, device: str = "auto"):
    """(SB3 model, agent.json dict or {}) from a folder written by train_agent or a policy .zip."""
    path = Path(path)
    if path.is_dir():
        info_file, zip_file = path / INFO_FILE, path / POLICY_FILE
    else:
        info_file, zip_file = path.with_name(INFO_FILE), path
    if not zip_file.is_file():
        raise FileNotFoundError(f"no policy at {os.fspath(zip_file)!r} (expected a folder written by "
                                "`worldsim agent train` or an SB3 .zip)")
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    algo = info.get("algo")
    if algo is not None:
        if algo not in ALGOS:
            raise ValueError(f"{info_file}: unknown algo {algo!r}")
        return ALGOS[algo].load(zip_file, device=device), info
    errors = []
    for name, cls in ALGOS.items():       # a bare .zip: try each algorithm
        try:
            return cls.load(zip_file, device=device), info
        except Exception as e:  # noqa: BLE001
            errors.append(f"{name}: {e}")
    raise ValueError(f"cannot load {os.fspath(zip_file)!r} as any of {sorted(ALGOS)}: " + "; ".join(errors))
