"""Block-wise token order for the SSM scan.

A frame's H×W token grid is cut into spatial blocks of b_h×b_w tokens. Each block becomes its own
sequence through time, spatial-major / time-minor: all of the block's tokens of frame t (row-major
inside the block), then those of frame t+1, and so on. Tokens at the same place in neighbouring
frames are then b_h·b_w apart instead of H·W. A block size that does not divide the frame is
padded up; `real` marks which positions of a block are real tokens (the mixer keeps padding out
of the SSM state).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class BlockLayout:
    def __init__(self, frame_shape: tuple[int, int], block_shape: tuple[int, int]):
        self.height, self.width = frame_shape
        self.block_h, self.block_w = block_shape
        self.blocks_h = math.ceil(self.height / self.block_h)
        self.blocks_w = math.ceil(self.width / self.block_w)
        self.num_blocks = self.blocks_h * self.blocks_w
        self.block_tokens = self.block_h * self.block_w
        real = torch.ones(self.height, self.width, dtype=torch.bool)
        real = F.pad(real, (0, self.pad_w, 0, self.pad_h), value=False)
        # [num_blocks, block_tokens]: True where a block position holds a real token.
        self.real = self._grid_to_blocks(real[None, None, ..., None])[:, :, 0].reshape(
            self.num_blocks, self.block_tokens
        )

    @property
    def pad_h(self) -> int:
        return self.blocks_h * self.block_h - self.height

    @property
    def pad_w(self) -> int:
        return self.blocks_w * self.block_w - self.width

    def _grid_to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, Hp, Wp, D] -> [B * num_blocks, T * block_tokens, D] (already padded)."""
        b, t, _, _, d = x.shape
        x = x.reshape(b, t, self.blocks_h, self.block_h, self.blocks_w, self.block_w, d)
        x = x.permute(0, 2, 4, 1, 3, 5, 6)  # [B, nbh, nbw, T, bh, bw, D]
        return x.reshape(b * self.num_blocks, t * self.block_tokens, d)

    def to_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens [B, T, H, W, D] -> block sequences [B * num_blocks, T * block_tokens, D]."""
        if self.pad_h or self.pad_w:
            x = F.pad(x, (0, 0, 0, self.pad_w, 0, self.pad_h))
        return self._grid_to_blocks(x)

    def from_blocks(self, y: torch.Tensor, batch: int) -> torch.Tensor:
        """Block sequences [B * num_blocks, T * block_tokens, D] -> tokens [B, T, H, W, D]."""
        d = y.shape[-1]
        t = y.shape[1] // self.block_tokens
        y = y.reshape(batch, self.blocks_h, self.blocks_w, t, self.block_h, self.block_w, d)
        y = y.permute(0, 3, 1, 4, 2, 5, 6)  # [B, T, nbh, bh, nbw, bw, D]
        y = y.reshape(batch, t, self.blocks_h * self.block_h, self.blocks_w * self.block_w, d)
        return y[:, :, : self.height, : self.width]
