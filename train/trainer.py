"""The world-model trainer: `worldsim train`, `train(...)` and `Trainer`.

One training step, top to bottom:

1. The curriculum gives the window length L and the batch size for this step (short clips first,
   longer later; the batch shrinks as L grows to keep tokens per step about constant).
2. The sampler cuts B windows of L + 1 consecutive frames from the training stream. Windows may
   cross episode boundaries: `resets` tells the model where episodes start, and positions whose
   target frame lies in the next episode are masked out of the loss.
3. Long-context training: the first `context_fraction` of a window is context, its loss weighed
   by `prefix_loss_weight` (0: context only).
4. Truncated backprop: the window runs in chunks of `tbptt_chunk` frames; the model's state is
   carried (detached) from chunk to chunk and each chunk's loss is backpropagated at once, so
   memory holds one chunk's activations. (Optional activation checkpointing per layer on top.)
5. Losses: next-frame token cross-entropy, reward (MSE or smooth L1), termination (BCE), and the
   optional auxiliary state-regularisation loss (a small head reconstructs the frame d steps ago
   from the current features). AdamW, warm-up + cosine schedule, gradient clipping.

Every `eval_every` steps: teacher-forced next-frame metrics on held-out episodes beside the
copy-previous-frame baseline, and open-loop rollout accuracy by the gap since each cell was last
seen (`train/metrics.py`). Logs go to TensorBoard and `metrics.jsonl`; checkpoints (model as
safetensors + JSON, trainer state, optimizer, RNG states) are written atomically and a run
resumes exactly where it stopped.

A run folder::

    RUN_DIR/train_config.json          the TrainConfig, the resolved model config, the data used
    RUN_DIR/metrics.jsonl              one JSON object per log / eval event
    RUN_DIR/tb/                        TensorBoard events
    RUN_DIR/checkpoints/checkpoint-00001000/
        model/                         WorldModel.save_pretrained (config.json, model.safetensors)
        trainer.safetensors            aux head weights, torch RNG states
        optimizer.pt                   optimizer state (torch.save; loaded with weights_only=True)
        trainer_state.json             step, sampler and numpy/python RNG states, log accumulator
    RUN_DIR/latest                     name of the newest complete checkpoint
    RUN_DIR/model/                     the final model (when training reaches `steps`)
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
import random
import re
import shutil
import sys
import time
import types
import typing
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from worldsim import CheckpointError, WorldModel, WorldModelConfig

from .metrics import (
    Meter,
    aux_reconstruction_loss,
    aux_valid,
    model_forward,
    prediction_losses,
    rollout_metrics,
    teacher_forced_metrics,
    time_weights,
)
from . import distributed
from .windows import StreamError, Window, WindowSampler, check_stream

from worldsim.checkpoint import atomic_write, make_temp_dir

FORMAT_VERSION = 1
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
LATEST_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
TRAINER_TENSORS = "trainer.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
TRAINER_STATE = "trainer_state.json"

# Model config fields that come from the data and cannot be overridden.
DATA_FIELDS = ("vocab_size", "frame_shape", "num_actions", "metadata")


class TrainError(ValueError):
    """Bad training input: config, data, run folder or checkpoint. The message says what to do."""


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Every training setting. Saved as JSON in the run folder; `worldsim train` exposes each field
    as --kebab-case-name and each model field as --model.<name>."""

    # data
    data: str | None = _f(None, "dataset folder (train.dataset layout)")
    holdout_fraction: float = _f(0.1, "fraction of episodes held out for evaluation (0: none)")
    split_seed: int = _f(0, "seed of the train/held-out split")
    # model: overrides of WorldModelConfig (vocab, frame shape and actions come from the data)
    model: dict[str, Any] = _f({}, "WorldModelConfig overrides, e.g. {\"d_model\": 128}")
    # optimisation
    steps: int = _f(1000, "total optimizer steps (the schedule's length)")
    lr: float = _f(3e-4, "peak learning rate")
    min_lr_ratio: float = _f(0.1, "final learning rate of the cosine decay, as a fraction of --lr")
    warmup_steps: int = _f(100, "linear warm-up steps")
    weight_decay: float = _f(0.1, "AdamW weight decay (not applied to norms, biases, embeddings or the scan's own "
                             "decay and step parameters)")
    beta1: float = _f(0.9, "AdamW beta1")
    beta2: float = _f(0.95, "AdamW beta2")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0: no clipping)")
    batch_size: int = _f(16, "windows per step at the first curriculum stage")
    # sequence length
    curriculum: list = _f([[0, 32]], "window length by training step: LEN, or STEP:LEN[:BATCH],... from step "
                          "STEP on, windows of LEN frames (and BATCH windows per step if given), "
                          "e.g. 0:32,2000:128,4000:512")
    batch_scaling: str = _f("tokens", "how the batch follows the window length: tokens (the batch shrinks as "
                            "windows grow, keeping the tokens per step about constant) or fixed")
    min_batch_size: int = _f(1, "smallest batch that tokens scaling may shrink to")
    # long context
    context_fraction: float = _f(0.0, "leading fraction of each window that is context, its loss weighed by "
                                 "--prefix-loss-weight")
    prefix_loss_weight: float = _f(0.0, "loss weight of the context frames (e.g. 0 or 0.1)")
    context_min_length: int = _f(0, "split off the context only in windows at least this many frames long")
    tbptt_chunk: int = _f(0, "truncated backpropagation: run each window in chunks of this many frames, the "
                          "model's state carried between them (0: off)")
    activation_checkpointing: bool = _f(False, "recompute each layer's activations in the backward pass")
    # losses
    frame_loss_weight: float = _f(1.0, "weight of the next-frame token cross-entropy")
    reward_loss_weight: float = _f(1.0, "weight of the reward loss")
    reward_loss: str = _f("mse", "reward loss: mse or smooth_l1")
    done_loss_weight: float = _f(1.0, "weight of the termination loss (BCE with logits)")
    done_pos_weight: float = _f(0.0, "weight of terminating steps in the termination loss and of paying steps in "
                                "the reward loss (0: auto, the training data's ratio of other to terminating "
                                "steps, at most 100; 1: unweighted)")
    # auxiliary state regularisation
    aux_loss_weight: float = _f(0.0, "weight of the auxiliary reconstruction of an earlier frame (0: off)")
    aux_delay_min: int = _f(1, "smallest distance, in frames, back to the frame the auxiliary loss reconstructs")
    aux_delay_max: int = _f(16, "largest such distance (one is drawn per step)")
    aux_mode: str = _f("cell", "what the auxiliary head reads: cell (each cell's features) or pooled (their "
                       "mean over the frame)")
    aux_hidden: int = _f(0, "hidden width of the auxiliary head (0: the model width, --model.d_model)")
    # evaluation
    eval_every: int = _f(500, "evaluate on the held-out episodes every this many steps (0: only at the end)")
    eval_at_end: bool = _f(True, "evaluate on the held-out episodes when training stops")
    eval_windows: int = _f(16, "held-out windows for teacher-forced metrics")
    eval_length: int = _f(64, "frames per teacher-forced evaluation window")
    eval_batch_size: int = _f(8, "windows or episodes evaluated at once")
    rollout_episodes: int = _f(8, "held-out episodes for open-loop rollouts (0: none)")
    rollout_context: int = _f(16, "real frames given to the model before an open-loop rollout generates")
    rollout_horizon: int = _f(32, "frames an open-loop rollout generates")
    rollout_sampling: str = _f("argmax", "how a rollout picks each token: argmax (the most likely) or sample")
    rollout_temperature: float = _f(1.0, "softmax temperature when rollouts sample")
    # logging and checkpoints
    log_every: int = _f(10, "log the mean of the training metrics every this many steps")
    save_every: int = _f(500, "write a checkpoint every this many steps, and at the end (0: only at the end)")
    keep_last: int = _f(3, "checkpoints kept (older ones are deleted)")
    tensorboard: bool = _f(True, "write TensorBoard events into RUN_DIR/tb")
    progress: bool = _f(True, "show a progress bar")
    # runtime
    seed: int = _f(0, "seed of torch, numpy, python and the window sampler")
    device: str = _f("auto", "torch device: auto (cuda if available), cpu, cuda or cuda:N")
    amp: str = _f("auto", "mixed precision: auto (bf16 on CUDA), bf16 or off")
    num_threads: int = _f(0, "torch CPU threads (0: torch's default)")

    def __post_init__(self) -> None:
        self.curriculum = [list(s) for s in self.curriculum]
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise TrainError(f"TrainConfig: {what}")

        need(0 <= self.holdout_fraction < 1, f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.batch_size >= 1 and self.min_batch_size >= 1, "batch_size and min_batch_size must be >= 1")
        need(self.batch_scaling in ("tokens", "fixed"), f"batch_scaling must be tokens or fixed, got {self.batch_scaling!r}")
        need(0 <= self.context_fraction < 1, f"context_fraction must be in [0, 1), got {self.context_fraction}")
        need(self.prefix_loss_weight >= 0, "prefix_loss_weight must be >= 0")
        need(self.tbptt_chunk >= 0, f"tbptt_chunk must be >= 0, got {self.tbptt_chunk}")
        need(self.reward_loss in ("mse", "smooth_l1"), f"reward_loss must be mse or smooth_l1, got {self.reward_loss!r}")
        need(self.aux_loss_weight >= 0, "aux_loss_weight must be >= 0")
        need(1 <= self.aux_delay_min <= self.aux_delay_max,
             f"need 1 <= aux_delay_min <= aux_delay_max, got {self.aux_delay_min}, {self.aux_delay_max}")
        need(self.aux_mode in ("cell", "pooled"), f"aux_mode must be cell or pooled, got {self.aux_mode!r}")
        need(self.rollout_sampling in ("argmax", "sample"), f"rollout_sampling must be argmax or sample, got {self.rollout_sampling!r}")
        need(self.rollout_context >= 1 and self.rollout_horizon >= 1, "rollout_context and rollout_horizon must be >= 1")
        need(self.rollout_temperature > 0, "rollout_temperature must be > 0")
        need(self.eval_length >= 1 and self.eval_batch_size >= 1, "eval_length and eval_batch_size must be >= 1")
        for k in ("eval_every", "eval_windows", "rollout_episodes", "log_every", "save_every", "num_threads"):
            need(getattr(self, k) >= 0, f"{k} must be >= 0, got {getattr(self, k)}")
        need(self.log_every >= 1, "log_every must be >= 1")
        need(self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}")
        need(self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}")
        need(isinstance(self.model, dict), f"model must be a dict of WorldModelConfig overrides, got {type(self.model).__name__}")
        model_fields = {f.name for f in dataclasses.fields(WorldModelConfig)}
        for k in self.model:
            need(k not in DATA_FIELDS, f"model.{k} comes from the dataset and cannot be set")
            need(k in model_fields, f"unknown model setting model.{k}{_suggest(k, model_fields - set(DATA_FIELDS))}")
        Curriculum(self.curriculum, self.batch_size, self.batch_scaling, self.min_batch_size)  # validates

    # ---- conversion ----

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return cls().replace(**d)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"config file {path} does not exist")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise TrainError(f"config file {path} is not valid JSON: {e}") from e
        if isinstance(d, dict) and "train" in d and "format_version" in d:  # a run's train_config.json
            d = d["train"]
        if not isinstance(d, dict):
            raise TrainError(f"config file {path} must hold a JSON object of TrainConfig fields")
        try:
            return cls.from_dict(d)
        except TrainError as e:
            raise TrainError(f"{path}: {e}") from None

    def replace(self, **overrides) -> "TrainConfig":
        """A copy with fields replaced; "model.<name>" keys and a `model` dict merge into the
        model overrides. Unknown keys are refused, with a suggestion."""
        d = self.to_dict()
        model = dict(d["model"])
        known = {f.name for f in dataclasses.fields(self)}
        for k, v in overrides.items():
            if k.startswith("model."):
                model[k[len("model."):]] = v
            elif k == "model":
                if not isinstance(v, dict):
                    raise TrainError(f"TrainConfig: model must be a dict, got {type(v).__name__}")
                model.update(v)
            elif k.replace("-", "_") in known:
                d[k.replace("-", "_")] = v
            else:
                raise TrainError(f"unknown training setting {k!r}{_suggest(k, known)}")
        d["model"] = model
        return TrainConfig(**d)


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# ---- schedules -------------------------------------------------------------------------------

class Curriculum:
    """Window length (and batch size) as a function of the step: the last stage whose start
    step is <= step. Stages: [start_step, length] or [start_step, length, batch_size]."""

    def __init__(self, stages, batch_size: int, scaling: str = "tokens", min_batch_size: int = 1):
        if not stages:
            raise TrainError("curriculum needs at least one stage [step, length]")
        parsed = []
        for s in stages:
            if not isinstance(s, (list, tuple)) or len(s) not in (2, 3) or not all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in s):
                raise TrainError(f"curriculum stage {s!r} must be [step, length] or [step, length, batch_size] of integers")
            parsed.append(tuple(int(v) for v in s))
        if parsed[0][0] != 0:
            raise TrainError(f"the curriculum's first stage must start at step 0, got {parsed[0][0]}")
        starts = [s[0] for s in parsed]
        if any(b <= a for a, b in zip(starts, starts[1:])):
            raise TrainError(f"curriculum stage steps must increase strictly, got {starts}")
        if any(s[1] < 1 for s in parsed) or any(len(s) == 3 and s[2] < 1 for s in parsed):
            raise TrainError(f"curriculum lengths and batch sizes must be >= 1, got {parsed}")
        base = parsed[0][1]
        self.stages: list[tuple[int, int, int]] = []
        for s in parsed:
            if len(s) == 3:
                batch = s[2]
            elif scaling == "tokens":
                batch = max(min_batch_size, round(batch_size * base / s[1]))
            else:
                batch = batch_size
            self.stages.append((s[0], s[1], batch))

    def at(self, step: int) -> tuple[int, int]:
        """(window length, batch size) at `step`."""
        stage = self.stages[0]
        for s in self.stages:
            if s[0] <= step:
                stage = s
        return stage[1], stage[2]

    @property
    def max_length(self) -> int:
        return max(s[1] for s in self.stages)


def parse_curriculum(text: str) -> list[list[int]]:
    """"32" -> [[0, 32]]; "0:32,2000:128:8" -> [[0, 32], [2000, 128, 8]]; or JSON."""
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    if re.fullmatch(r"\d+", text):
        return [[0, int(text)]]
    stages = []
    for part in text.split(","):
        if not re.fullmatch(r"\d+:\d+(:\d+)?", part.strip()):
            raise ValueError(f"curriculum stage {part!r} must be STEP:LEN or STEP:LEN:BATCH")
        stages.append([int(v) for v in part.strip().split(":")])
    return stages


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then cosine decay to
    lr * min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---- modules ---------------------------------------------------------------------------------

class AuxHead(nn.Module):
    """State regularisation: from the last layer's features at frame t, predict the tokens of
    frame t - d. `cell`: each cell from its own features; `pooled`: every cell from the frame's
    mean feature plus a learned position (all information must pass through one vector)."""

    def __init__(self, d_model: int, vocab_size: int, frame_shape: tuple[int, int], max_delay: int,
                 mode: str = "cell", hidden: int = 0):
        super().__init__()
        self.mode = mode
        hidden = hidden or d_model
        self.delay_embed = nn.Embedding(max_delay + 1, d_model)
        if mode == "pooled":
            self.position_embed = nn.Parameter(torch.randn(*frame_shape, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, vocab_size))

    def forward(self, features: torch.Tensor, delay: int) -> torch.Tensor:
        """features [B, T, H, W, D] -> logits [B, T, H, W, V] of frame t - delay."""
        x = features
        if self.mode == "pooled":
            x = x.mean(dim=(2, 3), keepdim=True) + self.position_embed
        x = x + self.delay_embed.weight[delay]
        return self.mlp(self.norm(x))


def enable_activation_checkpointing(model: WorldModel) -> None:
    """Recompute each backbone layer's activations in the backward pass (the model's own switch,
    torch.utils.checkpoint per layer); weights and outputs are unchanged."""
    if not hasattr(model, "activation_checkpointing"):
        raise TrainError("this WorldModel has no activation_checkpointing switch")
    model.activation_checkpointing = True


def parameter_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices (linear and conv weights); none on biases, norms,
    embeddings (token, action, position) or the SSM's per-head A_log, D, dt_bias."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2 and id(p) not in embeddings and "embed" not in leaf:
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---- data ------------------------------------------------------------------------------------

@dataclass
class TrainingData:
    """Streams to train and evaluate on, with what the model needs to know about them. Build one
    directly to train on data held in memory (see `train.windows.stream_from_episodes`)."""

    train: Any                       # a Stream (train.dataset.Stream or train.windows.StreamArrays)
    eval: Any | None                 # held-out stream, or None (no evaluation)
    vocab_size: int
    num_actions: int
    frame_shape: tuple[int, int] | None = None   # None: from the train stream's frames
    env_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # copied into the model config's metadata
    source: str | None = None        # dataset folder, if any

    def __post_init__(self) -> None:
        if self.frame_shape is None:
            self.frame_shape = tuple(int(v) for v in np.shape(self.train.frames)[1:])
        self.frame_shape = tuple(int(v) for v in self.frame_shape)


def load_data(data: Any, config: TrainConfig) -> TrainingData:
    """A dataset folder, an EpisodeDataset, or TrainingData -> TrainingData (split as configured)."""
    if isinstance(data, TrainingData):
        return data
    if isinstance(data, (str, os.PathLike)):
        source = str(data)
        root = Path(data)
        if not root.exists():
            raise TrainError(f"data folder {root} does not exist (make one with `worldsim collect`)")
        if not root.is_dir():
            raise TrainError(f"data path {root} is not a folder")
        try:
            from .dataset import DatasetError, EpisodeDataset
        except ImportError as e:
            raise TrainError(f"cannot read dataset folders: train.dataset does not import ({e})") from e
        try:
            return _split_dataset(EpisodeDataset(root), config, source)
        except DatasetError as e:
            raise TrainError(f"dataset {root}: {e}") from e
    return _split_dataset(data, config, None)


def _split_dataset(data: Any, config: TrainConfig, source: str | None) -> TrainingData:
    if not (hasattr(data, "split") and hasattr(data, "stream")):
        raise TrainError(f"data must be a dataset folder, an EpisodeDataset or a TrainingData, "
                         f"got {type(data).__name__}")
    n = data.num_episodes
    if n < 1:
        raise TrainError(f"dataset {source or data} holds no episodes")
    if config.holdout_fraction > 0 and n >= 2:
        train_ids, test_ids = data.split(holdout_fraction=config.holdout_fraction, seed=config.split_seed)
    else:
        train_ids, test_ids = list(range(n)), []
    manifest = dict(getattr(data, "manifest", {}) or {})
    metadata = {"env_id": data.env_id}
    if "codec" in manifest:
        metadata["codec"] = manifest["codec"]
    if source:
        metadata["dataset"] = os.path.abspath(source)
    train = data.stream(train_ids)
    # Envs that pay only on the terminating step (MiniGrid) get that rule in the dream: a regressed
    # reward head's small errors on ordinary steps would otherwise add up over long episodes.
    metadata["rewards_only_on_termination"] = not bool(np.any(train.rewards[~train.terminated]))
    return TrainingData(
        train=train, eval=data.stream(test_ids) if test_ids else None,
        vocab_size=int(data.vocab_size), num_actions=int(data.num_actions),
        frame_shape=tuple(data.frame_shape), env_id=data.env_id, metadata=metadata, source=source,
    )


def auto_done_pos_weight(terminated: np.ndarray, cap: float = 100.0) -> float:
    """Other steps per terminating step in the training data (at most `cap`): balances the
    termination loss, where terminating steps are rare (one per episode at most)."""
    positives = int(np.count_nonzero(terminated))
    if positives == 0:
        return 1.0
    return float(min(cap, (len(terminated) - positives) / positives))


# ---- run folder ------------------------------------------------------------------------------

def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def _write_json(path: Path, obj) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, default=_json_default)

    atomic_write(path, write)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint named by RUN_DIR/latest, or else the newest complete one."""
    run_dir = Path(run_dir)
    pointer = run_dir / LATEST_FILE
    if pointer.is_file():
        candidate = run_dir / pointer.read_text().strip()
        if candidate.is_dir() and (candidate / TRAINER_STATE).is_file():
            return candidate
    found = [p for p in list_checkpoints(run_dir) if (p / TRAINER_STATE).is_file()]
    return found[-1] if found else None


def _rng_state_json() -> dict:
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def _restore_rng_json(d: dict) -> None:
    version, state, gauss = d["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = d["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"device {name!r} asked for, but CUDA is not available (use --device cpu or auto)")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- the trainer -----------------------------------------------------------------------------

class Trainer:
    """Owns the model, aux head, optimizer, sampler, logs and checkpoints of one run.

    Trainer(config, data, out)             a new run (out=None: nothing written to disk)
    Trainer.resume(out, data=None, ...)    continue the run in `out` from its latest checkpoint
    trainer.fit(until=None)                train to `config.steps` (or stop at step `until`)
    trainer.train_step(window) / trainer.compute_gradients(window) / trainer.evaluate()
    """

    def __init__(self, config: TrainConfig | dict | str | os.PathLike | None = None, data: Any = None,
                 out: str | os.PathLike | None = None, **overrides):
        config = _as_config(config).replace(**overrides) if overrides else _as_config(config)
        self.out = Path(out) if out is not None else None
        if self.out is not None and latest_checkpoint(self.out) is not None:
            raise TrainError(f"{self.out} already holds a run with checkpoints: continue it with "
                             f"--resume {self.out}, or choose another --out")
        self._setup(config, data, checkpoint=None)

    @classmethod
    def resume(cls, out: str | os.PathLike, data: Any = None, **overrides) -> "Trainer":
        """Continue the run in `out` exactly where its latest checkpoint left it. `overrides` may
        change training settings (e.g. steps to train longer), not the model."""
        out = Path(out)
        if not out.is_dir():
            raise TrainError(f"cannot resume: run folder {out} does not exist")
        config_file = out / CONFIG_FILE
        if not config_file.is_file():
            raise TrainError(f"cannot resume: {out} has no {CONFIG_FILE} (not a worldsim training run)")
        checkpoint = latest_checkpoint(out)
        if checkpoint is None:
            raise TrainError(f"cannot resume: {out} has no complete checkpoint yet (start the run again "
                             f"without --resume, into an empty folder)")
        config = TrainConfig.from_json(config_file)
        model_changes = [k for k in overrides if k == "model" or k.startswith("model.")]
        if model_changes:
            raise TrainError(f"cannot change the model of a resumed run ({', '.join(model_changes)})")
        config = config.replace(**overrides)
        self = cls.__new__(cls)
        self.out = out
        self._setup(config, data, checkpoint=checkpoint)
        return self

    # ---- construction ----

    def _setup(self, config: TrainConfig, data: Any, checkpoint: Path | None) -> None:
        self.config = config
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.dist = distributed.from_environment()   # torchrun's ranks, or rank 0 of 1
        self.device = distributed.device_for(self.dist, resolve_device(config.device))
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        use_amp = config.amp == "bf16" or (config.amp == "auto" and self.device.type == "cuda")
        if use_amp and self.device.type != "cuda":
            raise TrainError("amp=bf16 needs a CUDA device (use --amp off on CPU)")
        self.amp_dtype = torch.bfloat16 if use_amp else None

        if data is None:
            data = config.data
        if data is None:
            raise TrainError("no training data: pass --data DIR (or data=... in Python)")
        if isinstance(data, (str, os.PathLike)) and config.data != str(data):
            self.config = config = config.replace(data=str(data))
        self.data = load_data(data, config)
        d = self.data
        self.done_pos_weight = config.done_pos_weight or auto_done_pos_weight(d.train.terminated)

        seed_everything(config.seed)
        if checkpoint is None:
            try:
                model_config = WorldModelConfig.from_dict({
                    **config.model, "vocab_size": d.vocab_size, "frame_shape": d.frame_shape,
                    "num_actions": d.num_actions, "metadata": dict(d.metadata),
                })
            except (TypeError, ValueError) as e:
                raise TrainError(f"model settings {config.model}: {e}") from e
            self.model = WorldModel(model_config).to(self.device)
        else:
            try:
                self.model = WorldModel.from_pretrained(checkpoint / MODEL_DIR, device=self.device)
            except CheckpointError as e:
                raise TrainError(f"cannot resume from {checkpoint}: {e}") from e
            mc = self.model.config
            mismatch = [f"{k}: data {got}, model {want}" for k, got, want in (
                ("vocab_size", d.vocab_size, mc.vocab_size), ("frame_shape", tuple(d.frame_shape), tuple(mc.frame_shape)),
                ("num_actions", d.num_actions, mc.num_actions)) if got != want]
            if mismatch:
                raise TrainError(f"the data does not fit the resumed run's model ({'; '.join(mismatch)})")
            trained_on = mc.metadata.get("env_id")
            if trained_on and d.env_id and trained_on != d.env_id:
                warnings.warn(f"resuming a model trained on {trained_on} with data of {d.env_id}")
        mc = self.model.config
        for name, stream in (("training stream", d.train), ("held-out stream", d.eval)):
            if stream is not None:
                try:
                    check_stream(stream, name, vocab_size=mc.vocab_size, num_actions=mc.num_actions,
                                 frame_shape=mc.frame_shape)
                except StreamError as e:
                    raise TrainError(str(e)) from e

        self.curriculum = Curriculum(config.curriculum, config.batch_size, config.batch_scaling, config.min_batch_size)
        longest = len(d.train.frames) - 1
        if self.curriculum.max_length > longest:
            raise TrainError(f"the curriculum asks for windows of {self.curriculum.max_length} frames but the "
                             f"training stream holds {len(d.train.frames)} frames (at most {longest}); "
                             f"collect more episodes or shorten the curriculum")
        if config.activation_checkpointing:
            enable_activation_checkpointing(self.model)

        self.aux_head = None
        if config.aux_loss_weight > 0:
            self.aux_head = AuxHead(mc.d_model, mc.vocab_size, mc.frame_shape, config.aux_delay_max,
                                    config.aux_mode, config.aux_hidden).to(self.device)
        modules = [self.model] + ([self.aux_head] if self.aux_head is not None else [])
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(parameter_groups(modules, config.weight_decay), lr=config.lr,
                                           betas=(config.beta1, config.beta2), **({"fused": True} if fused else {}))
        self.sampler = WindowSampler(d.train, seed=self._sampler_seed())
        # The same on every rank: all ranks draw the same aux delay each step.
        self.aux_rng = np.random.Generator(np.random.PCG64([config.seed, 2]))
        self.step = 0
        self.tokens_seen = 0
        self._interval = Meter()
        self._last_saved = -1
        self._last_eval = -1
        self._resumed_from = None
        self.history: list[dict[str, float]] = []  # every record logged by this process, with its step
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)
        elif self.out is not None and self.dist.is_main:
            self._write_run_config()
        # What forward and backward go through: DDP wrappers in a multi-process run (gradients are
        # averaged across ranks in backward), the modules themselves otherwise.
        self.train_model = distributed.wrap(self.model, self.dist)
        self.train_aux_head = distributed.wrap(self.aux_head, self.dist)

    def _sampler_seed(self, step: int | None = None) -> list[int]:
        """One process: [seed, 1] (as always). Rank r of a multi-process run: its own stream,
        [seed, 1, r], or [seed, 1, r, step] when it restarts at `step` after a resume."""
        seed = [self.config.seed, 1]
        if self.dist.enabled or step is not None:
            seed.append(self.dist.rank)
        if step is not None:
            seed.append(step)
        return seed

    def _write_run_config(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        d = self.data
        _write_json(self.out / CONFIG_FILE, {
            "format_version": FORMAT_VERSION,
            "train": self.config.to_dict(),
            "model": self.model.config.to_dict(),
            "data": {
                "source": d.source, "env_id": d.env_id, "vocab_size": d.vocab_size, "frame_shape": d.frame_shape,
                "num_actions": d.num_actions, "train_frames": len(d.train.frames),
                "train_episodes": int(np.sum(d.train.episode_start)),
                "eval_frames": 0 if d.eval is None else len(d.eval.frames),
                "eval_episodes": 0 if d.eval is None else int(np.sum(d.eval.episode_start)),
            },
            "parameters": sum(p.numel() for p in self.model.parameters()),
        })

    # ---- one step ----

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _draw_delay(self) -> int:
        return int(self.aux_rng.integers(self.config.aux_delay_min, self.config.aux_delay_max + 1))

    def compute_gradients(self, win: Window, delay: int | None = None) -> dict[str, float]:
        """Forward and backward over one batch of windows (chunked if tbptt_chunk), accumulating
        into .grad (not zeroed here). Returns the window's losses as floats."""
        c = self.config
        win = win.to(self.device)
        length = win.length
        chunk = c.tbptt_chunk or length
        tw = time_weights(length, c.context_fraction, c.prefix_loss_weight, c.context_min_length, self.device)
        weight = win.has_target.float() * tw
        # Normalised by the mean over ranks of their target weight, so that DDP's average of the
        # ranks' gradients is the gradient of the mean loss over all ranks' windows together.
        world = self.dist.world_size
        normalizer = (distributed.all_reduce_sum(weight.sum(), self.dist) / world).clamp_min(1e-8)
        use_aux = self.aux_head is not None
        if use_aux:
            delay = self._draw_delay() if delay is None else delay
            valid = aux_valid(win.resets, delay)
            aux_norm = (distributed.all_reduce_sum(valid.sum().float(), self.dist) / world).clamp_min(1)
        meter = Meter()
        self.model.train()
        state = None
        total = torch.zeros((), device=self.device)
        for a in range(0, length, chunk):
            sl = slice(a, min(a + chunk, length))
            last_chunk = sl.stop >= length
            # Gradients are all-reduced once per step, in the last chunk's backward.
            with distributed.no_sync([self.train_model, self.train_aux_head], skip=not last_chunk):
                with self.autocast():
                    out = model_forward(self.train_model, win.frames[:, sl], win.actions[:, sl], state=state,
                                        return_state=sl.stop < length, resets=win.resets[:, sl])
                    parts = prediction_losses(out, win, sl, weight[:, sl], normalizer, c.reward_loss, meter,
                                              self.done_pos_weight)
                    loss = (c.frame_loss_weight * parts["frame"] + c.reward_loss_weight * parts["reward"]
                            + c.done_loss_weight * parts["done"])
                    if use_aux:
                        aux = aux_reconstruction_loss(self.train_aux_head, out.features, win, sl, delay, valid,
                                                      aux_norm, meter)
                        loss = loss + c.aux_loss_weight * aux
                total += loss.detach()  # the chunks' parts sum to the window's loss
                loss.backward()
            if out.state is not None:
                state = out.state.detach()
        meter.add("loss", total, 1.0)
        stats = meter.compute()
        if use_aux:
            stats["aux_delay"] = float(delay)
        return stats

    def train_step(self, win: Window) -> dict[str, float]:
        """One optimizer step on a batch of windows. Returns its metrics (floats)."""
        c = self.config
        lr = lr_at(self.step, c)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        stats = self.compute_gradients(win)
        if c.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params if p.grad is not None]))
        norm = float(norm)
        if math.isfinite(norm) and math.isfinite(stats.get("loss", 0.0)):
            self.optimizer.step()
        else:
            stats["skipped_nonfinite"] = 1.0
            self.optimizer.zero_grad(set_to_none=True)
        stats.update(grad_norm=norm, lr=lr, seq_len=float(win.length), batch_size=float(win.batch_size))
        self.step += 1
        return stats

    # ---- evaluation ----

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics: eval/* (teacher-forced) and rollout/* (open loop). {} without held-out data."""
        c, stream = self.config, self.data.eval
        if stream is None:
            return {}
        chunk = c.tbptt_chunk or None
        tf = teacher_forced_metrics(self.model, stream, length=c.eval_length, count=c.eval_windows,
                                    batch_size=c.eval_batch_size, chunk=chunk, device=self.device,
                                    autocast=self.autocast) if c.eval_windows > 0 else {}
        ro = rollout_metrics(self.model, stream, context=c.rollout_context, horizon=c.rollout_horizon,
                             count=c.rollout_episodes, batch_size=c.eval_batch_size, sampling=c.rollout_sampling,
                             temperature=c.rollout_temperature, seed=c.seed, device=self.device,
                             autocast=self.autocast) if c.rollout_episodes > 0 else {}
        return {**{f"eval/{k}": v for k, v in tf.items()}, **{f"rollout/{k}": v for k, v in ro.items()}}

    # ---- the loop ----

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train until `config.steps` (or step `until`, for a run to be resumed later). Logs,
        evaluates and checkpoints as configured. Returns the last logged train and eval metrics."""
        c = self.config
        end = c.steps if until is None else min(int(until), c.steps)
        writer = self._open_logs()
        from tqdm.auto import tqdm

        h, w = self.model.config.frame_shape
        last: dict[str, float] = {}
        main = self.dist.is_main            # rank 0 alone shows progress, evaluates, logs and saves
        save = self.out is not None and main
        bar = tqdm(total=end, initial=self.step, disable=not (c.progress and main), desc="train", unit="step",
                   dynamic_ncols=True)
        start_time = time.perf_counter()
        try:
            while self.step < end:
                length, batch = self.curriculum.at(self.step)
                t0 = time.perf_counter()
                win = self.sampler.sample(batch, length)
                stats = self.train_step(win)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                dt = time.perf_counter() - t0
                tokens = batch * length * h * w * self.dist.world_size      # all ranks' windows
                self.tokens_seen += tokens
                for k, v in stats.items():
                    self._interval.add(k, torch.tensor(v), 1.0)
                self._interval.add("tokens_per_s", torch.tensor(tokens / dt), 1.0)
                bar.update(1)
                bar.set_postfix(loss=f"{stats['loss']:.4f}", tok_s=f"{tokens / dt:,.0f}", L=length)
                if self.step % c.log_every == 0 or self.step == end:
                    record = {f"train/{k}": v for k, v in self._interval.compute().items()}
                    record["train/tokens_seen"] = float(self.tokens_seen)
                    self._interval = Meter()
                    self._log(record, writer)
                    last.update(record)
                if main and c.eval_every and self.step % c.eval_every == 0:
                    last.update(self._evaluate_and_log(writer))
                if save and c.save_every and self.step % c.save_every == 0:
                    self.save_checkpoint()
            if main and c.eval_at_end and self._last_eval != self.step:
                last.update(self._evaluate_and_log(writer))
            if save:
                if self._last_saved != self.step:
                    self.save_checkpoint()
                if self.step >= c.steps:
                    self._save_final_model()
            distributed.barrier(self.dist)           # no rank leaves before rank 0 has saved
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        last["time/fit_seconds"] = time.perf_counter() - start_time
        return last

    def _evaluate_and_log(self, writer) -> dict[str, float]:
        self._last_eval = self.step
        record = self.evaluate()
        if record:
            self._log(record, writer)
        return record

    def _open_logs(self):
        if self.out is None or not self.dist.is_main:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        metrics = self.out / METRICS_FILE
        if metrics.is_file() and self._resumed_from is not None:
            # Drop what a crashed run logged after its last checkpoint: the log then reads as one run.
            lines = metrics.read_text().splitlines()
            kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= self.step]
            if len(kept) != len(lines):
                atomic_write(metrics, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))
        elif metrics.is_file() and self._resumed_from is None and self.step == 0:
            metrics.unlink()  # a fresh run in a folder without checkpoints starts a fresh log
        if not self.config.tensorboard:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tb"), purge_step=self.step + 1 if self.step else None)

    def _log(self, record: dict[str, float], writer) -> None:
        self.history.append({"step": self.step, **record})
        if self.out is None or not self.dist.is_main:
            return
        line = {"step": self.step, "time": round(time.time(), 3), **record}
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(line, default=_json_default) + "\n")
        if writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    writer.add_scalar(k, v, self.step)
            writer.flush()

    # ---- checkpoints ----

    def save_checkpoint(self) -> Path:
        """Write checkpoints/checkpoint-<step> atomically (temp folder, then rename), point
        RUN_DIR/latest at it, and delete all but the last `keep_last`."""
        if self.out is None:
            raise TrainError("this Trainer has no run folder (out=None): nothing to save into")
        root = self.out / CHECKPOINTS_DIR
        root.mkdir(parents=True, exist_ok=True)
        name = f"checkpoint-{self.step:08d}"
        tmp = make_temp_dir(root, f".tmp-{name}-")
        try:
            self.model.save_pretrained(tmp / MODEL_DIR)
            tensors = {"rng.torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                for i, s in enumerate(torch.cuda.get_rng_state_all()):
                    tensors[f"rng.cuda.{i}"] = s
            if self.aux_head is not None:
                tensors.update({f"aux_head.{k}": v.detach().cpu().contiguous() for k, v in self.aux_head.state_dict().items()})
            atomic_write(tmp / TRAINER_TENSORS,       # on disk, with the usual permissions, before the rename
                         lambda t: save_file(tensors, t, metadata={"format": "worldsim-trainer"}))
            atomic_write(tmp / OPTIMIZER_FILE, lambda t: torch.save(self.optimizer.state_dict(), t))
            _write_json(tmp / TRAINER_STATE, {
                "format_version": FORMAT_VERSION,
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "sampler": self.sampler.state_dict(),          # rank 0's
                "world_size": self.dist.world_size,
                "aux_rng": self.aux_rng.bit_generator.state,
                "rng": _rng_state_json(),
                "interval": {k: [float(self._interval.sums[k]), float(self._interval.weights[k])]
                             for k in self._interval.sums},
                "last_eval": self._last_eval,
                "train_config": self.config.to_dict(),
            })
            final = root / name
            if final.exists():  # the same step saved again (e.g. right after a resume)
                trash = root / f".old-{name}-{os.getpid()}"
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write(self.out / LATEST_FILE, lambda t: Path(t).write_text(f"{CHECKPOINTS_DIR}/{name}\n"))
        self._last_saved = self.step
        for old in list_checkpoints(self.out)[: -self.config.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-checkpoint-*"):  # left by a crash mid-save
            if stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
        return final

    def _load_checkpoint(self, checkpoint: Path) -> None:
        try:
            state = json.loads((checkpoint / TRAINER_STATE).read_text())
            tensors = load_file(checkpoint / TRAINER_TENSORS)
            optimizer_state = torch.load(checkpoint / OPTIMIZER_FILE, map_location=self.device, weights_only=True)
        except Exception as e:  # missing, truncated or foreign files
            raise TrainError(f"checkpoint {checkpoint} cannot be read: {e}") from e
        if state.get("format_version") != FORMAT_VERSION:
            raise TrainError(f"{checkpoint / TRAINER_STATE}: format_version {state.get('format_version')!r}, "
                             f"expected {FORMAT_VERSION}")
        aux = {k[len("aux_head."):]: v for k, v in tensors.items() if k.startswith("aux_head.")}
        if (self.aux_head is None) != (not aux):
            raise TrainError(f"checkpoint {checkpoint} was trained with{'' if aux else 'out'} the auxiliary head; "
                             f"aux_loss_weight must stay {'> 0' if aux else '0'} when resuming")
        if self.aux_head is not None:
            try:
                self.aux_head.load_state_dict(aux)
            except RuntimeError as e:
                raise TrainError(f"checkpoint {checkpoint}: the aux head does not fit this config ({e})") from e
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as e:
            raise TrainError(f"checkpoint {checkpoint}: optimizer state does not fit the model ({e})") from e
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        if state.get("world_size", 1) == 1 and not self.dist.enabled:
            self.sampler.load_state_dict(state["sampler"])     # one process before and now: exactly as it was
        else:                                                  # ranks changed: each rank a fresh stream
            self.sampler = WindowSampler(self.data.train, seed=self._sampler_seed(self.step))
        self.aux_rng.bit_generator.state = state["aux_rng"]
        _restore_rng_json(state["rng"])
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                                  key=lambda k: int(k.rsplit(".", 1)[1]))]
        if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        self._interval = Meter()
        for k, (s, w) in state.get("interval", {}).items():
            self._interval.add(k, torch.tensor(s), w)
        self._last_saved = self.step
        self._last_eval = int(state.get("last_eval", -1))
        self._resumed_from = checkpoint
        if self.out is not None and self.dist.is_main:
            saved = json.loads((self.out / CONFIG_FILE).read_text())
            if saved.get("train") != self.config.to_dict():
                saved["train"] = self.config.to_dict()
                _write_json(self.out / CONFIG_FILE, saved)

    def _save_final_model(self) -> None:
        """RUN_DIR/model: the trained model alone (what DreamEnv loads), replaced atomically."""
        final = self.out / MODEL_DIR
        tmp = make_temp_dir(self.out, ".tmp-model-")
        try:
            self.model.save_pretrained(tmp)
            if final.exists():
                trash = self.out / f".old-model-{os.getpid()}"
                os.replace(final, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _as_config(config) -> TrainConfig:
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return TrainConfig.from_json(config)
    raise TrainError(f"config must be a TrainConfig, a dict or a JSON file, got {type(config).__name__}")


def train(config: TrainConfig | dict | str | os.PathLike | None = None, *, data: Any = None,
          out: str | os.PathLike | None = None, resume: bool = False, until: int | None = None,
          **overrides) -> Trainer:
    """Train a world model; returns the Trainer (its `.model` is the trained WorldModel).

    config: TrainConfig, dict or JSON file; overrides: field=value, "model.<name>"=value or
    model={...}. resume=True continues the run in `out` (config comes from the run)."""
    if resume:
        if out is None:
            raise TrainError("resume=True needs out=RUN_DIR")
        if config is not None:
            raise TrainError("a resumed run keeps its own config; pass changes as overrides")
        trainer = Trainer.resume(out, data=data, **overrides)
    else:
        trainer = Trainer(config, data=data, out=out, **overrides)
    trainer.fit(until=until)
    return trainer


# ---- command line ----------------------------------------------------------------------------

def _parse_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser_for(tp, name: str):
    """An argparse `type` for a dataclass field's annotation."""
    if name == "curriculum":
        return parse_curriculum
    if name == "block_sizes":
        def blocks(text: str):
            text = text.strip()
            if text.lower() == "none":
                return None
            if re.fullmatch(r"\d+x\d+(,\d+x\d+)*", text):
                return [[int(v) for v in b.split("x")] for b in text.split(",")]
            return json.loads(text)
        return blocks
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
    if optional and len(args) == 1:
        inner = _parser_for(args[0], name)
        return lambda text: None if text.strip().lower() == "none" else inner(text)
    if tp is bool:
        return _parse_bool
    if tp in (int, float, str):
        return tp
    return json.loads


# One line per model setting for `worldsim train --help` (the data fixes vocab_size, frame_shape,
# num_actions and metadata). A field missing here shows no help, which tests/test_cli_help.py catches.
MODEL_HELP = {
    "d_model": "width of the model: channels per cell token",
    "n_layers": "number of layers, each a block-wise state-space scan followed by frame-local attention",
    "block_sizes": "spatial blocks of each layer's scan, one HxW per layer, e.g. 7x7,4x4,7x7,4x4 (none: "
                   "alternate the whole frame with quarter-frame blocks)",
    "ssm": "use the state-space scan in each layer (false: attention-only layers, the local-attention baseline)",
    "d_state": "size of the state-space memory per head",
    "expand": "width of the scan as a multiple of the model width",
    "headdim": "channels per state-space head",
    "ngroups": "groups of state-space heads that share their input and output projections",
    "d_conv": "width of the short causal convolution before the scan",
    "chunk_size": "chunk length of the scan computation (none: the backend's default)",
    "dt_min": "smallest initial step size of the scan",
    "dt_max": "largest initial step size of the scan",
    "backend": "scan implementation: auto, torch, or triton (needs mamba-ssm and a CUDA GPU)",
    "attn_window": "earlier frames each frame attends to",
    "n_heads": "attention heads",
    "mlp_ratio": "hidden width of each layer's MLP as a multiple of the model width",
}


def _default_text(name: str, value) -> str:
    """A default as a user would type it on the command line."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if name == "curriculum":
        return ",".join(":".join(str(v) for v in stage) for stage in value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register `worldsim train` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "train",
        help="train a world model on a dataset (length curriculum, long context; resumable)",
        description="Train a world model on episodes collected with `worldsim collect`. Settings come "
        "from the defaults, then --config FILE.json, then the options below. --resume RUN_DIR continues a "
        "run exactly where it stopped. At the end it prints the held-out metrics and where the model is.",
    )
    p.add_argument("--data", help="dataset folder (optional with --resume: the run's own)")
    p.add_argument("--out", help="run folder: settings, metrics.jsonl, TensorBoard events, checkpoints and the "
                   "final model")
    p.add_argument("--config", help="JSON file of training settings, named as the options below with underscores, "
                   "e.g. {\"batch_size\": 16, \"model\": {\"d_model\": 128}} (a run's train_config.json works too)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--until", type=int, metavar="STEP", help="stop at this step (checkpointed; resume later)")
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="train data-parallel in N processes on this machine, one GPU each (or on CPU); "
                   "--batch-size is per process (default: 1)")
    hints = typing.get_type_hints(TrainConfig)
    group = p.add_argument_group("training settings")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data", "model"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = hints[f.name]
        extra = {"nargs": "?", "const": True} if kind is bool else {}
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_parser_for(kind, f.name),
                           default=argparse.SUPPRESS, metavar=f.name.upper() if kind is not bool else "BOOL",
                           help=f"{f.metadata.get('help', '')} (default: {_default_text(f.name, default)})",
                           **extra)
    mhints = typing.get_type_hints(WorldModelConfig)
    mgroup = p.add_argument_group("model settings (the vocabulary, frame shape and actions come from the data)")
    for f in dataclasses.fields(WorldModelConfig):
        if f.name in DATA_FIELDS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        described = MODEL_HELP.get(f.name)
        mgroup.add_argument(f"--model.{f.name}", dest=f"model.{f.name}", type=_parser_for(mhints[f.name], f.name),
                            default=argparse.SUPPRESS, metavar=f.name.upper(),
                            help=described and f"{described} (default: {_default_text(f.name, default)})")
    p.set_defaults(run=run_train_command)
    return p


def _without_gpus(argv: list[str]) -> list[str]:
    """The `worldsim train` arguments minus --gpus (the ranks must not launch again)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--gpus":
            skip = True
        elif not a.startswith("--gpus="):
            out.append(a)
    return out


def run_train_command(args: argparse.Namespace) -> int:
    """`worldsim train`: returns 0 when training finished, 2 on bad input (message on stderr)."""
    if args.gpus < 1:
        print(f"worldsim train: error: --gpus must be >= 1; got {args.gpus}", file=sys.stderr)
        return 2
    if args.gpus > 1 and "WORLD_SIZE" not in os.environ:    # launch the ranks; each runs this command
        import subprocess

        from .distributed import torchrun_command

        return subprocess.call(torchrun_command(args.gpus, _without_gpus(getattr(args, "argv", None) or sys.argv[2:])))
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if (k in train_fields and k not in ("data", "model"))
                 or k.startswith("model.")}
    try:
        if args.resume:
            if args.config:
                raise TrainError("--config cannot be combined with --resume (the run keeps its config; "
                                 "pass changes as options)")
            if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
                raise TrainError(f"--out {args.out} differs from --resume {args.resume}")
            trainer = Trainer.resume(args.resume, data=args.data, **overrides)
        else:
            if not args.out:
                raise TrainError("--out RUN_DIR is required (or --resume RUN_DIR)")
            config = TrainConfig.from_json(args.config) if args.config else TrainConfig()
            if args.data is None and config.data is None:
                raise TrainError("--data DIR is required")
            trainer = Trainer(config, data=args.data, out=args.out, **overrides)
        last = trainer.fit(until=args.until)
    except (TrainError, StreamError, CheckpointError) as e:
        print(f"worldsim train: error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.shutdown()
    out = trainer.out
    if not trainer.dist.is_main:
        return 0
    if trainer.step < trainer.config.steps:
        print(f"trained to step {trainer.step}; run folder {out} (resume with --resume {out})")
    else:
        print(f"trained to step {trainer.step}; {_held_out_summary(trainer, last)}; "
              f"run folder {out}, model in {out / MODEL_DIR}")
    return 0


def _held_out_summary(trainer: Trainer, last: dict[str, float]) -> str:
    """The held-out metrics of the run's last evaluation, in words: those fit() just returned, or the
    last ones in metrics.jsonl (a run resumed at its end evaluates nothing new)."""
    def evaluated(record: dict) -> bool:
        return any(k.startswith(("eval/", "rollout/")) for k in record)

    step, record = trainer.step, last
    metrics = trainer.out / METRICS_FILE
    if not evaluated(record) and metrics.is_file():
        logged = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        record = next((r for r in reversed(logged) if evaluated(r)), {})
        step = record.get("step")
    if not evaluated(record):
        return ("no held-out episodes to evaluate (--holdout-fraction 0)" if trainer.data.eval is None
                else "no held-out evaluation was run")

    def num(key: str) -> str:
        return f"{record[key]:z.3f}"                 # z: a value that rounds to zero prints 0.000, not -0.000

    parts = []
    if "eval/acc" in record:
        parts.append(f"next-frame accuracy {num('eval/acc')}"
                     + (f" (copying the previous frame: {num('eval/copy_acc')})" if "eval/copy_acc" in record else ""))
    for label, key in (("exact-frame rate", "eval/exact_frame"), ("reward mean absolute error", "eval/reward_mae"),
                       ("termination recall", "eval/done_recall"), ("termination precision", "eval/done_precision"),
                       ("open-loop rollout accuracy", "rollout/acc")):
        if key in record:
            parts.append(f"{label} {num(key)}")
    return ("held-out" if step == trainer.step else f"held-out (step {step})") + ": " + ", ".join(parts)
