"""Where each cell of an egocentric MiniGrid frame lies in the world, and how long ago it was last seen.

Memory metrics ask "how many frames ago did the agent last see the place this cell shows?". The
observation alone cannot say; with the agent's world pose it can. MiniGrid builds the view in
``gen_obs_grid`` by slicing the grid at ``get_view_exts`` and rotating it left ``agent_dir + 1``
times, so the agent stands at view (x = view // 2, y = view - 1) facing up (-y). Undoing that:

    world = agent_pos + dir_vec * (view - 1 - y) + right_vec * (x - view // 2)

with ``dir_vec`` = DIR_TO_VEC[agent_dir] and ``right_vec`` = (-dir_vec.y, dir_vec.x), the same
vectors ``get_view_coords`` inverts. A codec frame is [H, W] = [view y, view x] (the image
transposed), so ``view_to_world`` answers in frame layout. Cells past the grid's edge (which
MiniGrid shows as walls) get coordinates outside the grid; they are places all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from minigrid.core.constants import DIR_TO_VEC

if TYPE_CHECKING:                    # the codecs import view_to_world from here
    from envs.minigrid.codec import MiniGridCodec

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


def visible_mask(frames, codec: MiniGridCodec) -> np.ndarray:
    """frames [..., H, W] tokens -> bool [..., H, W]: the cell is in the agent's sight (not 'unseen')."""
    return np.asarray(frames) != codec.unseen_token


def episode_gap(frames, agent_pos, agent_dir, codec: MiniGridCodec) -> np.ndarray:
    """int32 [T+1, H, W]: for each visible cell of frame p, p minus the last earlier frame of this episode
    in which the world cell it shows was visible; -1 where never seen before, or where not visible now.

    Vectorised: list every (frame, world cell) sighting in time order, sort stably by world cell, and
    read each sighting's predecessor in its group.
    """
    frames = np.asarray(frames)
    n, h, w = frames.shape
    wx, wy = codec.world_cells(agent_pos, agent_dir)          # the egocentric view or the map
    if wx.shape != frames.shape:
        raise ValueError(f"frames {frames.shape} and poses (giving {wx.shape}) disagree")
    gap = np.full((n, h, w), -1, dtype=np.int32)
    visible = visible_mask(frames, codec)
    if not visible.any():
        return gap
    x, y = wx[visible], wy[visible]                            # sightings, in (frame, row, col) order
    t = np.broadcast_to(np.arange(n)[:, None, None], frames.shape)[visible]
    x, y = x - x.min(), y - y.min()
    place = x * (y.max() + 1) + y
    order = np.argsort(place, kind="stable")                  # grouped by place, time order kept
    place_sorted, t_sorted = place[order], t[order]
    seen_before = np.zeros(len(order), dtype=bool)
    seen_before[1:] = place_sorted[1:] == place_sorted[:-1]
    since = np.full(len(order), -1, dtype=np.int32)
    since[1:] = np.where(seen_before[1:], t_sorted[1:] - t_sorted[:-1], -1)
    flat = np.empty(len(order), dtype=np.int32)
    flat[order] = since
    gap[visible] = flat
    return gap
