"""Adapters for real environments: how their observations become frames of tokens and back.

Importing this package registers every env id the project knows with gymnasium: MiniGrid's (by
importing ``minigrid``), Crafter's (``envs.crafter``) and Memory Maze's (``envs.memory_maze``); the crafter and
memory-maze packages are needed only to make one of theirs.
"""

import minigrid  # noqa: F401  (registers the MiniGrid-* ids)

from envs.crafter import register as _register_crafter
from envs.memory_maze import register as _register_memory_maze

_register_crafter()
_register_memory_maze()
