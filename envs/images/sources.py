"""Image observations from any Gymnasium env: which envs qualify, and frames to train a tokenizer on.

An env qualifies when its observation is an image (a ``Box`` of uint8, H x W x C) and its actions are
``Discrete`` or a ``Box`` of floats of shape (N,) (``worldsim.actions``). MiniGrid envs qualify through their RGB partial view (``RGBImgPartialObsWrapper`` then
``ImgObsWrapper``: the agent's 7 x 7 cells drawn at `tile_size` pixels each).
"""

from __future__ import annotations

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
from gymnasium import spaces
from minigrid.minigrid_env import MiniGridEnv

from worldsim.actions import ActionBox
from worldsim.checks import positive_int

MINIGRID_TILE = 8


def is_image_space(space: gym.Space) -> bool:
    return (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3
            and space.shape[-1] in (1, 3, 4))


def as_image_env(env: gym.Env, image_shape: tuple[int, int, int] | None = None) -> gym.Env:
    """`env` showing itself in images: as it is when it observes images already; a MiniGrid env through its RGB
    partial view (``RGBImgPartialObsWrapper`` then ``ImgObsWrapper``), drawn `image_shape` on a side or at
    MINIGRID_TILE pixels per cell. ValueError naming the env and its spaces when it has no images, its actions
    are neither Discrete nor a Box of floats (N,), or its images are not `image_shape`."""
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if isinstance(env.unwrapped, MiniGridEnv) and not is_image_space(env.observation_space):
        from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

        side = env.unwrapped.agent_view_size
        tile = image_shape[0] // side if image_shape is not None and image_shape[0] % side == 0 else MINIGRID_TILE
        env = ImgObsWrapper(RGBImgPartialObsWrapper(env, tile_size=tile))
    if not is_image_space(env.observation_space) or not _world_model_actions(env.action_space):
        raise ValueError(f"env {name!r} observes {env.observation_space} and acts in {env.action_space}; an image "
                         "env needs uint8 image observations (a Box of shape H x W x C, C in 1, 3, 4) and Discrete "
                         "actions or a Box of floats of shape (N,)")
    if image_shape is not None and tuple(env.observation_space.shape) != tuple(image_shape):
        raise ValueError(f"env {name!r} shows images of {tuple(env.observation_space.shape)}; the tokenizer reads "
                         f"{tuple(image_shape)}")
    return env


def _world_model_actions(space: gym.Space) -> bool:
    """Actions a world model takes: Discrete, or a one-dimensional Box of floats."""
    try:
        return isinstance(space, spaces.Discrete) or ActionBox.from_space(space) is not None
    except ValueError:
        return False


def image_env(env_id: str, **kwargs) -> gym.Env:
    """`gym.make(env_id)` showing itself in images (``as_image_env``); ValueError when it cannot."""
    try:
        env = gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"env {env_id!r} cannot be made: {e}") from None
    try:
        return as_image_env(env)
    except ValueError:
        env.close()
        raise


def random_frames(env_id: str, num_frames: int, seed: int = 0, num_envs: int = 8) -> np.ndarray:
    """`num_frames` observations uint8 [N, H, W, C] of `num_envs` copies of the image env under uniformly
    random actions; copy i is seeded with seed + i and resets itself when an episode ends."""
    positive_int("num_frames", num_frames)
    positive_int("num_envs", num_envs)
    envs = gym.vector.SyncVectorEnv([lambda: image_env(env_id) for _ in range(num_envs)])
    try:
        envs.action_space.seed(seed)
        obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
        frames = [obs]
        while sum(len(f) for f in frames) < num_frames:
            obs, *_ = envs.step(envs.action_space.sample())
            frames.append(obs)
    finally:
        envs.close()
    return np.concatenate(frames)[:num_frames]
