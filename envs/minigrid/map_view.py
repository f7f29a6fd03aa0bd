"""The allocentric map view: what the agent sees right now, drawn on the world's grid, north up.

The egocentric view (``MiniGridCodec``) rotates and slides with the agent, so a tile seen long ago
comes back at a different place in the frame, turned. To recall it a model must first integrate
its own pose. The map view takes that away and leaves the memory: a frame is the whole H x W grid in
world coordinates, with the cells the agent sees now (its 7 x 7 view, walls occluding as MiniGrid's
``see_through_walls=False`` does) filled in, and every other cell ``unseen``. A tile keeps its
place in the frame, so "what was here when I last saw it?" is a question about one position over
time: the block-wise scan's state per spatial block is where the answer can live.

Same vocabulary as the egocentric codec (cell tokens, then agent tokens carrying the direction);
the agent token sits at the agent's world position instead of a fixed cell. Frames are [H, W] =
[world y, world x]. The view is built from the egocentric observation and the agent's pose
(``encode_episode``), which `worldsim collect --view map` records; it is a benchmark
representation, so the dream envs, which need one fixed agent cell, take only the egocentric codec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from minigrid.core.constants import TILE_PIXELS
from minigrid.core.grid import Grid

from envs.minigrid.codec import (
    AGENT_TOKEN_BASE,
    UNSEEN_TOKEN,
    VERSION as CODEC_VERSION,
    VOCAB_SIZE,
    MiniGridCodec,
    _as_int_array,
    _TOKEN_DIRECTION,
    _TOKEN_TRIPLE,
)
from envs.minigrid.visibility import view_to_world

VERSION = "minigrid-map-v1"


class MiniGridMapCodec:
    """Egocentric MiniGrid observations + agent poses -> LongTensor[H, W] frames of the world grid."""

    version = VERSION
    vocab_size = VOCAB_SIZE
    agent_token_base = AGENT_TOKEN_BASE
    unseen_token = UNSEEN_TOKEN

    def __init__(self, width: int, height: int, view_size: int = 7):
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 3:
                raise ValueError(f"{name} must be an integer >= 3 (a MiniGrid grid's size); got {value!r}")
        self.width, self.height = int(width), int(height)
        self.view = MiniGridCodec(view_size)           # validates view_size; encodes the egocentric view
        self.view_size = self.view.view_size

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def config(self) -> dict:
        return {"version": self.version, "width": self.width, "height": self.height, "view_size": self.view_size}

    @classmethod
    def from_config(cls, config: Mapping) -> MiniGridMapCodec:
        if config.get("version") != VERSION:
            raise ValueError(f"codec version {config.get('version')!r} is not this codec's {VERSION!r}; "
                             "token ids would mean different cells")
        missing = [k for k in ("width", "height", "view_size") if k not in config]
        if missing:                   # e.g. an egocentric codec's config, relabelled
            raise ValueError(f"codec config {dict(config)!r} lacks {missing}: a {VERSION!r} codec needs the world "
                             "grid's width and height and the view size; an egocentric model's codec is "
                             f"{CODEC_VERSION!r}")
        return cls(config["width"], config["height"], config["view_size"])

    @classmethod
    def for_env(cls, env) -> MiniGridMapCodec:
        """Map codec for a MiniGrid env: its grid size and its egocentric view size."""
        view = MiniGridCodec.for_env(env)
        u = env.unwrapped
        return cls(int(u.width), int(u.height), view.view_size)

    def world_cells(self, agent_pos: Any, agent_dir: Any) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of every frame cell, int64 [..., H, W] each: the frame is the world."""
        shape = np.shape(agent_dir)
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        return (np.broadcast_to(xs, shape + xs.shape).astype(np.int64),
                np.broadcast_to(ys, shape + ys.shape).astype(np.int64))

    def encode_episode(self, images: Any, directions: Any, agent_pos: Any) -> torch.Tensor:
        """Egocentric images [..., view, view, 3] ([x, y] cells), directions [...] and agent_pos
        [..., 2] (x, y) -> LongTensor[..., H, W]: the visible cells at their world places."""
        view = self.view.encode_batch(images, directions).numpy()            # [..., v, v], checks the rest
        pos = _as_int_array(agent_pos, "agent_pos")
        batch = view.shape[:-2]
        if pos.shape != batch + (2,):
            raise ValueError(f"agent_pos must have shape {batch + (2,)}, one (x, y) per image; got {pos.shape}")
        outside = (pos < 0) | (pos >= np.array([self.width, self.height]))
        if outside.any():
            idx = tuple(int(i) for i in np.argwhere(outside.any(-1))[0])
            raise ValueError(f"agent_pos {pos[idx].tolist()} at {idx} is outside the {self.width} x {self.height} grid")
        wx, wy = view_to_world(pos, np.asarray(directions), self.view_size)
        # Cells past the grid's edge (MiniGrid shows them as walls) have no place on the map.
        shown = (view != UNSEEN_TOKEN) & (wx >= 0) & (wx < self.width) & (wy >= 0) & (wy < self.height)
        frames = np.full(batch + self.frame_shape, UNSEEN_TOKEN, dtype=np.int64)
        where = np.nonzero(shown)
        frames[where[:-2] + (wy[shown], wx[shown])] = view[shown]
        return torch.from_numpy(frames)

    def decode_batch(self, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """LongTensor[..., H, W] -> (world images uint8 [..., W, H, 3] as ``Grid.encode`` lays them out,
        with what the agent carries at its cell, and directions int64 [...])."""
        tokens = _as_int_array(tokens, "tokens")
        if tokens.ndim < 2 or tokens.shape[-2:] != self.frame_shape:
            raise ValueError(f"tokens must have shape [..., {self.height}, {self.width}]; got {tokens.shape}")
        bad = (tokens < 0) | (tokens >= VOCAB_SIZE)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"token id {int(tokens[idx])} at {idx} is out of range [0, {VOCAB_SIZE})")
        direction = _TOKEN_DIRECTION[tokens]                                 # -1 on cell tokens
        agents = (direction >= 0).sum(axis=(-2, -1))
        if (agents != 1).any():
            idx = tuple(int(i) for i in np.argwhere(agents != 1)[0])
            raise ValueError(f"frame {idx} holds {int(agents[idx])} agent tokens; a map frame holds exactly one")
        images = np.ascontiguousarray(np.swapaxes(_TOKEN_TRIPLE[tokens], -2, -3))
        return images, direction.max(axis=(-2, -1))

    def legal_mask(self) -> torch.Tensor:
        """BoolTensor[H, W, vocab]: any token may stand anywhere (the agent is where it is)."""
        return torch.ones(*self.frame_shape, VOCAB_SIZE, dtype=torch.bool)

    def render(self, tokens: Any, tile_size: int = TILE_PIXELS) -> np.ndarray:
        """Frame(s) [..., H, W] -> RGB uint8 [..., H * tile, W * tile, 3]: the map, seen cells highlighted."""
        images, directions = self.decode_batch(tokens)
        tokens = np.asarray(tokens)
        frames = np.empty(images.shape[:-3] + (self.height * tile_size, self.width * tile_size, 3), dtype=np.uint8)
        for idx in np.ndindex(images.shape[:-3]):
            row, col = np.argwhere(_TOKEN_DIRECTION[tokens[idx]] >= 0)[0]
            grid, seen = Grid.decode(images[idx])
            frames[idx] = grid.render(tile_size, agent_pos=(int(col), int(row)), agent_dir=int(directions[idx]),
                                      highlight_mask=seen)
        return frames

    def __repr__(self) -> str:
        return f"MiniGridMapCodec(width={self.width}, height={self.height}, view_size={self.view_size})"
