"""Recorded states a world-view dream may start from, besides the real env's resets.

A world-view frame is the env's whole state (the grid, the agent's pose, what it carries), so any
step of a recorded episode is a place an episode can start from. Starting some dream episodes there
is how an agent trained in the dream meets the rare states that sparse rewards hide behind (a key
picked up, a door opened, the goal in sight) without having to stumble on them from the reset: the
value it learns near them flows back to the states that lead there. The other episodes still start
from real resets, so the agent learns the whole task; an agent is always scored from real resets.

An episode started from step t of a recorded episode counts its steps from t, so the real env's step
limit stays where it was. The last frame of a recorded episode (its end) is never a start.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .codecs import WorldStateCodec


class RecordedStates:
    """Every non-final step of the episodes of one or more datasets of a world-view codec, each opened
    by `open_dataset` (``DreamSetup.checked_dataset``: its codec and env are the dream's)."""

    def __init__(self, datasets: Any, codec: Any, open_dataset: Callable[[Any], Any]):
        if not isinstance(codec, WorldStateCodec):
            raise ValueError(f"state_starts needs a world-view model, whose frame is the env's whole state; this "
                             f"model's frames are {type(codec).__name__} (a frame of the agent's view is not a "
                             "state an episode can start from)")
        if isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "manifest"):
            datasets = [datasets]
        if not isinstance(datasets, Sequence) or not datasets:
            raise ValueError(f"state_starts must be a dataset folder or a list of them; got {datasets!r}")
        self.frames: list[np.ndarray] = []        # per episode [T+1, H, W]
        self.seeds: list[int] = []
        for ds in map(open_dataset, datasets):
            for i in range(len(ds)):
                ep = ds.episode(i)
                self.frames.append(ep.frames)
                self.seeds.append(int(ep.seed))
        lengths = np.array([len(f) - 1 for f in self.frames])
        self._episode_of = np.repeat(np.arange(len(lengths)), lengths)        # one entry per start
        self._step_of = np.concatenate([np.arange(n) for n in lengths]) if len(lengths) else np.zeros(0, int)
        if len(self._step_of) == 0:
            raise ValueError("state_starts: the datasets hold no step to start from")

    def __len__(self) -> int:
        return len(self._step_of)

    def sample(self, n: int, rng: np.random.Generator, below: int | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       list[int]]:
        """n starts drawn uniformly over the recorded steps (those before step `below`, the dream's step
        limit, when given: an episode past it is over): (frames [n, H, W] long, the step count of each
        in its episode [n] long, the reset seed of each one's episode)."""
        candidates = np.arange(len(self)) if below is None else np.flatnonzero(self._step_of < below)
        if len(candidates) == 0:
            raise ValueError(f"state_starts: no recorded step lies before the dream's step limit ({below})")
        picks = candidates[rng.integers(len(candidates), size=n)]
        episodes, steps = self._episode_of[picks], self._step_of[picks]
        frames = np.stack([self.frames[e][t] for e, t in zip(episodes, steps)])
        return (torch.from_numpy(frames.astype(np.int64)), torch.from_numpy(steps.astype(np.int64)),
                [self.seeds[e] for e in episodes])


def check_state_start_fraction(fraction: Any) -> float:
    """The share of dream episodes that start from recorded states: a number in (0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"state_start_fraction must be a number in (0, 1] (the share of episodes starting from "
                         f"recorded states); got {fraction!r}")
    return float(fraction)
