"""Counts of the interactions that real data holds: what an explorer is paid to go and try.

An interaction is what the agent holds, what stands in front of it and the action it takes there. In
MiniGrid's egocentric observation (cells indexed [x, y], the agent at the bottom centre facing up)
these are the agent's own cell, which shows what it carries, the cell ahead of it, and the action.
``InteractionCounts`` counts them over every step of real datasets. A dream with an interaction
bonus (``DreamVectorEnv(interaction_bonus=B, interaction_counts=...)``) pays an explorer
``B / sqrt(1 + count)`` the first time in an episode that it tries an interaction, so it goes and
tries what the data lacks, such as toggling a locked door while holding its key or stepping onto the
goal, whatever the model predicts will happen there. An uncertainty bonus cannot point at those: a
model whose data never showed a door opening predicts, with confidence, that toggling one does
nothing. Paying once per episode keeps the explorer from earning the bonus by repeating one
interaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np
import torch

# The ranges of MiniGrid's cell encoding (Grid.encode): object 0..10, colour 0..5, state 0..2.
CELL_RANGES = (11, 6, 3)
N_CELLS = int(np.prod(CELL_RANGES))


def cell_index(cells: torch.Tensor) -> torch.Tensor:
    """Symbolic cells [..., 3] -> their index [...] in 0..N_CELLS-1 (values past a range count as its last)."""
    c = cells.long()
    o, colour, s = (c[..., i].clamp(0, CELL_RANGES[i] - 1) for i in range(3))
    return (o * CELL_RANGES[1] + colour) * CELL_RANGES[2] + s


def interaction_keys(images: torch.Tensor, actions: torch.Tensor, num_actions: int) -> torch.Tensor:
    """Egocentric symbolic observations [B, v, v, 3] (indexed [x, y]) and actions [B] -> interaction ids [B]."""
    v = images.shape[1]
    held, ahead = cell_index(images[:, v // 2, v - 1]), cell_index(images[:, v // 2, v - 2])
    return (held * N_CELLS + ahead) * num_actions + actions.long()


class InteractionCounts:
    """How often each interaction occurs in real data: a dense table over (held, ahead, action)."""

    def __init__(self, counts: torch.Tensor, num_actions: int):
        if counts.shape != (N_CELLS * N_CELLS * num_actions,):
            raise ValueError(f"counts must have {N_CELLS * N_CELLS * num_actions} entries for {num_actions} actions; "
                             f"got shape {tuple(counts.shape)}")
        self.counts, self.num_actions = counts.long(), int(num_actions)

    @classmethod
    def from_datasets(cls, datasets: Iterable, num_actions: int) -> InteractionCounts:
        """Counts over every step of `datasets` (folders or EpisodeDatasets of one codec), each step's
        observation decoded by the dataset's codec."""
        from .data.dataset import EpisodeDataset

        counts = torch.zeros(N_CELLS * N_CELLS * num_actions, dtype=torch.long)
        for d in datasets:
            data = d if isinstance(d, EpisodeDataset) else EpisodeDataset(d)
            if data.num_actions != num_actions:
                raise ValueError(f"dataset {str(data.root)!r} has {data.num_actions} actions; the dream {num_actions}")
            for i in range(data.num_episodes):
                episode = data.episode(i)
                images, _ = data.codec.decode_batch(episode.frames[:-1])      # the frame each action was taken in
                keys = interaction_keys(torch.from_numpy(np.ascontiguousarray(images)),
                                        torch.from_numpy(np.array(episode.actions)), num_actions)
                counts += torch.bincount(keys, minlength=counts.numel())
        return cls(counts, num_actions)

    @property
    def steps(self) -> int:
        return int(self.counts.sum())

    def to(self, device: torch.device | str) -> InteractionCounts:
        return InteractionCounts(self.counts.to(device), self.num_actions)

    def bonus_scale(self, keys: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(1 + count) of each interaction id [B] (float32)."""
        return torch.rsqrt(1.0 + self.counts[keys].float())


def counts_for(source, num_actions: int) -> InteractionCounts:
    """`source` as counts: InteractionCounts as they are, or dataset folders (one, or a list) counted."""
    if isinstance(source, InteractionCounts):
        if source.num_actions != num_actions:
            raise ValueError(f"interaction counts of {source.num_actions} actions for a dream of {num_actions}")
        return source
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    return InteractionCounts.from_datasets(source, num_actions)
