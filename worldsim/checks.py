"""Argument checks shared by the whole project, with one wording for the errors a user sees."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np


def positive_int(name: str, value: Any, allow_zero: bool = False) -> int:
    """`value` as an int, if it is a positive (or, with allow_zero, non-negative) integer; else a
    ValueError naming `name`, the value and what is allowed (bools and floats such as 2.7 are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer; got {value!r}")
    return int(value)


def check_field_types(obj: Any, owner: str, error: type[Exception] = ValueError) -> None:
    """Each field of the dataclass `obj` whose default is a bool, int, float or str holds a value of
    that kind: an int where a float is expected is fine, a bool is never a number, numbers must be
    finite. Otherwise `error` naming owner.field, the value and the kind allowed (so that a config
    file's ``"d_model": "128"`` fails here, not deep inside the model)."""
    kinds = {"bool": bool, "int": int, "float": float, "str": str}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        # The kind: the default's, or for a field without a default its annotation's.
        default = f.default if f.default is not dataclasses.MISSING else kinds.get(str(f.type), object)()
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, (int, np.integer)) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
                and math.isfinite(value)
            kind = "a finite number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise error(f"{owner}: {f.name} must be {kind}; got {value!r}")


def registered_env_id(env_id: Any, source: str) -> str:
    """`env_id`, read from a file (`source` names it), if gymnasium already knows it. A file must not
    choose what code runs: gymnasium imports `module` for an id written "module:Env", so such ids,
    and ids that no imported package registered, are refused; a caller can still pass one itself."""
    import gymnasium as gym

    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"{source} names env id {env_id!r}; expected a registered gymnasium id")
    if ":" in env_id or env_id not in gym.registry:
        raise ValueError(f"{source} names env id {env_id!r}, which is not a registered gymnasium id; an env id "
                         "read from a file is used only if it is registered (a 'module:Env' id would import "
                         "module): pass the env id yourself to use it")
    return env_id


def output_folder(path: Any, name: str = "out", error: type[Exception] = ValueError) -> Path:
    """The folder `path`, made (with its parents) if missing; `error` naming `name` and the path if
    it, or a folder above it, is a file (rather than a bare "File exists" from mkdir)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        if blocker == path:
            raise error(f"{name} {str(path)!r} is a file; expected a folder (a new one, or one written "
                        "before)") from None
        raise error(f"{name} {str(path)!r} cannot be a folder: {str(blocker)!r} above it is a file") from None
    return path
