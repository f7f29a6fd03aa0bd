"""CUDA-only checks: the Triton scan against the PyTorch scan, and the whole model on the GPU.
Run on a GPU machine with `python -m pytest -m gpu`."""

import pytest
import torch

from worldsim import WorldModel
from worldsim.kernels import ssd_scan, triton_available

from conftest import random_episode, randomized, tiny_config

pytestmark = pytest.mark.gpu


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    diff, ref = (a.double() - b.double()).norm(), b.double().norm()
    # A reference of exactly zero (e.g. the initial state's gradient when every row starts a new
    # sequence at once) must be matched exactly.
    return (diff / ref).item() if ref > 0 else diff.item()


@pytest.mark.parametrize("length,chunk", [(256, 64), (1000, 256), (77, 32)])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("with_boundaries", [False, True])
def test_triton_scan_matches_torch_forward_and_backward(length, chunk, with_state, with_boundaries):
    if not triton_available():
        pytest.skip("mamba_ssm does not import")
    gen = torch.Generator(device="cuda").manual_seed(length + chunk)
    b, h, p, g, n = 2, 8, 32, 2, 64

    def rand(*shape):
        return torch.randn(*shape, device="cuda", generator=gen)

    inputs = [
        rand(b, length, h, p),
        torch.rand(b, length, h, device="cuda", generator=gen) * 0.2 + 0.005,
        -(torch.rand(h, device="cuda", generator=gen) * 4 + 0.5),
        rand(b, length, g, n), rand(b, length, g, n),
        rand(b, h, p, n) if with_state else None,
    ]
    grad_y, grad_s = rand(b, length, h, p), rand(b, h, p, n)
    seq_idx = None
    if with_boundaries:  # packed episodes: one boundary at the start of row 1, others mid-chunk
        starts = torch.rand(b, length, device="cuda", generator=gen) < 0.02
        starts[1, 0] = True
        seq_idx = starts.long().cumsum(1)
    results = {}
    for backend in ("torch", "triton"):
        leaves = [None if t is None else t.clone().requires_grad_() for t in inputs]
        y, s = ssd_scan(*leaves[:5], initial_state=leaves[5], chunk_size=chunk, backend=backend, seq_idx=seq_idx)
        ((y * grad_y).sum() + (s * grad_s).sum()).backward()
        results[backend] = [y, s] + [t.grad for t in leaves if t is not None]
    names = ["y", "final_state", "dx", "ddt", "dA", "dB", "dC", "dstate"]
    for name, ref, got in zip(names, results["torch"], results["triton"]):
        assert torch.isfinite(got).all(), name
        assert rel_err(got, ref) <= 3e-3, f"{name}: relative error {rel_err(got, ref):.2e}"


# The second sizes suit the step kernels (power-of-two head sizes and d_state): without gradients on
# CUDA, `step` runs `ssd_step` and `ring_attention` for them.
@pytest.mark.parametrize("sizes", [{}, dict(d_state=16, headdim=16, n_heads=2)], ids=["tiny", "kernel_sizes"])
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_model_parallel_and_recurrent_agree_on_cuda(backend, sizes):
    torch.manual_seed(0)
    model = randomized(WorldModel(tiny_config(backend=backend, **sizes))).cuda()
    frames, actions = random_episode(model.config, 3, 40, seed=1)
    frames, actions = frames.cuda(), actions.cuda()
    resets = torch.zeros(3, 40, dtype=torch.bool, device="cuda")
    resets[0, [7, 25]] = True
    with torch.no_grad():
        parallel = model(frames, actions, resets=resets)
        state = model.initial_state(3)
        stepped = []
        for t in range(40):
            state.reset(resets[:, t])
            stepped.append(model.step(state, frames[:, t], actions[:, t])[0].frame_logits)
    err = rel_err(torch.stack(stepped, 1), parallel.frame_logits)
    assert err <= 1e-3, f"relative error {err:.2e}"
    # And the GPU agrees with the CPU reference.
    with torch.no_grad():
        cpu = model.cpu()(frames.cpu(), actions.cpu(), resets=resets.cpu()).frame_logits
    assert rel_err(parallel.frame_logits.cpu(), cpu) <= 3e-3


def test_triton_scan_runs_batches_past_the_grid_limit():
    """16,384 dream envs x 4 blocks is more sequences than one kernel grid takes: the scan runs in
    slices and still equals the PyTorch scan."""
    if not triton_available():
        pytest.skip("mamba_ssm does not import")
    gen = torch.Generator(device="cuda").manual_seed(0)
    b, length, h, p, g, n = 70_000, 16, 2, 8, 1, 16
    x = torch.randn(b, length, h, p, device="cuda", generator=gen)
    dt = torch.rand(b, length, h, device="cuda", generator=gen) * 0.2 + 0.005
    A = -(torch.rand(h, device="cuda", generator=gen) + 0.5)
    B, C = (torch.randn(b, length, g, n, device="cuda", generator=gen) for _ in range(2))
    state = torch.randn(b, h, p, n, device="cuda", generator=gen)
    y, final = ssd_scan(x, dt, A, B, C, initial_state=state, backend="triton")
    y_ref, final_ref = ssd_scan(x, dt, A, B, C, initial_state=state, backend="torch")
    assert rel_err(y, y_ref) < 1e-3 and rel_err(final, final_ref) < 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens,head_dim", [(30, 16), (49, 32)])
def test_ring_attention_kernel_matches_masked_sdpa(dtype, tokens, head_dim):
    from worldsim.kernels.ring_attention import ring_attention, ring_attention_available
    if not ring_attention_available(torch.device("cuda"), head_dim):
        pytest.skip("Triton does not import")
    gen = torch.Generator(device="cuda").manual_seed(tokens)
    b, s, heads = 7, 5, 2
    q = torch.randn(b, tokens, heads, head_dim, device="cuda", generator=gen).to(dtype)
    keys = torch.randn(b, s, tokens, heads * head_dim, device="cuda", generator=gen).to(dtype)
    values = torch.randn(b, s, tokens, heads * head_dim, device="cuda", generator=gen).to(dtype)
    valid = torch.rand(b, s, device="cuda", generator=gen) < 0.6
    valid[torch.arange(b), torch.arange(b) % s] = True            # every row sees at least one slot
    # What a reset left in the emptied slots must not matter, not even NaN.
    keys[~valid], values[~valid] = float("nan"), float("nan")
    got = ring_attention(q, keys, values, valid)
    clean_k = torch.where(valid[:, :, None, None], keys, 0).float()
    clean_v = torch.where(valid[:, :, None, None], values, 0).float()
    mask = valid[:, None, None, :, None].expand(-1, 1, 1, s, tokens).reshape(b, 1, 1, s * tokens)
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float().transpose(1, 2),
        clean_k.reshape(b, s * tokens, heads, head_dim).transpose(1, 2),
        clean_v.reshape(b, s * tokens, heads, head_dim).transpose(1, 2), attn_mask=mask,
    ).transpose(1, 2).reshape(b, tokens, heads * head_dim)
    assert torch.isfinite(got).all()
    assert rel_err(got, ref) <= (1e-5 if dtype == torch.float32 else 1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length,groups", [(16, 1), (49, 1), (30, 2)])
def test_ssd_step_kernel_matches_the_scan(dtype, length, groups):
    from worldsim.kernels.ssd_step import ssd_step, ssd_step_available
    if not ssd_step_available(torch.device("cuda"), 32, 16):
        pytest.skip("Triton does not import")
    gen = torch.Generator(device="cuda").manual_seed(length)
    rows, heads, p, n = 9, 4, 32, 16
    x = torch.randn(rows, length, heads, p, device="cuda", generator=gen).to(dtype)
    dt = torch.rand(rows, length, heads, device="cuda", generator=gen) * 0.2
    dt[:, -3:] = 0                                                   # padding tokens: no decay, no input
    A = -(torch.rand(heads, device="cuda", generator=gen) * 4 + 0.5)
    B = torch.randn(rows, length, groups, n, device="cuda", generator=gen).to(dtype)
    C = torch.randn(rows, length, groups, n, device="cuda", generator=gen).to(dtype)
    state = torch.randn(rows, heads, p, n, device="cuda", generator=gen)
    carried = torch.rand(rows, device="cuda", generator=gen) < 0.6
    carried[0], carried[1] = True, False
    state[~carried] = float("nan")                                   # a fresh episode's leftovers
    y_ref, state_ref = ssd_scan(x.float(), dt, A, B.float(), C.float(),
                                initial_state=torch.where(carried[:, None, None, None], state, 0), backend="torch")
    y = ssd_step(x, dt, A, B, C, state, carried)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    assert torch.isfinite(y).all() and torch.isfinite(state).all()
    assert rel_err(y, y_ref) <= tol
    assert rel_err(state, state_ref) <= tol
