"""What `json.dump` cannot write itself, the project's one way: pass `default=json_default` (or
`json_default_or_str`, where anything else should be written as its text rather than refused)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def json_default(o):
    """numpy scalars (integer, floating, bool) and arrays as plain JSON values, tuples as lists;
    anything else is refused with a TypeError, as `json.dump` would."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def json_default_or_str(o):
    """As `json_default`, but anything else is written as its str() (results that carry settings such
    as a learning-rate schedule)."""
    try:
        return json_default(o)
    except TypeError:
        return str(o)


def write_json(path: str | os.PathLike, obj, default=json_default) -> None:
    """`obj` as indented JSON in the file `path`, written atomically with the user's permissions."""
    from .checkpoint import atomic_write      # checkpoint imports torch; this module stays light

    text = json.dumps(obj, indent=2, default=default) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
