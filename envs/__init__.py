"""Adapters for real environments: how their observations become frames of tokens and back.

Importing this package registers every env id the project knows with gymnasium: MiniGrid's (by
importing ``minigrid``) and Crafter's (``envs.crafter``; the crafter package is needed only to make one).
"""

import minigrid  # noqa: F401  (registers the MiniGrid-* ids)

from envs.crafter import register as _register_crafter

_register_crafter()
