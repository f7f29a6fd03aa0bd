"""Stable-Baselines3 ``VecEnv`` over a ``DreamVectorEnv``: numpy at the boundary, SB3's info layout.

As Isaac Lab's SB3 wrapper does for its GPU vector env, this adapter steps all N dream envs in one
batched call and converts at the boundary: observations to numpy, ``dones = terminated | truncated``,
and one info dict per env with, for a finished episode, ``terminal_observation`` (the last
observation of the episode; the returned one is already the next episode's first),
``TimeLimit.truncated`` and ``episode = {"r", "l", "t"}`` (as SB3's Monitor), so PPO's
``ep_info_buffer`` fills without a VecMonitor.

SB3 has no space for strings: a Dict observation drops its ``mission`` (use ``image_only=True``
for ``MlpPolicy`` / ``CnnPolicy`` on the image alone).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from worldsim.dream_vector_env import DreamVectorEnv

_SB3_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def _sb3_space(space: spaces.Space) -> tuple[spaces.Space, list[str] | None]:
    """(the space SB3 sees, the Dict keys kept or None)."""
    if isinstance(space, spaces.Dict):
        keys = [k for k, s in space.spaces.items() if isinstance(s, _SB3_SPACES)]
        return spaces.Dict({k: space[k] for k in keys}), keys
    if not isinstance(space, _SB3_SPACES):
        raise ValueError(f"SB3 cannot use observation space {space}")
    return space, None


class DreamSB3VecEnv(VecEnv):
    """SB3 VecEnv over a DreamVectorEnv (or the keywords to build one: ``DreamSB3VecEnv(checkpoint=..., num_envs=8)``)."""

    def __init__(self, env: DreamVectorEnv | None = None, **kwargs):
        if env is None:
            env = DreamVectorEnv(**kwargs)
        elif kwargs:
            raise TypeError("pass either a DreamVectorEnv or the keywords to build one, not both")
        if not isinstance(env.unwrapped, DreamVectorEnv):
            raise TypeError(f"DreamSB3VecEnv wraps a DreamVectorEnv; got {type(env).__name__}")
        if env.unwrapped.return_torch:
            raise ValueError("DreamSB3VecEnv needs a DreamVectorEnv with return_torch=False (SB3 takes numpy)")
        self.env = env
        obs_space, self._keys = _sb3_space(env.single_observation_space)
        super().__init__(env.num_envs, obs_space, env.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t0 = time.time()

    def _obs(self, obs: Any):
        if self._keys is None:
            return np.asarray(obs)
        return {k: np.asarray(obs[k]) for k in self._keys}

    def reset(self):
        seed = self._seeds[0]   # SB3 seeds env i with seed + i; the dream vector env does the same from one int
        obs, _ = self.env.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self._returns[:] = 0
        self._lengths[:] = 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self._obs(obs)

    def step_async(self, actions: np.ndarray) -> None:
        if isinstance(self.env.single_action_space, spaces.Box):     # SB3 clips them to the box itself
            self._actions = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        else:
            self._actions = np.asarray(actions).reshape(self.num_envs).astype(np.int64)

    def step_wait(self):
        obs, rewards, terminated, truncated, infos = self.env.step(self._actions)
        rewards = np.asarray(rewards, dtype=np.float32)
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        out_infos: list[dict[str, Any]] = [{"uncertainty": float(u)} for u in infos["uncertainty"]]
        for i in np.flatnonzero(dones):
            info = out_infos[i]
            info["terminal_observation"] = self._obs(infos["final_obs"][i])
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            info["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i]),
                               "t": round(time.time() - self._t0, 6)}
            self._returns[i] = 0
            self._lengths[i] = 0
        return self._obs(obs), rewards, dones, out_infos

    def close(self) -> None:
        self.env.close()

    # SB3 asks sub-envs for attributes; the dream envs share one object, so every index gets its value.
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.env, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.env.render() if self.env.render_mode == "rgb_array" else None
        return [None] * self.num_envs if frames is None else list(frames)

    @property
    def frames(self) -> torch.Tensor:
        return self.env.unwrapped.frames
