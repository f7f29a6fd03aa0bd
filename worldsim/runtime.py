"""Where and in what precision a world model runs: one rule for the simulator, the envs and the planner.

    device = resolve_device("auto")                  # cuda if available, else cpu
    precision = resolve_precision("auto", device)    # "bfloat16" on CUDA, "float32" elsewhere
    with autocast(device, precision):
        out, _ = model.step(state, frames, actions)
    state = model.initial_state(batch, device, state_dtype(precision))

Precision names one vocabulary: ``"auto"`` | ``"float32"`` | ``"bfloat16"``. ``"bfloat16"`` runs the
model step under bf16 autocast and keeps the attention cache in bf16 (half the bytes); the SSM state,
sampling and outputs stay float32. ``"auto"`` picks bf16 on CUDA (matrix units) and float32
elsewhere. ``"bf16"``, the envs' older spelling, is read as ``"bfloat16"`` so existing calls keep working.
"""

from __future__ import annotations

import os

import torch

PRECISIONS = ("auto", "float32", "bfloat16")
_PRECISION_ALIASES = {"bf16": "bfloat16"}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" -> cuda if available, else cpu; any other name or torch.device is checked and returned.

    Raises ValueError naming the value for a name torch does not know, or for CUDA on a machine
    without it (before a model is loaded, so the error says what was asked for)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"device must be 'auto', a device name such as 'cpu', 'cuda' or 'cuda:1', or a "
                         f"torch.device; got {device!r}")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device must be 'auto' or a device name such as 'cpu', 'cuda' or 'cuda:1'; "
                         f"got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available (use 'cpu' or 'auto')")
    return resolved


def check_precision(precision: str) -> str:
    """The canonical name of `precision` ("auto", "float32" or "bfloat16"); ValueError otherwise."""
    name = _PRECISION_ALIASES.get(precision, precision) if isinstance(precision, str) else precision
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    return name


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision a model runs in on `device`: "bfloat16" or "float32" ("auto": bf16 on CUDA)."""
    name = check_precision(precision)
    if name == "auto":
        return "bfloat16" if torch.device(device).type == "cuda" else "float32"
    return name


def autocast(device: torch.device, precision: str, cache_enabled: bool = True) -> torch.autocast:
    """The autocast context of a resolved precision (disabled for float32). cache_enabled=False for
    code a CUDA graph captures (autocast's weight-cast cache must not outlive the capture)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bfloat16",
                          cache_enabled=cache_enabled)


def state_dtype(precision: str) -> torch.dtype | None:
    """dtype of the model state's attention cache for `WorldModel.initial_state` (None: the weights')."""
    return torch.bfloat16 if precision == "bfloat16" else None


def free_memory_bytes(device: torch.device) -> int | None:
    """Bytes free on `device` now (CUDA: the driver's count; CPU: available physical memory where the
    OS says), or None when unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return None
