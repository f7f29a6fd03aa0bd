"""Gymnasium registration of the dream envs (called when `worldsim` is imported).

    gym.make("worldsim/Dream-v0", checkpoint=path)                      # DreamEnv
    gym.make_vec("worldsim/Dream-v0", num_envs=N, checkpoint=path)      # DreamVectorEnv (vector_entry_point)

Both take every keyword of DreamEnv / DreamVectorEnv (thin faces over `worldsim.simulator.Simulator`).
Each world model shipped in the package (`worldsim.zoo`) gets its own id with the checkpoint and
real env filled in:

    gym.make("worldsim/MiniGrid-Empty-8x8-Dream-v0")

The step limit is the env's own (the real env's, or max_episode_steps=...), so the spec sets none
and gym.make adds no TimeLimit.
"""

from __future__ import annotations

import gymnasium as gym

DREAM_ENV_ID = "worldsim/Dream-v0"


def register_envs() -> None:
    from .zoo import shipped_models

    if DREAM_ENV_ID in gym.registry:
        return
    gym.register(
        id=DREAM_ENV_ID,
        entry_point="worldsim.dream_env:DreamEnv",
        vector_entry_point="worldsim.dream_vector_env:DreamVectorEnv",
        disable_env_checker=False,
    )
    for model in shipped_models():
        gym.register(
            id=model.dream_id,
            entry_point="worldsim.dream_env:DreamEnv",
            vector_entry_point="worldsim.dream_vector_env:DreamVectorEnv",
            kwargs={"checkpoint": str(model.path), "real_env_id": model.env_id},
            disable_env_checker=False,
        )
