import pytest
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
    frames, tokens = 12, config.tokens_per_frame
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
    b, frames, tokens, d = 2, 15, config.tokens_per_frame, config.d_model
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


@pytest.mark.parametrize("query_tokens", [4096, 20])         # one attention call; chunks of 3 frames
def test_long_windows_attend_the_whole_timeline_as_short_ones_attend_their_windows(monkeypatch, query_tokens):
    """A window over GROWING_CACHE_SLOTS frames (the causal baseline) attends over the whole timeline
    with a frame-causal mask, in chunks of queries; it must give what the per-frame windows give, across
    an episode start inside the chunk in one batch element (not the other) and with a ring carried
    from an earlier chunk."""
    import worldsim.attention as attention

    monkeypatch.setattr(attention, "TIMELINE_QUERY_TOKENS", query_tokens)
    config = tiny_config(attn_window=attention.GROWING_CACHE_SLOTS + 6)
    torch.manual_seed(3)
    attn = randomized(FrameLocalAttention(config))
    b, tokens, d = 2, config.tokens_per_frame, config.d_model
    first, second = torch.randn(b, 20, tokens, d), torch.randn(b, 30, tokens, d)
    frame1 = torch.arange(20).expand(b, -1)
    # Element 0 starts an episode at 15; element 1 goes on (so the batch cannot share one mask).
    frame2 = torch.stack([torch.cat([torch.arange(20, 35), torch.arange(15)]), torch.arange(20, 50)])
    episode2 = torch.stack([(torch.arange(30) >= 15).long(), torch.zeros(30, dtype=torch.long)])

    def both_chunks():
        y1, ring = attn(first, frame1)
        y2, ring2 = attn(second, frame2, episode2, cache=ring)
        return y1, y2, ring2

    timeline = both_chunks()
    monkeypatch.setattr(attention, "GROWING_CACHE_SLOTS", 10**9)             # force the windows path
    windows = both_chunks()
    for a, w in zip(timeline[:2], windows[:2]):
        torch.testing.assert_close(a, w, atol=1e-5, rtol=1e-5)
    for a, w in zip(timeline[2], windows[2]):
        torch.testing.assert_close(a, w)
