"""Vector envs that speak torch on one device, for the native PPO: the dream (``DreamVectorEnv`` with
``return_torch=True``) and the real MiniGrid env behind the same face.

Both give, for N envs, the agent's 7x7x3 symbolic image (``ImgObsWrapper`` in the real env,
``image_only=True`` in the dream) as a uint8 tensor [N, 7, 7, 3], rewards float32 [N], terminated
and truncated bool [N], and autoreset in the same step: ``infos["final_obs"]`` [N, 7, 7, 3] holds
the last observation of every episode that just ended (valid where ``infos["_final_obs"]``), so a
learner can bootstrap a truncated episode from it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from worldsim.checks import positive_int
from worldsim.runtime import resolve_device

from .observations import real_observation_wrapper


class RealTorchVecEnv:
    """N copies of a real MiniGrid env (gymnasium's SyncVectorEnv, same-step autoreset) whose
    observations, rewards and flags come back as tensors on `device`. `image_shape`: observations are
    the env's images of that shape instead of the symbolic cells (``agents.observations``)."""

    def __init__(self, env_id: str, num_envs: int, device: str | torch.device = "cpu",
                 max_episode_steps: int | None = None, image_shape: tuple[int, int, int] | None = None):
        observe = real_observation_wrapper(image_shape)      # first: importing minigrid registers its ids
        self.num_envs = positive_int("num_envs", num_envs)
        try:
            gym.spec(env_id)
        except gym.error.Error as e:
            raise ValueError(f"unknown real env {env_id!r} ({e})") from None
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": positive_int("max_episode_steps",
                                                                                          max_episode_steps)}
        self.device = resolve_device(device)
        self.env = gym.make_vec(env_id, num_envs=self.num_envs, vectorization_mode="sync",
                                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                                wrappers=[observe], **kwargs)
        self.single_observation_space = self.env.single_observation_space
        self.single_action_space = self.env.single_action_space

    def _tensor(self, array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype).to(self.device)

    def reset(self, *, seed: int | None = None) -> tuple[torch.Tensor, dict]:
        obs, _ = self.env.reset(seed=seed)
        return self._tensor(obs), {}

    def step(self, actions: torch.Tensor):
        obs, reward, terminated, truncated, info = self.env.step(actions.cpu().numpy())
        done = terminated | truncated
        final = np.zeros_like(obs)
        if done.any():
            for i in np.flatnonzero(done):
                final[i] = info["final_obs"][i]
        infos: dict[str, Any] = {"final_obs": self._tensor(final), "_final_obs": self._tensor(done)}
        return (self._tensor(obs), self._tensor(reward, torch.float32), self._tensor(terminated),
                self._tensor(truncated), infos)

    def close(self) -> None:
        self.env.close()


def make_torch_env(env_id: str, where: str, num_envs: int, *, checkpoint=None, device: str | torch.device = "auto",
                   max_episode_steps: int | None = None, dream_settings: dict | None = None,
                   image_shape: tuple[int, int, int] | None = None):
    """The vector env the native PPO trains or is scored in: the real env (seen as images of `image_shape`
    when given, ``agents.observations``), or the dream of `checkpoint`
    (`dream_settings`: DreamVectorEnv's temperature, uncertainty_penalty, uncertainty_limit, state_starts,
    state_start_fraction)."""
    if where == "real":
        return RealTorchVecEnv(env_id, num_envs, device=device, max_episode_steps=max_episode_steps,
                               image_shape=image_shape)
    from worldsim import DreamVectorEnv

    # Training runs for minutes: on CUDA, compiling the step (under a minute) pays for itself.
    compile_step = resolve_device(device).type == "cuda"
    return DreamVectorEnv(checkpoint, num_envs=num_envs, real_env_id=env_id, image_only=True, device=device,
                          max_episode_steps=max_episode_steps, return_torch=True, compile=compile_step,
                          **(dream_settings or {}))
