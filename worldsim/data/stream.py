"""A stream: episodes laid end to end, one row per frame, the form training and evaluation read.

N frames in all, each episode of T steps contributing its T + 1 frames. Row p holds frame p and what
happened at it: the action taken there, the reward and termination of that step, whether frame
p + 1 is still the same episode (``has_target``), whether frame p starts an episode
(``episode_start``: a model's state resets there), and how long ago each cell's place was last
seen (``gap``, for memory metrics). ``EpisodeDataset.stream`` builds one from a dataset folder,
``stream_from_episodes`` from episodes held in memory; ``check_stream`` validates one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

STREAM_FIELDS = ("frames", "actions", "rewards", "terminated", "has_target", "episode_start", "gap")


class StreamError(ValueError):
    """A stream's arrays are missing, mis-shaped or inconsistent."""


@dataclass
class Stream:
    """Episodes laid end to end, one row per frame (N = sum of T_i + 1)."""

    frames: np.ndarray         # [N, H, W] integer tokens of frame p
    actions: np.ndarray        # [N] int64: action taken at frame p (0 at an episode's last frame)
    rewards: np.ndarray        # [N] float32: reward of the step (frame p, action p); 0 at the last frame
    terminated: np.ndarray     # [N] bool: that step ended the episode by termination
    has_target: np.ndarray     # [N] bool: frame p + 1 is the next frame of the same episode
    episode_start: np.ndarray  # [N] bool: frame p is an episode's first frame (model state resets)
    gap: np.ndarray            # [N, H, W] int32: frames since this cell's world place was last seen, -1 never

    def __len__(self) -> int:
        return len(self.frames)


def stream_from_episodes(episodes: Sequence[dict[str, Any]]) -> Stream:
    """Concatenate episodes given as dicts of frames [T+1, H, W], actions [T], and optionally
    rewards [T] (default 0), terminated [T] (default False) and gap [T+1, H, W] (default -1:
    unknown, every cell counts as never seen)."""
    if not episodes:
        raise StreamError("stream_from_episodes needs at least one episode")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in STREAM_FIELDS}
    for i, ep in enumerate(episodes):
        frames = np.asarray(ep["frames"])
        actions = np.asarray(ep["actions"])       # [T] integers, or [T, A] floats (a Box of actions)
        actions = actions.astype(np.float32) if actions.ndim == 2 else actions.astype(np.int64)
        t = len(actions)
        if frames.ndim != 3 or len(frames) != t + 1:
            raise StreamError(f"episode {i}: frames must be [T+1, H, W] with T = {t} actions, got {frames.shape}")
        rewards = np.asarray(ep.get("rewards", np.zeros(t)), dtype=np.float32)
        terminated = np.asarray(ep.get("terminated", np.zeros(t, dtype=bool)), dtype=bool)
        gap = np.asarray(ep.get("gap", np.full(frames.shape, -1)), dtype=np.int32)
        if rewards.shape != (t,) or terminated.shape != (t,) or gap.shape != frames.shape:
            raise StreamError(f"episode {i}: rewards/terminated must be [{t}] and gap {frames.shape}")
        parts["frames"].append(frames)
        parts["actions"].append(np.concatenate([actions, np.zeros((1, *actions.shape[1:]), actions.dtype)]))
        parts["rewards"].append(np.append(rewards, 0).astype(np.float32))
        parts["terminated"].append(np.append(terminated, False))
        parts["has_target"].append(np.arange(t + 1) < t)
        parts["episode_start"].append(np.arange(t + 1) == 0)
        parts["gap"].append(gap)
    return Stream(**{k: np.concatenate(v) for k, v in parts.items()})


def concat_streams(streams: Sequence[Stream]) -> Stream:
    """Streams laid end to end (each already starts with an episode, so nothing else changes)."""
    if not streams:
        raise StreamError("concat_streams needs at least one stream")
    return Stream(**{k: np.concatenate([getattr(s, k) for s in streams]) for k in STREAM_FIELDS})


def check_stream(stream: Stream, name: str = "stream", *, vocab_size: int | None = None,
                 num_actions: int | None = None, frame_shape: tuple[int, int] | None = None,
                 action_dim: int | None = None) -> int:
    """Validate a stream's arrays (and, if given, its tokens/actions/shape against a model: `num_actions`
    for Discrete actions, `action_dim` for a Box of that many floats). Returns N, its number of frames."""
    if not isinstance(stream, Stream):
        raise StreamError(f"{name} must be a Stream (worldsim.data.stream), got {type(stream).__name__}")
    frames = np.asarray(stream.frames)
    if frames.ndim != 3:
        raise StreamError(f"{name}.frames must be [N, H, W], got shape {frames.shape}")
    n = len(frames)
    action_shape = (n,) if action_dim is None else (n, action_dim)
    for k, shape in (("actions", action_shape), ("rewards", (n,)), ("terminated", (n,)), ("has_target", (n,)),
                     ("episode_start", (n,)), ("gap", frames.shape)):
        got = np.shape(getattr(stream, k))
        if tuple(got) != tuple(shape):
            raise StreamError(f"{name}.{k} must have shape {tuple(shape)}, got {tuple(got)}")
    if n < 2:
        raise StreamError(f"{name} holds {n} frame(s); training needs at least one transition")
    if not np.issubdtype(frames.dtype, np.integer):
        raise StreamError(f"{name}.frames must hold integer tokens, got {frames.dtype}")
    if frame_shape is not None and tuple(frames.shape[1:]) != tuple(frame_shape):
        raise StreamError(f"{name} has frames of shape {tuple(frames.shape[1:])}, the model expects {tuple(frame_shape)}")
    if vocab_size is not None and (frames.min() < 0 or frames.max() >= vocab_size):
        raise StreamError(f"{name} holds tokens in [{frames.min()}, {frames.max()}], the model's vocabulary is [0, {vocab_size})")
    actions = np.asarray(stream.actions)
    if action_dim is not None and not (actions.dtype.kind == "f" and np.isfinite(actions).all()):
        raise StreamError(f"{name}.actions must be finite floats (a Box of {action_dim}), got {actions.dtype}")
    if num_actions is not None and action_dim is None and (actions.min() < 0 or actions.max() >= num_actions):
        raise StreamError(f"{name} holds actions in [{actions.min()}, {actions.max()}], the model has {num_actions} actions")
    if not bool(np.asarray(stream.episode_start)[0]):
        raise StreamError(f"{name}.episode_start[0] must be True (a stream starts with an episode)")
    return n


def episode_bounds(stream: Stream) -> tuple[np.ndarray, np.ndarray]:
    """(index of its first frame, number of frames) of every episode in the stream."""
    starts = np.flatnonzero(np.asarray(stream.episode_start))
    ends = np.append(starts[1:], len(stream.frames))
    return starts, ends - starts
