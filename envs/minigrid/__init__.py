"""MiniGrid adapter: the exact symbolic frame codec."""

from envs.minigrid.codec import MiniGridCodec

__all__ = ["MiniGridCodec"]
