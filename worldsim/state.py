"""ModelState: everything the world model carries from one frame to the next, for a batch.

Per layer: each spatial block's SSM state and short-conv history, and a ring buffer holding the
last window + 1 frames' attention keys/values. Plus, per batch element, the index of the next
frame and which frame each ring slot holds (-1: empty). Its size never depends on how many frames
have been seen.

Every tensor has the batch first, so forking for planners (`repeat`), selecting (`state[idx]`),
writing a sub-batch back (`state[idx] = other`) and autoreset of single envs (`reset(mask)`) are
the same one-line operation on each tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class LayerState:
    ssm: torch.Tensor     # [B, blocks, heads, headdim, d_state], float32
    conv: torch.Tensor    # [B, blocks, d_conv - 1, conv_dim]
    keys: torch.Tensor    # [B, window + 1, tokens, d_model], rotated keys
    values: torch.Tensor  # [B, window + 1, tokens, d_model]

    def tensors(self) -> list[torch.Tensor]:
        # Not dataclasses.astuple: it deep-copies, and reset() must write in place.
        return [self.ssm, self.conv, self.keys, self.values]


@dataclass
class ModelState:
    frame: torch.Tensor       # [B] int64: index of the next frame (frames seen since reset)
    slot_frame: torch.Tensor  # [B, window + 1] int64: frame held by each ring slot, -1 if none
    layers: list[LayerState]

    def tensors(self) -> list[torch.Tensor]:
        out = [self.frame, self.slot_frame]
        for layer in self.layers:
            out += layer.tensors()
        return out

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ModelState":
        return ModelState(
            frame=fn(self.frame),
            slot_frame=fn(self.slot_frame),
            layers=[LayerState(*(fn(t) for t in layer.tensors())) for layer in self.layers],
        )

    @property
    def batch_size(self) -> int:
        return self.frame.shape[0]

    @property
    def device(self) -> torch.device:
        return self.frame.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the state's tensors (constant in the number of frames seen)."""
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def clone(self) -> "ModelState":
        return self._map(torch.clone)

    def detach(self) -> "ModelState":
        """Cut the autograd graph (truncated backprop carries the state on without gradients)."""
        return self._map(torch.Tensor.detach)

    def to(self, device: torch.device | str) -> "ModelState":
        return self._map(lambda t: t.to(device))

    @staticmethod
    def _index(idx) -> object:
        # An int would drop the batch dimension; keep it, so state[i] is a batch of one.
        return [idx] if isinstance(idx, int) else idx

    def __getitem__(self, idx) -> "ModelState":
        """Select batch elements (int, slice, index list/tensor or bool mask): a new state."""
        idx = self._index(idx)
        return self._map(lambda t: t[idx])

    def __setitem__(self, idx, other: "ModelState") -> None:
        """Write `other` into the selected batch elements, in place."""
        idx = self._index(idx)
        for mine, theirs in zip(self.tensors(), other.tensors(), strict=True):
            mine[idx] = theirs.to(mine.device, mine.dtype)

    def repeat(self, n: int) -> "ModelState":
        """Each batch element n times in a row: [s0, s0, ..., s1, s1, ...] (branching for planners)."""
        if n < 1:
            raise ValueError(f"repeat needs n >= 1, got {n}")
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    @torch.no_grad()
    def reset(self, mask: torch.Tensor | None = None) -> "ModelState":
        """Start a new episode in the batch elements where mask [B] is True (all if None), in place.

        Only the row's frame counter (to 0) and ring slots (to empty) are written: the model reads no
        SSM or conv state of a row at frame 0 and no key/value of an empty slot, so a reset does not
        pass over the whole state (an env that resets a few rows every step would pay that each step)."""
        if mask is None:
            mask = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        mask = torch.as_tensor(mask, device=self.device, dtype=torch.bool)
        if mask.shape != (self.batch_size,):
            raise ValueError(f"reset mask must have shape ({self.batch_size},), got {tuple(mask.shape)}")
        self.frame.masked_fill_(mask, 0)
        self.slot_frame.masked_fill_(mask[:, None], -1)
        return self
