"""The world view: a frame is the whole MiniGrid state, and the agent's observation is drawn from it.

The egocentric codec asks the world model to imagine every place the agent has not seen yet, and to
keep what it imagined consistent once the agent turns away: open loop, the imagined world drifts,
and an agent trained in the dream learns to exploit the drift (a lava gap that moves when the
agent looks away). MiniGrid's state is small and fully known to the env, so this codec records it
whole: every cell of the grid as ``Grid.encode`` writes it, north up, with the agent's cell holding
the agent token (its direction and what it carries, as in the egocentric codec; what lies under
the agent is hidden, as MiniGrid's own views hide it). A dream then starts from the real reset's
full layout and only has to predict how the state changes, which in MiniGrid is a few cells per step.

The agent still sees only its egocentric view: ``observe_torch`` cuts it out of a frame on the
device exactly as MiniGrid's ``gen_obs`` does (slice at the view's extents with walls past the
edge, rotate so the agent faces up, hide what walls and closed doors occlude unless the env sees
through walls, show the carried object in the agent's cell). A test holds it to MiniGrid's own
observations, so a dream on this codec has the real env's observation space and meaning.

Frames are [H, W] = [world y, world x] over the egocentric codec's vocabulary; ``unseen`` never
appears. The agent may stand in any cell, so sampling must put exactly one agent token in a frame:
``worldsim.sampling.one_agent_logits`` places it first (the most likely cell) and the other cells
after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX, TILE_PIXELS
from minigrid.core.grid import Grid
from minigrid.core.world_object import Wall

from envs.minigrid.codec import (
    _CELL_LUT,
    _CONTENT_LUT,
    _LUT_SHAPE,
    _TOKEN_DIRECTION,
    _TOKEN_TRIPLE,
    AGENT_TOKEN_BASE,
    N_CONTENTS,
    N_DIRECTIONS,
    UNSEEN_TOKEN,
    VOCAB_SIZE,
    MiniGridCodec,
    _as_int_array,
    _describe,
)
from envs.minigrid.visibility import view_to_world

VERSION = "minigrid-world-v1"
_EMPTY = (OBJECT_TO_IDX["empty"], 0, 0)
_WALL = Wall().encode()   # what MiniGrid's slice puts past the grid's edge


def world_grid(env) -> tuple[np.ndarray, int, np.ndarray]:
    """(grid uint8 [W, H, 3] as ``Grid.encode`` lays it out with the agent's cell holding what it
    carries, agent direction, agent position (x, y)) of a MiniGrid env's current state."""
    u = env.unwrapped
    grid = u.grid.encode()
    x, y = (int(v) for v in u.agent_pos)
    grid[x, y] = u.carrying.encode() if u.carrying is not None else _EMPTY
    return grid, int(u.agent_dir), np.array((x, y), dtype=np.int64)


class MiniGridWorldCodec:
    """MiniGrid state (grid + agent pose + carried object) <-> LongTensor[H, W] frame; the agent's
    egocentric observation from a frame (``observe_torch``, ``decode_batch``)."""

    version = VERSION
    vocab_size = VOCAB_SIZE
    agent_token_base = AGENT_TOKEN_BASE
    unseen_token = UNSEEN_TOKEN

    def __init__(self, width: int, height: int, view_size: int = 7, see_through_walls: bool = False):
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 3:
                raise ValueError(f"{name} must be an integer >= 3 (a MiniGrid grid's size); got {value!r}")
        if not isinstance(see_through_walls, (bool, np.bool_)):
            raise ValueError(f"see_through_walls must be true or false; got {see_through_walls!r}")
        self.width, self.height = int(width), int(height)
        self.view = MiniGridCodec(view_size)               # validates view_size; the observation's codec
        self.view_size = self.view.view_size
        self.see_through_walls = bool(see_through_walls)
        self._tables: dict[torch.device, tuple[torch.Tensor, ...]] = {}

    @property
    def frame_shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def config(self) -> dict:
        return {"version": self.version, "width": self.width, "height": self.height, "view_size": self.view_size,
                "see_through_walls": self.see_through_walls}

    @classmethod
    def from_config(cls, config: Mapping) -> MiniGridWorldCodec:
        if config.get("version") != VERSION:
            raise ValueError(f"codec version {config.get('version')!r} is not this codec's {VERSION!r}; "
                             "token ids would mean different cells")
        missing = [k for k in ("width", "height", "view_size", "see_through_walls") if k not in config]
        if missing:
            raise ValueError(f"codec config {dict(config)!r} lacks {missing}: a {VERSION!r} codec needs the grid's "
                             "width and height, the view size and whether the agent sees through walls")
        return cls(config["width"], config["height"], config["view_size"], config["see_through_walls"])

    @classmethod
    def for_env(cls, env) -> MiniGridWorldCodec:
        """World codec for a MiniGrid env: its grid size, view size and wall transparency."""
        view = MiniGridCodec.for_env(env)
        u = env.unwrapped
        return cls(int(u.width), int(u.height), view.view_size, bool(u.see_through_walls))

    def world_cells(self, agent_pos: Any, agent_dir: Any) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of every frame cell, int64 [..., H, W] each: the frame is the world."""
        shape = np.shape(agent_dir)
        ys, xs = np.mgrid[0:self.height, 0:self.width]
        return (np.broadcast_to(xs, shape + xs.shape).astype(np.int64),
                np.broadcast_to(ys, shape + ys.shape).astype(np.int64))

    # ---------------------------------------------------------------- encode

    def encode_env(self, env) -> torch.Tensor:
        """The frame [H, W] of a MiniGrid env's current state (a dream's start)."""
        grid, direction, pos = world_grid(env)
        if grid.shape[:2] != (self.width, self.height):
            raise ValueError(f"the env's grid is {grid.shape[0]} x {grid.shape[1]}; this codec's is "
                             f"{self.width} x {self.height}")
        return self.encode_episode(grid, direction, pos)

    def encode_episode(self, images: Any, directions: Any, agent_pos: Any) -> torch.Tensor:
        """World grids [..., W, H, 3] (``world_grid``: ``Grid.encode`` with the agent's cell holding what
        it carries), directions [...] and agent_pos [..., 2] (x, y) -> LongTensor[..., H, W]."""
        grids = _as_int_array(images, "world grids")
        if grids.ndim < 3 or grids.shape[-3:] != (self.width, self.height, 3):
            raise ValueError(f"world grids must have shape [..., {self.width}, {self.height}, 3] (x, y, "
                             f"(object, colour, state)); got {grids.shape}")
        batch = grids.shape[:-3]
        directions = _as_int_array(directions, "directions")
        pos = _as_int_array(agent_pos, "agent_pos")
        if directions.shape != batch or pos.shape != batch + (2,):
            raise ValueError(f"directions must have shape {batch} and agent_pos {batch + (2,)}; got "
                             f"{directions.shape} and {pos.shape}")
        if ((directions < 0) | (directions >= N_DIRECTIONS)).any():
            raise ValueError(f"direction must be in 0..{N_DIRECTIONS - 1}; got {np.unique(directions).tolist()}")
        if ((pos < 0) | (pos >= np.array([self.width, self.height]))).any():
            raise ValueError(f"agent_pos must lie inside the {self.width} x {self.height} grid; got "
                             f"{pos.reshape(-1, 2).tolist()[:4]}")
        cells = grids.astype(np.int64)
        in_table = ((cells >= 0) & (cells < np.array(_LUT_SHAPE))).all(axis=-1)
        obj, colour, state = np.moveaxis(np.where(in_table[..., None], cells, 0), -1, 0)
        tokens = np.where(in_table, _CELL_LUT[obj, colour, state], -1)                   # [..., x, y]
        tokens = np.where(tokens == UNSEEN_TOKEN, -1, tokens)          # the world has no unseen cell
        flat_cells = cells.reshape(-1, self.width, self.height, 3)
        flat_tokens = tokens.reshape(-1, self.width, self.height)
        n = np.arange(flat_tokens.shape[0])
        px, py = pos.reshape(-1, 2).T
        carried = flat_cells[n, px, py]                                                  # [N, 3]
        known = ((carried >= 0) & (carried < np.array(_LUT_SHAPE))).all(-1)
        content = np.where(known, _CONTENT_LUT[tuple(np.where(known[:, None], carried, 0).T)], -1)
        agent_tokens = AGENT_TOKEN_BASE + directions.reshape(-1) * N_CONTENTS + content
        flat_tokens[n, px, py] = np.where(content >= 0, agent_tokens, -1)
        tokens = flat_tokens.reshape(tokens.shape)
        if (tokens < 0).any():
            *b, x, y = (int(i) for i in np.argwhere(tokens < 0)[0])
            raise ValueError(f"cell (x={x}, y={y}){f' of grid {tuple(b)}' if b else ''} holds "
                             f"{_describe(cells[(*b, x, y)])}, which a {VERSION!r} frame cannot hold (the agent's "
                             "cell holds what it carries: nothing, a key, a ball or a box)")
        return torch.from_numpy(np.ascontiguousarray(np.swapaxes(tokens, -1, -2)))

    # ---------------------------------------------------------------- observe

    def _device_tables(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Lookup tables on `device`: token -> triple [V + 1, 3] (the last row a wall, for cells past the
        grid's edge), token -> direction [V], and the world cell each view cell shows for every agent
        pose [H * W * 4, v * v] (H * W where the view leaves the grid)."""
        if device not in self._tables:
            triples = np.concatenate([_TOKEN_TRIPLE.astype(np.int64), np.array([_WALL])])
            ys, xs = np.mgrid[0:self.height, 0:self.width]
            pos = np.stack([xs, ys], -1).reshape(-1, 1, 2).repeat(N_DIRECTIONS, 1)          # [H*W, 4, 2]
            dirs = np.broadcast_to(np.arange(N_DIRECTIONS), pos.shape[:2])
            wx, wy = view_to_world(pos, dirs, self.view_size)                               # [H*W, 4, v, v]
            inside = (wx >= 0) & (wx < self.width) & (wy >= 0) & (wy < self.height)
            index = np.where(inside, wy * self.width + wx, self.height * self.width)
            self._tables[device] = (torch.from_numpy(triples).to(device),
                                    torch.from_numpy(_TOKEN_DIRECTION.copy()).to(device),
                                    torch.from_numpy(index.reshape(-1, self.view_size ** 2)).to(device))
        return self._tables[device]

    def observe_torch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [B, H, W] long on any device -> the agent's observations there, without a host sync:
        (images uint8 [B, view x, view y, 3], directions int64 [B]). The agent is taken at the first
        cell holding an agent token (a sampled frame holds exactly one)."""
        triples, token_dir, view_index = self._device_tables(frames.device)
        b = frames.shape[0]
        flat = frames.reshape(b, -1)
        cell = (flat >= AGENT_TOKEN_BASE).to(torch.uint8).argmax(1)                      # [B]
        direction = token_dir[flat.gather(1, cell[:, None])[:, 0]].clamp(min=0)
        where = view_index[cell * N_DIRECTIONS + direction]                              # [B, v*v]
        padded = torch.cat([flat, flat.new_full((b, 1), VOCAB_SIZE)], 1)                  # + the edge's wall
        v = self.view_size
        seen = triples[padded.gather(1, where)].view(b, v, v, 3)                         # [B, row=y, col=x, 3]
        if not self.see_through_walls:
            seen = seen * self._visible(seen)[..., None]
        return seen.transpose(1, 2).to(torch.uint8), direction

    def _visible(self, cells: torch.Tensor) -> torch.Tensor:
        """MiniGrid's ``Grid.process_vis`` on a batch of views [B, row=y, col=x, 3]: which cells the agent
        (bottom middle, facing up) sees past walls and closed or locked doors. [B, v, v] long 0/1."""
        v = self.view_size
        obj, state = cells[..., 0], cells[..., 2]
        opaque = (obj == OBJECT_TO_IDX["wall"]) | ((obj == OBJECT_TO_IDX["door"]) & (state != STATE_TO_IDX["open"]))
        clear = (~opaque).long()
        mask = torch.zeros_like(clear)
        mask[:, v - 1, v // 2] = 1
        rows = list(mask.unbind(1))                   # rows[j]: [B, v], so updates do not alias
        for j in reversed(range(v)):
            row = rows[j].clone()
            farther = rows[j - 1].clone() if j > 0 else None
            # As process_vis: sight spreads along the row past clear cells, right then left, and from
            # each clear cell to the row one step farther from the agent (the next one swept).
            for i in range(v - 1):
                go = row[:, i] * clear[:, j, i]
                row[:, i + 1] = row[:, i + 1] | go
                if farther is not None:
                    farther[:, i + 1] = farther[:, i + 1] | go
                    farther[:, i] = farther[:, i] | go
            for i in reversed(range(1, v)):
                go = row[:, i] * clear[:, j, i]
                row[:, i - 1] = row[:, i - 1] | go
                if farther is not None:
                    farther[:, i - 1] = farther[:, i - 1] | go
                    farther[:, i] = farther[:, i] | go
            rows[j] = row
            if farther is not None:
                rows[j - 1] = farther
        return torch.stack(rows, 1)

    # ---------------------------------------------------------------- decode

    def decode_batch(self, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """LongTensor[..., H, W] -> the agent's observations: (images uint8 [..., view, view, 3],
        directions int64 [...]), as MiniGrid's egocentric observation of that state."""
        tokens = self._checked(tokens)
        batch = tokens.shape[:-2]
        frames = torch.from_numpy(tokens.reshape(-1, *self.frame_shape).astype(np.int64))
        images, directions = self.observe_torch(frames)
        v = self.view_size
        return images.numpy().reshape(batch + (v, v, 3)), directions.numpy().reshape(batch)

    def _checked(self, tokens: Any) -> np.ndarray:
        """Frames [..., H, W] as an int array, or a ValueError naming what makes one no world frame."""
        tokens = _as_int_array(tokens, "tokens")
        if tokens.ndim < 2 or tokens.shape[-2:] != self.frame_shape:
            raise ValueError(f"tokens must have shape [..., {self.height}, {self.width}]; got {tokens.shape}")
        bad = (tokens < 0) | (tokens >= VOCAB_SIZE) | (tokens == UNSEEN_TOKEN)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"token id {int(tokens[idx])} at {idx} is not a world cell (ids [0, {VOCAB_SIZE}), "
                             f"not unseen = {UNSEEN_TOKEN})")
        agents = (tokens >= AGENT_TOKEN_BASE).sum(axis=(-2, -1))
        if (agents != 1).any():
            idx = tuple(int(i) for i in np.argwhere(agents != 1)[0])
            raise ValueError(f"frame {idx} holds {int(agents[idx])} agent tokens; a world frame holds exactly one")
        return tokens

    def legal_mask(self) -> torch.Tensor:
        """BoolTensor[H, W, vocab]: every token but unseen, anywhere (the agent may stand in any cell;
        sampling keeps one agent per frame)."""
        mask = torch.ones(*self.frame_shape, VOCAB_SIZE, dtype=torch.bool)
        mask[..., UNSEEN_TOKEN] = False
        return mask

    # ---------------------------------------------------------------- render

    def render(self, tokens: Any, tile_size: int = TILE_PIXELS) -> np.ndarray:
        """Frame(s) [..., H, W] -> RGB uint8 [..., H * tile, W * tile, 3]: the whole grid with the agent,
        as MiniGrid's ``render`` draws it (without the view highlight)."""
        tokens = self._checked(tokens)
        frames = np.empty(tokens.shape[:-2] + (self.height * tile_size, self.width * tile_size, 3), dtype=np.uint8)
        for idx in np.ndindex(tokens.shape[:-2]):
            row, col = np.argwhere(tokens[idx] >= AGENT_TOKEN_BASE)[0]
            grid_array = np.ascontiguousarray(np.swapaxes(_TOKEN_TRIPLE[tokens[idx]], 0, 1))
            grid_array[col, row] = _EMPTY                                  # the agent is drawn on top
            grid, _ = Grid.decode(grid_array)
            frames[idx] = grid.render(tile_size, agent_pos=(int(col), int(row)),
                                      agent_dir=int(_TOKEN_DIRECTION[tokens[idx][row, col]]))
        return frames

    def render_view(self, tokens: Any, tile_size: int = TILE_PIXELS) -> np.ndarray:
        """Frame(s) [..., H, W] -> RGB uint8 [..., view * tile, view * tile, 3]: the agent's egocentric view,
        as MiniGrid's ``get_pov_render`` draws it."""
        images, directions = self.decode_batch(tokens)
        return self.view.render(self.view.encode_batch(images, directions), tile_size)

    def __repr__(self) -> str:
        return (f"MiniGridWorldCodec(width={self.width}, height={self.height}, view_size={self.view_size}, "
                f"see_through_walls={self.see_through_walls})")
