import torch

from worldsim.attention import FrameLocalAttention

from conftest import randomized, tiny_config


def frames_from_zero(x):
    return torch.arange(x.shape[1]).expand(x.shape[0], -1)


def run(attn, x):
    out, _ = attn(x, frames_from_zero(x))
    return out


def test_a_token_sees_exactly_its_frame_and_the_previous_k_frames():
    config = tiny_config(attn_window=3)
    torch.manual_seed(0)
    attn = randomized(FrameLocalAttention(config))
    frames, tokens = 12, 30
    x = torch.randn(2, frames, tokens, config.d_model)
    y = run(attn, x)
    t0 = 4
    perturbed = x.clone()
    perturbed[:, t0] += torch.randn(2, tokens, config.d_model)
    changed = (run(attn, perturbed) - y).abs().amax(dim=(0, 2, 3)) > 1e-6  # per frame
    for t in range(frames):
        inside = t0 <= t <= t0 + config.attn_window
        assert bool(changed[t]) == inside, f"frame {t}: changed={bool(changed[t])}, in window={inside}"


def test_the_ring_buffer_step_matches_the_parallel_pass_well_past_the_window():
    config = tiny_config(attn_window=3)
    torch.manual_seed(1)
    attn = randomized(FrameLocalAttention(config))
    b, frames, tokens, d = 2, 15, 30, config.d_model
    x = torch.randn(b, frames, tokens, d)
    y, ring = attn(x, frames_from_zero(x))
    keys = torch.zeros(b, attn.slots, tokens, d)
    values = torch.zeros(b, attn.slots, tokens, d)
    slot_frame = torch.full((b, attn.slots), -1)
    rows = torch.arange(b)
    for t in range(frames):
        frame = torch.full((b,), t)
        slot_frame[rows, frame % attn.slots] = frame
        yt = attn.step(x[:, t], frame, keys, values, slot_frame)
        torch.testing.assert_close(yt, y[:, t], atol=1e-5, rtol=1e-5)
    # The parallel pass hands back the same ring the steps built.
    torch.testing.assert_close(ring[0], keys)
    torch.testing.assert_close(ring[1], values)
    assert torch.equal(ring[2], slot_frame)
