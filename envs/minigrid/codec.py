"""Exact, invertible codec between a MiniGrid observation and one frame of tokens.

A MiniGrid observation is the agent's egocentric symbolic view ``image`` (uint8 [view, view, 3],
indexed [x, y]; each cell is the (object, colour, state) triple ``Grid.encode`` writes) plus the
agent's ``direction`` (0..3). The world model predicts one token per cell, so every triple gets a
token of a small fixed vocabulary, and the direction is folded into the token of the agent's own
cell (always x = view // 2, y = view - 1 in the egocentric view): a frame alone determines
(image, direction) exactly. Frames are [H, W] = [y, x], the transpose of the image layout.

The vocabulary is built from minigrid's constants in index order, so it is stable:

    cell tokens   [0, 62)    what any cell but the agent's can show: unseen (0,0,0) = 0,
                             empty (1,0,0) = 1, then wall, floor, door, key, ball, box, goal,
                             lava in every colour; doors in every state (open, closed, locked),
                             the rest only state 0 (``WorldObj.encode`` writes 0 for them).
    agent tokens  [62, 138)  62 + direction * 19 + content, content = what ``gen_obs_grid``
                             puts in the agent's cell: empty (0), or the carried key, ball or
                             box (the objects whose ``can_pickup()`` is true) in every colour.

It is generous on purpose (every colour for every object, though minigrid paints lava only red)
so that any observation a stock MiniGrid env emits round-trips. ``VERSION`` names this layout;
change it whenever the table changes, since datasets and checkpoints store token ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from minigrid.core.constants import (
    COLOR_TO_IDX,
    IDX_TO_COLOR,
    IDX_TO_OBJECT,
    OBJECT_TO_IDX,
    STATE_TO_IDX,
    TILE_PIXELS,
)
from minigrid.core.grid import Grid

from envs.minigrid.visibility import view_to_world

VERSION = "minigrid-symbolic-v1"
N_DIRECTIONS = 4

# Grid.encode writes these with colour 0 and state 0.
_BARE = ("unseen", "empty")
# Only a door encodes a state; WorldObj.encode writes state 0 for every other object.
_STATEFUL = ("door",)
# The egocentric view never holds the agent (only FullyObsWrapper writes it, outside this codec).
_NOT_IN_VIEW = ("agent",)
# gen_obs_grid overwrites the agent's cell with what it carries (or nothing); these can be carried.
_CARRIABLE = ("key", "ball", "box")

_IDX_TO_STATE = {i: name for name, i in STATE_TO_IDX.items()}
# Dense lookup tables are indexed by raw (object, colour, state) values.
_LUT_SHAPE = (max(OBJECT_TO_IDX.values()) + 1, max(COLOR_TO_IDX.values()) + 1,
              max(STATE_TO_IDX.values()) + 1)


def _build_vocabulary():
    """Enumerate cell triples and agent-cell contents, in minigrid's index order."""
    objects = sorted(OBJECT_TO_IDX.items(), key=lambda kv: kv[1])
    colours = sorted(COLOR_TO_IDX.values())
    states = sorted(STATE_TO_IDX.values())
    cell = []
    for name, obj in objects:
        if name in _NOT_IN_VIEW:
            continue
        if name in _BARE:
            cell.append((obj, 0, 0))
            continue
        for colour in colours:
            for state in states if name in _STATEFUL else (0,):
                cell.append((obj, colour, state))
    contents = [(OBJECT_TO_IDX["empty"], 0, 0)]
    contents += [(obj, colour, 0) for name, obj in objects if name in _CARRIABLE for colour in colours]
    return cell, contents


_CELL_TRIPLES, _AGENT_CONTENTS = _build_vocabulary()
N_CELL_TOKENS = len(_CELL_TRIPLES)
N_CONTENTS = len(_AGENT_CONTENTS)
AGENT_TOKEN_BASE = N_CELL_TOKENS
VOCAB_SIZE = N_CELL_TOKENS + N_DIRECTIONS * N_CONTENTS
UNSEEN_TOKEN = _CELL_TRIPLES.index((OBJECT_TO_IDX["unseen"], 0, 0))   # a cell out of sight

# triple -> cell token id / agent-cell content index; -1 where minigrid cannot emit the triple.
_CELL_LUT = np.full(_LUT_SHAPE, -1, dtype=np.int64)
for _i, _t in enumerate(_CELL_TRIPLES):
    _CELL_LUT[_t] = _i
_CONTENT_LUT = np.full(_LUT_SHAPE, -1, dtype=np.int64)
for _i, _t in enumerate(_AGENT_CONTENTS):
    _CONTENT_LUT[_t] = _i
# token id -> triple, and -> direction (-1 for cell tokens, which carry none).
_TOKEN_TRIPLE = np.array(_CELL_TRIPLES + _AGENT_CONTENTS * N_DIRECTIONS, dtype=np.uint8)
_TOKEN_DIRECTION = np.repeat(np.arange(-1, N_DIRECTIONS, dtype=np.int64), [N_CELL_TOKENS] + [N_CONTENTS] * N_DIRECTIONS)
for _table in (_CELL_LUT, _CONTENT_LUT, _TOKEN_TRIPLE, _TOKEN_DIRECTION):
    _table.flags.writeable = False


def _as_int_array(value: Any, name: str) -> np.ndarray:
    """numpy view of an array-like (numpy, torch, int, list) that must hold integers."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers; got dtype {array.dtype}")
    return array


def _describe(triple) -> str:
    obj, colour, state = (int(v) for v in triple)
    return (f"(object, colour, state) = ({obj}, {colour}, {state}) = "
            f"({IDX_TO_OBJECT.get(obj, '?')}, {IDX_TO_COLOR.get(colour, '?')}, {_IDX_TO_STATE.get(state, '?')})")


def _where(batch_index: tuple) -> str:
    return f" in batch element {batch_index}" if batch_index else ""


class MiniGridCodec:
    """MiniGrid egocentric observation <-> LongTensor[H, W] frame over a fixed vocabulary."""

    version = VERSION
    vocab_size = VOCAB_SIZE
    agent_token_base = AGENT_TOKEN_BASE
    unseen_token = UNSEEN_TOKEN

    def __init__(self, view_size: int = 7):
        # MiniGridEnv itself requires an odd view of at least 3, so the agent sits mid-bottom.
        if isinstance(view_size, bool) or not isinstance(view_size, (int, np.integer)) \
                or view_size < 3 or view_size % 2 == 0:
            raise ValueError("view_size must be an odd integer >= 3 (as MiniGrid's agent_view_size); "
                             f"got {view_size!r}")
        self.view_size = int(view_size)
        self._agent_x, self._agent_y = self.view_size // 2, self.view_size - 1

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(H, W) of a frame: rows are the view's y, columns its x."""
        return (self.view_size, self.view_size)

    @property
    def agent_cell(self) -> tuple[int, int]:
        """(row, column) of the agent's own cell in a frame; its token carries the direction."""
        return (self._agent_y, self._agent_x)

    @property
    def config(self) -> dict:
        """What a dataset manifest or checkpoint stores to rebuild this codec."""
        return {"version": self.version, "view_size": self.view_size}

    @classmethod
    def from_config(cls, config: Mapping) -> MiniGridCodec:
        if config.get("version") != VERSION:
            raise ValueError(f"codec version {config.get('version')!r} is not this codec's {VERSION!r}; "
                             "token ids would mean different cells")
        return cls(config["view_size"])

    @classmethod
    def for_env(cls, env) -> MiniGridCodec:
        """Codec for a (wrapped or vector) MiniGrid env, with the view size its observations have."""
        space = getattr(env, "single_observation_space", None)
        if space is None:
            space = getattr(env, "observation_space", None)
        ok = (isinstance(space, spaces.Dict) and "image" in space.spaces and "direction" in space.spaces
              and isinstance(space["image"], spaces.Box) and len(space["image"].shape) == 3
              and space["image"].shape[2] == 3 and space["image"].shape[0] == space["image"].shape[1]
              and isinstance(space["direction"], spaces.Discrete) and space["direction"].n == N_DIRECTIONS)
        if not ok:
            raise ValueError(
                "MiniGridCodec.for_env needs MiniGrid's observation space, a Dict with 'image' "
                f"Box[view, view, 3] and 'direction' Discrete({N_DIRECTIONS}); got {space!r} from {env!r}. "
                "(Wrappers such as ImgObsWrapper or RGBImgPartialObsWrapper replace it: build the codec "
                "for the env beneath them.)")
        view = space["image"].shape[0]
        agent_view = getattr(getattr(env, "unwrapped", None), "agent_view_size", view)
        if agent_view != view:
            raise ValueError(f"{env!r} has an 'image' of {view}x{view} cells but agent_view_size {agent_view}: "
                             "not MiniGrid's symbolic view (an RGB wrapper?)")
        return cls(view)

    def world_cells(self, agent_pos: Any, agent_dir: Any) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) of every frame cell, int64 [..., H, W] each, given the agent's pose."""
        return view_to_world(agent_pos, agent_dir, self.view_size)

    # ---------------------------------------------------------------- encode

    def encode_episode(self, images: Any, directions: Any, agent_pos: Any = None) -> torch.Tensor:
        """What `worldsim collect` records: as ``encode_batch`` (the egocentric view needs no pose)."""
        return self.encode_batch(images, directions)

    def encode(self, obs: Mapping) -> torch.Tensor:
        """One observation dict (needs 'image' and 'direction') -> LongTensor[H, W]."""
        if not isinstance(obs, Mapping) or "image" not in obs or "direction" not in obs:
            keys = f" with keys {sorted(obs)}" if isinstance(obs, Mapping) else ""
            raise ValueError("encode needs an observation dict with 'image' and 'direction'; "
                             f"got {type(obs).__name__}{keys}")
        image = _as_int_array(obs["image"], "obs['image']")
        v = self.view_size
        if image.shape != (v, v, 3):
            raise ValueError(f"obs['image'] must have shape ({v}, {v}, 3) (x, y, (object, colour, state)); "
                             f"got {image.shape}")
        direction = _as_int_array(obs["direction"], "obs['direction']")
        if direction.shape != ():
            raise ValueError(f"obs['direction'] must be a single integer; got shape {direction.shape}")
        return self.encode_batch(image, direction)

    def encode_batch(self, images: Any, directions: Any) -> torch.Tensor:
        """images [..., view, view, 3] ([x, y] cells), directions [...] -> LongTensor[..., H, W]."""
        images = _as_int_array(images, "images")
        v = self.view_size
        if images.ndim < 3 or images.shape[-3:] != (v, v, 3):
            raise ValueError(f"images must have shape [..., {v}, {v}, 3] (x, y, (object, colour, state)); "
                             f"got {images.shape}")
        batch = images.shape[:-3]
        directions = _as_int_array(directions, "directions")
        if directions.shape != batch:
            raise ValueError(f"directions must have shape {batch}, one per image; got {directions.shape}")
        bad = (directions < 0) | (directions >= N_DIRECTIONS)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"direction must be in 0..{N_DIRECTIONS - 1}; got {int(directions[idx])}{_where(idx)}")

        cells = images.astype(np.int64)
        in_table = ((cells >= 0) & (cells < np.array(_LUT_SHAPE))).all(axis=-1)
        obj, colour, state = np.moveaxis(np.where(in_table[..., None], cells, 0), -1, 0)
        tokens = np.where(in_table, _CELL_LUT[obj, colour, state], -1)  # [..., x, y]
        ax, ay = self._agent_x, self._agent_y
        content = np.where(in_table[..., ax, ay], _CONTENT_LUT[obj[..., ax, ay], colour[..., ax, ay],
                                                                state[..., ax, ay]], -1)
        tokens[..., ax, ay] = np.where(content >= 0, AGENT_TOKEN_BASE + directions * N_CONTENTS + content, -1)
        if (tokens < 0).any():
            self._raise_unknown(cells, tokens)
        return torch.from_numpy(np.ascontiguousarray(np.swapaxes(tokens, -1, -2)))

    def _raise_unknown(self, cells: np.ndarray, tokens: np.ndarray) -> None:
        bad = np.argwhere(tokens < 0)
        *batch_index, x, y = (int(i) for i in bad[0])
        triple = cells[(*batch_index, x, y)]
        more = f" ({len(bad)} such cells in all)" if len(bad) > 1 else ""
        if (x, y) == (self._agent_x, self._agent_y):
            raise ValueError(
                f"the agent's cell (x={x}, y={y}){_where(tuple(batch_index))} shows {_describe(triple)}; "
                f"MiniGrid only puts empty or a carried {'/'.join(_CARRIABLE)} (state 0) there{more}")
        raise ValueError(f"cell (x={x}, y={y}){_where(tuple(batch_index))} holds {_describe(triple)}, which "
                         f"MiniGrid's egocentric view never emits (not in vocabulary {VERSION}){more}")

    # ---------------------------------------------------------------- decode

    def decode(self, tokens: Any) -> dict:
        """LongTensor[H, W] -> {'image': uint8 [view, view, 3], 'direction': int}."""
        array = _as_int_array(tokens, "tokens")
        if array.shape != self.frame_shape:
            raise ValueError(f"decode takes one frame of shape {self.frame_shape}; got {array.shape} "
                             "(use decode_batch for leading batch dims)")
        images, directions = self.decode_batch(array)
        return {"image": images, "direction": int(directions)}

    def decode_batch(self, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """LongTensor[..., H, W] -> (images uint8 [..., view, view, 3], directions int64 [...])."""
        tokens = _as_int_array(tokens, "tokens")
        v = self.view_size
        if tokens.ndim < 2 or tokens.shape[-2:] != (v, v):
            raise ValueError(f"tokens must have shape [..., {v}, {v}] (row = y, column = x); got {tokens.shape}")
        out = (tokens < 0) | (tokens >= VOCAB_SIZE)
        if out.any():
            *b, row, col = (int(i) for i in np.argwhere(out)[0])
            raise ValueError(f"token id {int(tokens[(*b, row, col)])} at row {row}, column {col}{_where(tuple(b))} "
                             f"is out of range [0, {VOCAB_SIZE})")
        tokens = tokens.astype(np.int64)
        # Agent tokens belong at the agent's cell and nowhere else; otherwise the frame is no observation.
        is_agent = _TOKEN_DIRECTION[tokens] >= 0
        expected = np.zeros((v, v), dtype=bool)
        expected[self.agent_cell] = True
        misplaced = is_agent != expected
        if misplaced.any():
            *b, row, col = (int(i) for i in np.argwhere(misplaced)[0])
            token = int(tokens[(*b, row, col)])
            if (row, col) == self.agent_cell:
                raise ValueError(f"the agent's cell (row {row}, column {col}){_where(tuple(b))} holds cell token "
                                 f"{token}; it must hold an agent token in [{AGENT_TOKEN_BASE}, {VOCAB_SIZE}), "
                                 "which carries the direction")
            raise ValueError(f"row {row}, column {col}{_where(tuple(b))} holds agent token {token}, which is only "
                             f"valid at the agent's cell (row {self.agent_cell[0]}, column {self.agent_cell[1]})")
        images = np.ascontiguousarray(np.swapaxes(_TOKEN_TRIPLE[tokens], -2, -3))
        directions = _TOKEN_DIRECTION[tokens[..., self._agent_y, self._agent_x]]
        return images, directions

    def legal_mask(self) -> torch.Tensor:
        """BoolTensor[H, W, vocab]: which tokens decode at each cell (to mask a model's logits)."""
        mask = torch.zeros(*self.frame_shape, VOCAB_SIZE, dtype=torch.bool)
        mask[..., :AGENT_TOKEN_BASE] = True
        mask[self.agent_cell] = ~mask[self.agent_cell]
        return mask

    # ---------------------------------------------------------------- render

    def render(self, tokens: Any, tile_size: int = TILE_PIXELS) -> np.ndarray:
        """Frame(s) [..., H, W] -> RGB uint8 [..., H * tile, W * tile, 3], drawn by MiniGrid's tile renderer.

        Same picture as MiniGridEnv.get_pov_render (formerly get_obs_render): the egocentric view with
        the agent at its cell facing up, unseen cells dark and seen ones highlighted.
        """
        images, _ = self.decode_batch(tokens)
        side = self.view_size * tile_size
        frames = np.empty(images.shape[:-3] + (side, side, 3), dtype=np.uint8)
        for idx in np.ndindex(images.shape[:-3]):
            grid, vis_mask = Grid.decode(images[idx])
            frames[idx] = grid.render(tile_size, agent_pos=(self._agent_x, self._agent_y), agent_dir=3,
                                      highlight_mask=vis_mask)
        return frames

    def __repr__(self) -> str:
        return f"MiniGridCodec(view_size={self.view_size}, vocab_size={VOCAB_SIZE}, version={VERSION!r})"
