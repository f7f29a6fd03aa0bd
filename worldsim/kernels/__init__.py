"""The one chunked SSD scan the model uses, with a Triton path and a pure-PyTorch path.

    y, final_state = ssd_scan(x, dt, A, B, C, initial_state=None, backend="auto")

Shapes and meaning follow mamba_ssm's `mamba_chunk_scan_combined`: x [b,l,h,p]; dt [b,l,h], already
positive unless `dt_softplus=True` (then softplus(dt + dt_bias) is applied first); A [h], negative;
B and C [b,l,g,n] with h divisible by g; state [b,h,p,n]. y [b,l,h,p] excludes the D skip term.
The final state is float32. `seq_idx` [b,l] (non-decreasing ints) marks packed sequences: where
it steps up the state restarts from zero; the initial state belongs to sequence 0.

`backend="auto"` takes mamba_ssm's Triton kernel for CUDA tensors when it imports, else PyTorch.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .reference import ssd_scan_sequential
from .ssd_torch import ssd_scan_torch

__all__ = ["ssd_scan", "ssd_scan_sequential", "triton_available", "resolve_backend", "BACKENDS"]

BACKENDS = ("auto", "torch", "triton")
# Chunk lengths each backend runs best at; any positive length gives the same numbers.
DEFAULT_CHUNK_SIZE = {"torch": 64, "triton": 256}
TRITON_GRID_LIMIT = 65_535   # CUDA's limit on a grid's second and third dimensions


@functools.cache
def _triton_scan():
    """mamba_ssm's combined chunk scan, or None. Imported lazily: mamba_ssm needs CUDA builds."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception:  # ImportError, or a broken CUDA/Triton install raising something else
        return None
    return mamba_chunk_scan_combined


def triton_available() -> bool:
    return torch.cuda.is_available() and _triton_scan() is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend `ssd_scan` will actually run for tensors on `device`."""
    if backend not in BACKENDS:
        raise ValueError(f"ssd_scan backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and _triton_scan() is not None else "torch"
    if backend == "triton":
        if _triton_scan() is None:
            raise RuntimeError(
                "backend='triton' needs mamba_ssm (pip install 'worldsim[cuda]'); it did not import"
            )
        if device.type != "cuda":
            raise ValueError(f"backend='triton' needs CUDA tensors, got tensors on {device}")
    return backend


def _check_shapes(x, dt, A, B, C, initial_state, seq_idx) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be [batch, length, heads, headdim], got shape {tuple(x.shape)}")
    b, l, h, p = x.shape
    if dt.shape != (b, l, h):
        raise ValueError(f"dt must be {(b, l, h)} to match x, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be ({h},), got {tuple(A.shape)}")
    if B.dim() != 4 or B.shape[:2] != (b, l) or C.shape != B.shape:
        raise ValueError(
            f"B and C must both be [{b}, {l}, groups, dstate], got {tuple(B.shape)} and {tuple(C.shape)}"
        )
    if h % B.shape[2]:
        raise ValueError(f"heads ({h}) must be divisible by groups ({B.shape[2]})")
    if initial_state is not None and initial_state.shape != (b, h, p, B.shape[3]):
        raise ValueError(
            f"initial_state must be {(b, h, p, B.shape[3])}, got {tuple(initial_state.shape)}"
        )
    if seq_idx is not None and seq_idx.shape != (b, l):
        raise ValueError(f"seq_idx must be {(b, l)}, got {tuple(seq_idx.shape)}")


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    chunk_size: int | None = None,
    backend: str = "auto",
    dt_bias: torch.Tensor | None = None,
    dt_softplus: bool = False,
    seq_idx: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_shapes(x, dt, A, B, C, initial_state, seq_idx)
    backend = resolve_backend(backend, x.device)
    chunk_size = chunk_size or DEFAULT_CHUNK_SIZE[backend]
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if backend == "triton":
        # A short sequence (one frame in step()) runs in one small chunk instead of a mostly padded
        # long one; the Triton kernels want a power of two of at least 16.
        chunk_size = min(chunk_size, max(16, 1 << (x.shape[1] - 1).bit_length()))
        # The kernels put batch x chunks on one grid axis, which CUDA caps at 65,535: a bigger batch
        # (e.g. 16,384 dream envs x 4 blocks) runs in slices.
        rows = max(1, TRITON_GRID_LIMIT // -(-x.shape[1] // chunk_size))
        outs = [_triton_scan()(
            x[i:i + rows], dt[i:i + rows], A, B[i:i + rows], C[i:i + rows], chunk_size,
            dt_bias=dt_bias, dt_softplus=dt_softplus,
            initial_states=None if initial_state is None else initial_state[i:i + rows].float(),
            seq_idx=None if seq_idx is None else seq_idx[i:i + rows].to(torch.int32).contiguous(),
            return_final_states=True,
        ) for i in range(0, x.shape[0], rows)]
        if len(outs) == 1:
            return outs[0][0], outs[0][1].float()
        return torch.cat([y for y, _ in outs]), torch.cat([s for _, s in outs]).float()
    dt = dt.float()
    if dt_bias is not None:
        dt = dt + dt_bias.float()
    if dt_softplus:
        dt = F.softplus(dt)
    return ssd_scan_torch(x, dt, A, B, C, chunk_size, initial_state, seq_idx)
