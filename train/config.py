"""Every training setting (`TrainConfig`), and the schedules it describes (`Curriculum`, `lr_at`).

The settings are one flat dataclass, and stay flat on purpose: each field's name is at once a
keyword of `TrainConfig(...)`, a key of the run folder's train_config.json (old runs must load) and,
in kebab case, a `worldsim train` option. Nested groups would need every setting spelt two ways and
translated in each of those places; the sections below group them for the reader instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldsim import WorldModelConfig
from worldsim.checks import check_field_types

# Model config fields that come from the data and cannot be overridden.
DATA_FIELDS = ("vocab_size", "frame_shape", "num_actions", "action_box", "metadata")


class TrainError(ValueError):
    """Bad training input: config, data, run folder or checkpoint. The message says what to do."""


def _setting(default, help: str, **kw):
    """A dataclass field with its help text (lists and dicts copied per instance)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Every training setting. Saved as JSON in the run folder; `worldsim train` exposes each field
    as --kebab-case-name and each model field as --model.<name>."""

    # data
    data: str | None = _setting(None, "dataset folder (worldsim.data.dataset layout)")
    holdout_fraction: float = _setting(0.1, "fraction of episodes held out for evaluation (0: none)")
    split_seed: int = _setting(0, "seed of the train/held-out split")
    # model: overrides of WorldModelConfig (vocab, frame shape and actions come from the data)
    model: dict[str, Any] = _setting({}, "WorldModelConfig overrides, e.g. {\"d_model\": 128}")
    # optimisation
    init_from: str | None = _setting(None, "start from the weights of this model folder (fine-tuning, e.g. on more data) "
                                     "instead of a fresh initialisation; its sizes are kept")
    steps: int = _setting(1000, "total optimizer steps (the schedule's length)")
    lr: float = _setting(3e-4, "peak learning rate")
    min_lr_ratio: float = _setting(0.1, "final learning rate of the cosine decay, as a fraction of --lr")
    warmup_steps: int = _setting(100, "linear warm-up steps")
    weight_decay: float = _setting(0.1, "AdamW weight decay (not applied to norms, biases, embeddings or the "
                                   "scan's own decay and step parameters)")
    beta1: float = _setting(0.9, "AdamW beta1")
    beta2: float = _setting(0.95, "AdamW beta2")
    grad_clip: float = _setting(1.0, "clip the gradient norm to this (0: no clipping)")
    batch_size: int = _setting(16, "windows per step at the first curriculum stage")
    # sequence length
    curriculum: list = _setting([[0, 32]], "window length by training step: LEN, or STEP:LEN[:BATCH],... from step "
                                "STEP on, windows of LEN frames (and BATCH windows per step if given), "
                                "e.g. 0:32,2000:128,4000:512")
    batch_scaling: str = _setting("tokens", "how the batch follows the window length: tokens (the batch shrinks as "
                                  "windows grow, keeping the tokens per step about constant) or fixed")
    min_batch_size: int = _setting(1, "smallest batch that tokens scaling may shrink to")
    event_windows: float = _setting(0.0, "share of each batch's windows placed over a step that pays a reward or "
                                    "terminates (sparse rewards: the few such steps are otherwise almost never "
                                    "seen); the automatic --done-pos-weight allows for it (0: uniform windows)")
    # long context
    context_fraction: float = _setting(0.0, "leading fraction of each window that is context, its loss weighed by "
                                       "--prefix-loss-weight")
    prefix_loss_weight: float = _setting(0.0, "loss weight of the context frames (e.g. 0 or 0.1)")
    context_min_length: int = _setting(0, "split off the context only in windows at least this many frames long")
    tbptt_chunk: int = _setting(0, "truncated backpropagation: run each window in chunks of this many frames, the "
                                "model's state carried between them (0: off)")
    activation_checkpointing: bool = _setting(False, "recompute each layer's activations in the backward pass")
    # losses
    frame_loss_weight: float = _setting(1.0, "weight of the next-frame token cross-entropy")
    frame_focal_gamma: float = _setting(0.0, "focal loss exponent of the next-frame cross-entropy, (1 - p)^gamma per "
                                        "cell: the cells predicted wrong, such as rare transitions', weigh more "
                                        "(0: plain cross-entropy)")
    reward_loss_weight: float = _setting(1.0, "weight of the reward loss")
    reward_loss: str = _setting("mse", "reward loss: mse or smooth_l1")
    done_loss_weight: float = _setting(1.0, "weight of the termination loss (BCE with logits)")
    done_pos_weight: float = _setting(0.0, "weight of terminating steps in the termination loss and of paying steps in "
                                      "the reward loss (0: auto, the training data's ratio of other to terminating "
                                      "steps, at most 100; 1: unweighted)")
    # auxiliary state regularisation
    aux_loss_weight: float = _setting(0.0, "weight of the auxiliary reconstruction of an earlier frame (0: off)")
    aux_delay_min: int = _setting(1, "smallest distance, in frames, back to the frame the auxiliary loss reconstructs")
    aux_delay_max: int = _setting(16, "largest such distance (one is drawn per step)")
    aux_mode: str = _setting("cell", "what the auxiliary head reads: cell (each cell's features) or pooled (their "
                             "mean over the frame)")
    aux_hidden: int = _setting(0, "hidden width of the auxiliary head (0: the model width, --model.d_model)")
    # evaluation
    input_noise: float = _setting(0.0, "training against its own errors: per input frame a corruption level drawn "
                                  "uniformly in [0, this] and that fraction of cells replaced by random legal tokens "
                                  "(0: off; --model.noise-conditioning tells the model the level)")
    self_forcing: float = _setting(0.0, "training against its own errors: probability that an input frame is replaced by "
                                   "the model's own sample of it from a teacher-forced pass (0: off)")
    self_forcing_ramp: int = _setting(0, "steps over which --self-forcing ramps up from 0 (0: from the first step)")
    attention_frame_dropout: float = _setting(0.0, "training the memory: probability that each earlier frame in a "
                                              "frame's attention window is hidden from it (its own frame never is), "
                                              "so the model carries what it needs in the SSM state (0: off)")

    eval_every: int = _setting(500, "evaluate on the held-out episodes every this many steps (0: only at the end)")
    eval_at_end: bool = _setting(True, "evaluate on the held-out episodes when training stops")
    eval_windows: int = _setting(16, "held-out windows for teacher-forced metrics")
    eval_length: int = _setting(64, "frames per teacher-forced evaluation window")
    eval_batch_size: int = _setting(8, "windows or episodes evaluated at once")
    rollout_episodes: int = _setting(8, "held-out episodes for open-loop rollouts (0: none)")
    rollout_context: int = _setting(16, "real frames given to the model before an open-loop rollout generates")
    rollout_horizon: int = _setting(32, "frames an open-loop rollout generates")
    rollout_sampling: str = _setting("argmax", "how a rollout picks each token: argmax (the most likely) or sample")
    rollout_temperature: float = _setting(1.0, "softmax temperature when rollouts sample")
    # logging and checkpoints
    log_every: int = _setting(10, "log the mean of the training metrics every this many steps")
    save_every: int = _setting(500, "write a checkpoint every this many steps, and at the end (0: only at the end)")
    keep_last: int = _setting(3, "checkpoints kept (older ones are deleted)")
    tensorboard: bool = _setting(True, "write TensorBoard events into RUN_DIR/tb")
    progress: bool = _setting(True, "show a progress bar")
    # runtime
    seed: int = _setting(0, "seed of torch, numpy, python and the window sampler")
    device: str = _setting("auto", "torch device: auto (cuda if available), cpu, cuda or cuda:N")
    amp: str = _setting("auto", "mixed precision: auto (bf16 on CUDA), bf16 or off")
    num_threads: int = _setting(0, "torch CPU threads (0: torch's default)")

    def __post_init__(self) -> None:
        if not isinstance(self.curriculum, (list, tuple)) or \
                not all(isinstance(s, (list, tuple)) and len(s) in (2, 3) for s in self.curriculum):
            raise TrainError(f"TrainConfig: curriculum must be a list of [step, length] or [step, length, batch] "
                             f"stages, e.g. [[0, 32], [500, 64]]; got {self.curriculum!r}")
        self.curriculum = [list(s) for s in self.curriculum]
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise TrainError(f"TrainConfig: {what}")

        check_field_types(self, "TrainConfig", TrainError)
        need(0 <= self.holdout_fraction < 1, f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            need(0 <= getattr(self, name) < 1, f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("seed", "split_seed"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        # Adam moves each weight by about lr a step: above 1 a run only blows its weights up.
        need(0 < self.lr <= 1, f"lr must be in (0, 1], got {self.lr}")
        need(0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("batch_size", "min_batch_size"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(0 <= self.event_windows < 1, f"event_windows must be in [0, 1) (a share of each batch's windows), "
                                          f"got {self.event_windows}")
        need(self.batch_scaling in ("tokens", "fixed"), f"batch_scaling must be tokens or fixed, got {self.batch_scaling!r}")
        need(0 <= self.context_fraction < 1, f"context_fraction must be in [0, 1), got {self.context_fraction}")
        need(self.prefix_loss_weight >= 0, "prefix_loss_weight must be >= 0")
        need(self.tbptt_chunk >= 0, f"tbptt_chunk must be >= 0, got {self.tbptt_chunk}")
        need(self.reward_loss in ("mse", "smooth_l1"), f"reward_loss must be mse or smooth_l1, got {self.reward_loss!r}")
        need(0 <= self.frame_focal_gamma <= 10,
             f"frame_focal_gamma must be in [0, 10] (0: plain cross-entropy; 2 is usual), got {self.frame_focal_gamma}")
        need(self.aux_loss_weight >= 0, "aux_loss_weight must be >= 0")
        need(1 <= self.aux_delay_min <= self.aux_delay_max,
             f"need 1 <= aux_delay_min <= aux_delay_max, got {self.aux_delay_min}, {self.aux_delay_max}")
        need(self.aux_mode in ("cell", "pooled"), f"aux_mode must be cell or pooled, got {self.aux_mode!r}")
        need(0 <= self.input_noise <= 1, f"input_noise must be in [0, 1], got {self.input_noise}")
        need(0 <= self.self_forcing <= 1, f"self_forcing must be in [0, 1], got {self.self_forcing}")
        need(self.self_forcing_ramp >= 0, f"self_forcing_ramp must be >= 0, got {self.self_forcing_ramp}")
        need(0 <= self.attention_frame_dropout < 1,
             f"attention_frame_dropout must be in [0, 1) (a probability; 1 would hide every earlier frame), got "
             f"{self.attention_frame_dropout}")
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


def as_config(config: TrainConfig | dict | str | os.PathLike | None) -> TrainConfig:
    """A TrainConfig from itself, a dict of fields, a JSON file, or None (the defaults)."""
    if config is None:
        return TrainConfig()
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, (str, os.PathLike)):
        return TrainConfig.from_json(config)
    raise TrainError(f"config must be a TrainConfig, a dict or a JSON file, got {type(config).__name__}")


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# ---- schedules: window length and batch by step, learning rate by step ------------------------

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


def format_curriculum(stages) -> str:
    """[[0, 32], [2000, 128, 8]] -> "0:32,2000:128:8": a curriculum as it is typed on the command line."""
    return ",".join(":".join(str(v) for v in stage) for stage in stages)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up, then cosine decay to
    lr * min_lr_ratio at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
