"""One recurrent attention step over the ring of key/value frames, as a Triton kernel.

    y = ring_attention(q, keys, values, key_valid)

q [B, N, heads, dh]: the new frame's rotated queries; keys, values [B, S, N, heads * dh]: the ring
(S frame slots of N tokens); key_valid [B, S] bool: the slots each row may attend. y [B, N,
heads * dh] = softmax(q k^T / sqrt(dh)) v over the tokens of the valid slots.

Why a kernel of our own: PyTorch's fused attention takes the slot mask as a [B, 1, 1, S*N] bias that
its kernels expand per head and query, and reads every slot, valid or not. Here one program per (row,
head) walks the ring slot by slot with an online softmax and skips invalid slots without reading
them, so a step reads each valid key/value once and whatever an emptied slot holds (even NaN) never
enters the sum. Inference only (no backward); CUDA only. The PyTorch path in `attention.py` is the
reference it is tested against.
"""

from __future__ import annotations

import functools

import torch


@functools.cache
def _kernel():
    try:
        import triton
        import triton.language as tl
    except Exception:   # no Triton (CPU builds): callers use the PyTorch path
        return None

    @triton.jit
    def ring_attention_kernel(
        q_ptr, k_ptr, v_ptr, valid_ptr, out_ptr,
        stride_qb, stride_qn, stride_qh,
        stride_kb, stride_ks, stride_kn,
        stride_vb, stride_vs, stride_vn,
        stride_validb, stride_ob, stride_on,
        slots, tokens, scale,
        HEADS: tl.constexpr, DH: tl.constexpr, BLOCK_N: tl.constexpr, IEEE: tl.constexpr,
    ):
        row = tl.program_id(0) // HEADS
        head = tl.program_id(0) % HEADS
        n = tl.arange(0, BLOCK_N)
        d = tl.arange(0, DH)
        token_ok = n < tokens
        q = tl.load(q_ptr + row * stride_qb + n[:, None] * stride_qn + head * stride_qh + d[None, :],
                    mask=token_ok[:, None], other=0.0)
        m = tl.full([BLOCK_N], float("-inf"), tl.float32)
        l = tl.zeros([BLOCK_N], tl.float32)
        acc = tl.zeros([BLOCK_N, DH], tl.float32)
        precision: tl.constexpr = "ieee" if IEEE else "tf32"
        for s in range(slots):
            if tl.load(valid_ptr + row * stride_validb + s) != 0:
                k_off = row * stride_kb + s * stride_ks + n[:, None] * stride_kn + head * DH + d[None, :]
                v_off = row * stride_vb + s * stride_vs + n[:, None] * stride_vn + head * DH + d[None, :]
                k = tl.load(k_ptr + k_off, mask=token_ok[:, None], other=0.0).to(q.dtype)
                v = tl.load(v_ptr + v_off, mask=token_ok[:, None], other=0.0).to(q.dtype)
                scores = tl.dot(q, tl.trans(k), input_precision=precision) * scale                       # [BLOCK_N, BLOCK_N] fp32
                scores = tl.where(token_ok[None, :], scores, float("-inf"))
                m_new = tl.maximum(m, tl.max(scores, 1))
                p = tl.exp(scores - m_new[:, None])
                correction = tl.exp(m - m_new)
                l = l * correction + tl.sum(p, 1)
                acc = acc * correction[:, None] + tl.dot(p.to(v.dtype), v, input_precision=precision)
                m = m_new
        out = acc / l[:, None]
        tl.store(out_ptr + row * stride_ob + n[:, None] * stride_on + head * DH + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=token_ok[:, None])

    return triton, ring_attention_kernel


def ring_attention_available(device: torch.device, head_dim: int) -> bool:
    """Whether `ring_attention` can run for these tensors (Triton's dot wants power-of-two tiles)."""
    return device.type == "cuda" and _kernel() is not None and head_dim >= 16 and head_dim & (head_dim - 1) == 0


# Opaque to torch.compile: the compiled step runs around it (and a CUDA graph captures it as is).
@torch.compiler.disable
def ring_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   key_valid: torch.Tensor) -> torch.Tensor:
    """See the module docstring. Every row must have at least one valid slot (the new frame's own)."""
    triton, kernel = _kernel()
    b, n, heads, dh = q.shape
    s = keys.shape[1]
    if keys.shape != (b, s, n, heads * dh) or values.shape != keys.shape or key_valid.shape != (b, s):
        raise ValueError(f"ring_attention: q {tuple(q.shape)}, keys {tuple(keys.shape)}, values "
                         f"{tuple(values.shape)}, key_valid {tuple(key_valid.shape)} do not fit together")
    if not ring_attention_available(q.device, dh):
        raise ValueError(f"ring_attention needs CUDA, Triton and a power-of-two head size of at least 16; "
                         f"got {q.device} and head size {dh}")
    if q.stride(-1) != 1 or keys.stride(-1) != 1 or values.stride(-1) != 1:
        q, keys, values = q.contiguous(), keys.contiguous(), values.contiguous()
    valid = key_valid.to(torch.uint8)
    out = torch.empty(b, n, heads * dh, device=q.device, dtype=q.dtype)
    kernel[(b * heads,)](
        q, keys, values, valid, out,
        q.stride(0), q.stride(1), q.stride(2),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        valid.stride(0), out.stride(0), out.stride(1),
        s, n, dh ** -0.5,
        HEADS=heads, DH=dh, BLOCK_N=max(16, triton.next_power_of_2(n)), IEEE=q.dtype == torch.float32,
    )
    return out
