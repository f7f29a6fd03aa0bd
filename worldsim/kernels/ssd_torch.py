"""Mamba2's chunked SSD scan in plain PyTorch (CPU, CI, and any GPU without mamba_ssm).

The recurrence, per head h (state [p, n]):

    state_t = exp(dt_t * A_h) * state_{t-1} + dt_t * x_t ⊗ B_t
    y_t     = state_t · C_t

computed the SSD way (Dao & Gu, 2024): inside a chunk of L steps the recurrence is a masked
matrix product (quadratic in L, parallel); across chunks only the chunk-final states are passed
along (linear in the number of chunks). No Python loop over time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _segment_sums(a: torch.Tensor) -> torch.Tensor:
    """[..., L] -> [..., L, L] with out[..., i, j] = a[j+1] + ... + a[i] for j <= i, -inf above.

    exp() of it is the decay from step j to step i. Built from masked cumulative sums rather than
    a difference of cumsums, which loses precision when the sums are large.
    """
    length = a.shape[-1]
    a = a[..., None].expand(*a.shape, length)  # a[..., i, j] = a_i
    strictly_lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    sums = a.masked_fill(~strictly_lower, 0).cumsum(dim=-2)
    lower = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(0)
    return sums.masked_fill(~lower, float("-inf"))


def ssd_scan_torch(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [b,l,h,p], dt [b,l,h] (positive), A [h] (negative), B/C [b,l,g,n], state [b,h,p,n].

    seq_idx [b,l], non-decreasing integers (mamba_ssm's convention): where it steps up, a new
    sequence starts from a zero state; the initial state belongs to sequence 0.
    Returns y [b,l,h,p] in x's dtype and the final state [b,h,p,n] in float32.
    """
    batch, length, heads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    out_dtype = x.dtype
    x, dt, A, B, C = (t.float() for t in (x, dt, A, B, C))
    # Each group's B and C serve heads // groups consecutive heads (mamba_ssm's convention).
    B = B.repeat_interleave(heads // groups, dim=2)
    C = C.repeat_interleave(heads // groups, dim=2)

    # A sequence shorter than a chunk (one frame in step()) needs no padding up to a full chunk.
    chunk_size = min(chunk_size, length)
    # Pad to whole chunks with dt = 0: no decay and no input, so the final state is unchanged.
    pad = (-length) % chunk_size
    if pad:
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))
        if seq_idx is not None:
            seq_idx = torch.cat([seq_idx, seq_idx[:, -1:].expand(-1, pad)], dim=1)
    chunks = (length + pad) // chunk_size

    def to_chunks(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(batch, chunks, chunk_size, *t.shape[2:])

    x_dt = to_chunks(x * dt[..., None])                      # [b,c,L,h,p]
    B, C = to_chunks(B), to_chunks(C)                         # [b,c,L,h,n]
    a = to_chunks(dt * A).permute(0, 3, 1, 2)                 # [b,h,c,L] log-decay per step
    a_cum = a.cumsum(dim=-1)

    # 1. Within each chunk: y_i = sum_{j<=i} (C_i·B_j) exp(a_{j+1..i}) x_j dt_j.
    decay_within = torch.exp(_segment_sums(a))               # [b,h,c,L,L]
    if seq_idx is not None:
        # Sequence boundaries cut every decay path that crosses them.
        seq = seq_idx.reshape(batch, chunks, chunk_size)
        seq_at_boundary = F.pad(seq[:, :, -1], (1, 0))        # [b, c+1]: before chunk 0, then chunk ends
        decay_within = decay_within * (seq[:, :, :, None] == seq[:, :, None, :])[:, None]
    y = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, decay_within, x_dt)

    # 2. Each chunk's own contribution to the state at its end.
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)        # [b,h,c,L]
    if seq_idx is not None:
        decay_to_end = decay_to_end * (seq == seq[:, :, -1:])[:, None]
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_to_end, x_dt)

    # 3. Pass states across chunks (a short scan over chunk boundaries, initial state first).
    if initial_state is None:
        initial_state = x.new_zeros(batch, heads, headdim, dstate)
    chunk_states = torch.cat([initial_state.float()[:, None], chunk_states], dim=1)
    decay_across = torch.exp(_segment_sums(F.pad(a_cum[..., -1], (1, 0))))  # [b,h,c+1,c+1]
    if seq_idx is not None:
        decay_across = decay_across * (seq_at_boundary[:, :, None] == seq_at_boundary[:, None, :])[:, None]
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_across, chunk_states)
    states_in, final_state = states[:, :-1], states[:, -1]

    # 4. The state entering each chunk, decayed to each step and read out through C.
    decay_from_start = torch.exp(a_cum)                      # [b,h,c,L]
    if seq_idx is not None:
        decay_from_start = decay_from_start * (seq == seq_at_boundary[:, :-1, None])[:, None]
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states_in, decay_from_start)

    y = y.reshape(batch, chunks * chunk_size, heads, headdim)[:, :length]
    return y.to(out_dtype), final_state
