"""Windows of consecutive frames cut from a stream of concatenated episodes.

A stream (`worldsim.data.stream.Stream`) lays episodes end to end: N frames in all, each episode
contributing its T + 1 frames. A training window of length L is L + 1 consecutive stream frames:
inputs are frames p .. p+L-1 with their actions, targets frames p+1 .. p+L.
A window may cross episode boundaries:

- `resets[t]` (the stream's `episode_start`) tells the model that frame t starts a new episode, so
  it zeroes its carried state there and attention never looks across;
- `has_target[t]` is False where frame t is an episode's last frame: the "next" stream frame
  belongs to another episode, so the loss masks that position.

`episode_start` at the first position of a window that starts mid-episode is False: the model
starts from an empty state anyway (a truncated context, as in any windowed training).

The sampler draws window starts uniformly over the stream with its own seeded numpy generator,
whose state is part of a training checkpoint (`state_dict` / `load_state_dict`), so a resumed run
draws the same windows as an uninterrupted one. With an ``event_share``, that share of the windows is
instead placed over an event: a step that pays a reward or terminates. In sparse-reward data such
steps are one in tens of thousands, so a uniform window almost never holds one, and the few the model
is given to learn the goal from pass by a handful of times in a whole run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch

from worldsim.data.stream import Stream, episode_bounds


def segment_ids(resets: torch.Tensor) -> torch.Tensor:
    """[B, L] bool resets -> [B, L] int64 episode index within the window (first frame: 0)."""
    seg = torch.cumsum(resets.long(), dim=1)
    return seg - seg[:, :1]


@dataclass
class Window:
    """A batch of windows, as tensors. Position t predicts frame t+1 from frames <= t."""

    frames: torch.Tensor      # [B, L, H, W] int64 inputs
    actions: torch.Tensor     # [B, L] int64 (a Box of actions: [B, L, A] float32)
    targets: torch.Tensor     # [B, L, H, W] int64: the stream's next frame
    target_gap: torch.Tensor  # [B, L, H, W] int64: gap of the target frame (-1: never seen before)
    rewards: torch.Tensor     # [B, L] float32
    terminated: torch.Tensor  # [B, L] bool
    has_target: torch.Tensor  # [B, L] bool: the target is in the same episode (else the loss masks it)
    resets: torch.Tensor      # [B, L] bool: frame t starts an episode
    starts: np.ndarray        # [B] stream index of each window's first frame

    @property
    def batch_size(self) -> int:
        return self.frames.shape[0]

    @property
    def length(self) -> int:
        return self.frames.shape[1]

    @property
    def segment(self) -> torch.Tensor:
        """[B, L] int64: which episode of the window each frame belongs to (0, 1, ...)."""
        return segment_ids(self.resets)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Window":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, torch.Tensor):
                moved[k] = v.to(device, non_blocking=non_blocking)
        return Window(**moved)


def gather_windows(stream: Stream, starts: Sequence[int] | np.ndarray, length: int) -> Window:
    """Windows of `length` positions starting at the stream indices `starts` (needs start + length
    < N: the last position's target is frame start + length)."""
    starts = np.asarray(starts, dtype=np.int64)
    n = len(stream.frames)
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    if starts.size and (starts.min() < 0 or starts.max() + length >= n):
        raise ValueError(f"windows of {length} frames starting at {starts.min()}..{starts.max()} "
                         f"do not fit in a stream of {n} frames")
    frame_index = starts[:, None] + np.arange(length + 1)            # [B, L + 1] stream rows
    input_index, target_index = frame_index[:, :-1], frame_index[:, 1:]  # position t: frame, next frame
    frames = np.asarray(stream.frames)
    return Window(
        frames=torch.from_numpy(frames[input_index].astype(np.int64)),
        actions=torch.from_numpy(model_actions(np.asarray(stream.actions)[input_index])),
        targets=torch.from_numpy(frames[target_index].astype(np.int64)),
        target_gap=torch.from_numpy(np.asarray(stream.gap)[target_index].astype(np.int64)),
        rewards=torch.from_numpy(np.asarray(stream.rewards)[input_index].astype(np.float32)),
        terminated=torch.from_numpy(np.asarray(stream.terminated)[input_index].astype(bool)),
        has_target=torch.from_numpy(np.asarray(stream.has_target)[input_index].astype(bool)),
        resets=torch.from_numpy(np.asarray(stream.episode_start)[input_index].astype(bool)),
        starts=starts,
    )


class WindowSampler:
    """Random windows from a stream, reproducible from a seed and resumable: uniform, except a share
    `event_share` of them placed so that each holds an event (a step that pays or terminates) at a
    uniformly drawn position of the window."""

    def __init__(self, stream: Stream, seed: int | Sequence[int] = 0, event_share: float = 0.0):
        if not 0 <= event_share < 1:
            raise ValueError(f"event_share must be in [0, 1) (a share of each batch's windows); got {event_share}")
        self.stream = stream
        self.num_frames = len(stream.frames)
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.event_share = event_share
        self.events = event_steps(stream) if event_share else np.zeros(0, dtype=np.int64)

    def max_length(self) -> int:
        """The longest window this stream can give (N - 1 positions)."""
        return self.num_frames - 1

    def sample(self, batch_size: int, length: int) -> Window:
        if length > self.max_length():
            raise ValueError(f"a window of {length} frames needs {length + 1} stream frames; "
                             f"the stream holds {self.num_frames}")
        starts = self.rng.integers(0, self.num_frames - length, size=batch_size)
        if self.event_share and len(self.events):        # (no extra draws without: old runs replay exactly)
            on_event = self.rng.random(batch_size) < self.event_share
            events = self.events[self.rng.integers(0, len(self.events), size=int(on_event.sum()))]
            offsets = self.rng.integers(0, length, size=len(events))
            # clipped at the stream's ends the event stays inside: it has a target, so it is < N - 1
            starts[on_event] = np.clip(events - offsets, 0, self.num_frames - length - 1)
        return gather_windows(self.stream, starts, length)

    def sampled_rate(self, mask: np.ndarray, length: int) -> float:
        """About the share of the positions of sampled windows of `length` where `mask` (one bool per
        stream frame, such as `terminated`) holds: the data's own share, raised by the event windows."""
        mask = np.asarray(mask, dtype=bool)
        base = float(mask.mean())
        if not (self.event_share and len(self.events)):
            return base
        at_event = float(mask[self.events].mean())          # the window's chosen event is one of its positions
        on_event_window = at_event / length + base * (length - 1) / length
        return (1 - self.event_share) * base + self.event_share * on_event_window

    def state_dict(self) -> dict:
        """JSON-serialisable generator state."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def event_steps(stream: Stream) -> np.ndarray:
    """Stream positions whose step pays a reward or terminates the episode."""
    return np.flatnonzero((np.asarray(stream.rewards) != 0) | np.asarray(stream.terminated, dtype=bool))


def evenly_spaced_starts(num_frames: int, length: int, count: int) -> np.ndarray:
    """`count` deterministic window starts spread over a stream (fewer if it is short)."""
    last = num_frames - length - 1
    if last < 0:
        return np.zeros(0, dtype=np.int64)
    count = max(1, min(count, last + 1))
    return np.unique(np.linspace(0, last, count).round().astype(np.int64))


def rollout_starts(stream: Stream, context: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode starts for open-loop rollouts: episodes with at least context + 1 frames, `count`
    of them spread evenly. Returns (starts, frames in each chosen episode)."""
    starts, lengths = episode_bounds(stream)
    ok = lengths >= context + 1
    starts, lengths = starts[ok], lengths[ok]
    if len(starts) == 0 or count <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pick = np.unique(np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(np.int64))
    return starts[pick], lengths[pick]


def model_actions(actions: np.ndarray) -> np.ndarray:
    """Discrete actions as int64, a Box's vectors ([..., A]) as float32: what the model takes."""
    return actions.astype(np.float32 if actions.dtype.kind == "f" else np.int64)
