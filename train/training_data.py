"""What the trainer trains and evaluates on: `TrainingData`, from a dataset folder or from memory.

`load_data` reads a dataset folder (`worldsim.data.dataset`), splits its episodes into training and
held-out ones (`holdout_fraction`, `split_seed`) and lays each part end to end as a `Stream`. A list
of folders (datasets of one env collected with different policies, e.g. the rounds of `worldsim
learn`) is split folder by folder and laid end to end. To
train on data held in memory, build a `TrainingData` directly from streams
(`worldsim.data.stream.stream_from_episodes`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldsim import WorldModelConfig
from worldsim.data.dataset import DatasetError, EpisodeDataset
from worldsim.data.stream import Stream, StreamError, check_stream, concat_streams

from .config import TrainConfig, TrainError


@dataclass
class TrainingData:
    """Streams to train and evaluate on, with what the model needs to know about them."""

    train: Stream
    eval: Stream | None              # held-out stream, or None (no evaluation)
    vocab_size: int
    num_actions: int                 # 0 for a Box of actions:
    frame_shape: tuple[int, int] | None = None   # None: from the train stream's frames
    env_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # copied into the model config's metadata
    source: str | None = None        # dataset folder, if any
    action_box: dict[str, list[float]] | None = None   # ... its bounds (worldsim.actions)

    def __post_init__(self) -> None:
        if self.frame_shape is None:
            self.frame_shape = tuple(int(v) for v in np.shape(self.train.frames)[1:])
        self.frame_shape = tuple(int(v) for v in self.frame_shape)


# What the trainer takes as data: a dataset folder (or a list of them), an opened dataset, or streams
# in memory.
DataSource = str | os.PathLike | list | tuple | EpisodeDataset | TrainingData


def load_data(data: DataSource, config: TrainConfig) -> TrainingData:
    """A dataset folder, an EpisodeDataset, or TrainingData -> TrainingData (split as configured)."""
    if isinstance(data, TrainingData):
        return data
    if isinstance(data, (list, tuple)):
        return _combine([load_data(part, config) for part in data])
    if isinstance(data, (str, os.PathLike)):
        source = str(data)
        root = Path(data)
        if not root.exists():
            raise TrainError(f"data folder {root} does not exist (make one with `worldsim collect`)")
        if not root.is_dir():
            raise TrainError(f"data path {root} is not a folder")
        try:
            return _split_dataset(EpisodeDataset(root), config, source)
        except DatasetError as e:
            raise TrainError(f"dataset {root}: {e}") from e
    return _split_dataset(data, config, None)


def _split_dataset(data: EpisodeDataset, config: TrainConfig, source: str | None) -> TrainingData:
    if not isinstance(data, EpisodeDataset):
        raise TrainError(f"data must be a dataset folder, an EpisodeDataset or a TrainingData, "
                         f"got {type(data).__name__}")
    n = data.num_episodes
    if n < 1:
        raise TrainError(f"dataset {source or data} holds no episodes")
    if config.holdout_fraction > 0 and n >= 2:
        train_ids, test_ids = data.split(holdout_fraction=config.holdout_fraction, seed=config.split_seed)
    else:
        train_ids, test_ids = list(range(n)), []
    metadata = {"env_id": data.env_id}
    if "codec" in data.manifest:
        metadata["codec"] = data.manifest["codec"]
    if source:
        metadata["dataset"] = os.path.abspath(source)
    train = data.stream(train_ids)
    # Envs that pay only on the terminating step (MiniGrid) get that rule in the dream: a regressed
    # reward head's small errors on ordinary steps would otherwise add up over long episodes.
    metadata["rewards_only_on_termination"] = not bool(np.any(train.rewards[~train.terminated]))
    return TrainingData(
        train=train, eval=data.stream(test_ids) if test_ids else None,
        vocab_size=int(data.vocab_size), num_actions=int(data.num_actions),
        frame_shape=tuple(data.frame_shape), env_id=data.env_id, metadata=metadata, source=source,
        action_box=data.manifest.get("action_box"),
    )


def _combine(parts: list[TrainingData]) -> TrainingData:
    """Several datasets' training and held-out streams laid end to end; they must be of one env and codec."""
    if not parts:
        raise TrainError("data: an empty list of dataset folders")
    first = parts[0]
    for part in parts[1:]:
        for what in ("env_id", "vocab_size", "num_actions", "action_box", "frame_shape"):
            if getattr(part, what) != getattr(first, what):
                raise TrainError(f"datasets {first.source} and {part.source} differ in {what}: "
                                 f"{getattr(first, what)!r} vs {getattr(part, what)!r}; train on one env's data")
        if part.metadata.get("codec") != first.metadata.get("codec"):
            raise TrainError(f"datasets {first.source} and {part.source} were encoded with different codecs")
    evals = [p.eval for p in parts if p.eval is not None]
    metadata = dict(first.metadata, dataset=[p.source for p in parts],
                    rewards_only_on_termination=all(p.metadata.get("rewards_only_on_termination") for p in parts))
    return TrainingData(train=concat_streams([p.train for p in parts]), eval=concat_streams(evals) if evals else None,
                        vocab_size=first.vocab_size, num_actions=first.num_actions, frame_shape=first.frame_shape,
                        env_id=first.env_id, metadata=metadata, source=None, action_box=first.action_box)


def model_config_for(data: TrainingData, overrides: dict[str, Any]) -> WorldModelConfig:
    """The model config of a new run: the data's vocabulary, frame shape, actions and metadata, the
    rest from `overrides` (TrainConfig.model) and the defaults."""
    try:
        return WorldModelConfig.from_dict({
            **overrides, "vocab_size": data.vocab_size, "frame_shape": data.frame_shape,
            "num_actions": data.num_actions, "action_box": data.action_box, "metadata": dict(data.metadata),
        })
    except (TypeError, ValueError) as e:
        raise TrainError(f"model settings {overrides}: {e}") from e


def check_fits(data: TrainingData, model_config: WorldModelConfig) -> None:
    """The data's tokens, frames and actions fit the model (a resumed run's model was built for
    other data, perhaps); both streams are sound."""
    mc = model_config
    mismatch = [f"{k}: data {got}, model {want}" for k, got, want in (
        ("vocab_size", data.vocab_size, mc.vocab_size), ("frame_shape", tuple(data.frame_shape), tuple(mc.frame_shape)),
        ("num_actions", data.num_actions, mc.num_actions), ("action_box", data.action_box, mc.action_box))
        if got != want]
    if mismatch:
        raise TrainError(f"the data does not fit the resumed run's model ({'; '.join(mismatch)})")
    trained_on = mc.metadata.get("env_id")
    if trained_on and data.env_id and trained_on != data.env_id:
        warnings.warn(f"resuming a model trained on {trained_on} with data of {data.env_id}")
    for name, stream in (("training stream", data.train), ("held-out stream", data.eval)):
        if stream is not None:
            try:
                check_stream(stream, name, vocab_size=mc.vocab_size, num_actions=mc.num_actions,
                             frame_shape=mc.frame_shape, action_dim=len(mc.action_box["low"]) if mc.action_box else None)
            except StreamError as e:
                raise TrainError(str(e)) from e


def auto_done_pos_weight(terminated: np.ndarray, cap: float = 100.0, sampled_rate: float | None = None) -> float:
    """Other steps per terminating step in the training data (at most `cap`): balances the
    termination loss, where terminating steps are rare (one per episode at most). `sampled_rate`:
    the share of trained steps that terminate when the sampler draws them unevenly (event windows),
    so that drawing them more often and weighing them more do not add up."""
    positives = int(np.count_nonzero(terminated))
    if positives == 0:
        return 1.0
    rate = positives / len(terminated) if sampled_rate is None else sampled_rate
    return float(min(cap, (1 - rate) / rate))
