"""What the model's parts mean, checked where a silent change would otherwise pass every test:
the action conditions the prediction, each layer scans with its own block size, the carried conv
is reset per batch element, the causal baseline's cache serves envs at different frames, padding
never reaches the state, and attention sees how many frames apart two frames are (rotary)."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from envs.minigrid.codec import AGENT_TOKEN_BASE, N_CONTENTS, N_DIRECTIONS, MiniGridCodec
from worldsim import WorldModel, WorldModelConfig
from worldsim.attention import GROWING_CACHE_SLOTS, FrameLocalAttention
from worldsim.baselines import baseline_config
from worldsim.mixer import BlockwiseMamba2
from worldsim.zoo import shipped_model

from conftest import random_episode, randomized, tiny_config

FIXTURE = Path(__file__).parent / "fixtures" / "doorkey_windows.npz"
LEFT, RIGHT, FORWARD = 0, 1, 2                                       # MiniGrid's actions


def _tiny_model(seed=0, **overrides) -> WorldModel:
    torch.manual_seed(seed)
    return randomized(WorldModel(tiny_config(**overrides)), seed=seed)


def _close(a, b, atol=1e-4, what=""):
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-4, msg=lambda m: f"{what}: {m}")


# ---- the action conditions the prediction ---------------------------------------------------------


def test_actions_change_the_next_frame_logits_and_nothing_before():
    model = _tiny_model()
    frames, actions = random_episode(model.config, 2, 6, seed=1)
    t = 3

    def with_action_changed(delta):
        other = actions.clone()
        other[:, t] = (other[:, t] + delta) % model.config.num_actions
        return other

    with torch.no_grad():
        base = model(frames, actions)
        for delta in range(1, model.config.num_actions):
            out = model(frames, with_action_changed(delta))
            assert torch.equal(out.frame_logits[:, :t], base.frame_logits[:, :t]), "an earlier frame changed"
            change = (out.frame_logits[:, t] - base.frame_logits[:, t]).abs().amax(dim=(1, 2, 3))
            assert (change > 1e-2).all(), f"action +{delta} at frame {t} barely moved the logits: {change}"
            assert ((out.reward[:, t] - base.reward[:, t]).abs() > 1e-4).all()
        # The recurrent path too: the same state and frame, two actions, two predictions.
        state = model.initial_state(2)
        a, _ = model.step(state.clone(), frames[:, 0], torch.tensor([0, 0]))
        b, _ = model.step(state.clone(), frames[:, 0], torch.tensor([1, 1]))
        assert (a.frame_logits - b.frame_logits).abs().amax() > 1e-2
        # Every layer reads the action, not only the heads: cut the heads' conditioning and all
        # layers' but one (their action-independent biases stay): the logits still follow the action.
        model.final_modulation.weight.zero_()
        weights = [layer.modulation.weight.clone() for layer in model.layers]
        for i in range(len(model.layers)):
            for j, layer in enumerate(model.layers):
                layer.modulation.weight.copy_(weights[j] if j == i else torch.zeros_like(weights[j]))
            change = (model(frames, with_action_changed(1)).frame_logits[:, t]
                      - model(frames, actions).frame_logits[:, t]).abs().amax()
            assert change > 1e-3, f"layer {i} ignores the action"


def _agent_token(direction: int, content: int) -> int:
    return AGENT_TOKEN_BASE + direction * N_CONTENTS + content


def test_shipped_doorkey_model_turns_the_agent_as_the_action_says():
    """At real frames of the fixture, 'left', 'right' and 'forward' are fed instead of the real action:
    the predicted agent token turns counter-clockwise, clockwise, or keeps its direction, and
    keeps what the agent carries; turning predicts another frame than going forward."""
    model = WorldModel.from_pretrained(shipped_model("MiniGrid-DoorKey-8x8-v0").path, device="cpu").eval()
    codec = MiniGridCodec(7)
    ay, ax = codec.agent_cell
    with np.load(FIXTURE, allow_pickle=False) as d:
        frames = torch.from_numpy(d["frames"].astype(np.int64))
        actions = torch.from_numpy(d["actions"].astype(np.int64))
        resets = torch.from_numpy(d["resets"])
        has_target = torch.from_numpy(d["has_target"])
    n = frames.shape[0]
    probes = (4, 17, 30)
    state = model.initial_state(n)
    checked = 0
    with torch.no_grad():
        for t in range(max(probes) + 1):
            if t > 0 and resets[:, t].any():
                state.reset(resets[:, t])
            if t in probes:
                token = frames[:, t, ay, ax] - AGENT_TOKEN_BASE
                direction, content = token // N_CONTENTS, token % N_CONTENTS
                pred = {}
                for action in (LEFT, RIGHT, FORWARD):
                    out, _ = model.step(state.clone(), frames[:, t], torch.full((n,), action))
                    pred[action] = out.frame_logits.argmax(-1)
                for i in range(n):
                    if not has_target[i, t]:
                        continue
                    d, c = int(direction[i]), int(content[i])
                    for action, turn in ((LEFT, -1), (RIGHT, 1), (FORWARD, 0)):
                        want = _agent_token((d + turn) % N_DIRECTIONS, c)
                        got = int(pred[action][i, ay, ax])
                        assert got == want, (f"window {i} frame {t}: action {action} predicts agent token {got}, "
                                             f"expected {want} (direction {d} turned by {turn}, content {c})")
                    assert not torch.equal(pred[LEFT][i], pred[FORWARD][i])
                    checked += 1
            model.step(state, frames[:, t], actions[:, t])
    assert checked >= 2 * n


# ---- every layer scans with its own block size ---------------------------------------------------

# Frame 5x6; no two layers share a block size, and the first is not the whole frame.
LAYERED = dict(frame_shape=(5, 6), n_layers=4, block_sizes=[(2, 4), (5, 6), (3, 3), (1, 2)])


def test_each_layer_has_the_block_layout_and_state_of_its_own_block_size():
    model = WorldModel(tiny_config(**LAYERED))
    state = model.initial_state(2)
    h, w = LAYERED["frame_shape"]
    for i, (bh, bw) in enumerate(LAYERED["block_sizes"]):
        layout = model.layers[i].mixer.layout
        blocks = math.ceil(h / bh) * math.ceil(w / bw)
        assert (layout.block_h, layout.block_w) == (bh, bw), f"layer {i}"
        assert layout.num_blocks == blocks and layout.block_tokens == bh * bw, f"layer {i}"
        assert state.layers[i].ssm.shape[:2] == (2, blocks), f"layer {i}: ssm state {tuple(state.layers[i].ssm.shape)}"
        assert state.layers[i].conv.shape[:2] == (2, blocks), f"layer {i}: conv state {tuple(state.layers[i].conv.shape)}"
    # The state a forward pass hands back has the same per-layer layout.
    frames, actions = random_episode(model.config, 2, 2, seed=0)
    with torch.no_grad():
        out = model(frames, actions, return_state=True)
    for i, layer in enumerate(out.state.layers):
        assert layer.ssm.shape == state.layers[i].ssm.shape and layer.conv.shape == state.layers[i].conv.shape


def test_each_layers_scan_mixes_exactly_within_its_own_blocks():
    """Perturb one cell of one frame and see which cells of the later frames change, layer by layer:
    exactly the cells of that cell's block in the layer's own block size."""
    model = randomized(WorldModel(tiny_config(**LAYERED)))
    h, w = LAYERED["frame_shape"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, h, w, model.config.d_model, generator=gen)
    r0, c0, t0 = 2, 4, 1
    perturbed = x.clone()
    perturbed[:, t0, r0, c0] += torch.randn(model.config.d_model, generator=gen)
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for i, (bh, bw) in enumerate(LAYERED["block_sizes"]):
        mixer = model.layers[i].mixer
        with torch.no_grad():
            y, _, _ = mixer(x)
            y2, _, _ = mixer(perturbed)
        changed = (y2 - y).abs().amax(dim=(0, -1)) > 1e-6                 # [T, H, W]
        block = (rows // bh == r0 // bh) & (cols // bw == c0 // bw)
        assert not changed[:t0].any(), f"layer {i}: an earlier frame changed"
        for t in range(t0 + 1, x.shape[1]):
            assert torch.equal(changed[t], block), (
                f"layer {i} (block {(bh, bw)}), frame {t}: changed cells\n{changed[t].int()}\n"
                f"expected the block of cell {(r0, c0)}\n{block.int()}")


# ---- the carried conv is reset per batch element -------------------------------------------------


def _fresh_segments(model, frames, actions, resets):
    """Reference for a batch with resets: every episode segment of every element run alone by a new
    model call (fresh state), concatenated back in time."""
    rows = []
    for i in range(frames.shape[0]):
        starts = sorted({0, *resets[i].nonzero().flatten().tolist()}) + [frames.shape[1]]
        rows.append(torch.cat([model(frames[i:i + 1, a:b], actions[i:i + 1, a:b]).frame_logits
                               for a, b in zip(starts[:-1], starts[1:])], 1))
    return torch.cat(rows)


def test_forward_with_resets_equals_steps_with_state_reset_and_fresh_runs():
    """(1, 1) blocks carry the conv history over d_conv - 1 = 3 frames and (1, 2) blocks over 1.5:
    a reset must cut both, per batch element, in forward (resets) and in step (state.reset)."""
    model = _tiny_model(seed=2, frame_shape=(3, 4), n_layers=2, block_sizes=[(1, 1), (1, 2)])
    b, length = 3, 14
    frames, actions = random_episode(model.config, b, length, seed=3)
    resets = torch.zeros(b, length, dtype=torch.bool)
    resets[0, 6] = True                                    # element 1 never resets
    resets[2, 4] = resets[2, 9] = True
    with torch.no_grad():
        parallel = model(frames, actions, resets=resets, return_state=True)
        _close(parallel.frame_logits, _fresh_segments(model, frames, actions, resets), what="forward vs fresh runs")
        state = model.initial_state(b)
        for t in range(length):
            state.reset(resets[:, t])
            out, state = model.step(state, frames[:, t], actions[:, t])
            _close(out.frame_logits, parallel.frame_logits[:, t], what=f"step vs forward at {t}")
            _close(out.reward, parallel.reward[:, t], what=f"reward at {t}")
        for x, y in zip(parallel.state.tensors(), state.tensors()):
            _close(x, y, what="state after the window")
        # Carried across calls: a second chunk from the first chunk's state, with resets inside it.
        first = model(frames[:, :5], actions[:, :5], resets=resets[:, :5], return_state=True)
        second = model(frames[:, 5:], actions[:, 5:], state=first.state, resets=resets[:, 5:], return_state=True)
        _close(second.frame_logits, parallel.frame_logits[:, 5:], what="chunked forward")
        for x, y in zip(second.state.tensors(), parallel.state.tensors()):
            _close(x, y, what="chunked state")
        # A reset at the chunk's first frame drops the carried state (conv history included).
        restart = resets[:, 5:].clone()
        restart[:, 0] = True
        from_reset = model(frames[:, 5:], actions[:, 5:], state=first.state, resets=restart)
        _close(from_reset.frame_logits, _fresh_segments(model, frames[:, 5:], actions[:, 5:], restart),
               what="carried state reset at a chunk's first frame")


# ---- the causal baseline's cache with envs at different frames -----------------------------------


@pytest.mark.parametrize("context", [4, GROWING_CACHE_SLOTS + 16])   # a wrapping ring; a growing cache
def test_causal_baseline_steps_envs_at_different_frames_as_each_alone(context):
    torch.manual_seed(4)
    model = randomized(WorldModel(baseline_config("causal", tiny_config(), context=context)), seed=4)
    b, length = 3, 12
    frames, actions = random_episode(model.config, b, length, seed=5)
    resets = torch.zeros(b, length, dtype=torch.bool)
    resets[0, 5] = True                 # env 0 restarts at 5, env 1 at 3 and 8, env 2 runs on: the
    resets[1, 3] = resets[1, 8] = True  # first env is not always the one furthest into its episode
    batched = []
    with torch.no_grad():
        state = model.initial_state(b)
        for t in range(length):
            state.reset(resets[:, t])
            out, state = model.step(state, frames[:, t], actions[:, t])
            batched.append(out)
        for i in range(b):
            alone = model.initial_state(1)
            for t in range(length):
                alone.reset(resets[i:i + 1, t])
                out, alone = model.step(alone, frames[i:i + 1, t], actions[i:i + 1, t])
                _close(batched[t].frame_logits[i:i + 1], out.frame_logits, what=f"env {i} frame {t}")
                _close(batched[t].reward[i:i + 1], out.reward, what=f"env {i} reward {t}")
        parallel = model(frames, actions, resets=resets)
    for t in range(length):
        _close(batched[t].frame_logits, parallel.frame_logits[:, t], what=f"step vs forward at {t}")


# ---- padding never reaches the state -------------------------------------------------------------


def _pad_with(layout, value, calls):
    """`layout.to_blocks` with the overhang filled with `value` instead of zeros (for one instance);
    appends to `calls` each time it runs."""

    def to_blocks(x):
        calls.append(1)
        grid = torch.full((*x.shape[:2], layout.blocks_h * layout.block_h, layout.blocks_w * layout.block_w,
                           x.shape[-1]), float(value), dtype=x.dtype)
        grid[:, :, : layout.height, : layout.width] = x
        return layout._grid_to_blocks(grid)

    return to_blocks


@pytest.mark.parametrize("value", [37.0, -5.0])
def test_what_the_padding_holds_never_reaches_outputs_or_state(monkeypatch, value):
    """7x7 frames in 4x4 blocks: three of the four blocks overhang. Whatever the padding holds (the
    mixer pads its projected tokens with zeros; here with `value`), the outputs and every block's
    SSM and conv state are the same, in one call over the frames and frame by frame."""
    config = tiny_config(frame_shape=(7, 7), n_layers=2, block_sizes=[(4, 4), (4, 3)])
    torch.manual_seed(5)
    mixer = randomized(BlockwiseMamba2(config, (4, 4)), seed=5)
    assert mixer.layout.pad_h and mixer.layout.pad_w
    x = torch.randn(2, 5, 7, 7, config.d_model, generator=torch.Generator().manual_seed(6))

    def run():
        with torch.no_grad():
            whole = mixer(x)
            ssm = conv = None
            ys = []
            for t in range(x.shape[1]):
                y, ssm, conv = mixer(x[:, t:t + 1], ssm, conv)
                ys.append(y)
        return whole, (torch.cat(ys, 1), ssm, conv)

    clean = run()
    calls = []
    monkeypatch.setattr(mixer.layout, "to_blocks", _pad_with(mixer.layout, value, calls))
    dirty = run()
    assert len(calls) == 1 + x.shape[1], "the mixer no longer pads through its layout: update this test"
    for (y, ssm, conv), (y2, ssm2, conv2) in zip(clean, dirty):
        _close(y2, y, atol=1e-6, what="mixer output")
        _close(ssm2, ssm, atol=1e-6, what="SSM state")
        _close(conv2, conv, atol=1e-6, what="conv state")
    # The same through the whole model, stepping frame by frame (every layer's blocks overhang).
    model = _tiny_model(seed=6, **{k: getattr(config, k) for k in ("frame_shape", "n_layers", "block_sizes")})
    frames, actions = random_episode(model.config, 2, 5, seed=7)

    def steps():
        state = model.initial_state(2)
        with torch.no_grad():
            outs = [model.step(state, frames[:, t], actions[:, t])[0].frame_logits for t in range(5)]
        return torch.stack(outs, 1), state

    monkeypatch.undo()
    clean_logits, clean_state = steps()
    calls = []
    for layer in model.layers:
        monkeypatch.setattr(layer.mixer.layout, "to_blocks", _pad_with(layer.mixer.layout, value, calls))
    dirty_logits, dirty_state = steps()
    assert len(calls) == 5 * len(model.layers)
    _close(dirty_logits, clean_logits, atol=1e-5, what="model logits")
    for a, b in zip(dirty_state.tensors(), clean_state.tensors()):
        _close(a, b, atol=1e-5, what="model state")


def test_an_overhanging_block_scans_its_real_tokens_as_if_there_were_no_padding():
    """The bottom-right 4x4 block of a 7x7 frame holds 3x3 real tokens. With the conv reading only the
    current token (its other taps zeroed), its outputs and SSM state equal those of the same weights
    scanning a 3x3 frame of just those tokens as one block: padding neither decays nor feeds the
    state, whatever it holds (a dt that is not zero at padding fails this even with zero padding)."""
    config = tiny_config(frame_shape=(7, 7), n_layers=1, block_sizes=[(4, 4)])
    torch.manual_seed(7)
    mixer = randomized(BlockwiseMamba2(config, (4, 4)), seed=7)
    with torch.no_grad():
        mixer.conv_weight[:, :-1] = 0                     # tap d_conv - 1 reads the current token
    small = BlockwiseMamba2(tiny_config(frame_shape=(3, 3), n_layers=1, block_sizes=[(3, 3)]), (3, 3))
    small.load_state_dict(mixer.state_dict())
    x = torch.randn(2, 6, 7, 7, config.d_model, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        y, ssm, _ = mixer(x)
        y_small, ssm_small, _ = small(x[:, :, 4:, 4:].contiguous())
    _close(y[:, :, 4:, 4:], y_small, atol=1e-5, what="outputs of the bottom-right block")
    _close(ssm[:, -1], ssm_small[:, 0], atol=1e-5, what="SSM state of the bottom-right block")


# ---- rotary: attention sees how far apart frames are ---------------------------------------------


def _attend_across(attn, key_frame, query_frame, keys_in, query_in):
    """One frame of tokens `keys_in` at `key_frame`, then `query_in` at `query_frame` (the frames
    between them empty): the query frame's attention output."""
    b, n, d = query_in.shape
    keys = torch.zeros(b, attn.slots, n, d)
    values = torch.zeros(b, attn.slots, n, d)
    slot_frame = torch.full((b, attn.slots), -1)
    for frame, x in ((key_frame, keys_in), (query_frame, query_in)):
        slot_frame[:, frame % attn.slots] = frame
        y = attn.step(x, torch.full((b,), frame), keys, values, slot_frame)
    return y


def test_attention_depends_on_the_frame_distance_and_only_on_it():
    config = tiny_config(attn_window=3)
    torch.manual_seed(9)
    attn = randomized(FrameLocalAttention(config), scale=0.3, seed=9)
    gen = torch.Generator().manual_seed(10)
    keys_in = torch.randn(2, 30, config.d_model, generator=gen)
    query_in = torch.randn(2, 30, config.d_model, generator=gen)
    with torch.no_grad():
        one = _attend_across(attn, 0, 1, keys_in, query_in)
        two = _attend_across(attn, 0, 2, keys_in, query_in)
        three = _attend_across(attn, 5, 8, keys_in, query_in)
        # Relative: the same distance later in the episode gives the same output.
        _close(_attend_across(attn, 7, 8, keys_in, query_in), one, atol=1e-5, what="distance 1 at frame 8")
        _close(_attend_across(attn, 1003, 1005, keys_in, query_in), two, atol=1e-4, what="distance 2 at frame 1005")
    # The same keys one, two or three frames back are attended differently.
    for a, b, name in ((one, two, "1 vs 2"), (two, three, "2 vs 3"), (one, three, "1 vs 3")):
        assert (a - b).abs().amax() > 1e-3, f"frame distance {name} gives the same attention output"


def test_queries_and_keys_are_rotated_by_their_frame():
    config = tiny_config()
    attn = FrameLocalAttention(config)
    x = torch.randn(1, 2, config.tokens_per_frame, config.d_model)
    q0, k0, v0 = attn._project(x, torch.tensor([[0, 0]]))
    q3, k3, v3 = attn._project(x, torch.tensor([[3, 3]]))
    assert torch.equal(v0, v3)
    assert (q0 - q3).abs().amax() > 1e-3 and (k0 - k3).abs().amax() > 1e-3
    # A rotation: lengths kept, and a query-key product depends only on the frame difference.
    _close(q3.norm(dim=-1), q0.norm(dim=-1), atol=1e-5, what="rotated lengths")
    q5, _, _ = attn._project(x, torch.tensor([[5, 5]]))
    _, k2, _ = attn._project(x, torch.tensor([[2, 2]]))
    _close((q5 * k2).sum(-1), (q3 * k0).sum(-1), atol=1e-5, what="q(5).k(2) vs q(3).k(0)")


def test_attention_scores_depend_on_the_offset_between_cells():
    """spatial_rotary: the same content in two cells scores by their offset, wherever the pair lies;
    without it, cells are told apart only by the learned position embeddings."""
    config = tiny_config(spatial_rotary=True)                # frame 5 x 6
    attn = FrameLocalAttention(config)
    h, w = config.frame_shape
    content = torch.randn(config.d_model)
    x = content.expand(1, 1, h * w, config.d_model).contiguous()
    q, k, _ = attn._project(x, torch.tensor([[4]]))

    def score(a, b):  # query cell a, key cell b, as (row, column)
        return (q[0, 0, a[0] * w + a[1]] * k[0, 0, b[0] * w + b[1]]).sum(-1)

    _close(score((1, 1), (1, 2)), score((3, 4), (3, 5)), atol=1e-5, what="one cell east, two places")
    _close(score((2, 3), (1, 3)), score((4, 0), (3, 0)), atol=1e-5, what="one cell north, two places")
    assert (score((2, 2), (2, 3)) - score((2, 2), (3, 2))).abs().amax() > 1e-3, "east and south score alike"
    assert (score((2, 2), (2, 3)) - score((2, 2), (2, 4))).abs().amax() > 1e-3, "one and two cells east score alike"
    plain = FrameLocalAttention(tiny_config(spatial_rotary=False))
    q, k, _ = plain._project(x, torch.tensor([[4]]))
    assert torch.equal(q[0, 0, 0], q[0, 0, 7]), "without spatial rotation, equal content must give equal queries"


def test_configs_saved_before_the_spatial_switches_load_without_them():
    saved = tiny_config(spatial_rotary=True, neighbour_mixing=True).to_dict()
    assert WorldModelConfig.from_dict(saved).spatial_rotary and WorldModelConfig.from_dict(saved).neighbour_mixing
    del saved["spatial_rotary"], saved["neighbour_mixing"]
    old = WorldModelConfig.from_dict(saved)
    assert not old.spatial_rotary and not old.neighbour_mixing
    with pytest.raises(ValueError, match="spatial_rotary needs an attention head size"):
        tiny_config(d_model=12, n_heads=2, headdim=6, spatial_rotary=True)
