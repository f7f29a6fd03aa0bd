"""The SSD recurrence one step at a time: slow, obviously right, the yardstick for both backends."""

from __future__ import annotations

import torch


def ssd_scan_sequential(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same arguments and results as `ssd_scan`, computed in float64 with a loop over time."""
    batch, length, heads, headdim = x.shape
    groups, dstate = B.shape[2], B.shape[3]
    x, dt, A, B, C = (t.double() for t in (x, dt, A, B, C))
    B = B.repeat_interleave(heads // groups, dim=2)
    C = C.repeat_interleave(heads // groups, dim=2)
    state = (
        x.new_zeros(batch, heads, headdim, dstate) if initial_state is None else initial_state.double()
    )
    ys = []
    previous_seq = torch.zeros(batch, dtype=torch.long, device=x.device)
    for t in range(length):
        if seq_idx is not None:  # a new sequence starts from zero
            starts = seq_idx[:, t] != previous_seq
            state = state.masked_fill(starts[:, None, None, None], 0)
            previous_seq = seq_idx[:, t]
        decay = torch.exp(dt[:, t] * A)                                   # [b,h]
        update = torch.einsum("bhp,bhn->bhpn", x[:, t] * dt[:, t, :, None], B[:, t])
        state = decay[..., None, None] * state + update
        ys.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    return torch.stack(ys, dim=1), state
