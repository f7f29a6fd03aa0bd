"""MiniGrid adapter: the exact symbolic frame codec, view geometry, an exploration policy, and
worldsim's own MiniGrid env for the memory benchmark (registered here as MiniGrid-ColorRooms-v0)."""

import gymnasium as gym

from envs.minigrid.codec import MiniGridCodec
from envs.minigrid.color_rooms import ENV_ID as COLOR_ROOMS_ID
from envs.minigrid.explore import ExploreAgent
from envs.minigrid.visibility import episode_gap, view_to_world, visible_mask

__all__ = ["ExploreAgent", "MiniGridCodec", "episode_gap", "view_to_world", "visible_mask"]

if COLOR_ROOMS_ID not in gym.registry:
    gym.register(COLOR_ROOMS_ID, entry_point="envs.minigrid.color_rooms:ColorRoomsEnv")
