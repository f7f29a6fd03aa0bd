import pytest
import torch

from worldsim import WorldModel

from conftest import random_episode, randomized, tiny_config


def assert_layer_states_close(a, b):
    """Every layer's SSM and conv state, and the keys/values of the ring slots in use, agree. The
    contents of an empty slot are never read (a reset leaves them as they were)."""
    filled = (b.slot_frame >= 0)[:, :, None, None]
    for x, y in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(x.ssm, y.ssm, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(x.conv, y.conv, atol=1e-4, rtol=1e-4)
        for p, q in ((x.keys, y.keys), (x.values, y.values)):
            torch.testing.assert_close(p * filled, q * filled, atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module", params=[{}, {"spatial_rotary": True, "neighbour_mixing": True}],
                ids=["plain", "spatial"])
def model(request):
    """The tiny model, and the same with the spatial switches (rotary over rows and columns, 3x3
    neighbour mixing): every property below holds for both."""
    torch.manual_seed(0)
    return randomized(WorldModel(tiny_config(**request.param)))


def step_through(model, state, frames, actions):
    outs = []
    with torch.no_grad():
        for t in range(frames.shape[1]):
            out, state = model.step(state, frames[:, t], actions[:, t])
            outs.append(out)
    return outs, state


def test_output_shapes(model):
    c = model.config
    frames, actions = random_episode(c, 2, 7)
    out = model(frames, actions)
    assert out.frame_logits.shape == (2, 7, *c.frame_shape, c.vocab_size)
    assert out.reward.shape == out.done_logits.shape == (2, 7)
    assert out.features.shape == (2, 7, *c.frame_shape, c.d_model)


def test_parallel_and_recurrent_agree_past_the_window_and_many_chunks(model):
    # 40 frames: 13x the attention window; the whole-frame layer scans 1,200 tokens (75 chunks of 16).
    frames, actions = random_episode(model.config, 2, 40, seed=1)
    with torch.no_grad():
        parallel = model(frames, actions, return_state=True)
    outs, state = step_through(model, model.initial_state(2), frames, actions)
    for t, out in enumerate(outs):
        for name in ("frame_logits", "reward", "done_logits"):
            torch.testing.assert_close(getattr(out, name), getattr(parallel, name)[:, t], atol=1e-4, rtol=1e-4,
                                       msg=lambda m: f"{name} at frame {t}: {m}")
    # The state the parallel pass hands back is the state the steps reached.
    assert torch.equal(parallel.state.frame, state.frame)
    assert torch.equal(parallel.state.slot_frame, state.slot_frame)
    assert_layer_states_close(parallel.state, state)


def test_forward_continues_from_a_carried_state(model):
    frames, actions = random_episode(model.config, 2, 30, seed=2)
    with torch.no_grad():
        whole = model(frames, actions)
        first = model(frames[:, :11], actions[:, :11], return_state=True)
        second = model(frames[:, 11:], actions[:, 11:], state=first.state, return_state=True)
        # Mixed: steps, then a parallel chunk from the stepped state.
        outs, state = step_through(model, model.initial_state(2), frames[:, :5], actions[:, :5])
        rest = model(frames[:, 5:], actions[:, 5:], state=state)
    torch.testing.assert_close(torch.cat([first.frame_logits, second.frame_logits], 1), whole.frame_logits,
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rest.frame_logits, whole.frame_logits[:, 5:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("carried", [False, True])
def test_resets_inside_a_window_equal_resetting_the_state_between_steps(model, carried):
    frames, actions = random_episode(model.config, 3, 30, seed=8)
    resets = torch.zeros(3, 30, dtype=torch.bool)
    resets[0, [4, 5, 19]] = True   # back-to-back episodes, then one long past the window
    resets[1, 0] = True            # the carried state is dropped at once
    resets[2, 29] = True           # the last frame starts a new episode
    start = model.initial_state(3)
    if carried:
        _, start = step_through(model, start, *random_episode(model.config, 3, 6, seed=9))
    with torch.no_grad():
        parallel = model(frames, actions, state=start.clone(), return_state=True, resets=resets)
    state, outs = start.clone(), []
    with torch.no_grad():
        for t in range(30):
            state.reset(resets[:, t])
            out, state = model.step(state, frames[:, t], actions[:, t])
            outs.append(out.frame_logits)
    torch.testing.assert_close(torch.stack(outs, 1), parallel.frame_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(parallel.state.frame, state.frame)
    assert torch.equal(parallel.state.slot_frame, state.slot_frame)
    assert_layer_states_close(parallel.state, state)


def test_state_size_is_the_same_after_10_and_1000_steps(model):
    frames, actions = random_episode(model.config, 1, 1000, seed=3)
    state = model.initial_state(1)
    sizes = {}
    with torch.no_grad():
        for t in range(1000):
            _, state = model.step(state, frames[:, t], actions[:, t])
            if t + 1 in (10, 1000):
                sizes[t + 1] = (state.nbytes, [tuple(x.shape) for x in state.tensors()])
    assert sizes[10] == sizes[1000]
    assert state.frame.item() == 1000


def test_clone_is_independent(model):
    frames, actions = random_episode(model.config, 2, 6, seed=4)
    _, state = step_through(model, model.initial_state(2), frames[:, :3], actions[:, :3])
    snapshot = state.clone()
    step_through(model, state, frames[:, 3:], actions[:, 3:])
    assert snapshot.frame.tolist() == [3, 3]
    assert not torch.equal(snapshot.layers[0].ssm, state.layers[0].ssm)


def test_select_repeat_and_write_back(model):
    frames, actions = random_episode(model.config, 3, 8, seed=5)
    _, state = step_through(model, model.initial_state(3), frames[:, :4], actions[:, :4])
    # Branching env 1 into 4 copies and stepping them with env 1's inputs gives env 1's outputs.
    branches = state[1].repeat(4)
    assert branches.batch_size == 4
    reference, _ = step_through(model, state.clone(), frames[:, 4:], actions[:, 4:])
    branched, _ = step_through(model, branches, frames[1:2, 4:].expand(4, -1, -1, -1),
                               actions[1:2, 4:].expand(4, -1))
    for ref, out in zip(reference, branched):
        torch.testing.assert_close(out.frame_logits, ref.frame_logits[1:2].expand(4, -1, -1, -1), atol=1e-5, rtol=1e-5)
    # repeat keeps each element's copies together.
    assert state.repeat(2).frame.tolist() == [4, 4, 4, 4, 4, 4]
    # Writing a sub-batch back.
    fresh = model.initial_state(3)
    fresh[[0, 2]] = state[[0, 2]]
    assert fresh.frame.tolist() == [4, 0, 4]
    assert torch.equal(fresh.layers[1].keys[2], state.layers[1].keys[2])


def test_masked_reset_restarts_one_env_and_leaves_the_others(model):
    frames, actions = random_episode(model.config, 2, 12, seed=6)
    _, state = step_through(model, model.initial_state(2), frames[:, :7], actions[:, :7])
    untouched = state.clone()
    state.reset(torch.tensor([False, True]))
    assert state.frame.tolist() == [7, 0]
    outs, _ = step_through(model, state, frames[:, 7:], actions[:, 7:])
    # Env 1 now behaves as a fresh episode starting at frame 7's inputs ...
    fresh, _ = step_through(model, model.initial_state(1), frames[1:, 7:], actions[1:, 7:])
    # ... and env 0 as if nothing happened.
    kept, _ = step_through(model, untouched[0], frames[:1, 7:], actions[:1, 7:])
    for out, f, k in zip(outs, fresh, kept):
        torch.testing.assert_close(out.frame_logits[1:], f.frame_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.frame_logits[:1], k.frame_logits, atol=1e-5, rtol=1e-5)


def test_bad_inputs_get_clear_errors(model):
    c = model.config
    frames, actions = random_episode(c, 2, 3)
    with pytest.raises(ValueError, match=r"frames must be \[B, T, H, W\]"):
        model(frames[..., :4], actions)
    with pytest.raises(ValueError, match="actions must be"):
        model(frames, actions[:, :2])
    with pytest.raises(TypeError, match="integer"):
        model(frames.float(), actions)
    with pytest.raises(ValueError, match="frame tokens must lie in"):
        model(frames + c.vocab_size, actions)
    with pytest.raises(ValueError, match="actions must lie in"):
        model(frames, actions - 1)
    state = model.initial_state(3)
    with pytest.raises(ValueError, match="state holds 3 envs"):
        model.step(state, frames[:, 0], actions[:, 0])
    with pytest.raises(ValueError, match=r"frames must be \[B, H, W\]"):
        model.step(model.initial_state(2), frames, actions)
    with pytest.raises(ValueError, match="resets must be a bool tensor"):
        model(frames, actions, resets=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="reset mask"):
        state.reset(torch.tensor([True]))


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="block_sizes"):
        tiny_config(block_sizes=[(5, 6)])
    with pytest.raises(ValueError, match="must fit inside the frame"):
        tiny_config(block_sizes=[(6, 6)] * 3)
    with pytest.raises(ValueError, match="divisible by headdim"):
        tiny_config(headdim=24)


def test_training_reduces_the_loss():
    torch.manual_seed(0)
    model = WorldModel(tiny_config(n_layers=2, block_sizes=None))
    frames, actions = random_episode(model.config, 4, 12, seed=7)
    # A learnable rule: the next frame is the current one shifted by the action.
    nxt = torch.stack([torch.roll(frames[:, t], int(a), dims=-1) for t, a in enumerate(actions[0])], 1)
    actions = actions[:1].expand(4, -1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        logits = model(frames, actions).frame_logits
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, -2), nxt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = randomized(WorldModel(tiny_config())).train()
    frames, actions = random_episode(model.config, 2, 9, seed=10)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.activation_checkpointing = flag
        out = model(frames, actions)
        (out.frame_logits.square().mean() + out.reward.square().mean() + out.done_logits.mean()).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("d_conv", 1, "d_conv must be >= 2, got 1"),
    ("attn_window", -1, "attn_window must be >= 0, got -1"),
])
def test_config_refuses_values_the_model_cannot_run(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


@pytest.mark.parametrize("path", ["step", "forward"])
def test_a_reset_leaves_nothing_of_the_old_episode_not_even_nan(model, path):
    """A reset writes only the frame counter and ring slots; whatever the finished episode left in
    the rest of the state (here NaN everywhere) must not reach the new one."""
    frames, actions = random_episode(model.config, 2, 4, seed=3)
    clean = model.initial_state(2)
    poisoned = model.initial_state(2)
    with torch.no_grad():
        for t in poisoned.layers[0].tensors() + poisoned.layers[-1].tensors():
            t.fill_(float("nan"))
    poisoned.frame.fill_(7)
    poisoned.reset()
    if path == "step":
        want = torch.stack([o.frame_logits for o in step_through(model, clean, frames, actions)[0]], 1)
        got = torch.stack([o.frame_logits for o in step_through(model, poisoned, frames, actions)[0]], 1)
    else:
        with torch.no_grad():
            want = model(frames, actions, state=clean).frame_logits
            got = model(frames, actions, state=poisoned).frame_logits
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want)


def test_a_compiled_step_is_one_graph_and_matches_the_eager_step(model):
    """torch.compile traces step() whole (no graph breaks, e.g. from comparing data pointers), and the
    compiled step, state written in place, equals the eager one."""
    frames, actions = random_episode(model.config, 3, 6, seed=4)
    with torch.no_grad():
        explain = torch._dynamo.explain(model.step)(model.initial_state(3), frames[:, 0], actions[:, 0])
        assert (explain.graph_count, explain.graph_break_count) == (1, 0), explain.break_reasons
        # aot_eager: dynamo's graph and its functionalised in-place writes, without waiting on C++ codegen
        compiled = torch.compile(model.step, fullgraph=True, dynamic=False, backend="aot_eager")
        eager_state, compiled_state = model.initial_state(3), model.initial_state(3)
        for t in range(6):
            want, _ = model.step(eager_state, frames[:, t], actions[:, t])
            got, _ = compiled(compiled_state, frames[:, t], actions[:, t])
            torch.testing.assert_close(got.frame_logits, want.frame_logits, atol=1e-4, rtol=1e-4)
    assert_layer_states_close(compiled_state, eager_state)
