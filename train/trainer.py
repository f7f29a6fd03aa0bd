"""The world-model training loop: `Trainer` and `train(...)`.

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
5. Losses (`train.losses`): next-frame token cross-entropy, reward (MSE or smooth L1), termination
   (BCE), and the optional auxiliary state-regularisation loss (a small head reconstructs the frame
   d steps ago from the current features). AdamW, warm-up + cosine schedule, gradient clipping.

Every `eval_every` steps: teacher-forced next-frame metrics on held-out episodes beside the
copy-previous-frame baseline, and open-loop rollout accuracy by the gap since each cell was last
seen (`train.evaluation`). Logs go to TensorBoard and `metrics.jsonl`; checkpoints (model as
safetensors + JSON, trainer state, optimizer, RNG states) are written atomically into the run
folder (`train.run_folder`) and a run resumes exactly where it stopped. Wall times are logged too:
each evaluation's (`time/eval_seconds`), and with a process's first record its setup and first
step (`time/setup_seconds`, `time/first_step_seconds`: where a GPU compiles and tunes kernels).

Where the rest lives: the settings and schedules in `train.config`, the data in
`train.training_data`, the aux head and optimizer groups in `train.modules`, the command line in
`train.train_cli`.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

from worldsim import WorldModel, runtime
from worldsim.stop_signals import StopSignals, TrainingStopped

from . import distributed, run_folder
from .config import Curriculum, TrainConfig, TrainError, as_config, lr_at
from .evaluation import Meter, dream_temperature, held_out_metrics, legal_tokens
from .losses import aux_reconstruction_loss, aux_valid, prediction_losses, time_weights
from .modules import AuxHead, parameter_groups
from .own_errors import corrupt_frames, self_forced_frames, self_forcing_probability
from .training_data import DataSource, auto_done_pos_weight, check_fits, load_data, model_config_for
from .windows import Window, WindowSampler


# --amp in the runtime's words ("auto": bf16 on CUDA, float32 elsewhere); training in bf16 needs CUDA.
AMP_PRECISION = {"auto": "auto", "bf16": "bfloat16", "off": "float32"}
# Steps in a row with a non-finite loss or gradient after which training stops as diverged.
MAX_NONFINITE_STEPS = 10


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Owns the model, aux head, optimizer, sampler, logs and checkpoints of one run.

    Trainer(config, data, out)             a new run (out=None: nothing written to disk)
    Trainer.resume(out, data=None, ...)    continue the run in `out` from its latest checkpoint
    trainer.fit(until=None)                train to `config.steps` (or stop at step `until`)
    trainer.train_step(window) / trainer.compute_gradients(window) / trainer.evaluate()
    """

    def __init__(self, config: TrainConfig | dict | str | os.PathLike | None = None, data: DataSource | None = None,
                 out: str | os.PathLike | None = None, **overrides):
        config = as_config(config).replace(**overrides) if overrides else as_config(config)
        self.out = Path(out) if out is not None else None
        if self.out is not None and self.out.exists() and not self.out.is_dir():   # before the data loads
            raise TrainError(f"out {str(self.out)!r} is a file; expected a folder (a new one, or one written before)")
        if self.out is not None and run_folder.latest_checkpoint(self.out) is not None:
            raise TrainError(f"{self.out} already holds a run with checkpoints: continue it with "
                             f"--resume {self.out}, or choose another --out")
        self._setup(config, data, checkpoint_dir=None)

    @classmethod
    def resume(cls, out: str | os.PathLike, data: DataSource | None = None, **overrides) -> "Trainer":
        """Continue the run in `out` exactly where its latest checkpoint left it. `overrides` may
        change training settings (e.g. steps to train longer), not the model."""
        out = Path(out)
        checkpoint_dir = run_folder.checkpoint_to_resume(out)
        config = TrainConfig.from_json(out / run_folder.CONFIG_FILE)
        model_changes = [k for k in overrides if k == "model" or k.startswith("model.")]
        if model_changes:
            raise TrainError(f"cannot change the model of a resumed run ({', '.join(model_changes)})")
        config = config.replace(**overrides)
        self = cls.__new__(cls)
        self.out = out
        self._setup(config, data, checkpoint_dir=checkpoint_dir)
        return self

    # ---- construction ----

    def _setup(self, config: TrainConfig, data: DataSource | None, checkpoint_dir: Path | None) -> None:
        began = time.perf_counter()
        self.config = config
        self._nonfinite_run = 0
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.dist = distributed.from_environment()   # torchrun's ranks, or rank 0 of 1
        try:
            self.device = distributed.device_for(self.dist, runtime.resolve_device(config.device))
        except ValueError as e:
            raise TrainError(str(e)) from None
        if self.device.type == "cuda":
            torch.set_float32_matmul_precision("high")
        self.precision = runtime.resolve_precision(AMP_PRECISION[config.amp], self.device)
        if self.precision == "bfloat16" and self.device.type != "cuda":
            raise TrainError("amp=bf16 needs a CUDA device (use --amp off on CPU)")

        if data is None:
            data = config.data
        if data is None:
            raise TrainError("no training data: pass --data DIR (or data=... in Python)")
        if isinstance(data, (str, os.PathLike)) and config.data != str(data):
            self.config = config = config.replace(data=str(data))
        self.data = d = load_data(data, config)

        seed_everything(config.seed)                  # before any weight is drawn
        if checkpoint_dir is None and config.init_from:
            self.model = self._initial_weights(config, d).to(self.device)
        elif checkpoint_dir is None:
            self.model = WorldModel(model_config_for(d, config.model)).to(self.device)
        else:
            self.model = run_folder.load_model(checkpoint_dir, self.device)
        mc = self.model.config
        check_fits(d, mc)
        self.legal = legal_tokens(self.model, self.device)   # what corrupted or self-forced inputs may hold
        self.self_forcing_temperature = dream_temperature(self.model)   # self-forced inputs decode as the dream does
        self.curriculum = Curriculum(config.curriculum, config.batch_size, config.batch_scaling, config.min_batch_size)
        longest = len(d.train.frames) - 1
        if self.curriculum.max_length > longest:
            raise TrainError(f"the curriculum asks for windows of {self.curriculum.max_length} frames but the "
                             f"training stream holds {len(d.train.frames)} frames (at most {longest}); "
                             f"collect more episodes or shorten the curriculum")
        # The model's own run-time switch (not saved with it): recompute each layer in backward.
        self.model.activation_checkpointing = config.activation_checkpointing
        try:
            self.model.attention_frame_dropout = config.attention_frame_dropout
        except ValueError as e:
            raise TrainError(str(e)) from None

        self.aux_head = None
        if config.aux_loss_weight > 0:
            self.aux_head = AuxHead(mc.d_model, mc.vocab_size, mc.frame_shape, config.aux_delay_max,
                                    config.aux_mode, config.aux_hidden).to(self.device)
        modules = [self.model] + ([self.aux_head] if self.aux_head is not None else [])
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(parameter_groups(modules, config.weight_decay), lr=config.lr,
                                           betas=(config.beta1, config.beta2), **({"fused": True} if fused else {}))
        self.sampler = WindowSampler(d.train, seed=self._sampler_seed(), event_share=config.event_windows)
        drawn = self.sampler.sampled_rate(d.train.terminated, self.curriculum.max_length) if config.event_windows \
            else None                                  # (None: the data's own rate, exactly as before)
        self.done_pos_weight = config.done_pos_weight or auto_done_pos_weight(d.train.terminated, sampled_rate=drawn)
        # The same on every rank: all ranks draw the same aux delay each step.
        self.aux_rng = np.random.Generator(np.random.PCG64([config.seed, 2]))
        self.step = 0
        self.tokens_seen = 0
        self._interval = Meter()                      # training metrics since the last log line
        self._last_saved = -1
        self._last_eval = -1
        self._resumed_from = None
        self.history: list[dict[str, float]] = []  # every record logged by this process, with its step
        if self.out is not None and self.dist.is_main and self.out.is_dir():
            run_folder.clean_leftovers(self.out)
        if checkpoint_dir is not None:
            self._load_checkpoint(checkpoint_dir)
        elif self.out is not None and self.dist.is_main:
            run_folder.write_run_config(self.out, self.config, self.model, d)
        # What forward and backward go through: DDP wrappers in a multi-process run (gradients are
        # averaged across ranks in backward), the modules themselves otherwise.
        self.train_model = distributed.wrap(self.model, self.dist)
        self.train_aux_head = distributed.wrap(self.aux_head, self.dist)
        # Where a run's first minutes go (data, model, then the first step's kernel compiling and
        # tuning): logged with the first record of the next fit.
        self._startup_times: dict[str, float] | None = {"time/setup_seconds": time.perf_counter() - began}

    @staticmethod
    def _initial_weights(config: TrainConfig, data) -> WorldModel:
        """The model `init_from` names, to fine-tune: its own sizes, so --model settings may not change them."""
        if config.model:
            raise TrainError(f"init_from {config.init_from!r} keeps that model's sizes; leave out the model "
                             f"settings {sorted(config.model)}")
        if not Path(config.init_from).is_dir():
            raise TrainError(f"init_from {config.init_from!r} is not a model folder (one written by `worldsim train`)")
        try:
            model = WorldModel.from_pretrained(config.init_from)
        except (OSError, ValueError) as e:
            raise TrainError(f"init_from {config.init_from!r}: {e}") from e
        meta = model.config.metadata or {}
        for key in ("env_id", "codec"):
            if key in meta and key in data.metadata and meta[key] != data.metadata[key]:
                raise TrainError(f"init_from {config.init_from!r} was trained on {key} {meta[key]!r}; this data has "
                                 f"{data.metadata[key]!r}")
        model.config.metadata = {**meta, **data.metadata}      # what it is trained on now
        return model

    def _sampler_seed(self, step: int | None = None) -> list[int]:
        """One process: [seed, 1] (as always). Rank r of a multi-process run: its own stream,
        [seed, 1, r], or [seed, 1, r, step] when it restarts at `step` after a resume."""
        seed = [self.config.seed, 1]
        if self.dist.enabled or step is not None:
            seed.append(self.dist.rank)
        if step is not None:
            seed.append(step)
        return seed

    # ---- one step ----

    def autocast(self) -> torch.autocast:
        return runtime.autocast(self.device, self.precision)

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
            if delay is None:
                delay = int(self.aux_rng.integers(c.aux_delay_min, c.aux_delay_max + 1))
            valid = aux_valid(win.resets, delay)
            aux_norm = (distributed.all_reduce_sum(valid.sum().float(), self.dist) / world).clamp_min(1)
        frames, noise_level = self._training_inputs(win)
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
                    out = self.train_model(frames[:, sl], win.actions[:, sl], state=state,
                                           return_state=sl.stop < length, resets=win.resets[:, sl],
                                           noise_level=None if noise_level is None else noise_level[:, sl])
                    parts = prediction_losses(out, win, sl, weight[:, sl], normalizer, c.reward_loss, meter,
                                              self.done_pos_weight, c.frame_focal_gamma)
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

    def _training_inputs(self, win: Window) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The input frames the model trains on (the window's, or wrong the way dream frames are:
        `train.own_errors`) and their corruption level for a noise-conditioned model (else None)."""
        c = self.config
        frames = win.frames
        prob = self_forcing_probability(self.step, c.self_forcing, c.self_forcing_ramp)
        if prob > 0:
            frames = self_forced_frames(self.model, win, prob, self.legal, self.autocast,
                                        temperature=self.self_forcing_temperature)
        level = None
        if c.input_noise > 0:
            frames, level = corrupt_frames(frames, c.input_noise, self.legal)
        if self.model.config.noise_conditioning:
            return frames, level if level is not None else torch.zeros(frames.shape[:2], device=frames.device)
        return frames, None

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
            self._nonfinite_run = 0
        else:
            # A rare bad batch is skipped; a run of them is divergence, which must not pass as training.
            stats["skipped_nonfinite"] = 1.0
            self.optimizer.zero_grad(set_to_none=True)
            self._nonfinite_run += 1
            if self._nonfinite_run >= MAX_NONFINITE_STEPS:
                self.step += 1                       # steps count from 1, as in the logs
                raise self._divergence(f"at {self._nonfinite_run} steps in a row")
        stats.update(grad_norm=norm, lr=lr, seq_len=float(win.length), batch_size=float(win.batch_size))
        self.step += 1
        return stats

    def _divergence(self, when: str) -> TrainError:
        """The error for a run whose last `self._nonfinite_run` steps (up to self.step) were skipped."""
        first = self.step - self._nonfinite_run + 1
        return TrainError(
            f"training diverged: the loss or gradient norm was not finite {when} (steps {first}-{self.step}); "
            f"stopped without writing a final model (the last checkpoint, if any, is kept). Lower the learning "
            f"rate (--lr, now {self.config.lr:g}) or check the data (`worldsim collect --verify`)")

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics: eval/* (teacher-forced) and rollout/* (open loop). {} without held-out data."""
        return held_out_metrics(self.model, self.data.eval, self.config, device=self.device, autocast=self.autocast)

    # ---- the loop ----

    def fit(self, until: int | None = None) -> dict[str, float]:
        """Train until `config.steps` (or step `until`, for a run to be resumed later). Logs,
        evaluates and checkpoints as configured. Returns the last logged train and eval metrics."""
        c = self.config
        if until is not None and (isinstance(until, bool) or not isinstance(until, int) or until < 1):
            raise TrainError(f"until must be a step number >= 1 (where to stop, to resume later); got {until!r}")
        end = c.steps if until is None else min(until, c.steps)
        main = self.dist.is_main            # rank 0 alone shows progress, evaluates, logs and saves
        save = self.out is not None and main
        log = run_folder.RunLog(self.out, self.step, self._resumed_from is not None, c.tensorboard) if save else None
        from tqdm.auto import tqdm

        h, w = self.model.config.frame_shape
        last: dict[str, float] = {}
        bar = tqdm(total=end, initial=self.step, disable=not (c.progress and main), desc="train", unit="step",
                   dynamic_ncols=True)
        start_time = time.perf_counter()
        with StopSignals() as stop:
            try:
                while self.step < end:
                    length, batch = self.curriculum.at(self.step)
                    t0 = time.perf_counter()
                    win = self.sampler.sample(batch, length)
                    stats = self.train_step(win)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    dt = time.perf_counter() - t0
                    if self._startup_times is not None and "time/first_step_seconds" not in self._startup_times:
                        self._startup_times["time/first_step_seconds"] = dt
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
                        if self._startup_times is not None:
                            record.update(self._startup_times)
                            self._startup_times = None
                        self._interval = Meter()
                        self._log(record, log)
                        last.update(record)
                    if main and c.eval_every and self.step % c.eval_every == 0:
                        last.update(self._evaluate_and_log(log))
                    if save and c.save_every and self.step % c.save_every == 0:
                        self.save_checkpoint()
                    stopped_by = self._stop_agreed(stop)
                    if stopped_by is not None:
                        raise self._stopped(stopped_by, save)
                if main and c.eval_at_end and self._last_eval != self.step:
                    last.update(self._evaluate_and_log(log))
                if self.step >= c.steps and self._nonfinite_run:
                    # A run can end while diverging, before MAX_NONFINITE_STEPS: its model is no result.
                    raise self._divergence(f"at the last {self._nonfinite_run} steps")
                if save:
                    if self._last_saved != self.step:
                        self.save_checkpoint()
                    if self.step >= c.steps:
                        run_folder.save_final_model(self.out, self.model)
                distributed.barrier(self.dist)           # no rank leaves before rank 0 has saved
            finally:
                bar.close()
                if log is not None:
                    log.close()
        last["time/fit_seconds"] = time.perf_counter() - start_time
        return last

    def _stop_agreed(self, stop: StopSignals) -> int | None:
        """The stop signal if this rank or any other got one: ranks leave at the same step, so none
        waits forever in a collective the others have left."""
        if not self.dist.enabled:
            return stop.requested
        flag = torch.tensor([0 if stop.requested is None else 1], device=self.device)
        return signal.SIGTERM if float(distributed.all_reduce_sum(flag, self.dist)) > 0 else None

    def _stopped(self, signal_number: int, save: bool) -> TrainingStopped:
        """Leaving on a stop signal: the checkpoint of this step first (rank 0), so `resume` goes on exactly."""
        checkpoint = None
        if save:
            saved = self._last_saved == self.step
            checkpoint = run_folder.latest_checkpoint(self.out) if saved else self.save_checkpoint()
        distributed.barrier(self.dist)
        return TrainingStopped(signal_number, self.step, checkpoint, work="the world model's training")

    def _evaluate_and_log(self, log: run_folder.RunLog | None) -> dict[str, float]:
        self._last_eval = self.step
        began = time.perf_counter()
        record = self.evaluate()
        if record:
            record["time/eval_seconds"] = time.perf_counter() - began
            self._log(record, log)
        return record

    def _log(self, record: dict[str, float], log: run_folder.RunLog | None) -> None:
        self.history.append({"step": self.step, **record})
        if log is not None:
            log.write(self.step, record)

    # ---- checkpoints ----

    def save_checkpoint(self) -> Path:
        """RUN_DIR/checkpoints/checkpoint-<step>: everything `resume` needs to go on exactly."""
        if self.out is None:
            raise TrainError("this Trainer has no run folder (out=None): nothing to save into")
        tensors = run_folder.rng_state_tensors()
        if self.aux_head is not None:
            tensors.update({f"aux_head.{k}": v.detach().cpu().contiguous()
                            for k, v in self.aux_head.state_dict().items()})
        final = run_folder.write_checkpoint(self.out, self.step, self.model, tensors, self.optimizer.state_dict(), {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "sampler": self.sampler.state_dict(),          # rank 0's
            "world_size": self.dist.world_size,
            "aux_rng": self.aux_rng.bit_generator.state,
            "rng": run_folder.rng_state_json(),
            "interval": {k: [float(self._interval.sums[k]), float(self._interval.weights[k])]
                         for k in self._interval.sums},
            "last_eval": self._last_eval,
            "train_config": self.config.to_dict(),
        }, keep_last=self.config.keep_last)
        self._last_saved = self.step
        return final

    def _load_checkpoint(self, checkpoint_dir: Path) -> None:
        state, tensors, optimizer_state = run_folder.read_checkpoint(checkpoint_dir, self.device)
        aux = {k[len("aux_head."):]: v for k, v in tensors.items() if k.startswith("aux_head.")}
        if (self.aux_head is None) != (not aux):
            raise TrainError(f"checkpoint {checkpoint_dir} was trained with{'' if aux else 'out'} the auxiliary "
                             f"head; aux_loss_weight must stay {'> 0' if aux else '0'} when resuming")
        if self.aux_head is not None:
            try:
                self.aux_head.load_state_dict(aux)
            except RuntimeError as e:
                raise TrainError(f"checkpoint {checkpoint_dir}: the aux head does not fit this config ({e})") from e
        try:
            self.optimizer.load_state_dict(optimizer_state)
        except (ValueError, KeyError) as e:
            raise TrainError(f"checkpoint {checkpoint_dir}: optimizer state does not fit the model ({e})") from e
        self.step = int(state["step"])
        self.tokens_seen = int(state["tokens_seen"])
        if state.get("world_size", 1) == 1 and not self.dist.enabled:
            self.sampler.load_state_dict(state["sampler"])     # one process before and now: exactly as it was
        else:                                                  # ranks changed: each rank a fresh stream
            self.sampler = WindowSampler(self.data.train, seed=self._sampler_seed(self.step),
                                         event_share=self.config.event_windows)
        self.aux_rng.bit_generator.state = state["aux_rng"]
        run_folder.restore_rng(state["rng"], tensors)
        self._interval = Meter()
        for k, (s, w) in state.get("interval", {}).items():
            self._interval.add(k, torch.tensor(s), w)
        self._last_saved = self.step
        self._last_eval = int(state.get("last_eval", -1))
        self._resumed_from = checkpoint_dir
        if self.out is not None and self.dist.is_main:
            run_folder.update_run_config(self.out, self.config)


def train(config: TrainConfig | dict | str | os.PathLike | None = None, *, data: DataSource | None = None,
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
