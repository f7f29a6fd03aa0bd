"""The Mamba2 mixer, scanned block-wise through time.

Input projection -> short causal depthwise conv -> SSD scan -> gated, grouped RMSNorm -> output
projection, as in Mamba2, except that the scan runs over block sequences (see `block_layout.py`): each
spatial block of the frame is its own sequence through time with its own conv and SSM state.

The mixer is the same code for training and for the env: given the carried (ssm, conv) state of
every block it processes T ≥ 1 new frames and returns the state after them. Carrying the state
through two calls gives the same numbers as one call over both (up to float rounding).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .block_layout import BlockLayout
from .config import WorldModelConfig
from .kernels import ssd_scan
from .kernels.ssd_step import ssd_step


class GatedGroupRMSNorm(nn.Module):
    """RMSNorm(y * silu(z)) over groups of channels (Mamba2's norm_before_gate=False)."""

    def __init__(self, dim: int, groups: int, eps: float = 1e-5):
        super().__init__()
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dtype = y.dtype
        y = (y * F.silu(z)).float()
        y = y.unflatten(-1, (self.groups, -1))
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y.flatten(-2) * self.weight).to(dtype)


class BlockwiseMamba2(nn.Module):
    def __init__(self, config: WorldModelConfig, block_shape: tuple[int, int]):
        super().__init__()
        self.config = config
        self.layout = BlockLayout(config.frame_shape, block_shape)
        d_inner, heads = config.d_inner, config.ssm_heads
        self.bc_dim = config.ngroups * config.d_state
        self.conv_dim = d_inner + 2 * self.bc_dim
        self.in_proj = nn.Linear(config.d_model, d_inner + self.conv_dim + heads, bias=False)
        # Depthwise causal conv over the last d_conv tokens; the carried (or zero) history is
        # prepended instead of padding. Written as shifted multiply-adds: nn.Conv1d's depthwise
        # backward is orders of magnitude slower on CPU, and d_conv is tiny.
        bound = 1 / math.sqrt(config.d_conv)
        self.conv_weight = nn.Parameter(torch.empty(self.conv_dim, config.d_conv).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(self.conv_dim).uniform_(-bound, bound))
        # Mamba2 initialisation: step sizes log-uniform in [dt_min, dt_max], decay rates in [1, 16].
        dt = torch.exp(
            torch.rand(heads) * (math.log(config.dt_max) - math.log(config.dt_min))
            + math.log(config.dt_min)
        )
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = GatedGroupRMSNorm(d_inner, config.ngroups)
        self.out_proj = nn.Linear(d_inner, config.d_model, bias=False)
        # [num_blocks, block_tokens]: real tokens (True) vs padding of a block that overhangs the frame.
        self.register_buffer("real", self.layout.real, persistent=False)

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-batch-element shapes of this mixer's recurrent state."""
        c = self.config
        nb = self.layout.num_blocks
        return {
            "ssm": (nb, c.ssm_heads, c.headdim, c.d_state),
            "conv": (nb, c.d_conv - 1, self.conv_dim),
        }

    def _block_inputs(self, x: torch.Tensor):
        """x [B, T, H, W, d_model] -> block sequences (z, xbc, dt_raw) and the real-token mask
        [B*nb, T*block_tokens, 1]. Padding tokens enter the conv as zeros."""
        c = self.config
        batch, frames = x.shape[:2]
        seq = self.layout.to_blocks(self.in_proj(x))  # [B*nb, T*block_tokens, channels]
        z, xbc, dt = seq.split([c.d_inner, self.conv_dim, c.ssm_heads], dim=-1)
        real = self.real.repeat(1, frames).repeat(batch, 1)[..., None]
        return z, xbc * real, dt, real

    def _conv(self, xbc: torch.Tensor, conv_state: torch.Tensor, seq_idx: torch.Tensor | None):
        """Causal depthwise conv of xbc [R, L, conv_dim] after the carried history conv_state
        [R, d_conv - 1, conv_dim]. Returns (silu(conv), the history the next call carries)."""
        c = self.config
        history = torch.cat([conv_state.to(xbc.dtype), xbc], 1)
        length, keep = xbc.shape[1], c.d_conv - 1
        if seq_idx is not None:  # the carried history is episode 0
            history_seq = F.pad(seq_idx, (keep, 0))
        conv = self.conv_bias.to(xbc.dtype)
        for j in range(c.d_conv):
            window = history[:, j : j + length]
            if seq_idx is not None:  # inputs from an earlier episode do not reach across a reset
                window = window * (history_seq[:, j : j + length] == seq_idx)[..., None]
            conv = conv + window * self.conv_weight[:, j].to(xbc.dtype)
        new_conv_state = history[:, history.shape[1] - keep :]
        if seq_idx is not None:  # what the next call carries must belong to the last episode
            new_conv_state = new_conv_state * (history_seq[:, history.shape[1] - keep :] == seq_idx[:, -1:])[..., None]
        return F.silu(conv), new_conv_state

    def _scan_inputs(self, xbc: torch.Tensor, dt: torch.Tensor, real: torch.Tensor):
        """Split the conv output into the scan's x [R, L, h, p], B, C [R, L, g, n] and its step sizes
        dt [R, L, h] (0 on padding: no decay and no input, so padding never touches the state)."""
        c = self.config
        xs, B, C = xbc.split([c.d_inner, self.bc_dim, self.bc_dim], dim=-1)
        dt = F.softplus(dt.float() + self.dt_bias) * real
        return (xs.unflatten(-1, (c.ssm_heads, c.headdim)), dt,
                B.unflatten(-1, (c.ngroups, c.d_state)), C.unflatten(-1, (c.ngroups, c.d_state)))

    def _output(self, y: torch.Tensor, xs: torch.Tensor, z: torch.Tensor, batch: int) -> torch.Tensor:
        y = y + xs * self.D[:, None].to(xs.dtype)
        return self.layout.from_blocks(self.out_proj(self.norm(y.flatten(-2), z)), batch)

    def forward(
        self,
        x: torch.Tensor,
        ssm_state: torch.Tensor | None = None,
        conv_state: torch.Tensor | None = None,
        episode: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, H, W, d_model] -> (y [B, T, H, W, d_model], ssm_state, conv_state).

        ssm_state [B, num_blocks, heads, headdim, d_state] and conv_state
        [B, num_blocks, d_conv - 1, conv_dim]; None means zeros (the start of an episode).
        episode [B, T]: non-decreasing episode number of each frame, 0 for the episode the carried
        state belongs to; where it steps up, the scan and the conv start afresh. None: all 0.
        """
        c, nb = self.config, self.layout.num_blocks
        batch = x.shape[0]
        z, xbc, dt, real = self._block_inputs(x)
        if conv_state is None:
            conv_state = xbc.new_zeros(batch, nb, c.d_conv - 1, self.conv_dim)
        seq_idx = None
        if episode is not None:
            # Episode number of every token of every block sequence.
            seq_idx = episode.repeat_interleave(nb, dim=0).repeat_interleave(self.layout.block_tokens, dim=1)
        xbc, new_conv_state = self._conv(xbc, conv_state.flatten(0, 1), seq_idx)
        xs, dt, B, C = self._scan_inputs(xbc, dt, real)
        y, new_ssm_state = ssd_scan(
            xs, dt, -torch.exp(self.A_log.float()), B, C,
            initial_state=None if ssm_state is None else ssm_state.flatten(0, 1),
            chunk_size=c.chunk_size, backend=c.backend, seq_idx=seq_idx,
        )
        return (
            self._output(y, xs, z, batch),
            new_ssm_state.unflatten(0, (batch, nb)),
            new_conv_state.unflatten(0, (batch, nb)),
        )

    def step(self, x: torch.Tensor, ssm_state: torch.Tensor, conv_state: torch.Tensor,
             carried: torch.Tensor) -> torch.Tensor:
        """One frame x [B, 1, H, W, d_model] -> y like it. ssm_state and conv_state (shaped as in
        `forward`) are updated in place; rows where carried [B] is False start from zeros, whatever
        their state holds."""
        nb = self.layout.num_blocks
        batch = x.shape[0]
        z, xbc, dt, real = self._block_inputs(x)
        carried_blocks = carried.repeat_interleave(nb)
        history = torch.where(carried_blocks[:, None, None], conv_state.flatten(0, 1), 0)
        xbc, new_conv_state = self._conv(xbc, history, None)
        conv_state.copy_(new_conv_state.unflatten(0, (batch, nb)))
        xs, dt, B, C = self._scan_inputs(xbc, dt, real)
        flat_ssm = ssm_state.flatten(0, 1)      # a view of a contiguous state: stepped in place
        y = ssd_step(xs, dt, -torch.exp(self.A_log.float()), B, C, flat_ssm, carried_blocks,
                     backend=self.config.backend)
        # Any other state may have been copied by flatten: write the result back. (A static test, unlike
        # comparing data pointers, which would break a compiled graph.)
        if not ssm_state.is_contiguous():
            ssm_state.copy_(flat_ssm.unflatten(0, (batch, nb)))
        return self._output(y, xs, z, batch)
