"""One frame of the SSD scan for every block sequence, updating the carried state in place.

    y = ssd_step(x, dt, A, B, C, state, carried)

x [R, L, h, p]; dt [R, L, h] (positive, already through softplus); A [h]; B, C [R, L, g, n]; state
[R, h, p, n] float32, read (rows where `carried` [R] is True; other rows start from zero) and
overwritten with the state after these L tokens. y [R, L, h, p] excludes the D skip term: the same
numbers as `ssd_scan(..., initial_state=state)` for the carried rows.

Why a kernel of our own: a dream step scans one frame (L = a block's 16 or 49 tokens) of thousands
of block sequences. mamba_ssm's chunk scan runs five kernels that pass chunk states through memory,
and the step then copies the new state into the env's buffer and masks fresh episodes with another
pass. Here one program per (sequence, head) reads the state once, does the one-chunk SSD (a masked
L x L product) and writes the new state in place. Inference only; CUDA only; elsewhere `ssd_step`
runs the same computation through `ssd_scan`.
"""

from __future__ import annotations

import functools

import torch

from . import ssd_scan


@functools.cache
def _kernel():
    try:
        import triton
        import triton.language as tl
    except Exception:   # no Triton (CPU builds): the PyTorch path below
        return None

    @triton.jit
    def ssd_step_kernel(
        x_ptr, dt_ptr, a_ptr, b_ptr, c_ptr, state_ptr, carried_ptr, y_ptr,
        stride_xr, stride_xl, stride_xh,
        stride_dtr, stride_dtl,
        stride_br, stride_bl, stride_bg,
        stride_cr, stride_cl, stride_cg,
        stride_sr, stride_sh, stride_sp,
        stride_yr, stride_yl, stride_yh,
        length,
        HEADS: tl.constexpr, HEADS_PER_GROUP: tl.constexpr, P: tl.constexpr, N: tl.constexpr,
        BLOCK_L: tl.constexpr, IEEE: tl.constexpr,
    ):
        r = tl.program_id(0) // HEADS
        h = tl.program_id(0) % HEADS
        g = h // HEADS_PER_GROUP
        l = tl.arange(0, BLOCK_L)
        p = tl.arange(0, P)
        n = tl.arange(0, N)
        ok = l < length
        dt = tl.load(dt_ptr + r * stride_dtr + l * stride_dtl + h, mask=ok, other=0.0).to(tl.float32)
        a = dt * tl.load(a_ptr + h).to(tl.float32)                  # log-decay of each token
        a_cum = tl.cumsum(a, 0)
        a_total = tl.sum(a, 0)
        x = tl.load(x_ptr + r * stride_xr + l[:, None] * stride_xl + h * stride_xh + p[None, :],
                    mask=ok[:, None], other=0.0).to(tl.float32)
        bm = tl.load(b_ptr + r * stride_br + l[:, None] * stride_bl + g * stride_bg + n[None, :],
                     mask=ok[:, None], other=0.0).to(tl.float32)
        cm = tl.load(c_ptr + r * stride_cr + l[:, None] * stride_cl + g * stride_cg + n[None, :],
                     mask=ok[:, None], other=0.0).to(tl.float32)
        carried = tl.load(carried_ptr + r) != 0
        state_off = r * stride_sr + h * stride_sh + p[:, None] * stride_sp + n[None, :]
        # A fresh episode's row is not read at all: whatever it holds (even NaN) stays out.
        h0 = tl.load(state_ptr + state_off, mask=(p[:, None] < P) & carried, other=0.0)
        precision: tl.constexpr = "ieee" if IEEE else "tf32"
        # The carried state read out at each token, decayed to it.
        y = tl.dot(cm, tl.trans(h0), input_precision=precision) * tl.exp(a_cum)[:, None]
        # Within the frame: y_i += sum_{j <= i} (C_i . B_j) exp(a_cum_i - a_cum_j) dt_j x_j.
        causal = l[:, None] >= l[None, :]
        decay = tl.exp(tl.where(causal, a_cum[:, None] - a_cum[None, :], float("-inf")))
        weights = tl.dot(cm, tl.trans(bm), input_precision=precision) * decay * dt[None, :]
        y += tl.dot(weights, x, input_precision=precision)
        tl.store(y_ptr + r * stride_yr + l[:, None] * stride_yl + h * stride_yh + p[None, :],
                 y.to(y_ptr.dtype.element_ty), mask=ok[:, None])
        # The state after the frame: h0 decayed through it plus every token's input decayed to its end.
        to_end = tl.exp(a_total - a_cum) * dt
        h1 = h0 * tl.exp(a_total) + tl.dot(tl.trans(x * to_end[:, None]), bm, input_precision=precision)
        tl.store(state_ptr + state_off, h1)

    return triton, ssd_step_kernel


def _power_of_two_from_16(size: int) -> bool:
    return size >= 16 and size & (size - 1) == 0


def ssd_step_available(device: torch.device, headdim: int, d_state: int) -> bool:
    """Whether `ssd_step` runs the kernel for these tensors (Triton's dot wants power-of-two tiles)."""
    return (device.type == "cuda" and _kernel() is not None
            and _power_of_two_from_16(headdim) and _power_of_two_from_16(d_state))


def ssd_step(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
             state: torch.Tensor, carried: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """See the module docstring. `backend` as for `ssd_scan`: "auto" and "triton" run the kernel on
    CUDA when Triton imports, "torch" (and anything without CUDA) runs `ssd_scan`'s PyTorch path."""
    rows, length, heads, p = x.shape
    n = B.shape[3]
    if state.shape != (rows, heads, p, n) or state.dtype != torch.float32:
        raise ValueError(f"state must be float32 {(rows, heads, p, n)}, got {state.dtype} {tuple(state.shape)}")
    if carried.shape != (rows,):
        raise ValueError(f"carried must be ({rows},), got {tuple(carried.shape)}")
    if backend == "torch" or not ssd_step_available(x.device, p, n) or not state.is_contiguous():
        initial = torch.where(carried[:, None, None, None], state, 0)
        y, new_state = ssd_scan(x, dt, A, B, C, initial_state=initial, backend=backend)
        state.copy_(new_state)
        return y
    return _launch(x, dt, A, B, C, state, carried)


# Opaque to torch.compile: the compiled step runs around it (and a CUDA graph captures it as is).
@torch.compiler.disable
def _launch(x, dt, A, B, C, state, carried) -> torch.Tensor:
    rows, length, heads, p = x.shape
    groups, n = B.shape[2], B.shape[3]
    triton, kernel = _kernel()
    if x.stride(-1) != 1 or B.stride(-1) != 1 or C.stride(-1) != 1:
        x, B, C = x.contiguous(), B.contiguous(), C.contiguous()
    dt = dt.contiguous()
    y = torch.empty_like(x)
    kernel[(rows * heads,)](
        x, dt, A.float().contiguous(), B, C, state, carried.to(torch.uint8), y,
        x.stride(0), x.stride(1), x.stride(2),
        dt.stride(0), dt.stride(1),
        B.stride(0), B.stride(1), B.stride(2),
        C.stride(0), C.stride(1), C.stride(2),
        state.stride(0), state.stride(1), state.stride(2),
        y.stride(0), y.stride(1), y.stride(2),
        length,
        HEADS=heads, HEADS_PER_GROUP=heads // groups, P=p, N=n,
        BLOCK_L=max(16, triton.next_power_of_2(length)), IEEE=x.dtype == torch.float32,
    )
    return y
