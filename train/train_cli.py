"""`worldsim train`: its options (every TrainConfig and model setting), running it, and the summary
it prints at the end.

    worldsim train --data DIR --out RUN [--config FILE.json] [--lr ...] [--model.d_model ...]
    worldsim train --resume RUN [--steps N]          # continue a run exactly where it stopped
    worldsim train ... --gpus N                      # data-parallel: torchrun starts N ranks of this command
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from worldsim import CheckpointError, WorldModelConfig
from worldsim.checkpoint import NoSpaceError
from worldsim.data.stream import StreamError
from worldsim.stop_signals import TrainingStopped

from . import distributed
from .config import DATA_FIELDS, TrainConfig, TrainError, format_curriculum, parse_curriculum
from .flags import add_dataclass_flags
from .run_folder import METRICS_FILE, MODEL_DIR, read_metrics
from .trainer import Trainer


def parse_block_sizes(text: str):
    """"7x7,4x4" -> [[7, 7], [4, 4]]; "none" -> None; or JSON."""
    text = text.strip()
    if text.lower() == "none":
        return None
    if re.fullmatch(r"\d+x\d+(,\d+x\d+)*", text):
        return [[int(v) for v in b.split("x")] for b in text.split(",")]
    if not text.startswith("["):
        raise ValueError("block sizes must be HxW per layer, comma-separated (e.g. 7x7,4x4), none, or JSON")
    return json.loads(text)


# How options read and show what their annotation alone cannot say (see train.flags).
TRAIN_FLAGS = {"curriculum": {"parse": parse_curriculum, "show": format_curriculum}}

# One line per model setting for `worldsim train --help` (the data fixes vocab_size, frame_shape, the
# actions (num_actions, action_box) and metadata). A field missing here shows no help, which
# tests/test_cli_help.py catches.
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
    "spatial_rotary": "turn a quarter of each attention head's rotary pairs by the cell's row and a quarter by its "
                      "column, so attention can pick a cell by its offset (e.g. the one the agent faces)",
    "neighbour_mixing": "give each cell its 3x3 neighbours' features (a depthwise convolution) before each MLP",
    "mlp_ratio": "hidden width of each layer's MLP as a multiple of the model width",
    "noise_conditioning": "tell the model the corruption level of its input frames (adaLN, beside the action) when "
                          "training with --input-noise; the dream runs at level 0",
}
MODEL_FLAGS = {name: {"help": text} for name, text in MODEL_HELP.items()}
MODEL_FLAGS["block_sizes"]["parse"] = parse_block_sizes


def add_train_parser(subparsers, help: str | None = None) -> argparse.ArgumentParser:
    """Register `worldsim train` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "train", help=help,
        description="Train a world model on episodes collected with `worldsim collect`. Settings come "
        "from the defaults, then --config FILE.json, then the options below. --resume RUN_DIR continues a "
        "run exactly where it stopped. At the end it prints the held-out metrics and where the model is.",
    )
    p.add_argument("--data", nargs="+", metavar="DIR",
                   help="dataset folder, or several of one env (optional with --resume of a one-folder run: the "
                   "run's own)")
    p.add_argument("--out", help="run folder: settings, metrics.jsonl, TensorBoard events, checkpoints and the "
                   "final model")
    p.add_argument("--config", help="JSON file of training settings, named as the options below with underscores, "
                   "e.g. {\"batch_size\": 16, \"model\": {\"d_model\": 128}} (a run's train_config.json works too)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    p.add_argument("--until", type=int, metavar="STEP", help="stop at this step (checkpointed; resume later)")
    p.add_argument("--gpus", type=int, default=1, metavar="N",
                   help="train data-parallel in N processes on this machine, one GPU each (or on CPU); "
                   "--batch-size is per process (default: 1)")
    settings = p.add_argument_group("training settings")
    add_dataclass_flags(settings, TrainConfig, skip=("data", "model"), extra=TRAIN_FLAGS)
    model = p.add_argument_group("model settings (the vocabulary, frame shape and actions come from the data)")
    add_dataclass_flags(model, WorldModelConfig, prefix="model.", skip=DATA_FIELDS, extra=MODEL_FLAGS, bare_bool=False)
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
    """`worldsim train`: returns 0 when training finished (or reached --until), 2 on bad input (message on
    stderr), 128 + the signal's number when a stop signal ended it after a checkpoint."""
    if args.gpus < 1:
        print(f"worldsim train: error: --gpus must be >= 1; got {args.gpus}", file=sys.stderr)
        return 2
    if args.gpus > 1 and "WORLD_SIZE" not in os.environ:    # launch the ranks; each runs this command
        argv = _without_gpus(getattr(args, "argv", None) or sys.argv[2:])
        return subprocess.call(distributed.torchrun_command(args.gpus, argv))
    if args.data is not None and len(args.data) == 1:
        args.data = args.data[0]                 # one folder: the run's config names it, so --resume finds it
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
    except TrainingStopped as e:
        if e.checkpoint is not None:
            print(f"worldsim train: {e}; continue with --resume {trainer.out}", file=sys.stderr)
        return e.exit_code
    except (TrainError, StreamError, CheckpointError) as e:
        print(f"worldsim train: error: {e}", file=sys.stderr)
        return 2
    except NoSpaceError as e:                  # not bad input: the same command works once there is room
        print(f"worldsim train: error: {e}", file=sys.stderr)
        return 1
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
    if not evaluated(record) and (trainer.out / METRICS_FILE).is_file():
        logged = read_metrics(trainer.out)
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
    for label, key in (("exact-frame rate", "eval/exact_frame"),
                       ("with 1% of input cells corrupted", "eval/exact_frame_corrupted"),
                       ("reward mean absolute error", "eval/reward_mae"),
                       ("termination recall", "eval/done_recall"), ("termination precision", "eval/done_precision"),
                       ("open-loop rollout accuracy", "rollout/acc")):
        if key in record:
            parts.append(f"{label} {num(key)}")
    return ("held-out" if step == trainer.step else f"held-out (step {step})") + ": " + ", ".join(parts)
