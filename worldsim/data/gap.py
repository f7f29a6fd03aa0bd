"""How long ago each cell of a frame was last seen: the temporal ``gap`` memory metrics bucket by.

Memory metrics ask "how many frames ago did the agent last see the place this cell shows?". The
tokens alone cannot say; the codec, given the agent's pose, can: a codec that records gaps provides

    unseen_token                                    the token of a cell outside the agent's sight
    world_cells(agent_pos, agent_dir) -> (x, y)     world place of every frame cell, int64 [..., H, W] each

(the MiniGrid codecs do: the egocentric view through ``envs.minigrid.visibility.view_to_world``, the
map view as the world itself; an image codec gives None, its patches showing no known places, and
every gap is -1). Everything here goes through that interface alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def visible_mask(frames, codec: Any) -> np.ndarray:
    """frames [..., H, W] tokens -> bool [..., H, W]: the cell is in the agent's sight (not 'unseen')."""
    return np.asarray(frames) != codec.unseen_token


def episode_gap(frames, agent_pos, agent_dir, codec: Any) -> np.ndarray:
    """int32 [T+1, H, W]: for each visible cell of frame p, p minus the last earlier frame of this episode
    in which the world cell it shows was visible; -1 where never seen before, or where not visible now.

    frames [T+1, H, W] tokens, agent_pos [T+1, 2] (x, y), agent_dir [T+1]. Vectorised: list every
    (frame, world cell) sighting in time order, sort stably by world cell, and read each sighting's
    predecessor in its group.
    """
    frames = np.asarray(frames)
    n, h, w = frames.shape
    gap = np.full((n, h, w), -1, dtype=np.int32)
    places = codec.world_cells(agent_pos, agent_dir)          # the egocentric view or the map
    if places is None:                                        # frames that show no known places
        return gap
    wx, wy = places
    if wx.shape != frames.shape:
        raise ValueError(f"frames {frames.shape} and poses (giving {wx.shape}) disagree")
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
