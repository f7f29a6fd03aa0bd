"""Checkpoint files: `model.safetensors` (weights) and `config.json` (WorldModelConfig) in a folder.

Loading never executes code from the files. Each file is written to a temporary name, flushed to
disk and renamed into place, so an interrupted save leaves the previous checkpoint whole.
`config.json` records the sha256 of the weights file, checked on load (a damaged or swapped file is
refused, naming it); weights that are not all finite are neither written nor loaded.

`atomic_write` and `make_temp_dir` are the project's one way to write a file or a folder atomically
(checkpoints, datasets, run folders, results).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import WorldModelConfig

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint folder or file is missing, malformed or does not fit the model."""


class NoSpaceError(OSError):
    """A write ran out of disk space (errno ENOSPC); the message names what could not be written."""

    def __init__(self, message: str):
        super().__init__(message)
        self.errno = errno.ENOSPC


def is_out_of_space(e: BaseException) -> bool:
    """Whether `e` is a write that found the disk full: OSError ENOSPC, or torch.save's report of
    the short write that a full disk causes ("unexpected pos ...")."""
    if isinstance(e, OSError):
        return e.errno == errno.ENOSPC
    return isinstance(e, RuntimeError) and "unexpected pos" in str(e)


def _unique_name(parent: Path, prefix: str, suffix: str = "") -> Path:
    return parent / f"{prefix}{secrets.token_hex(4)}{suffix}"


def atomic_write(path: str | os.PathLike, write) -> None:
    """Call write(tmp_name) on a new temporary file beside `path`, flush it to disk, then rename it
    over `path`: a reader sees the old file or the complete new one, never a part.

    The file gets the permissions a plain open(path, "w") would give under the current umask
    (tempfile.mkstemp would make it private, 0600)."""
    path = Path(path)
    while True:
        tmp = _unique_name(path.parent, f".{path.name}.", ".tmp")
        try:
            # Created as open() creates a file (mode 0666, less the umask), and that mode noted: some
            # writers (safetensors) make their file 0600 themselves, so it is set again afterwards.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        mode = os.fstat(fd).st_mode & 0o7777
        os.close(fd)
        write(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if os.fstat(fd).st_mode & 0o7777 != mode:
                os.chmod(tmp, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_out_of_space(e) and not isinstance(e, NoSpaceError):
            raise NoSpaceError(f"cannot write {path}: no space left on device (what was there before is "
                               f"unchanged); free some space and try again ({e})") from e
        raise


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder in `parent` named `prefix` + random characters, to be filled and then
    renamed into place. Made by mkdir under the current umask, like any folder (tempfile.mkdtemp
    would make it 0700)."""
    while True:
        tmp = _unique_name(Path(parent), prefix)
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _first_nonfinite(tensors: dict[str, torch.Tensor]) -> str | None:
    return next((k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)


def save_checkpoint(model: torch.nn.Module, config: WorldModelConfig, path: str | os.PathLike) -> Path:
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = _first_nonfinite(tensors)
    if bad is not None:
        raise CheckpointError(f"refusing to write {path}: the model's weights are not all finite (e.g. {bad}); "
                              "the training that made them diverged")
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "worldsim"}))
    payload = {"format_version": FORMAT_VERSION, "config": config.to_dict(),
               "weights_sha256": file_sha256(path / WEIGHTS_NAME)}

    def write_json(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)

    atomic_write(path / CONFIG_NAME, write_json)
    return path


def load_config(path: str | os.PathLike) -> WorldModelConfig:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    config_file = path / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"checkpoint {path} has no {CONFIG_NAME}")
    try:
        payload = json.loads(config_file.read_text())
        if payload.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{config_file}: format_version {payload.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        return WorldModelConfig.from_dict(payload["config"])
    except CheckpointError:
        raise
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{config_file} is not a valid worldsim config: {e}") from e


def load_weights(path: str | os.PathLike, model: torch.nn.Module) -> None:
    weights_file = Path(path) / WEIGHTS_NAME
    if not weights_file.is_file():
        raise CheckpointError(f"checkpoint {path} has no {WEIGHTS_NAME}")
    try:
        expected = json.loads((Path(path) / CONFIG_NAME).read_text()).get("weights_sha256")
    except (OSError, json.JSONDecodeError, AttributeError):
        expected = None                      # load_config has already said what is wrong with it
    config_file = Path(path) / CONFIG_NAME
    if expected is None:
        # Loaded (checkpoints from before digests were recorded), but never quietly: nothing ties these
        # weights to this config.
        warnings.warn(f"{config_file} records no weights_sha256, so {weights_file} cannot be checked against it; "
                      "save the model again (save_pretrained) to record one", RuntimeWarning, stacklevel=3)
    elif not (isinstance(expected, str) and len(expected) == 64):
        raise CheckpointError(f"{config_file}: weights_sha256 must be the 64 hex digits of the weights' sha256; "
                              f"got {expected!r}")
    elif file_sha256(weights_file) != expected:
        raise CheckpointError(f"{weights_file} is not the file its {CONFIG_NAME} was written with (its sha256 "
                              "differs from weights_sha256): it is damaged or was replaced")
    try:
        tensors = load_file(weights_file)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{weights_file} is not a readable safetensors file: {e}") from e
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong_shape:
        raise CheckpointError(
            f"{weights_file} does not fit the model of its {CONFIG_NAME}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shape {wrong_shape[:5]}"
        )
    bad = _first_nonfinite(tensors)
    if bad is not None:
        raise CheckpointError(f"{weights_file} holds weights that are not all finite (e.g. {bad}): the training "
                              "that made them diverged")
    model.load_state_dict(tensors)
