"""Golden test of the shipped DoorKey-8x8 world model on real, held-out windows.

The windows (tests/fixtures/doorkey_windows.npz, made by tests/fixtures/make_doorkey_windows.py)
are real MiniGrid-DoorKey-8x8-v0 episodes of the scripted expert mixed with random actions, from
seeds the model never trained on, encoded by the project's collector. Each starts at an episode's
first frame; three reach the goal and go on into the next episode (a reset inside the window).

Alignment (worldsim/model.py, train/windows.py): the output at position t predicts frame t + 1 from
frames <= t and actions <= t, and the reward / termination of the step (frame t, action t). A
position whose next frame belongs to another episode (`has_target` False) has no target.

These tests tie the weights to their meaning: a model whose action conditioning, block layout,
rotary embedding or padding handling changed no longer predicts these frames.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from envs.minigrid.codec import UNSEEN_TOKEN
from worldsim import WorldModel
from worldsim.zoo import shipped_model

ENV_ID = "MiniGrid-DoorKey-8x8-v0"
FIXTURE = Path(__file__).parent / "fixtures" / "doorkey_windows.npz"

# Measured on the fixture when it was made (2025, shipped weights sha256 c111ea60...):
#   per-cell accuracy on the cells the model can know        0.9988 (16 errors in 13,260 cells)
#   per-cell accuracy on cells seen before (gap >= 0)        0.9985
#   per-cell accuracy on every cell                          0.9959 (56 errors; 40 of them are cells
#                                                              showing a world cell never seen before,
#                                                              mostly the first turn of an episode)
#   exact-frame rate                                          0.942
#   copy-the-previous-frame per-cell accuracy                 well below (the model must do better)
MIN_ACC_KNOWABLE = 0.997
MIN_ACC_REMEMBERED = 0.997
MIN_ACC_ALL = 0.99
MIN_EXACT_FRAME = 0.90


@pytest.fixture(scope="module")
def model():
    return WorldModel.from_pretrained(shipped_model(ENV_ID).path, device="cpu").eval()


@pytest.fixture(scope="module")
def windows():
    with np.load(FIXTURE, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    return {
        "frames": torch.from_numpy(arrays["frames"].astype(np.int64)),
        "actions": torch.from_numpy(arrays["actions"].astype(np.int64)),
        "rewards": torch.from_numpy(arrays["rewards"].astype(np.float32)),
        "terminated": torch.from_numpy(arrays["terminated"].astype(bool)),
        "has_target": torch.from_numpy(arrays["has_target"].astype(bool)),
        "resets": torch.from_numpy(arrays["resets"].astype(bool)),
        "gap": torch.from_numpy(arrays["gap"].astype(np.int64)),
    }


@pytest.fixture(scope="module")
def teacher_forced(model, windows):
    with torch.no_grad():
        return model(windows["frames"], windows["actions"], resets=windows["resets"])


def test_the_fixture_is_small_real_and_aligned(model, windows):
    assert FIXTURE.stat().st_size < 100_000
    frames, actions, resets = windows["frames"], windows["actions"], windows["resets"]
    n, t = actions.shape
    assert n >= 4 and t >= 32 and frames.shape == (n, t, *model.config.frame_shape)
    assert model.config.metadata["env_id"] == ENV_ID
    assert 0 <= int(frames.min()) and int(frames.max()) < model.config.vocab_size
    assert 0 <= int(actions.min()) and int(actions.max()) < model.config.num_actions
    assert resets[:, 0].all(), "every window starts at an episode's first frame"
    # The stream's conventions: a frame just before an episode start has no target, its action is 0.
    before_reset = torch.zeros_like(resets)
    before_reset[:, :-1] = resets[:, 1:]
    assert torch.equal(windows["has_target"][:, :-1], ~before_reset[:, :-1])
    assert (actions[before_reset] == 0).all()
    # Some windows reach the goal: the terminating step pays a reward, and then a new episode starts.
    term = windows["terminated"]
    assert int(term.sum()) >= 2
    assert (windows["rewards"][term] > 0).all() and (windows["rewards"][~term] == 0).all()
    rows, cols = term.nonzero(as_tuple=True)
    assert all(resets[r, c + 2] for r, c in zip(rows.tolist(), cols.tolist()) if c + 2 < t)


def test_teacher_forced_next_frame_accuracy(teacher_forced, windows):
    frames = windows["frames"]
    pred = teacher_forced.frame_logits.argmax(-1)[:, :-1]           # position t predicts frame t + 1
    target = frames[:, 1:]
    has_target = windows["has_target"][:, :-1]
    cells = has_target[:, :, None, None].expand_as(target)
    hits = pred == target
    gap = windows["gap"][:, 1:]                                      # the target frame's gap
    # A cell showing a world cell never visible before in the episode cannot be known from the past.
    knowable = cells & ~((gap < 0) & (target != UNSEEN_TOKEN))
    remembered = cells & (gap >= 0)
    acc_all = hits[cells].float().mean().item()
    acc_knowable = hits[knowable].float().mean().item()
    acc_remembered = hits[remembered].float().mean().item()
    exact = hits.flatten(2).all(-1)[has_target].float().mean().item()
    copy = (frames[:, :-1] == target)[cells].float().mean().item()
    report = (f"per-cell accuracy: knowable {acc_knowable:.4f} ({int(knowable.sum())} cells), remembered "
              f"{acc_remembered:.4f}, all {acc_all:.4f}; exact frames {exact:.3f}; copy baseline {copy:.4f}")
    print(report)
    assert acc_knowable >= MIN_ACC_KNOWABLE, report
    assert acc_remembered >= MIN_ACC_REMEMBERED, report
    assert acc_all >= MIN_ACC_ALL, report
    assert exact >= MIN_EXACT_FRAME, report
    assert acc_all > copy + 0.02, report


def test_reward_and_termination_at_the_goal(teacher_forced, windows):
    term, has_target = windows["terminated"], windows["has_target"]
    done = teacher_forced.done_logits
    reward = teacher_forced.reward
    assert int(term.sum()) >= 2
    # Termination: predicted exactly at the steps that reach the goal.
    assert (done[term] > 0).all(), f"termination logits at the goal: {done[term].tolist()}"
    assert (done[has_target & ~term] < 0).all(), f"max elsewhere: {done[has_target & ~term].max():.2f}"
    # Reward: 1 - 0.9 * steps / max_steps at the goal (the card's terminal MAE is 0.15), 0 elsewhere.
    true = windows["rewards"][term]
    assert (reward[term] - true).abs().max() < 0.15, f"predicted {reward[term].tolist()}, real {true.tolist()}"
    assert (reward[term] > 0.5).all()
    assert reward[has_target & ~term].abs().max() < 0.05


def test_step_by_step_agrees_with_forward(model, teacher_forced, windows):
    frames, actions, resets = windows["frames"], windows["actions"], windows["resets"]
    state = model.initial_state(frames.shape[0])
    with torch.no_grad():
        for t in range(frames.shape[1]):
            if t > 0 and resets[:, t].any():
                state.reset(resets[:, t])
            out, state = model.step(state, frames[:, t], actions[:, t])
            want = teacher_forced.frame_logits[:, t]
            assert torch.equal(out.frame_logits.argmax(-1), want.argmax(-1)), f"argmax tokens differ at t={t}"
            torch.testing.assert_close(out.frame_logits, want, atol=1e-3, rtol=1e-4,
                                       msg=lambda m: f"frame logits at t={t}: {m}")
            torch.testing.assert_close(out.reward, teacher_forced.reward[:, t], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.done_logits, teacher_forced.done_logits[:, t], atol=1e-3, rtol=1e-4)
