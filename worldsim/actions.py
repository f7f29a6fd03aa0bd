"""Continuous actions: a world model of an env that acts in a gymnasium ``Box`` of floats.

A model of a ``Discrete`` env takes actions 0 .. num_actions - 1. A model of a ``Box`` env has
num_actions 0 and an ``ActionBox`` (saved as ``{"low": [...], "high": [...]}`` in the dataset's
manifest and the model's config): its actions are vectors of `dim` floats, kept in the env's own units
on disk and in the dream's API. Only the model scales them, to [-1, 1] by the bounds (``scaling``),
before its MLP embeds them into the same adaLN conditioning a discrete action's embedding feeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces


@dataclass(frozen=True)
class ActionBox:
    low: tuple[float, ...]
    high: tuple[float, ...]

    @property
    def dim(self) -> int:
        return len(self.low)

    @classmethod
    def from_space(cls, space: spaces.Space, owner: str = "the env") -> "ActionBox":
        """The box of a one-dimensional ``Box`` action space; a ValueError naming `owner` otherwise."""
        if not isinstance(space, spaces.Box) or len(space.shape) != 1 or space.shape[0] < 1 \
                or not np.issubdtype(space.dtype, np.floating):
            raise ValueError(f"{owner} acts in {space}; a world model takes Discrete actions or a Box of floats of "
                             "shape (N,)")
        return cls(tuple(float(v) for v in space.low), tuple(float(v) for v in space.high))

    @classmethod
    def from_json(cls, value: Any, where: str) -> "ActionBox":
        """The box a file holds (``{"low": [...], "high": [...]}``); a ValueError naming `where` otherwise."""
        def numbers(key):
            v = value.get(key) if isinstance(value, dict) else None
            if not isinstance(v, list) or not v or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) and not np.isnan(x) for x in v):
                raise ValueError(f"{where}: action_box must be {{\"low\": [...], \"high\": [...]}}, lists of "
                                 f"numbers of one length; got {value!r}")
            return tuple(float(x) for x in v)

        low, high = numbers("low"), numbers("high")
        if len(low) != len(high) or not all(lo < hi for lo, hi in zip(low, high)):
            raise ValueError(f"{where}: action_box needs low < high in every component, of one length; got {value!r}")
        return cls(low, high)

    def to_json(self) -> dict[str, list[float]]:
        return {"low": list(self.low), "high": list(self.high)}

    def space(self) -> spaces.Box:
        return spaces.Box(np.array(self.low, dtype=np.float32), np.array(self.high, dtype=np.float32),
                          dtype=np.float32)

    def scaling(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(middle, half) [dim]: (action - middle) / half lies in [-1, 1] in each bounded component; an
        unbounded component is passed as it is (middle 0, half 1)."""
        low, high = torch.tensor(self.low, dtype=torch.float64), torch.tensor(self.high, dtype=torch.float64)
        bounded = torch.isfinite(low) & torch.isfinite(high)
        middle = torch.where(bounded, (low + high) / 2, torch.zeros_like(low))
        half = torch.where(bounded, (high - low) / 2, torch.ones_like(low))
        return middle.float(), half.float()

    def check(self, actions: Any, batch: tuple[int, ...], who: str = "actions") -> np.ndarray:
        """`actions` as float32 [*batch, dim] if each one lies in the box; a ValueError saying which does not."""
        a = np.asarray(actions)
        if a.dtype.kind not in "iuf" or a.shape != (*batch, self.dim):
            raise ValueError(f"{who} must be numbers of shape {(*batch, self.dim)} (a Box of {self.dim} floats per "
                             f"action); got {a.dtype} {a.shape}")
        a = a.astype(np.float32)
        bad = ~(np.isfinite(a) & (a >= np.asarray(self.low, np.float32)) & (a <= np.asarray(self.high, np.float32)))
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{who}{list(where)} = {a[where]} is not in the action box "
                             f"[{self.low[where[-1]]}, {self.high[where[-1]]}] (component {where[-1]})")
        return a


def action_box_of(config_or_manifest: dict | Any) -> ActionBox | None:
    """The ActionBox of a manifest (a dict) or a model config (an object), None for discrete actions."""
    value = config_or_manifest.get("action_box") if isinstance(config_or_manifest, dict) \
        else getattr(config_or_manifest, "action_box", None)
    return None if value is None else ActionBox.from_json(value, "action_box")
