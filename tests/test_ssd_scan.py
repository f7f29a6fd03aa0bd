import pytest
import torch

from worldsim.kernels import ssd_scan, ssd_scan_sequential


def random_inputs(batch, length, heads, headdim, groups, dstate, seed, with_state):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads, headdim, generator=gen)
    dt = torch.rand(batch, length, heads, generator=gen) * 0.5 + 0.01
    A = -(torch.rand(heads, generator=gen) * 3 + 0.05)
    B = torch.randn(batch, length, groups, dstate, generator=gen)
    C = torch.randn(batch, length, groups, dstate, generator=gen)
    s0 = torch.randn(batch, heads, headdim, dstate, generator=gen) if with_state else None
    return x, dt, A, B, C, s0


def assert_close(actual, expected):
    err = (actual.double() - expected).norm() / expected.norm()
    assert err < 1e-5, f"relative error {err:.2e}"


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(
    "batch,length,heads,headdim,groups,dstate,chunk",
    [
        (2, 64, 4, 8, 1, 16, 16),   # chunk divides the length
        (1, 37, 4, 8, 2, 8, 10),    # it does not
        (3, 5, 2, 4, 2, 4, 64),     # shorter than one chunk
        (2, 100, 6, 16, 3, 32, 32),
    ],
)
def test_torch_scan_equals_sequential_recurrence(batch, length, heads, headdim, groups, dstate, chunk, with_state):
    x, dt, A, B, C, s0 = random_inputs(batch, length, heads, headdim, groups, dstate, 1, with_state)
    y, state = ssd_scan(x, dt, A, B, C, initial_state=s0, chunk_size=chunk, backend="torch")
    y_ref, state_ref = ssd_scan_sequential(x, dt, A, B, C, initial_state=s0)
    assert y.shape == x.shape and state.shape == (batch, heads, headdim, dstate)
    assert_close(y, y_ref)
    assert_close(state, state_ref)


@pytest.mark.parametrize("split", [1, 17, 32, 63])
def test_carrying_the_state_across_a_split_equals_one_pass(split):
    x, dt, A, B, C, s0 = random_inputs(2, 64, 4, 8, 2, 16, 2, True)
    y, state = ssd_scan(x, dt, A, B, C, initial_state=s0, chunk_size=16, backend="torch")
    y1, mid = ssd_scan(x[:, :split], dt[:, :split], A, B[:, :split], C[:, :split], initial_state=s0,
                       chunk_size=16, backend="torch")
    y2, end = ssd_scan(x[:, split:], dt[:, split:], A, B[:, split:], C[:, split:], initial_state=mid,
                       chunk_size=16, backend="torch")
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(end, state, atol=1e-5, rtol=1e-5)


def test_chunk_size_does_not_change_the_result():
    x, dt, A, B, C, s0 = random_inputs(1, 50, 2, 4, 1, 8, 3, True)
    outs = [ssd_scan(x, dt, A, B, C, initial_state=s0, chunk_size=c, backend="torch") for c in (1, 7, 50, 128)]
    for y, s in outs[1:]:
        torch.testing.assert_close(y, outs[0][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(s, outs[0][1], atol=1e-5, rtol=1e-5)


def test_softplus_and_bias_option_matches_doing_it_by_hand():
    x, dt, A, B, C, _ = random_inputs(1, 20, 2, 4, 1, 8, 4, False)
    raw = torch.randn_like(dt)
    bias = torch.randn(2)
    y, s = ssd_scan(x, raw, A, B, C, dt_bias=bias, dt_softplus=True, backend="torch")
    y2, s2 = ssd_scan(x, torch.nn.functional.softplus(raw + bias), A, B, C, backend="torch")
    torch.testing.assert_close(y, y2)
    torch.testing.assert_close(s, s2)


def test_gradients_flow_to_every_input_including_the_initial_state():
    x, dt, A, B, C, s0 = random_inputs(1, 24, 2, 4, 1, 8, 5, True)
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C, s0)]
    y, s = ssd_scan(*inputs[:5], initial_state=inputs[5], chunk_size=8, backend="torch")
    (y.square().sum() + s.square().sum()).backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in inputs)


def test_bad_shapes_and_backends_are_refused_clearly():
    x, dt, A, B, C, s0 = random_inputs(1, 8, 4, 8, 2, 16, 6, True)
    with pytest.raises(ValueError, match="dt must be"):
        ssd_scan(x, dt[:, :4], A, B, C)
    with pytest.raises(ValueError, match="divisible by groups"):
        ssd_scan(x, dt, A, B[:, :, :1].expand(-1, -1, 3, -1), C[:, :, :1].expand(-1, -1, 3, -1))
    with pytest.raises(ValueError, match="initial_state must be"):
        ssd_scan(x, dt, A, B, C, initial_state=s0[:, :2])
    with pytest.raises(ValueError, match="backend must be one of"):
        ssd_scan(x, dt, A, B, C, backend="cuda")
    if not torch.cuda.is_available():
        with pytest.raises((ValueError, RuntimeError), match="triton"):
            ssd_scan(x, dt, A, B, C, backend="triton")


@pytest.mark.parametrize("chunk", [1, 8, 13, 64])
def test_sequence_boundaries_restart_from_zero(chunk):
    x, dt, A, B, C, s0 = random_inputs(3, 50, 4, 8, 2, 16, 7, True)
    starts = torch.zeros(3, 50, dtype=torch.bool)
    starts[0, [5, 6, 31]] = True  # neighbouring boundaries, one mid-chunk
    starts[1, 0] = True           # the very first position: the initial state is dropped
    # row 2: no boundary at all
    seq_idx = starts.long().cumsum(1)
    y, state = ssd_scan(x, dt, A, B, C, initial_state=s0, chunk_size=chunk, backend="torch", seq_idx=seq_idx)
    y_ref, state_ref = ssd_scan_sequential(x, dt, A, B, C, initial_state=s0, seq_idx=seq_idx)
    assert_close(y, y_ref)
    assert_close(state, state_ref)
    # Row 1 equals a scan from zero; the part after row 0's last boundary equals a fresh scan of it.
    y_fresh, _ = ssd_scan(x[1:2], dt[1:2], A, B[1:2], C[1:2], chunk_size=chunk, backend="torch")
    torch.testing.assert_close(y[1:2], y_fresh, atol=1e-5, rtol=1e-5)
    y_tail, s_tail = ssd_scan(x[:1, 31:], dt[:1, 31:], A, B[:1, 31:], C[:1, 31:], chunk_size=chunk, backend="torch")
    torch.testing.assert_close(y[:1, 31:], y_tail, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state[:1], s_tail, atol=1e-5, rtol=1e-5)
