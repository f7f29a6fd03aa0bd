"""Windows of consecutive frames cut from a stream of concatenated episodes.

A stream (`train.dataset.Stream`, or `StreamArrays` here) lays episodes end to end: N frames in
all, each episode contributing its T + 1 frames. A training window of length L is L + 1
consecutive stream frames: inputs are frames p .. p+L-1 with their actions, targets frames
p+1 .. p+L. A window may cross episode boundaries:

- `resets[t]` (the stream's `episode_start`) tells the model that frame t starts a new episode, so
  it zeroes its carried state there and attention never looks across;
- `has_target[t]` is False where frame t is an episode's last frame: the "next" stream frame
  belongs to another episode, so the loss masks that position.

`episode_start` at the first position of a window that starts mid-episode is False: the model
starts from an empty state anyway (a truncated context, as in any windowed training).

The sampler draws window starts uniformly over the stream with its own seeded numpy generator,
whose state is part of a training checkpoint (`state_dict` / `load_state_dict`), so a resumed run
draws the same windows as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch

STREAM_FIELDS = ("frames", "actions", "rewards", "terminated", "has_target", "episode_start", "gap")


class StreamError(ValueError):
    """A stream's arrays are missing, mis-shaped or inconsistent."""


@dataclass
class StreamArrays:
    """The arrays of a stream (same fields as `train.dataset.Stream`), for data built in memory."""

    frames: np.ndarray         # [N, H, W] integer tokens
    actions: np.ndarray        # [N] int64 (0 at an episode's last frame)
    rewards: np.ndarray        # [N] float32: reward of the step (frame p, action p)
    terminated: np.ndarray     # [N] bool: that step ended the episode by termination
    has_target: np.ndarray     # [N] bool: frame p + 1 belongs to the same episode
    episode_start: np.ndarray  # [N] bool: frame p starts an episode
    gap: np.ndarray            # [N, H, W] int32: frames since the cell's world cell was last seen, -1 never

    def __len__(self) -> int:
        return len(self.frames)


def stream_from_episodes(episodes: Sequence[dict[str, Any]]) -> StreamArrays:
    """Concatenate episodes given as dicts of frames [T+1, H, W], actions [T], and optionally
    rewards [T] (default 0), terminated [T] (default False) and gap [T+1, H, W] (default -1:
    unknown, every cell counts as never seen)."""
    if not episodes:
        raise StreamError("stream_from_episodes needs at least one episode")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in STREAM_FIELDS}
    for i, ep in enumerate(episodes):
        frames = np.asarray(ep["frames"])
        actions = np.asarray(ep["actions"], dtype=np.int64)
        t = len(actions)
        if frames.ndim != 3 or len(frames) != t + 1:
            raise StreamError(f"episode {i}: frames must be [T+1, H, W] with T = {t} actions, got {frames.shape}")
        rewards = np.asarray(ep.get("rewards", np.zeros(t)), dtype=np.float32)
        terminated = np.asarray(ep.get("terminated", np.zeros(t, dtype=bool)), dtype=bool)
        gap = np.asarray(ep.get("gap", np.full(frames.shape, -1)), dtype=np.int32)
        if rewards.shape != (t,) or terminated.shape != (t,) or gap.shape != frames.shape:
            raise StreamError(f"episode {i}: rewards/terminated must be [{t}] and gap {frames.shape}")
        parts["frames"].append(frames)
        parts["actions"].append(np.append(actions, 0))
        parts["rewards"].append(np.append(rewards, 0).astype(np.float32))
        parts["terminated"].append(np.append(terminated, False))
        parts["has_target"].append(np.arange(t + 1) < t)
        parts["episode_start"].append(np.arange(t + 1) == 0)
        parts["gap"].append(gap)
    return StreamArrays(**{k: np.concatenate(v) for k, v in parts.items()})


def check_stream(stream: Any, name: str = "stream", *, vocab_size: int | None = None,
                 num_actions: int | None = None, frame_shape: tuple[int, int] | None = None) -> int:
    """Validate a stream's arrays (and, if given, its tokens/actions/shape against a model).
    Returns N, its number of frames."""
    missing = [k for k in STREAM_FIELDS if not hasattr(stream, k)]
    if missing:
        raise StreamError(f"{name} lacks the arrays {missing} (a stream needs {list(STREAM_FIELDS)})")
    frames = np.asarray(stream.frames)
    if frames.ndim != 3:
        raise StreamError(f"{name}.frames must be [N, H, W], got shape {frames.shape}")
    n = len(frames)
    for k, shape in (("actions", (n,)), ("rewards", (n,)), ("terminated", (n,)), ("has_target", (n,)),
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
    if num_actions is not None and (actions.min() < 0 or actions.max() >= num_actions):
        raise StreamError(f"{name} holds actions in [{actions.min()}, {actions.max()}], the model has {num_actions} actions")
    if not bool(np.asarray(stream.episode_start)[0]):
        raise StreamError(f"{name}.episode_start[0] must be True (a stream starts with an episode)")
    return n


def segment_ids(resets: torch.Tensor) -> torch.Tensor:
    """[B, L] bool resets -> [B, L] int64 episode index within the window (first frame: 0)."""
    seg = torch.cumsum(resets.long(), dim=1)
    return seg - seg[:, :1]


@dataclass
class Window:
    """A batch of windows, as tensors. Position t predicts frame t+1 from frames <= t."""

    frames: torch.Tensor      # [B, L, H, W] int64 inputs
    actions: torch.Tensor     # [B, L] int64
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


def gather_windows(stream: Any, starts: Sequence[int] | np.ndarray, length: int) -> Window:
    """Windows of `length` positions starting at the stream indices `starts` (needs start + length
    < N: the last position's target is frame start + length)."""
    starts = np.asarray(starts, dtype=np.int64)
    n = len(stream.frames)
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    if starts.size and (starts.min() < 0 or starts.max() + length >= n):
        raise ValueError(f"windows of {length} frames starting at {starts.min()}..{starts.max()} "
                         f"do not fit in a stream of {n} frames")
    idx = starts[:, None] + np.arange(length + 1)          # [B, L + 1]
    inp, nxt = idx[:, :-1], idx[:, 1:]
    frames = np.asarray(stream.frames)
    return Window(
        frames=torch.from_numpy(frames[inp].astype(np.int64)),
        actions=torch.from_numpy(np.asarray(stream.actions)[inp].astype(np.int64)),
        targets=torch.from_numpy(frames[nxt].astype(np.int64)),
        target_gap=torch.from_numpy(np.asarray(stream.gap)[nxt].astype(np.int64)),
        rewards=torch.from_numpy(np.asarray(stream.rewards)[inp].astype(np.float32)),
        terminated=torch.from_numpy(np.asarray(stream.terminated)[inp].astype(bool)),
        has_target=torch.from_numpy(np.asarray(stream.has_target)[inp].astype(bool)),
        resets=torch.from_numpy(np.asarray(stream.episode_start)[inp].astype(bool)),
        starts=starts,
    )


class WindowSampler:
    """Uniformly random windows from a stream, reproducible from a seed and resumable."""

    def __init__(self, stream: Any, seed: int | Sequence[int] = 0):
        self.stream = stream
        self.num_frames = len(stream.frames)
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def max_length(self) -> int:
        """The longest window this stream can give (N - 1 positions)."""
        return self.num_frames - 1

    def sample(self, batch_size: int, length: int) -> Window:
        if length > self.max_length():
            raise ValueError(f"a window of {length} frames needs {length + 1} stream frames; "
                             f"the stream holds {self.num_frames}")
        starts = self.rng.integers(0, self.num_frames - length, size=batch_size)
        return gather_windows(self.stream, starts, length)

    def state_dict(self) -> dict:
        """JSON-serialisable generator state."""
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]


def evenly_spaced_starts(num_frames: int, length: int, count: int) -> np.ndarray:
    """`count` deterministic window starts spread over a stream (fewer if it is short)."""
    last = num_frames - length - 1
    if last < 0:
        return np.zeros(0, dtype=np.int64)
    count = max(1, min(count, last + 1))
    return np.unique(np.linspace(0, last, count).round().astype(np.int64))


def episode_bounds(stream: Any) -> tuple[np.ndarray, np.ndarray]:
    """(start index, number of frames) of every episode in the stream."""
    starts = np.flatnonzero(np.asarray(stream.episode_start))
    ends = np.append(starts[1:], len(stream.frames))
    return starts, ends - starts


def rollout_starts(stream: Any, context: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Episode starts for open-loop rollouts: episodes with at least context + 1 frames, `count`
    of them spread evenly. Returns (starts, frames in each chosen episode)."""
    starts, lengths = episode_bounds(stream)
    ok = lengths >= context + 1
    starts, lengths = starts[ok], lengths[ok]
    if len(starts) == 0 or count <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pick = np.unique(np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(np.int64))
    return starts[pick], lengths[pick]
