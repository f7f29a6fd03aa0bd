"""The trainer: learning on real MiniGrid data, exact resume, episode boundaries inside windows,
truncated backprop, the curriculum, the auxiliary loss, evaluation metrics, the command line and
its errors. Tiny models and a few steps each, so the file runs in well under a minute on 2 cores."""

import argparse
import json
import os
import signal

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import randomized
from envs.minigrid import MiniGridCodec
from train.config import Curriculum, TrainConfig, TrainError, lr_at, parse_curriculum
from train.evaluation import GAP_BUCKETS, gap_bucket, rollout_metrics, teacher_forced_metrics
from train.losses import aux_valid
from train.modules import parameter_groups
from train.run_folder import latest_checkpoint, list_checkpoints
from train.train_cli import add_train_parser
from train.trainer import Trainer
from train.training_data import TrainingData
from train.windows import WindowSampler, gather_windows
from worldsim import WorldModel
from worldsim.data.stream import stream_from_episodes
from worldsim.stop_signals import StopSignals, TrainingStopped

torch.set_num_threads(1)

TINY = dict(d_model=32, n_layers=1, d_state=8, headdim=16, n_heads=2, attn_window=3, chunk_size=16, backend="torch")
QUIET = dict(progress=False, tensorboard=False, eval_every=0, eval_at_end=False, log_every=1)


# ---- data --------------------------------------------------------------------------------------

def minigrid_episodes(count: int, seed: int, max_steps: int = 40):
    """Random-policy MiniGrid-Empty-8x8 episodes encoded with the exact codec, with the gap of every
    cell: frames since the world cell it shows was last inside the agent's view (-1: never)."""
    env = gym.make("MiniGrid-Empty-8x8-v0", max_steps=max_steps)
    codec = MiniGridCodec.for_env(env)
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(count):
        obs, _ = env.reset(seed=seed + i)
        last_seen: dict = {}

        def gap_now(p):
            g = np.full(codec.frame_shape, -1, np.int32)
            for x in range(u.width):
                for y in range(u.height):
                    vx, vy = u.get_view_coords(x, y)
                    if 0 <= vx < u.agent_view_size and 0 <= vy < u.agent_view_size:
                        if (x, y) in last_seen:
                            g[vy, vx] = p - last_seen[(x, y)]
                        last_seen[(x, y)] = p
            return g

        frames, gaps, actions, rewards, terminated = [codec.encode(obs).numpy()], [gap_now(0)], [], [], []
        done = False
        while not done:
            a = int(rng.integers(3))  # left, right, forward: the moves that change the view
            obs, r, term, trunc, _ = env.step(a)
            frames.append(codec.encode(obs).numpy())
            gaps.append(gap_now(len(frames) - 1))
            actions.append(a)
            rewards.append(r)
            terminated.append(term)
            done = term or trunc
        episodes.append(dict(frames=np.stack(frames).astype(np.uint8), actions=np.array(actions),
                             rewards=np.array(rewards, np.float32), terminated=np.array(terminated),
                             gap=np.stack(gaps)))
    env.close()
    return codec, episodes


@pytest.fixture(scope="module")
def minigrid():
    codec, episodes = minigrid_episodes(16, seed=0)
    return TrainingData(train=stream_from_episodes(episodes[:12]), eval=stream_from_episodes(episodes[12:]),
                        vocab_size=codec.vocab_size, num_actions=7, env_id="MiniGrid-Empty-8x8-v0")


def synthetic_data(lengths=(3, 6, 2, 9, 4, 7, 5, 8), vocab=11, shape=(3, 4), actions=3, seed=0):
    """Short random episodes of random tokens: many episode boundaries in a short stream."""
    rng = np.random.default_rng(seed)
    episodes = [dict(frames=rng.integers(vocab, size=(t + 1, *shape)), actions=rng.integers(actions, size=t),
                     rewards=rng.normal(size=t).astype(np.float32), terminated=np.arange(t) == t - 1)
                for t in lengths]
    stream = stream_from_episodes(episodes)
    return TrainingData(train=stream, eval=stream, vocab_size=vocab, num_actions=actions)


def config(**overrides) -> TrainConfig:
    base = dict(steps=8, lr=3e-3, warmup_steps=2, batch_size=4, curriculum=[[0, 8]], model=TINY, **QUIET)
    base.update(overrides)
    return TrainConfig(**base)


# ---- learning --------------------------------------------------------------------------------

def test_learns_minigrid_and_beats_the_copy_baseline(minigrid):
    cfg = config(steps=60, warmup_steps=5, batch_size=8, curriculum=[[0, 16], [30, 32]], weight_decay=0.01,
                 log_every=5, eval_at_end=True, eval_windows=8, eval_length=32,
                 rollout_episodes=4, rollout_context=8, rollout_horizon=12)
    trainer = Trainer(cfg, minigrid)
    last = trainer.fit()
    train_losses = [h["train/frame_loss"] for h in trainer.history if "train/frame_loss" in h]
    assert train_losses[-1] < 0.2 * train_losses[0]
    assert last["eval/acc"] > last["eval/copy_acc"] + 0.02
    assert 0 <= last["rollout/acc"] <= 1 and last["rollout/episodes"] == 4
    assert any(k.startswith("rollout/acc_gap_") for k in last)
    # the curriculum's batch shrinks as windows grow (tokens per step constant)
    assert [h["train/seq_len"] for h in trainer.history if "train/seq_len" in h][-1] == 32
    assert trainer.history[-2]["train/batch_size"] == 4


# ---- resume ----------------------------------------------------------------------------------

# Training against its own errors draws random corruption and self-forced samples: resume must
# draw them again exactly.
OWN_ERRORS = dict(input_noise=0.3, self_forcing=0.5, self_forcing_ramp=4, attention_frame_dropout=0.3,
                  model={**TINY, "noise_conditioning": True})


@pytest.mark.parametrize("switches", [{}, OWN_ERRORS], ids=["plain", "own_errors"])
def test_resume_continues_exactly(tmp_path, switches):
    data = synthetic_data()
    cfg = config(steps=8, save_every=4, keep_last=2, curriculum=[[0, 6], [4, 8]], tbptt_chunk=4,
                 aux_loss_weight=0.5, aux_delay_max=3, **switches)
    straight = Trainer(cfg, data, out=tmp_path / "straight")
    straight.fit()
    first = Trainer(cfg, data, out=tmp_path / "split")
    first.fit(until=4)
    assert first.step == 4 and latest_checkpoint(tmp_path / "split").name == "checkpoint-00000004"
    assert not (tmp_path / "split" / "model").exists()  # not finished: no final model yet
    del first
    torch.manual_seed(123)  # a fresh process: global RNGs anywhere
    np.random.seed(123)
    resumed = Trainer.resume(tmp_path / "split", data=data)
    assert resumed.step == 4
    resumed.fit()

    def losses(run):
        lines = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(ln["step"], ln["train/loss"], ln["train/aux_loss"], ln["train/seq_len"]) for ln in lines]

    a, b = losses("straight"), losses("split")
    assert [s for s, *_ in a] == list(range(1, 9)) and [s for s, *_ in b] == list(range(1, 9))
    np.testing.assert_allclose(np.array(b)[:, 1:], np.array(a)[:, 1:], rtol=1e-6, atol=1e-7)
    assert [x[3] for x in a] == [6, 6, 6, 6, 8, 8, 8, 8]
    for name in ("model/model.safetensors", "checkpoints/checkpoint-00000008/trainer.safetensors"):
        wa, wb = load_file(tmp_path / "straight" / name), load_file(tmp_path / "split" / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            if k.startswith("rng."):
                continue
            torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-7)
    assert any(k.startswith("aux_head.") for k in wa)
    assert [p.name for p in list_checkpoints(tmp_path / "split")] == ["checkpoint-00000004", "checkpoint-00000008"]
    model = WorldModel.from_pretrained(tmp_path / "split" / "model")
    assert model.config.vocab_size == 11


def _signal_self_after_step(monkeypatch, at_step: int, number=signal.SIGTERM):
    """Make Trainer.train_step send `number` to this process once step `at_step` is done, as `timeout`
    or a cluster's scheduler would while that step runs."""
    original = Trainer.train_step

    def step_then_signal(self, win):
        stats = original(self, win)
        if self.step == at_step:
            os.kill(os.getpid(), number)
        return stats

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)


def test_a_stop_signal_saves_a_checkpoint_and_the_resumed_run_matches_one_never_stopped(tmp_path, monkeypatch):
    data = synthetic_data()
    cfg = config(steps=6, save_every=4)              # the signal comes between checkpoints
    straight = Trainer(cfg, data, out=tmp_path / "straight")
    straight.fit()
    handler_before = signal.getsignal(signal.SIGTERM)
    stopped = Trainer(cfg, data, out=tmp_path / "split")
    _signal_self_after_step(monkeypatch, 3)
    with pytest.raises(TrainingStopped, match="stopped by SIGTERM at step 3") as caught:
        stopped.fit()
    assert caught.value.step == 3 and caught.value.exit_code == 143
    assert caught.value.checkpoint == tmp_path / "split" / "checkpoints" / "checkpoint-00000003"
    assert not (tmp_path / "split" / "model").exists()
    assert signal.getsignal(signal.SIGTERM) == handler_before      # the process's own handler is back
    monkeypatch.undo()
    resumed = Trainer.resume(tmp_path / "split", data=data)
    assert resumed.step == 3
    resumed.fit()
    wa = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    wb = load_file(tmp_path / "split" / "model" / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-6, atol=1e-7)


def test_a_second_ctrl_c_interrupts_at_once(ctrl_c_delivered):
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_signal_the_process_ignores_stays_ignored():
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested is None
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_metrics_logged_after_the_last_checkpoint_are_dropped_on_resume(tmp_path):
    data = synthetic_data()
    run = tmp_path / "run"
    Trainer(config(steps=6, save_every=2), data, out=run).fit(until=2)
    with open(run / "metrics.jsonl", "a") as f:  # as if a crashed run had logged step 3
        f.write(json.dumps({"step": 3, "train/loss": 99.0}) + "\n")
    Trainer.resume(run, data=data).fit(until=4)
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert all(json.loads(ln)["train/loss"] != 99.0 for ln in (run / "metrics.jsonl").read_text().splitlines())


def test_a_runs_startup_and_evaluation_times_are_logged(tmp_path):
    """The first record after a trainer is set up says how long the setup and the first step took (on a
    GPU: kernel compiling and tuning); every evaluation record says how long it took."""
    data = synthetic_data()
    run = tmp_path / "run"
    Trainer(config(steps=6, save_every=2, eval_every=2, eval_windows=2, eval_length=4), data, out=run).fit(until=2)
    Trainer.resume(run, data=data).fit(until=4)
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    startup = [r["step"] for r in records if "time/setup_seconds" in r]
    assert startup == [1, 3]                                 # the first record of each process's run
    for r in records:
        if "time/setup_seconds" in r:
            assert 0 < r["time/first_step_seconds"] and 0 < r["time/setup_seconds"]
        assert ("time/first_step_seconds" in r) == ("time/setup_seconds" in r)
        assert ("time/eval_seconds" in r) == ("eval/acc" in r)
    assert [r["step"] for r in records if "time/eval_seconds" in r] == [2, 4]
    assert all(r["time/eval_seconds"] > 0 for r in records if "time/eval_seconds" in r)


# ---- windows and episode boundaries ------------------------------------------------------------

def test_windows_cross_episodes_with_resets_and_masked_targets():
    data = synthetic_data()
    s = data.train
    win = gather_windows(s, [0, 2, 5], 9)
    for row, start in enumerate([0, 2, 5]):
        idx = np.arange(start, start + 9)
        assert torch.equal(win.resets[row], torch.from_numpy(s.episode_start[idx]))
        assert torch.equal(win.has_target[row], torch.from_numpy(s.has_target[idx]))
        assert torch.equal(win.targets[row], torch.from_numpy(s.frames[idx + 1]).long())
    # the first episode has 3 steps: frame 3 is its last, frame 4 starts the next
    assert not win.has_target[0, 3] and win.resets[0, 4]
    assert win.segment[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    sampler = WindowSampler(s, seed=0)
    w = sampler.sample(16, 12)
    assert w.frames.shape == (16, 12, 3, 4) and w.resets.any() and (~w.has_target).any()


def test_loss_never_predicts_across_an_episode_boundary_and_resets_reach_the_model():
    data = synthetic_data()
    trainer = Trainer(config(tbptt_chunk=4), data)
    randomized(trainer.model)
    win = gather_windows(data.train, [0, 1, 4], 10)
    seen = []
    forward = trainer.model.forward

    def spy(frames, actions, state=None, return_state=False, resets=None, noise_level=None):
        seen.append(resets.clone())
        return forward(frames, actions, state=state, return_state=return_state, resets=resets,
                       noise_level=noise_level)

    trainer.model.forward = spy
    trainer.optimizer.zero_grad()
    base = trainer.compute_gradients(win)
    grads = [p.grad.clone() for p in trainer.params]
    assert torch.equal(torch.cat(seen, 1), win.resets)  # every chunk got its slice of the resets
    # scramble everything that sits behind a masked position: the loss and gradients do not move
    masked = ~win.has_target
    assert masked.any()
    win.targets[masked] = (win.targets[masked] + 1) % data.vocab_size
    win.rewards[masked] += 100.0
    win.terminated[masked] = ~win.terminated[masked]
    trainer.optimizer.zero_grad()
    again = trainer.compute_gradients(win)
    assert again["loss"] == base["loss"]
    for g, p in zip(grads, trainer.params):
        torch.testing.assert_close(p.grad, g)


# ---- truncated backprop ----------------------------------------------------------------------

def _grads(trainer, win):
    trainer.optimizer.zero_grad(set_to_none=True)
    stats = trainer.compute_gradients(win)
    return stats, [p.grad.clone() for p in trainer.params]


def test_tbptt_matches_one_pass_when_the_window_fits_and_detaches_between_chunks():
    data = synthetic_data()
    win = gather_windows(data.train, [0, 3, 10], 12)
    results = {}
    for chunk in (0, 12, 16, 5):
        trainer = Trainer(config(tbptt_chunk=chunk, reward_loss_weight=0.5), data)
        trainer.model.load_state_dict(randomized(WorldModel(trainer.model.config)).state_dict())
        results[chunk] = _grads(trainer, win)
    one_pass = results[0]
    for chunk in (12, 16):  # a window that fits in one chunk: the same computation
        assert results[chunk][0]["loss"] == pytest.approx(one_pass[0]["loss"], rel=1e-6)
        for g, ref in zip(results[chunk][1], one_pass[1]):
            torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6)
    # chunks of 5: the carried state makes the forward (the loss) the same as one pass...
    assert results[5][0]["loss"] == pytest.approx(one_pass[0]["loss"], rel=1e-5)
    # ...and the gradients are those of the loss with the state detached between chunks
    model = trainer.model
    model.zero_grad(set_to_none=True)
    w = win.has_target.float()
    state = None
    for a in range(0, 12, 5):
        sl = slice(a, min(a + 5, 12))
        out = model(win.frames[:, sl], win.actions[:, sl], state=state, return_state=True, resets=win.resets[:, sl])
        ce = F.cross_entropy(out.frame_logits.flatten(0, -2), win.targets[:, sl].flatten(), reduction="none")
        frame = (ce.view(win.targets[:, sl].shape).mean((2, 3)) * w[:, sl]).sum() / w.sum()
        paying = torch.where(win.rewards[:, sl] != 0, trainer.done_pos_weight, 1.0)
        reward = ((out.reward - win.rewards[:, sl]).square() * paying * w[:, sl]).sum() / w.sum()
        done = (F.binary_cross_entropy_with_logits(out.done_logits, win.terminated[:, sl].float(), reduction="none",
                                                   pos_weight=torch.tensor(trainer.done_pos_weight))
                * w[:, sl]).sum() / w.sum()
        (frame + 0.5 * reward + done).backward()
        state = out.state.detach()
    for g, p in zip(results[5][1], trainer.params):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)
    differs = any(not torch.allclose(g, ref, rtol=1e-4, atol=1e-6) for g, ref in zip(results[5][1], one_pass[1]))
    assert differs  # truncation really cuts the gradient path


def test_activation_checkpointing_gives_the_same_gradients():
    data = synthetic_data()
    win = gather_windows(data.train, [0, 3], 8)
    out = []
    for ckpt in (False, True):
        trainer = Trainer(config(activation_checkpointing=ckpt, tbptt_chunk=4), data)
        trainer.model.load_state_dict(randomized(WorldModel(trainer.model.config)).state_dict())
        assert trainer.model.activation_checkpointing == ckpt
        out.append(_grads(trainer, win))
    assert out[0][0]["loss"] == pytest.approx(out[1][0]["loss"], rel=1e-6)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_long_context_weights_the_later_frames():
    data = synthetic_data()
    win = gather_windows(data.train, [0, 3], 10)
    trainer = Trainer(config(context_fraction=0.5, prefix_loss_weight=0.0), data)
    randomized(trainer.model)
    trainer.compute_gradients(win)
    g_ctx = [p.grad.clone() for p in trainer.params]
    # context frames with weight 0: changing their targets changes nothing
    win.targets[:, :5] = (win.targets[:, :5] + 1) % data.vocab_size
    trainer.optimizer.zero_grad()
    trainer.compute_gradients(win)
    for a, p in zip(g_ctx, trainer.params):
        torch.testing.assert_close(p.grad, a)


# ---- schedules and optimizer -------------------------------------------------------------------

def test_attention_frame_dropout_reaches_the_model_and_not_a_causal_baseline():
    assert Trainer(config(attention_frame_dropout=0.25), synthetic_data()).model.attention_frame_dropout == 0.25
    with pytest.raises(TrainError, match="attention_frame_dropout 0.25 applies to the frame-local attention window"):
        Trainer(config(attention_frame_dropout=0.25, model={**TINY, "attn_window": 100}), synthetic_data())


def test_curriculum_picks_the_stage_of_each_step():
    c = Curriculum([[0, 32], [100, 128], [200, 512], [300, 2048]], batch_size=64)
    assert [c.at(s) for s in (0, 99, 100, 199, 200, 299, 300, 10**6)] == [
        (32, 64), (32, 64), (128, 16), (128, 16), (512, 4), (512, 4), (2048, 1), (2048, 1)]
    fixed = Curriculum([[0, 32], [10, 64, 3]], batch_size=8, scaling="fixed")
    assert fixed.at(5) == (32, 8) and fixed.at(10) == (64, 3)
    assert Curriculum([[0, 8], [5, 512]], batch_size=4, min_batch_size=2).at(5) == (512, 2)
    assert parse_curriculum("32") == [[0, 32]]
    assert parse_curriculum("0:32,2000:128:8") == [[0, 32], [2000, 128, 8]]
    assert parse_curriculum("[[0, 16]]") == [[0, 16]]
    for bad in ([], [[5, 32]], [[0, 32], [0, 64]], [[0, 0]], [[0, "32"]]):
        with pytest.raises(TrainError):
            Curriculum(bad, batch_size=4)


def test_warmup_then_cosine_and_no_decay_on_norms_biases_embeddings():
    cfg = config(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(55, cfg) == pytest.approx(0.55)
    model = WorldModel(Trainer(config(), synthetic_data()).model.config)
    decay, no_decay = parameter_groups([model], 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "layers.0.mlp.0.weight" in decayed and "frame_head.weight" in decayed
    assert not any(k in n for n in decayed for k in ("embed", "bias", "norm", "A_log", "dt_bias"))
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1


# ---- auxiliary loss ----------------------------------------------------------------------------

def test_aux_valid_only_within_an_episode():
    resets = torch.tensor([[True, False, False, True, False, False]])
    assert aux_valid(resets, 2).tolist() == [[False, False, True, False, False, True]]
    assert aux_valid(resets, 9).tolist() == [[False] * 6]


@pytest.mark.parametrize("mode", ["cell", "pooled"])
def test_aux_loss_on_and_off(mode):
    data = synthetic_data()
    win = gather_windows(data.train, [0, 3], 10)
    off = Trainer(config(), data)
    assert off.aux_head is None and "aux_loss" not in off.compute_gradients(win)
    on = Trainer(config(aux_loss_weight=1.0, aux_mode=mode, aux_delay_min=2, aux_delay_max=2), data)
    stats = on.compute_gradients(win)
    assert stats["aux_delay"] == 2 and stats["aux_loss"] > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in on.aux_head.mlp.parameters())
    assert stats["loss"] == pytest.approx(stats["frame_loss"] + stats["reward_loss"] + stats["done_loss"]
                                          + stats["aux_loss"], rel=1e-5)
    before = [p.clone() for p in on.aux_head.parameters()]
    on.train_step(win)
    assert any(not torch.equal(a, b) for a, b in zip(before, on.aux_head.parameters()))


# ---- evaluation metrics ------------------------------------------------------------------------

def test_gap_buckets():
    gap = torch.tensor([-1, 0, 1, 2, 4, 5, 16, 17, 64, 65, 256, 257, 1024, 1025, 4096, 4097, 10**6])
    assert [GAP_BUCKETS[i] for i in gap_bucket(gap)] == [
        "never", "1", "1", "2-4", "2-4", "5-16", "5-16", "17-64", "17-64", "65-256", "65-256", "257-1024",
        "257-1024", "1025-4096", "1025-4096", "4097+", "4097+"]


class CopyModel(WorldModel):
    """Predicts that the next frame equals its input frame."""

    def forward(self, frames, actions, state=None, return_state=False, resets=None, noise_level=None):
        out = super().forward(frames, actions, state, return_state, resets)
        out.frame_logits = F.one_hot(frames, self.config.vocab_size).float()
        return out


def test_eval_metrics_and_baselines_are_computed_on_held_out_targets(minigrid):
    model = WorldModel(Trainer(config(), minigrid).model.config)
    stream = minigrid.eval
    tf = teacher_forced_metrics(model, stream, length=20, count=6, batch_size=4)
    # the copy baseline by hand, over the same windows
    from train.windows import evenly_spaced_starts
    hits = total = 0
    for s in evenly_spaced_starts(len(stream.frames), 20, 6):
        for p in range(s, s + 20):
            if stream.has_target[p]:
                hits += (stream.frames[p] == stream.frames[p + 1]).sum()
                total += stream.frames[p].size
    assert tf["copy_acc"] == pytest.approx(hits / total)
    assert 0 <= tf["acc_remembered"] <= 1 and 0 <= tf["exact_frame"] <= 1 and "reward_mae" in tf
    # Corrupted inputs: a model that copies its input frame (the copy baseline) loses accuracy in
    # proportion to the corrupted cells.
    copier = CopyModel(model.config)
    clean = teacher_forced_metrics(copier, stream, length=20, count=6, batch_size=4)
    assert clean["acc"] == pytest.approx(clean["copy_acc"]) and clean["acc_corrupted"] < clean["acc"]
    assert clean["acc"] - clean["acc_corrupted"] == pytest.approx(0.01 * clean["acc"], abs=0.006)
    ro = rollout_metrics(model, stream, context=4, horizon=6, count=3, batch_size=2)
    counted = sum(v for k, v in ro.items() if k.startswith("acc_gap_count_"))
    starts = np.flatnonzero(stream.episode_start)
    lengths = np.diff(np.append(starts, len(stream.frames)))[:3]
    assert counted == sum(min(6, n - 4) for n in lengths) * 49
    sampled = [rollout_metrics(model, stream, context=4, horizon=6, count=3, batch_size=2, sampling="sample", seed=1)
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # seeded: every evaluation draws the same samples


# ---- command line and errors -------------------------------------------------------------------

def _cli(argv):
    parser = argparse.ArgumentParser(prog="worldsim")
    add_train_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def test_command_line_trains_and_resumes_on_a_collected_dataset(tmp_path, capsys):
    from train.collect import collect

    collect("MiniGrid-Empty-8x8-v0", episodes=10, out=tmp_path / "data", max_steps=30, num_envs=2, progress=False)
    common = ["--num-threads", "1", "--progress", "false", "--eval-every", "2", "--eval-windows", "2",
              "--eval-length", "8", "--rollout-episodes", "2", "--rollout-context", "4", "--rollout-horizon", "4"]
    tiny = [f"--model.{k}={v}" for k, v in TINY.items()]
    run = tmp_path / "run"
    assert _cli(["train", "--data", str(tmp_path / "data"), "--out", str(run), "--steps", "4", "--until", "2",
                 "--batch-size", "2", "--curriculum", "0:6,2:8", "--lr", "1e-3", "--save-every", "2",
                 "--tbptt-chunk", "4", *tiny, *common]) == 0
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["train"]["lr"] == 1e-3 and saved["model"]["d_model"] == 32
    assert saved["model"]["metadata"]["env_id"] == "MiniGrid-Empty-8x8-v0"
    assert saved["model"]["metadata"]["rewards_only_on_termination"] is True   # MiniGrid pays at the goal only
    capsys.readouterr()
    assert _cli(["train", "--resume", str(run), *common]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]      # the held-out metrics of the last evaluation
    assert summary.startswith("trained to step 4; held-out: next-frame accuracy 0.")
    assert summary.endswith(f"model in {run / 'model'}")
    for words in ("copying the previous frame", "exact-frame rate", "reward mean absolute error",
                  "open-loop rollout accuracy"):
        assert words in summary
    assert _cli(["train", "--resume", str(run), *common]) == 0      # already done: the metrics from metrics.jsonl
    assert capsys.readouterr().out.strip().splitlines()[-1] == summary
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if "train/loss" in ln] == [2, 4]
    assert any("rollout/acc" in ln for ln in lines) and any("eval/copy_acc" in ln for ln in lines)
    assert any((run / "tb").iterdir())
    assert WorldModel.from_pretrained(run / "model").config.num_actions == 7
    # a config file, overridden on the command line
    (tmp_path / "cfg.json").write_text(json.dumps({"steps": 1, "model": TINY, "curriculum": [[0, 4]]}))
    assert _cli(["train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run2"), "--config",
                 str(tmp_path / "cfg.json"), "--batch-size", "1", *common]) == 0
    assert json.loads((tmp_path / "run2" / "train_config.json").read_text())["train"]["batch_size"] == 1


def test_command_line_stopped_by_ctrl_c_says_how_to_continue(tmp_path, capsys, monkeypatch, ctrl_c_delivered):
    _signal_self_after_step(monkeypatch, 2, signal.SIGINT)
    run = tmp_path / "run"
    tiny = [f"--model.{k}={v}" for k, v in TINY.items()]
    data = tmp_path / "data"
    from train.collect import collect
    collect("MiniGrid-Empty-8x8-v0", episodes=4, out=data, max_steps=20, num_envs=2, progress=False)
    code = _cli(["train", "--data", str(data), "--out", str(run), "--steps", "5", "--batch-size", "2",
                 "--curriculum", "0:6", "--num-threads", "1", "--progress", "false", "--eval-every", "0",
                 "--rollout-episodes", "0", *tiny])
    err = capsys.readouterr().err
    assert code == 130, err
    assert (f"world model's training stopped by SIGINT at step 2; saved in "
            f"{run / 'checkpoints' / 'checkpoint-00000002'}") in err
    assert err.strip().endswith(f"continue with --resume {run}")
    monkeypatch.undo()
    assert _cli(["train", "--resume", str(run), "--num-threads", "1"]) == 0
    assert (run / "model").is_dir()


def test_files_and_folders_follow_the_umask(tmp_path):
    """A dataset, a run's checkpoints, final model and JSON files get what a plain open() / mkdir()
    would give under the umask (022: files 0644, folders 0755), not tempfile's private 0600 / 0700."""
    import os
    import stat

    from train.collect import collect

    old = os.umask(0o022)
    try:
        collect("MiniGrid-Empty-5x5-v0", episodes=2, out=tmp_path / "data", max_steps=5, num_envs=1, progress=False)
        Trainer(config(steps=2, save_every=1), synthetic_data(), out=tmp_path / "run").fit()
    finally:
        os.umask(old)
    paths = [tmp_path / "data", tmp_path / "run", *tmp_path.rglob("*")]
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    assert {"data/manifest.json", "data/shard-00000.npz", "run/train_config.json", "run/latest",
            "run/model/model.safetensors", "run/checkpoints/checkpoint-00000002/trainer_state.json"} <= names
    wrong = {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if stat.S_IMODE(p.stat().st_mode) != (0o755 if p.is_dir() else 0o644)}
    assert not wrong


def test_bad_input_gets_clear_errors(tmp_path, capsys):
    data = synthetic_data()
    with pytest.raises(TrainError, match="does not exist"):
        Trainer(config(), str(tmp_path / "nowhere"))
    assert _cli(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert "nowhere" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainError, match="manifest"):
        Trainer(config(), str(tmp_path / "empty"))
    with pytest.raises(SystemExit):
        _cli(["train", "--data", "x", "--out", "y", "--model.d_modle", "3"])
    with pytest.raises(TrainError, match="did you mean batch_size"):
        config().replace(batch_sise=3)
    with pytest.raises(TrainError, match="model.d_modle"):
        config(model={"d_modle": 3})
    with pytest.raises(TrainError, match="comes from the dataset"):
        config(model={"vocab_size": 3})
    with pytest.raises(TrainError, match="curriculum asks for windows of 4096"):
        Trainer(config(curriculum=[[0, 4096]]), data)
    run = tmp_path / "run"
    Trainer(config(steps=2), data, out=run).fit()
    with pytest.raises(TrainError, match="--resume"):
        Trainer(config(steps=2), data, out=run)
    other = synthetic_data(vocab=13)
    with pytest.raises(TrainError, match="vocab_size: data 13, model 11"):
        Trainer.resume(run, data=other)
    with pytest.raises(TrainError, match="cannot change the model"):
        Trainer.resume(run, data=data, **{"model.d_model": 64})
    with pytest.raises(TrainError, match="has no train_config.json"):
        Trainer.resume(tmp_path / "empty", data=data)
    with pytest.raises(TrainError, match="does not exist"):
        Trainer.resume(tmp_path / "nowhere", data=data)
    bad_tokens = synthetic_data()
    bad_tokens.vocab_size = 5
    with pytest.raises(TrainError, match="tokens in"):
        Trainer(config(), bad_tokens)


def test_termination_loss_is_balanced_by_the_data():
    from train.training_data import auto_done_pos_weight

    terminated = np.zeros(1000, dtype=bool)
    terminated[[99, 499]] = True
    assert auto_done_pos_weight(terminated) == 100.0          # 998 / 2, capped
    terminated = np.zeros(1000, dtype=bool)
    terminated[::10] = True
    assert auto_done_pos_weight(terminated) == pytest.approx(900 / 100)
    assert auto_done_pos_weight(np.zeros(5, dtype=bool)) == 1.0
    data = synthetic_data()
    assert Trainer(config(done_pos_weight=3.0), data).done_pos_weight == 3.0
    assert Trainer(config(), data).done_pos_weight == auto_done_pos_weight(data.train.terminated)


def sparse_event_data(frames=4000, events=(1234, 3001)):
    """One long episode of random tokens, whose only paying, terminating steps are `events` (episodes end there)."""
    rng = np.random.default_rng(0)
    bounds = [0, *[e + 1 for e in events], frames - 1]
    episodes = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        t = b - a
        episodes.append(dict(frames=rng.integers(5, size=(t + 1, 2, 2)), actions=rng.integers(3, size=t),
                             rewards=(np.arange(t) == t - 1).astype(np.float32) if b - 1 in events else np.zeros(t),
                             terminated=(np.arange(t) == t - 1) & (b - 1 in events)))
    return stream_from_episodes(episodes)


def test_event_windows_hold_the_rare_paying_steps_and_the_done_weight_allows_for_them():
    stream = sparse_event_data()
    events = np.flatnonzero(stream.terminated)
    assert len(events) == 2 and np.array_equal(events, np.flatnonzero(stream.rewards))
    length, batch, draws = 16, 64, 200

    def windows_with_an_event(sampler):
        held = 0
        for _ in range(draws):
            win = sampler.sample(batch, length)
            held += int(win.terminated.any(dim=1).sum())
            assert win.frames.shape == (batch, length, 2, 2)
        return held / (batch * draws)

    uniform = windows_with_an_event(WindowSampler(stream, seed=3))
    boosted = windows_with_an_event(WindowSampler(stream, seed=3, event_share=0.25))
    assert uniform < 0.03                          # two 16-step reaches in ~4000 positions: under 1%
    assert 0.24 < boosted < 0.25 + 0.03            # every event window holds its event
    # without a share the draws are those of the uniform sampler (old runs replay exactly)
    a, b = WindowSampler(stream, seed=5), WindowSampler(stream, seed=5, event_share=0.0)
    assert np.array_equal(a.sample(8, length).starts, b.sample(8, length).starts)
    # the sampled share of terminating positions: the data's, raised as measured
    sampler = WindowSampler(stream, seed=7, event_share=0.25)
    measured = np.mean([sampler.sample(batch, length).terminated.float().mean().item() for _ in range(draws)])
    predicted = sampler.sampled_rate(stream.terminated, length)
    assert predicted == pytest.approx(measured, rel=0.1) and predicted > 10 * stream.terminated.mean()
    from train.training_data import auto_done_pos_weight
    assert auto_done_pos_weight(stream.terminated, sampled_rate=predicted) == pytest.approx((1 - predicted) / predicted)
    with pytest.raises(ValueError, match="event_share must be in"):
        WindowSampler(stream, event_share=1.0)
    with pytest.raises(TrainError, match="event_windows must be in"):
        config(event_windows=-0.1)
    data = TrainingData(train=stream, eval=stream, vocab_size=5, num_actions=3)
    uniform_weight = Trainer(config(), data).done_pos_weight
    event_weight = Trainer(config(event_windows=0.25), data).done_pos_weight
    at_length_8 = WindowSampler(stream, event_share=0.25).sampled_rate(stream.terminated, 8)   # config's windows
    assert uniform_weight == 100.0 and event_weight == pytest.approx((1 - at_length_8) / at_length_8)
    assert event_weight < 40


def test_termination_precision_recall_and_terminal_reward_error(minigrid):
    import dataclasses

    from train.windows import evenly_spaced_starts

    model = WorldModel(Trainer(config(), minigrid).model.config)
    positions = [p for s in evenly_spaced_starts(len(minigrid.eval.frames), 20, 6) for p in range(s, s + 20)
                 if minigrid.eval.has_target[p]]
    # Mark a few scored positions as paying terminations (the metrics read only these labels).
    terminal = positions[::7]
    terminated, rewards = minigrid.eval.terminated.copy(), minigrid.eval.rewards.copy()
    terminated[terminal], rewards[terminal] = True, 0.5
    stream = dataclasses.replace(minigrid.eval, terminated=terminated, rewards=rewards)
    with torch.no_grad():   # a model that always predicts termination, with reward 0
        model.step_head[2].weight.zero_()
        model.step_head[2].bias.copy_(torch.tensor([0.0, 20.0]))
    tf = teacher_forced_metrics(model, stream, length=20, count=6, batch_size=4)
    assert tf["done_precision"] == pytest.approx(len(terminal) / len(positions))
    assert tf["done_recall"] == 1.0
    assert tf["reward_mae_terminal"] == pytest.approx(0.5)


def test_self_forcing_decodes_a_world_view_by_argmax_as_its_dream_does(tmp_path):
    from train.collect import collect

    for view in ("world", "ego"):
        collect("MiniGrid-Empty-5x5-v0", episodes=2, out=tmp_path / view, max_steps=5, num_envs=1, progress=False,
                view=view)
    settings = dict(steps=1, batch_size=1, curriculum=[[0, 4]], self_forcing=0.5, model=TINY, num_threads=1, **QUIET)
    assert Trainer(TrainConfig(**settings), str(tmp_path / "world")).self_forcing_temperature == 0.0
    assert Trainer(TrainConfig(**settings), str(tmp_path / "ego")).self_forcing_temperature == 1.0
