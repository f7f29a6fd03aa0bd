"""MiniGrid adapter: the exact symbolic frame codec, view geometry, an exploration policy, and
worldsim's own MiniGrid env for the memory benchmark (registered here as MiniGrid-ColorRooms-v0 and
-13x13-v0), the allocentric map view the memory benchmark can record instead of the egocentric one,
and the world view: the whole env state as a frame, the agent's view cut out of it."""

import gymnasium as gym

from envs.minigrid.codec import MiniGridCodec
from envs.minigrid.color_rooms import ENV_IDS as COLOR_ROOMS_IDS
from envs.minigrid.explore import ExploreAgent
from envs.minigrid.map_view import MiniGridMapCodec
from envs.minigrid.visibility import view_to_world
from envs.minigrid.world_view import MiniGridWorldCodec

__all__ = ["ExploreAgent", "MiniGridCodec", "MiniGridMapCodec", "MiniGridWorldCodec", "view_to_world"]

for _env_id, _size in COLOR_ROOMS_IDS.items():
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point="envs.minigrid.color_rooms:ColorRoomsEnv", kwargs={"size": _size})
