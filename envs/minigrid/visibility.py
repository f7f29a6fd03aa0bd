"""Where each cell of an egocentric MiniGrid frame lies in the world.

Memory metrics ask "how many frames ago did the agent last see the place this cell shows?" (the
gap, ``worldsim.data.gap``). The observation alone cannot say; with the agent's world pose it can:
the codecs' ``world_cells`` answer through ``view_to_world``. MiniGrid builds the view in
``gen_obs_grid`` by slicing the grid at ``get_view_exts`` and rotating it left ``agent_dir + 1``
times, so the agent stands at view (x = view // 2, y = view - 1) facing up (-y). Undoing that:

    world = agent_pos + dir_vec * (view - 1 - y) + right_vec * (x - view // 2)

with ``dir_vec`` = DIR_TO_VEC[agent_dir] and ``right_vec`` = (-dir_vec.y, dir_vec.x), the same
vectors ``get_view_coords`` inverts. A codec frame is [H, W] = [view y, view x] (the image
transposed), so ``view_to_world`` answers in frame layout. Cells past the grid's edge (which
MiniGrid shows as walls) get coordinates outside the grid; they are places all the same.
"""

from __future__ import annotations

import numpy as np
from minigrid.core.constants import DIR_TO_VEC

_DIR_VEC = np.array(DIR_TO_VEC, dtype=np.int64)             # [4, 2]: (dx, dy) per direction
_RIGHT_VEC = np.stack([-_DIR_VEC[:, 1], _DIR_VEC[:, 0]], 1)  # [4, 2]: the agent's right


def view_to_world(agent_pos, agent_dir, view_size: int) -> tuple[np.ndarray, np.ndarray]:
    """agent_pos [..., 2] (x, y), agent_dir [...] -> world (x, y), each int64 [..., view, view] in
    frame layout: element [..., row, col] is the world cell that frame row = view y, col = view x shows."""
    pos = np.asarray(agent_pos, dtype=np.int64)
    direction = np.asarray(agent_dir, dtype=np.int64)
    if pos.shape[-1:] != (2,) or pos.shape[:-1] != direction.shape:
        raise ValueError(f"agent_pos must be [..., 2] and agent_dir [...] with the same leading shape; "
                         f"got {pos.shape} and {direction.shape}")
    if ((direction < 0) | (direction > 3)).any():
        raise ValueError(f"agent_dir must be in 0..3; got {np.unique(direction[(direction < 0) | (direction > 3)])}")
    rows, cols = np.mgrid[0:view_size, 0:view_size]
    ahead = view_size - 1 - rows                              # [view, view]: steps in front of the agent
    right = cols - view_size // 2                             # steps to its right
    d = _DIR_VEC[direction][..., None, None, :]               # [..., 1, 1, 2]
    r = _RIGHT_VEC[direction][..., None, None, :]
    world = pos[..., None, None, :] + d * ahead[..., None] + r * right[..., None]
    return world[..., 0], world[..., 1]
