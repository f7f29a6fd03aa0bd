"""The run folder of `worldsim train`: its layout, checkpoints, RNG states and logs on disk.

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

Every file and folder is written through the project's one atomic writer
(`worldsim.checkpoint.atomic_write` / `make_temp_dir`): a checkpoint is built in a temporary folder
and renamed when complete, so a crash never leaves half a checkpoint under a real name.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import reprlib
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from worldsim import CheckpointError, WorldModel
from worldsim.checkpoint import NoSpaceError, atomic_write, is_out_of_space, make_temp_dir
from worldsim.checks import output_folder
from worldsim.json_io import json_default, write_json

from .config import TrainConfig, TrainError

if TYPE_CHECKING:
    from .training_data import TrainingData

FORMAT_VERSION = 1
CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tb"
LATEST_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
TRAINER_TENSORS = "trainer.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
TRAINER_STATE = "trainer_state.json"


# ---- JSON ------------------------------------------------------------------------------------

def write_run_config(run_dir: Path, config: TrainConfig, model: WorldModel, data: TrainingData) -> None:
    """RUN_DIR/train_config.json: the settings, the model config and a summary of the data."""
    output_folder(run_dir, "out", TrainError)
    write_json(run_dir / CONFIG_FILE, {
        "format_version": FORMAT_VERSION,
        "train": config.to_dict(),
        "model": model.config.to_dict(),
        "data": {
            "source": data.source, "env_id": data.env_id, "vocab_size": data.vocab_size,
            "frame_shape": data.frame_shape, "num_actions": data.num_actions,
            "train_frames": len(data.train.frames), "train_episodes": int(np.sum(data.train.episode_start)),
            "eval_frames": 0 if data.eval is None else len(data.eval.frames),
            "eval_episodes": 0 if data.eval is None else int(np.sum(data.eval.episode_start)),
        },
        "parameters": sum(p.numel() for p in model.parameters()),
    })


def update_run_config(run_dir: Path, config: TrainConfig) -> None:
    """Record the settings a resumed run goes on with (e.g. more steps), if they changed."""
    saved = json.loads((run_dir / CONFIG_FILE).read_text())
    if saved.get("train") != config.to_dict():
        saved["train"] = config.to_dict()
        write_json(run_dir / CONFIG_FILE, saved)


# ---- metrics log -----------------------------------------------------------------------------

def _parse_metrics(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, lines dropped) of a metrics.jsonl. A line that does not parse as a JSON object
    (a write cut short by a crash) is dropped with a warning rather than ending the run's history."""
    records, dropped = [], 0
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            dropped += 1
            warnings.warn(f"{path}: line {number} is not a complete JSON record (a write cut short?); dropped",
                          RuntimeWarning, stacklevel=3)
    return records, dropped


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Every record of RUN_DIR/metrics.jsonl, in order ([] without one; torn lines dropped)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return []
    return _parse_metrics(path)[0]


class RunLog:
    """Where rank 0 logs a run: metrics.jsonl (one JSON object per record) and TensorBoard events.

    Opening it makes metrics.jsonl read as one run: a resumed run drops what a crashed run logged
    after its last checkpoint (records past `step`); a fresh run in a folder without checkpoints
    starts a new log."""

    def __init__(self, run_dir: Path, step: int, resumed: bool, tensorboard: bool):
        self.path = run_dir / METRICS_FILE
        run_dir.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and resumed:
            records, dropped = _parse_metrics(self.path)
            kept = [r for r in records if isinstance(r.get("step", 0), (int, float)) and r.get("step", 0) <= step]
            if dropped or len(kept) != len(records):
                text = "".join(json.dumps(r, default=json_default) + "\n" for r in kept)
                atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        elif self.path.is_file() and not resumed and step == 0:
            self.path.unlink()
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=step + 1 if step else None)

    def write(self, step: int, record: dict[str, float]) -> None:
        line = {"step": step, "time": round(time.time(), 3), **record}
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(line, default=json_default) + "\n")
        except OSError as e:
            if is_out_of_space(e):     # a torn last line is dropped on resume; the checkpoints are intact
                raise NoSpaceError(f"cannot append to {self.path}: no space left on device; the checkpoints "
                                   "written so far are kept: free some space, then resume with --resume") from e
            raise
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# ---- RNG states ------------------------------------------------------------------------------

def rng_state_json() -> dict:
    """The python and numpy global RNG states, as JSON."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def rng_state_tensors() -> dict[str, torch.Tensor]:
    """The torch CPU RNG state ("rng.torch") and each CUDA device's ("rng.cuda.<i>")."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    return tensors


def _saved_states(state_json: dict) -> tuple[tuple, tuple]:
    """The python and numpy RNG states of `rng_state_json`'s output, as their setters take them."""
    version, state, gauss = state_json["python"]
    name, keys, pos, has_gauss, cached = state_json["numpy"]
    return (version, tuple(state), gauss), (name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached)


def restore_rng(state_json: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Put back what `rng_state_json` and `rng_state_tensors` saved (CUDA states only onto as many
    devices as were saved)."""
    python_state, numpy_state = _saved_states(state_json)
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                              key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


# ---- checkpoints -----------------------------------------------------------------------------

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


def checkpoint_to_resume(run_dir: Path) -> Path:
    """The checkpoint a resumed run starts from; TrainError if `run_dir` is not a run that has one."""
    if not run_dir.is_dir():
        raise TrainError(f"cannot resume: run folder {run_dir} does not exist")
    if not (run_dir / CONFIG_FILE).is_file():
        raise TrainError(f"cannot resume: {run_dir} has no {CONFIG_FILE} (not a worldsim training run)")
    _check_run_config(run_dir / CONFIG_FILE)
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise TrainError(f"cannot resume: {run_dir} has no complete checkpoint yet (start the run again "
                         f"without --resume, into an empty folder)")
    # The newest checkpoint that reads whole; a damaged newer one is passed over, and said so.
    candidates = [latest] + [p for p in reversed(list_checkpoints(run_dir)) if p != latest]
    problems = []
    for checkpoint_dir in candidates:
        try:
            read_checkpoint(checkpoint_dir, torch.device("cpu"))
            load_model(checkpoint_dir, torch.device("cpu"))
        except TrainError as e:
            problems.append(str(e))
            continue
        if problems:
            warnings.warn(f"resuming from {checkpoint_dir.name}: newer checkpoints cannot be read ({'; '.join(problems)})",
                          RuntimeWarning, stacklevel=2)
        return checkpoint_dir
    raise TrainError(f"cannot resume: no checkpoint of {run_dir} can be read ({'; '.join(problems)})")


def _parse_json(text: str, what: str, expected: str):
    """json.loads, or a TrainError "<what> is not valid JSON (why); expected <expected>"."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise TrainError(f"{what} is not valid JSON ({'the file is empty' if not text.strip() else e}); "
                         f"expected {expected}") from None


def _check_run_config(path: Path) -> None:
    """A run's train_config.json is what write_run_config wrote: an empty or foreign file would
    otherwise resume with the default settings and fail later for want of data."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TrainError(f"cannot resume: {path} cannot be read ({e})") from None
    saved = _parse_json(text, f"cannot resume: {path}", "the run's settings as `worldsim train` wrote them")
    if not isinstance(saved, dict) or saved.get("format_version") != FORMAT_VERSION or \
            not isinstance(saved.get("train"), dict):
        raise TrainError(f"cannot resume: {path} must hold the run's settings, an object with format_version "
                         f"{FORMAT_VERSION} and \"train\" (the training settings); got {reprlib.repr(saved)}")


def write_checkpoint(run_dir: Path, step: int, model: WorldModel, tensors: dict[str, torch.Tensor],
                     optimizer_state: dict, state: dict, keep_last: int) -> Path:
    """Write checkpoints/checkpoint-<step> atomically (temp folder, then rename), point
    RUN_DIR/latest at it, and delete all but the last `keep_last`. `tensors` go into
    trainer.safetensors, `state` (JSON) into trainer_state.json after the format version."""
    root = run_dir / CHECKPOINTS_DIR
    name = f"checkpoint-{step:08d}"
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = make_temp_dir(root, f".tmp-{name}-")
        model.save_pretrained(tmp / MODEL_DIR)
        atomic_write(tmp / TRAINER_TENSORS,       # on disk, with the usual permissions, before the rename
                     lambda t: save_file(tensors, t, metadata={"format": "worldsim-trainer"}))
        atomic_write(tmp / OPTIMIZER_FILE, lambda t: torch.save(optimizer_state, t))
        write_json(tmp / TRAINER_STATE, {"format_version": FORMAT_VERSION, **state})
        final = root / name       # already there when the same step is saved again (e.g. right after a resume)
        _move_into_place(tmp, final, trash=root / f".old-{name}-{os.getpid()}")
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_out_of_space(e):
            raise _no_space(f"checkpoint {root / name}", run_dir) from e
        raise
    atomic_write(run_dir / LATEST_FILE, lambda t: Path(t).write_text(f"{CHECKPOINTS_DIR}/{name}\n"))
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def clean_leftovers(run_dir: Path) -> list[str]:
    """Remove what a crash in the middle of a write left in a run folder: temporary model and
    checkpoint folders, a replaced model's folder and half-written files (``.NAME.xxxxxxxx.tmp``).
    Called before training starts, when no write of this run is under way. Returns what went."""
    gone = []
    patterns = (".tmp-model-*", ".old-model-*", f"{CHECKPOINTS_DIR}/.tmp-checkpoint-*", f"{CHECKPOINTS_DIR}/.old-*",
                ".*.tmp")
    for pattern in patterns:
        for path in run_dir.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            gone.append(str(path.relative_to(run_dir)))
    return gone


def read_checkpoint(checkpoint_dir: Path, device: torch.device) -> tuple[dict, dict[str, torch.Tensor], dict]:
    """(trainer_state.json, trainer.safetensors, optimizer state) of a checkpoint folder, each
    checked before the trainer uses it; the model is read apart (`load_model`)."""
    where = checkpoint_dir / TRAINER_STATE
    try:
        text = where.read_text()
        tensors = load_file(checkpoint_dir / TRAINER_TENSORS)
        optimizer_state = torch.load(checkpoint_dir / OPTIMIZER_FILE, map_location=device, weights_only=True)
    except Exception as e:  # missing, truncated or foreign files
        raise TrainError(f"checkpoint {checkpoint_dir} cannot be read: {e}") from e
    state = _parse_json(text, str(where), "the trainer state this checkpoint was written with")
    if not isinstance(state, dict):
        raise TrainError(f"{where} must hold a JSON object (the trainer state); got {reprlib.repr(state)}")
    if state.get("format_version") != FORMAT_VERSION:
        raise TrainError(f"{where}: format_version must be {FORMAT_VERSION}; got {state.get('format_version')!r} "
                         "(not a trainer state this version wrote)")
    for key in ("step", "tokens_seen"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TrainError(f"{where}: {key} must be a non-negative integer; got {value!r}")
    _check_trainer_state(where, state, tensors)
    return state, tensors, optimizer_state


def _check_trainer_state(where: Path, state: dict, tensors: dict[str, torch.Tensor]) -> None:
    """Every part of a trainer state that resuming puts back, tried on scratch generators: a
    damaged value is refused here, naming its key, not as a TypeError half-way through a resume."""
    def bad(key: str, allowed: str):
        raise TrainError(f"{where}: {key} must be {allowed}; got {reprlib.repr(state.get(key))}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not is_int(state.get("world_size", 1)) or state.get("world_size", 1) < 1:
        bad("world_size", "a positive integer")
    if not is_int(state.get("last_eval", -1)) or state.get("last_eval", -1) < -1:
        bad("last_eval", "a step number, or -1 (no evaluation yet)")
    interval = state.get("interval", {})
    if not isinstance(interval, dict) or not all(
            isinstance(v, list) and len(v) == 2 and all(is_number(x) for x in v) for v in interval.values()):
        bad("interval", "an object of metric: [sum, weight] pairs of numbers")
    for key, generator, allowed in (("sampler", lambda s: s["bit_generator"], 'an object whose "bit_generator" is a '
                                     "numpy PCG64 state"), ("aux_rng", lambda s: s, "a numpy PCG64 state")):
        try:
            np.random.PCG64().state = generator(state[key])
        except (KeyError, TypeError, ValueError, OverflowError):
            bad(key, allowed)
    try:
        python_state, numpy_state = _saved_states(state["rng"])
        random.Random().setstate(python_state)
        np.random.RandomState().set_state(numpy_state)
    except (KeyError, TypeError, ValueError, OverflowError):
        bad("rng", "the python and numpy RNG states, as saved")
    try:
        torch.Generator().set_state(tensors["rng.torch"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise TrainError(f"{where.parent / TRAINER_TENSORS}: rng.torch must be a torch CPU generator state "
                         f"({e})") from None


def load_model(checkpoint_dir: Path, device: torch.device) -> WorldModel:
    try:
        return WorldModel.from_pretrained(checkpoint_dir / MODEL_DIR, device=device)
    except CheckpointError as e:
        raise TrainError(f"cannot resume from {checkpoint_dir}: {e}") from e


def _move_into_place(tmp: Path, final: Path, trash: Path) -> None:
    """Rename the folder `tmp` to `final`; a `final` already there is first renamed to `trash`, then deleted."""
    if final.exists():
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(tmp, final)


def save_final_model(run_dir: Path, model: WorldModel) -> None:
    """RUN_DIR/model: the trained model alone (what DreamEnv loads), replaced atomically."""
    final = run_dir / MODEL_DIR
    tmp = None
    try:
        tmp = make_temp_dir(run_dir, ".tmp-model-")
        model.save_pretrained(tmp)
        _move_into_place(tmp, final, trash=run_dir / f".old-model-{os.getpid()}")
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if is_out_of_space(e):
            raise _no_space(f"the final model {final}", run_dir) from e
        raise


def _no_space(what: str, run_dir: Path) -> NoSpaceError:
    """The error for a checkpoint or model that the disk had no room for (its half is already gone)."""
    kept = latest_checkpoint(run_dir)
    return NoSpaceError(f"cannot write {what}: no space left on device; "
                        + (f"the previous checkpoint {kept} is kept" if kept else "no checkpoint was written")
                        + f": free some space, then resume with --resume {run_dir}")
