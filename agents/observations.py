"""What an agent sees of the real env: MiniGrid's symbolic image (``ImgObsWrapper``), or, for an agent
trained in the dream of an image model, the images that model's tokenizer reads (MiniGrid's RGB
partial view). One place decides, for training and evaluation alike.

`image_shape` names the second kind: None for the symbolic image, (H, W, C) for pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym


def checkpoint_image_shape(checkpoint: Any) -> tuple[int, int, int] | None:
    """The images (H, W, C) a dream of `checkpoint` (a folder or a WorldModel) shows, or None when its frames
    are MiniGrid's symbolic cells."""
    from worldsim.checkpoint import load_config

    if checkpoint is None:
        return None
    config = checkpoint.config if hasattr(checkpoint, "config") else load_config(Path(checkpoint))
    codec = (config.metadata or {}).get("codec") or {}
    return tuple(codec["image_shape"]) if "image_shape" in codec else None


def real_image_shape(env_id: str) -> tuple[int, int, int] | None:
    """The images (H, W, C) an agent trained in the real env `env_id` sees: None for a MiniGrid env (its
    symbolic image) or an env that does not observe images, else the env's own observation shape."""
    import envs  # noqa: F401  (registers the ids the project knows: MiniGrid's, Crafter's)
    from envs.images.sources import is_image_space
    from minigrid.minigrid_env import MiniGridEnv

    try:
        env = gym.make(env_id)
    except gym.error.Error:
        return None                                  # the training's own checks name the unknown id
    try:
        if isinstance(env.unwrapped, MiniGridEnv) or not is_image_space(env.observation_space):
            return None
        return tuple(env.observation_space.shape)
    finally:
        env.close()


def policy_image_shape(policy: Any) -> tuple[int, int, int] | None:
    """The images (H, W, C) a loaded policy reads, or None for MiniGrid's symbolic image: a native policy
    whose features are pixels reads images of its observation shape."""
    network = getattr(policy, "network", None)
    if network is not None and getattr(network, "feature_kind", None) == "pixels":
        return tuple(network.observation_shape)
    return None


def real_observation_wrapper(image_shape: tuple[int, int, int] | None):
    """A function env -> env giving the agent's observation: ``ImgObsWrapper`` (symbolic), or the env as the
    images of `image_shape` (``envs.images.sources.as_image_env``)."""
    if image_shape is None:
        import minigrid  # noqa: F401  (registers the MiniGrid ids)
        from minigrid.wrappers import ImgObsWrapper

        return ImgObsWrapper
    from envs.images.sources import as_image_env

    def as_images(env: gym.Env) -> gym.Env:
        return as_image_env(env, image_shape)

    return as_images


def describe(image_shape: tuple[int, int, int] | None) -> dict:
    """agent.json's "observation" entry."""
    if image_shape is None:
        return {"kind": "symbolic", "text": "7x7x3 symbolic image (ImgObsWrapper / image_only=True)"}
    return {"kind": "pixels", "image_shape": list(image_shape),
            "text": f"{image_shape[0]}x{image_shape[1]}x{image_shape[2]} RGB image (the image model's view)"}
