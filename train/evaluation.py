"""Evaluation metrics of a world model on held-out streams, and the `Meter` that sums them.

- `teacher_forced_metrics`: next-frame token accuracy (overall, remembered, new, by gap), exact
  frame match, the copy-previous-frame baseline beside each, reward MAE, termination accuracy,
  precision and recall.
- `recall_metrics`: the frames an open-loop rollout generates, predicted teacher-forced instead
  (what the model recalls, apart from what its own errors do to a rollout).
- `held_out_metrics`: the two that training logs (eval/* and rollout/*), as a TrainConfig sets them.
- `rollout_metrics`: open-loop rollouts: C real context frames, then G frames the model generates
  from its own samples with the real actions, scored against the real frames by the gap since
  each cell was last seen (buckets 1, 2-4, 5-16, 17-64, 65-256, 257-1024, 1025-4096, 4097+, never)
  and by horizon.

Every function that sums over batches uses a `Meter`: weighted sums kept on the device and turned
into floats once, at the end (the training losses' breakdown, `train.losses`, goes into one too).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from worldsim.data.stream import Stream
from worldsim.codecs import codec_for_model, default_temperature, one_agent_token_base
from worldsim.model import WorldModel
from worldsim.sampling import legal_logits, one_agent_logits, sample_frames

from .losses import prediction_losses
from .own_errors import corrupt_cells
from .windows import evenly_spaced_starts, gather_windows, model_actions, rollout_starts

if TYPE_CHECKING:
    from .config import TrainConfig

# Gap buckets (inclusive upper edges); a gap of 0 cannot occur (a cell is "seen before" in an
# earlier frame) and would count as 1. "never": gap == -1.
GAP_EDGES = (1, 4, 16, 64, 256, 1024, 4096)
GAP_BUCKETS = ("1", "2-4", "5-16", "17-64", "65-256", "257-1024", "1025-4096", "4097+", "never")


def gap_bucket(gap: torch.Tensor) -> torch.Tensor:
    """Index into GAP_BUCKETS for every gap value (same shape, int64)."""
    edges = torch.tensor(GAP_EDGES, device=gap.device, dtype=gap.dtype)
    idx = torch.bucketize(gap.clamp_min(0), edges)
    return torch.where(gap < 0, len(GAP_BUCKETS) - 1, idx)


class Meter:
    """Weighted means: add(name, weighted_sum, weight) any number of times, then compute()."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.weights: dict[str, torch.Tensor] = {}

    def add(self, name: str, total: torch.Tensor, weight: torch.Tensor | float) -> None:
        total = total.detach().double()
        weight = torch.as_tensor(weight, dtype=torch.float64, device=total.device).detach()
        if name in self.sums:
            self.sums[name] = self.sums[name] + total
            self.weights[name] = self.weights[name] + weight
        else:
            self.sums[name], self.weights[name] = total, weight

    def add_buckets(self, prefix: str, hits: torch.Tensor, weight: torch.Tensor, bucket: torch.Tensor,
                    names=GAP_BUCKETS) -> None:
        """Per-bucket means of `hits` (same shape as `bucket`), weighted by `weight`."""
        n = len(names)
        flat = bucket.flatten()
        w = weight.expand_as(hits).flatten().double()
        totals = torch.zeros(n, dtype=torch.float64, device=hits.device).index_add_(0, flat, hits.flatten().double() * w)
        counts = torch.zeros(n, dtype=torch.float64, device=hits.device).index_add_(0, flat, w)
        for i, name in enumerate(names):
            self.add(f"{prefix}_{name}", totals[i], counts[i])
            self.add(f"{prefix}_count_{name}", counts[i], 1.0)

    def compute(self) -> dict[str, float]:
        """Means (names ending in a `_count_...` part are totals); NaN-free: empty means are left out."""
        if not self.sums:
            return {}
        names = list(self.sums)
        sums = torch.stack([self.sums[k] for k in names]).cpu()
        weights = torch.stack([self.weights[k].to(self.sums[k].device) for k in names]).cpu()
        out = {}
        for k, s, w in zip(names, sums.tolist(), weights.tolist()):
            if "_count_" in k:
                if s > 0:
                    out[k] = s
            elif w > 0:
                out[k] = s / w
        return out


# ---- metrics ---------------------------------------------------------------------------------

def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


# Robustness: the fraction of input cells the corrupted teacher-forced pass replaces by random legal
# tokens, and the seed of that draw (the same cells every evaluation).
CORRUPTED_INPUT_LEVEL = 0.01
CORRUPTED_INPUT_SEED = 1234


@torch.no_grad()
def teacher_forced_metrics(model: WorldModel, stream: Stream, *, length: int, count: int, batch_size: int,
                           chunk: int | None = None, device: torch.device | str = "cpu",
                           autocast: Callable[[], Any] = nullcontext) -> dict[str, float]:
    """Next-frame metrics over `count` evenly spaced windows of `length` frames of a held-out stream,
    the model teacher-forced (it sees the real frames), chunks of `chunk` frames with the state
    carried. Positions whose target lies in another episode are left out. Also acc_corrupted and
    exact_frame_corrupted: the same windows with CORRUPTED_INPUT_LEVEL of the input cells replaced by
    random legal tokens (how much one wrong cell in the dream's input costs the next frames)."""
    was_training = model.training
    model.eval()
    length = min(length, len(stream.frames) - 1)
    starts = evenly_spaced_starts(len(stream.frames), length, count)
    chunk = chunk or length
    meter = Meter()
    legal = legal_tokens(model, torch.device(device))
    generator = torch.Generator(device=device).manual_seed(CORRUPTED_INPUT_SEED)
    for sel in _batches(len(starts), batch_size):
        win = gather_windows(stream, starts[sel], length).to(device)
        noisy_frames = corrupt_cells(win.frames, CORRUPTED_INPUT_LEVEL, legal, generator)
        state = noisy_state = None
        for a in range(0, length, chunk):
            sl = slice(a, min(a + chunk, length))
            with autocast():
                out = model(win.frames[:, sl], win.actions[:, sl], state=state, return_state=sl.stop < length,
                            resets=win.resets[:, sl])
                noisy = model(noisy_frames[:, sl], win.actions[:, sl], state=noisy_state,
                              return_state=sl.stop < length, resets=win.resets[:, sl])
            state, noisy_state = out.state, noisy.state
            w = win.has_target[:, sl].float()
            noisy_hits = (noisy.frame_logits.argmax(-1) == win.targets[:, sl]).float()
            meter.add("acc_corrupted", (noisy_hits * w[:, :, None, None]).sum(), w.sum() * noisy_hits[0, 0].numel())
            meter.add("exact_frame_corrupted", (noisy_hits.amin(dim=(2, 3)) * w).sum(), w.sum())
            prediction_losses(out, win, sl, w, w.sum().clamp_min(1), meter=meter)
            targets, inputs = win.targets[:, sl], win.frames[:, sl]
            hits = (out.frame_logits.argmax(-1) == targets).float()
            copy = (inputs == targets).float()
            cell_w = w[:, :, None, None].expand_as(hits)
            seen = (win.target_gap[:, sl] >= 0).float()
            for name, h in (("acc", hits), ("copy_acc", copy)):
                if name != "acc":
                    meter.add(name, (h * cell_w).sum(), cell_w.sum())
                meter.add(f"{name}_remembered", (h * cell_w * seen).sum(), (cell_w * seen).sum())
                meter.add(f"{name}_new", (h * cell_w * (1 - seen)).sum(), (cell_w * (1 - seen)).sum())
                meter.add(f"{name.replace('acc', 'exact_frame')}", (h.amin(dim=(2, 3)) * w).sum(), w.sum())
            meter.add_buckets("acc_gap", hits, cell_w, gap_bucket(win.target_gap[:, sl]))
            meter.add("reward_mae", ((out.reward.float() - win.rewards[:, sl]).abs() * w).sum(), w.sum())
            done_hit = ((out.done_logits.float() > 0) == win.terminated[:, sl]).float()
            meter.add("done_acc", (done_hit * w).sum(), w.sum())
            term = win.terminated[:, sl].float() * w
            meter.add("done_recall", (done_hit * term).sum(), term.sum())
            # What a dream-trained agent meets: false terminations, and the reward where episodes end.
            predicted = (out.done_logits.float() > 0).float() * w
            meter.add("done_precision", (predicted * win.terminated[:, sl].float()).sum(), predicted.sum())
            meter.add("reward_mae_terminal", ((out.reward.float() - win.rewards[:, sl]).abs() * term).sum(), term.sum())
    model.train(was_training)
    result = {k: v for k, v in meter.compute().items() if "_count_" not in k}
    result["windows"] = float(len(starts))
    return result


# (meter, predicted frames [B, G, H, W], real frames, valid [B, G], gap [B, G, H, W]) -> None: adds to meter
FrameScorer = Callable[[Meter, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None]


def _horizon_bucket(steps: torch.Tensor) -> torch.Tensor:
    """Bucket of the number of generated steps (1-based) with the same edges as gaps."""
    return gap_bucket(steps)


def _episode_batch(stream: Stream, starts: np.ndarray, lengths: np.ndarray, context: int, horizon: int, device):
    """Frames and actions [B, context + horizon] from each episode start (clamped at the stream's
    end), the gap of each cell of the last `horizon` frames, and which of those lie inside the
    episode ([B, horizon] bool)."""
    frame_index = np.minimum(starts[:, None] + np.arange(context + horizon), len(stream.frames) - 1)
    frames = torch.from_numpy(np.asarray(stream.frames)[frame_index].astype(np.int64)).to(device)
    actions = torch.from_numpy(model_actions(np.asarray(stream.actions)[frame_index])).to(device)
    gap = torch.from_numpy(np.asarray(stream.gap)[frame_index[:, context:]].astype(np.int64)).to(device)
    valid = torch.from_numpy(np.arange(horizon)[None] < (lengths - context)[:, None]).to(device)
    return frames, actions, gap, valid


def _score_frames(meter: Meter, pred: torch.Tensor, real: torch.Tensor, valid: torch.Tensor, gap: torch.Tensor):
    """Add per-cell accuracy, exact-frame rate and accuracy by gap bucket of predicted frames
    [B, G, H, W] against the real ones (frames where `valid` [B, G] is false left out).
    Returns (hits, cell weights) for further scores of the same cells."""
    hits = (pred == real).float()
    w = valid.float()
    cell_w = w[:, :, None, None].expand_as(hits)
    meter.add("acc", (hits * cell_w).sum(), cell_w.sum())
    meter.add("exact_frame", (hits.amin(dim=(2, 3)) * w).sum(), w.sum())
    meter.add_buckets("acc_gap", hits, cell_w, gap_bucket(gap))
    return hits, cell_w


@torch.no_grad()
def recall_metrics(model: WorldModel, stream: Stream, *, context: int, horizon: int, count: int, batch_size: int,
                   chunk: int = 128, device: torch.device | str = "cpu",
                   autocast: Callable[[], Any] = nullcontext, extra_scores: FrameScorer | None = None) -> dict[str, float]:
    """The same frames `rollout_metrics` generates, predicted teacher-forced instead: each of the
    `horizon` frames after the first `context` of an episode from the real frames before it, the
    state carried through the whole episode in chunks of `chunk` frames. It scores what the model
    recalls apart from what its own errors do to an open-loop rollout. `extra_scores` adds its own
    scores of the same frames (as in `rollout_metrics`)."""
    starts, lengths = rollout_starts(stream, context, count)
    if len(starts) == 0 or horizon < 1:
        return {}
    was_training = model.training
    model.eval()
    device = torch.device(device)
    meter = Meter()
    span = context + horizon
    for sel in _batches(len(starts), batch_size):
        frames, actions, gap, valid = _episode_batch(stream, starts[sel], lengths[sel], context, horizon, device)
        state, logits = None, []
        for a in range(0, span - 1, chunk):                # frame t's logits predict frame t + 1
            sl = slice(a, min(a + chunk, span - 1))
            with autocast():
                out = model(frames[:, sl], actions[:, sl], state=state, return_state=True)
            state = out.state
            logits.append(out.frame_logits[:, max(0, context - 1 - a):])
        pred = torch.cat(logits, 1).argmax(-1)                                   # [B, horizon, H, W]
        _score_frames(meter, pred, frames[:, context:], valid, gap)
        if extra_scores is not None:
            extra_scores(meter, pred, frames[:, context:], valid, gap)
    model.train(was_training)
    result = {k: v for k, v in meter.compute().items() if "_count_" not in k}
    result["episodes"] = float(len(starts))
    return result


@torch.no_grad()
def legal_tokens(model: WorldModel, device: torch.device) -> torch.Tensor:
    """[H, W, V] bool: the tokens the model's codec allows in each cell (all, for a model without one)."""
    c = model.config
    if "codec" in (c.metadata or {}):
        return codec_for_model(c).legal_mask().to(device)
    return torch.ones(*c.frame_shape, c.vocab_size, dtype=torch.bool, device=device)


def dream_temperature(model: WorldModel) -> float:
    """The temperature the dream decodes the model's frames at by default (1 for a model without a codec)."""
    c = model.config
    return default_temperature(codec_for_model(c)) if "codec" in (c.metadata or {}) else 1.0


def rollout_metrics(model: WorldModel, stream: Stream, *, context: int, horizon: int, count: int, batch_size: int,
                    sampling: str = "argmax", temperature: float = 1.0, seed: int = 0,
                    device: torch.device | str = "cpu", autocast: Callable[[], Any] = nullcontext,
                    extra_scores: FrameScorer | None = None) -> dict[str, float]:
    """Open-loop rollouts from the starts of up to `count` held-out episodes with at least
    context + 1 frames: `context` real frames teacher-forced (forward with return_state), then
    `horizon` frames generated one by one (`model.step`, fed its own prediction and the real
    action), each compared with the real frame. Generated frames past the episode's end are left
    out. Frames are decoded as the dream decodes them, over the codec's legal tokens: "argmax", or
    "sample" from softmax(logits / temperature) with a generator seeded by `seed` (the same numbers
    every evaluation). `extra_scores(meter, pred, real, valid, gap)` adds scores of its own to the
    result for each batch of generated frames (the memory benchmark: PSNR of decoded images)."""
    if sampling not in ("argmax", "sample"):
        raise ValueError(f"rollout sampling must be argmax or sample, got {sampling!r}")
    starts, lengths = rollout_starts(stream, context, count)
    if len(starts) == 0 or horizon < 1:
        return {}
    was_training = model.training
    model.eval()
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    legal = legal_tokens(model, device)
    codec = codec_for_model(model.config) if "codec" in (model.config.metadata or {}) else None
    agent_token_base = one_agent_token_base(codec)          # the dream places a world view's agent first
    meter = Meter()
    for sel in _batches(len(starts), batch_size):
        frames, actions, gap, valid = _episode_batch(stream, starts[sel], lengths[sel], context, horizon, device)
        with autocast():
            out = model(frames[:, :context], actions[:, :context], return_state=True)
        state, logits = out.state, out.frame_logits[:, -1]
        preds = []
        for g in range(horizon):
            # The dream's own decoder: only the codec's legal tokens, argmax or Gumbel-max sampling.
            t = 0.0 if sampling == "argmax" else temperature
            uniform = None if t == 0 else torch.rand(logits.shape, generator=gen, device=device)
            pred = sample_frames(one_agent_logits(legal_logits(logits, legal), agent_token_base), legal=None,
                                 temperature=t, uniform=uniform)
            preds.append(pred)
            if g + 1 < horizon:
                with autocast():
                    step_out, state = model.step(state, pred, actions[:, context + g])
                logits = step_out.frame_logits
        pred = torch.stack(preds, 1)                                              # [B, G, H, W]
        real = frames[:, context:]
        hits, cell_w = _score_frames(meter, pred, real, valid, gap)
        if extra_scores is not None:
            extra_scores(meter, pred, real, valid, gap)
        copy = (frames[:, context - 1 : context] == real).float()
        meter.add("copy_acc", (copy * cell_w).sum(), cell_w.sum())
        meter.add_buckets("copy_acc_gap", copy, cell_w, gap_bucket(gap))
        steps = torch.arange(1, horizon + 1, device=device)[None, :, None, None].expand_as(hits)
        meter.add_buckets("acc_step", hits, cell_w, _horizon_bucket(steps), names=GAP_BUCKETS[:-1] + ("-",))
    model.train(was_training)
    result = meter.compute()
    # The horizon buckets never hold "never"; the per-bucket counts of the gap are worth keeping.
    result = {k: v for k, v in result.items() if not k.startswith(("acc_step_count", "copy_acc_gap_count"))}
    result["episodes"] = float(len(starts))
    return result


def held_out_metrics(model: WorldModel, stream: Stream | None, config: TrainConfig, *, device: torch.device,
                     autocast: Callable[[], Any] = nullcontext) -> dict[str, float]:
    """What training logs on held-out data: eval/* (teacher-forced) and rollout/* (open loop), with
    the config's eval_* and rollout_* settings. {} without held-out data."""
    c = config
    if stream is None:
        return {}
    chunk = c.tbptt_chunk or None
    tf = teacher_forced_metrics(model, stream, length=c.eval_length, count=c.eval_windows,
                                batch_size=c.eval_batch_size, chunk=chunk, device=device,
                                autocast=autocast) if c.eval_windows > 0 else {}
    ro = rollout_metrics(model, stream, context=c.rollout_context, horizon=c.rollout_horizon,
                         count=c.rollout_episodes, batch_size=c.eval_batch_size, sampling=c.rollout_sampling,
                         temperature=c.rollout_temperature, seed=c.seed, device=device,
                         autocast=autocast) if c.rollout_episodes > 0 else {}
    return {**{f"eval/{k}": v for k, v in tf.items()}, **{f"rollout/{k}": v for k, v in ro.items()}}
