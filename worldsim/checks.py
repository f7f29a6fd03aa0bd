"""Argument checks shared by the whole project, with one wording for the errors a user sees."""

from __future__ import annotations

from typing import Any

import numpy as np


def positive_int(name: str, value: Any, allow_zero: bool = False) -> int:
    """`value` as an int, if it is a positive (or, with allow_zero, non-negative) integer; else a
    ValueError naming `name`, the value and what is allowed (bools and floats such as 2.7 are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer; got {value!r}")
    return int(value)
