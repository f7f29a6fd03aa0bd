"""MiniGrid adapter: the exact symbolic frame codec, view geometry, and an exploration policy."""

from envs.minigrid.codec import MiniGridCodec
from envs.minigrid.explore import ExploreAgent
from envs.minigrid.visibility import episode_gap, view_to_world, visible_mask

__all__ = ["ExploreAgent", "MiniGridCodec", "episode_gap", "view_to_world", "visible_mask"]
