"""Frame-local dense attention: every token sees all tokens of its own frame and of the previous
`window` frames (causal by frame), nothing older.

Queries and keys are rotated by their frame index (rotary embedding over time), so a score depends
on how many frames apart two tokens are, not on where a key sits in memory. That lets the
recurrent path keep keys/values in a ring buffer of window + 1 frame slots, overwritten in place,
with no reordering: `step` writes the new frame into slot `t % (window + 1)` and attends over the
whole buffer, masking slots that are empty or reset. With `spatial_rotary` a quarter of each head's
rotary pairs turn with the token's row and a quarter with its column (the rest with time), so a
score can also depend on the offset between two cells.

Both paths reduce to one computation, `_attend`: each query frame against its own window + 1 key
frames, plus a per-key-frame validity mask. The parallel path gathers those windows with `unfold`,
so its cost grows linearly with the number of frames (no T×T mask is built). Windows longer than
GROWING_CACHE_SLOTS (the causal baseline's) instead attend over the timeline under a frame-causal
token mask, in chunks of queries, which costs T^2 time rather than T copies of a long window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import WorldModelConfig
from .kernels.ring_attention import ring_attention, ring_attention_available

# Rings longer than this (attention windows of the causal baseline, not the model's ~10 frames)
# are attended only up to their filled part in `step`.
GROWING_CACHE_SLOTS = 64
# Query tokens per attention call when a long window trains over the whole timeline (mask memory
# per call: this many rows times the key tokens they may see).
TIMELINE_QUERY_TOKENS = 4096


def frame_rotation(frame: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) [..., dh/2] float32 of the rotary angles of frame indices [...]. The angles are
    computed in float64 so that frame 100,000 rotates as exactly as frame 10."""
    angles = frame.double()[..., None] * inv_freq
    return angles.cos().float(), angles.sin().float()


def rotate(x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotary embedding of x [..., N, heads, dh] by `frame_rotation` of frames broadcastable to x[..., 0, 0, 0]."""
    return _rotate_pairs(x, *(r.to(x.dtype)[..., None, None, :] for r in rotation))


def _rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Turn each pair (x[2i], x[2i+1]) of the last dim by the angle whose cos/sin broadcast to x[..., i]."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)


# Spatial rotary frequencies span offsets of one cell (1 radian) to about this many cells.
SPATIAL_ROTARY_BASE = 64.0


def rotary_frequencies(head_dim: int, spatial: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(time, row, column) inverse frequencies [head_dim / 2] float64, each zero on the pairs it does
    not turn. Without `spatial`, every pair turns with time at the standard rotary frequencies."""
    pairs = head_dim // 2
    per_axis = pairs // 4 if spatial else 0
    time_pairs = pairs - 2 * per_axis
    time = torch.zeros(pairs, dtype=torch.float64)
    time[:time_pairs] = 1.0 / (10_000 ** (torch.arange(time_pairs, dtype=torch.float64) / time_pairs))
    axis = SPATIAL_ROTARY_BASE ** (-torch.arange(per_axis, dtype=torch.float64) / max(per_axis, 1))
    row, column = torch.zeros(pairs, dtype=torch.float64), torch.zeros(pairs, dtype=torch.float64)
    row[time_pairs:time_pairs + per_axis] = axis
    column[time_pairs + per_axis:] = axis
    return time, row, column


@dataclass
class StepInputs:
    """What every layer's attention needs for one recurrent step, computed once per step: the
    rotation of the new frame, its ring slot, which slots it may attend, and (growing caches only)
    how many slots are filled."""

    rotation: tuple[torch.Tensor, torch.Tensor]   # cos, sin [B, dh/2]
    slot: torch.Tensor                            # [B]
    key_valid: torch.Tensor                       # [B, S] bool
    filled: int | None = None


class FrameLocalAttention(nn.Module):
    def __init__(self, config: WorldModelConfig):
        super().__init__()
        self.window = config.attn_window
        self.slots = config.attn_window + 1
        self.heads = config.n_heads
        self.head_dim = config.d_model // config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        # A training switch, not part of the model: in training, each earlier frame in a frame's window
        # is hidden from it with this probability (its own frame never is), so what the model needs
        # from further back has to come through the SSM state (`WorldModel.attention_frame_dropout`).
        self.frame_dropout = 0.0
        inv_freq, row_freq, column_freq = rotary_frequencies(self.head_dim, config.spatial_rotary)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.spatial = config.spatial_rotary
        if self.spatial:
            # Each cell's fixed turn [N, 1, dh/2] (broadcast over heads), row-major like the tokens.
            h, w = config.frame_shape
            rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                        indexing="ij")
            angles = rows.reshape(-1, 1) * row_freq + cols.reshape(-1, 1) * column_freq
            self.register_buffer("cell_cos", angles.cos().float()[:, None, :], persistent=False)
            self.register_buffer("cell_sin", angles.sin().float()[:, None, :], persistent=False)

    @property
    def attends_timeline(self) -> bool:
        """A long window (the causal baseline's) attends over the timeline, not per-frame windows."""
        return self.slots > GROWING_CACHE_SLOTS

    def state_shapes(self, tokens_per_frame: int, d_model: int) -> dict[str, tuple[int, ...]]:
        return {"keys": (self.slots, tokens_per_frame, d_model), "values": (self.slots, tokens_per_frame, d_model)}

    def _project(self, x: torch.Tensor, frame: torch.Tensor):
        """x [B, T, N, D], frame [B, T] -> rotated q, k and plain v, each [B, T, N, heads, dh]."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)
        rotation = frame_rotation(frame, self.inv_freq)
        return self._rotate(q, rotation), self._rotate(k, rotation), v

    def _rotate(self, x: torch.Tensor, rotation: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [..., N, heads, dh] turned by its cells' places (spatial_rotary) and by its frames. The two
        turn disjoint pairs (each leaves the other's pairs at angle 0), so their order does not matter."""
        if self.spatial:
            x = _rotate_pairs(x, self.cell_cos.to(x.dtype), self.cell_sin.to(x.dtype))
        return rotate(x, rotation)

    def _attend(self, q, keys, values, key_valid) -> torch.Tensor:
        """q [B, T, N, h, dh]; keys/values [B, T, S, N, h, dh]: the S key frames of each query frame;
        key_valid [B, T, S]. Returns [B, T, N, h*dh]."""
        b, t, n, h, dh = q.shape
        s = keys.shape[2]
        q = q.reshape(b * t, n, h, dh).transpose(1, 2)                        # [BT, h, N, dh]
        keys = keys.reshape(b * t, s * n, h, dh).transpose(1, 2)              # [BT, h, S*N, dh]
        values = values.reshape(b * t, s * n, h, dh).transpose(1, 2)
        mask = key_valid.reshape(b * t, 1, 1, s, 1).expand(-1, -1, -1, -1, n).reshape(b * t, 1, 1, s * n)
        out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, t, n, h * dh)

    def _key_valid(self, key_frame, key_episode, frame, episode) -> torch.Tensor:
        """Which key frames each query frame may see: same episode, not later, at most `window` back."""
        age = frame[:, :, None] - key_frame
        return (key_frame >= 0) & (age >= 0) & (age <= self.window) & (key_episode == episode[:, :, None])

    def _hide_earlier_frames(self, key_valid: torch.Tensor) -> torch.Tensor:
        """key_valid [B, T, w] (the query's own frame last) with each earlier key frame dropped with
        probability `frame_dropout`, drawn per query frame (and by each layer apart), in training only."""
        if not (self.training and self.frame_dropout > 0):
            return key_valid
        keep = torch.rand(key_valid.shape, device=key_valid.device) >= self.frame_dropout
        keep[..., -1] = True
        return key_valid & keep

    def _attend_windows(self, q, all_k, all_v, all_frame, all_episode, frame, episode, w: int) -> torch.Tensor:
        """Each new frame i (timeline position S + i) against its own key frames i + S - w + 1 ... i + S,
        gathered with `unfold`: memory and time grow as T * w, for short windows (the model's)."""
        s = self.slots

        def windows(z: torch.Tensor) -> torch.Tensor:
            z = z[:, s - w + 1:].unfold(1, w, 1)                              # [B, T, ..., w]
            return z.movedim(-1, 2)                                           # [B, T, w, ...]

        key_valid = self._key_valid(windows(all_frame), windows(all_episode), frame, episode)
        key_valid = self._hide_earlier_frames(key_valid)
        split = (self.heads, self.head_dim)
        return self._attend(q, windows(all_k).unflatten(-1, split), windows(all_v).unflatten(-1, split), key_valid)

    def _attend_timeline(self, q, all_k, all_v, all_frame, all_episode, frame, episode, skip: int) -> torch.Tensor:
        """All new tokens against the timeline tokens from position `skip` on under a frame-causal token
        mask: for long windows (the causal baseline), where copying every frame's w key frames
        (`_attend_windows`) would cost T * w * N memory. Queries go in chunks of about
        TIMELINE_QUERY_TOKENS tokens, each against only the key frames some query of it may see, so
        the mask never spans the whole timeline squared. When every batch element has the same
        frame-causal pattern (no episode start inside the window: the usual case) one mask serves
        the batch. Time still grows as T^2, the cost of full attention."""
        b, t, n, h, dh = q.shape
        keys, values = all_k[:, skip:], all_v[:, skip:]
        key_valid = self._key_valid(all_frame[:, None, skip:], all_episode[:, None, skip:], frame, episode)
        if bool((key_valid == key_valid[:1]).all()):
            key_valid = key_valid[:1]                                         # [1, T, P]: shared
        chunk = max(1, TIMELINE_QUERY_TOKENS // n)
        outs = []
        for a in range(0, t, chunk):
            rows = key_valid[:, a:a + chunk]                                  # [b', F, P]
            seen = rows.any(dim=0).any(dim=0).nonzero()
            lo, hi = (int(seen[0]), int(seen[-1]) + 1) if len(seen) else (0, 1)
            f, m = rows.shape[1], hi - lo
            mask = rows[:, :, None, lo:hi, None].expand(-1, f, n, m, n).reshape(rows.shape[0], 1, f * n, m * n)
            out = F.scaled_dot_product_attention(
                q[:, a:a + chunk].reshape(b, f * n, h, dh).transpose(1, 2),
                keys[:, lo:hi].reshape(b, m * n, h, dh).transpose(1, 2),
                values[:, lo:hi].reshape(b, m * n, h, dh).transpose(1, 2),
                attn_mask=mask,
            )
            outs.append(out.transpose(1, 2).reshape(b, f, n, h * dh))
        return torch.cat(outs, 1)

    def forward(
        self,
        x: torch.Tensor,
        frame: torch.Tensor,
        episode: torch.Tensor | None = None,
        cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Parallel over T frames. x [B, T, N, D]; frame [B, T]: each frame's index in its episode.

        episode [B, T]: non-decreasing episode number per frame, 0 for the episode of the cache;
        frames never attend across episodes. None: all 0.
        cache: (keys [B, S, N, D], values [B, S, N, D], slot_frame [B, S]) ring buffer from
        earlier frames, or None. Returns (y [B, T, N, D], the ring buffer after these frames).
        """
        b, t, n, d = x.shape
        s = self.slots
        q, k, v = self._project(x, frame)
        k, v = k.flatten(-2), v.flatten(-2)                                   # [B, T, N, D]
        if cache is None:
            old_k = k.new_zeros(b, s, n, d)
            old_v = v.new_zeros(b, s, n, d)
            old_frame = frame.new_full((b, s), -1)
        else:
            # The ring in time order (empty slots, frame -1, first), so that the cached and the new
            # frames form one contiguous timeline.
            cache_k, cache_v, slot_frame = cache
            order = slot_frame.argsort(dim=1)
            old_frame = slot_frame.gather(1, order)
            pick = order[:, :, None, None].expand(-1, -1, n, d)
            empty = (old_frame < 0)[:, :, None, None]     # emptied by a reset: read as zeros (see step)
            old_k = cache_k.gather(1, pick).to(k.dtype).masked_fill(empty, 0)
            old_v = cache_v.gather(1, pick).to(v.dtype).masked_fill(empty, 0)
        if episode is None:
            episode = torch.zeros_like(frame)
        all_k = torch.cat([old_k, k], 1)                                      # [B, S + T, N, D]
        all_v = torch.cat([old_v, v], 1)
        all_frame = torch.cat([old_frame, frame], 1)
        all_episode = torch.cat([torch.zeros_like(old_frame), episode], 1)

        if self.attends_timeline:
            y = self._attend_timeline(q, all_k, all_v, all_frame, all_episode, frame, episode,
                                      skip=s if cache is None else 0)
        else:
            y = self._attend_windows(q, all_k, all_v, all_frame, all_episode, frame, episode,
                                     w=s if cache is not None else min(s, t))

        # The ring after these frames: slot j holds the newest frame f of the last episode with
        # f % S == j; slots whose frame would precede the episode's start are empty (-1).
        last = frame[:, -1:]                                                  # [B, 1]
        slot = torch.arange(s, device=x.device)
        slot_frame = last - torch.remainder(last - slot, s)                   # [B, S]
        slot_frame = slot_frame.masked_fill(slot_frame < 0, -1)
        source = (s - 1) - (last - slot_frame.clamp(min=0))                   # index into the last S
        pick = source[:, :, None, None].expand(-1, -1, n, d)
        empty = (slot_frame < 0)[:, :, None, None]  # zeroed (an empty slot is never read)
        ring = (
            all_k[:, -s:].gather(1, pick).masked_fill(empty, 0),
            all_v[:, -s:].gather(1, pick).masked_fill(empty, 0),
            slot_frame,
        )
        return self.out(y), ring

    def step_inputs(self, frame: torch.Tensor, slot_frame: torch.Tensor) -> StepInputs:
        """The shared per-step inputs for frame [B], given slot_frame [B, S] already holding it."""
        age = frame[:, None] - slot_frame
        key_valid = (slot_frame >= 0) & (age >= 0) & (age <= self.window)
        # A long ring (the causal baseline's KV cache) fills slot t at frame t: attend only to the
        # filled part, so a step costs O(frames so far) like a growing cache. Short rings keep a
        # static shape (no host sync; torch.compile and CUDA graphs see one shape).
        filled = min(self.slots, int(frame.max()) + 1) if self.attends_timeline else None
        return StepInputs(frame_rotation(frame[:, None], self.inv_freq), torch.remainder(frame, self.slots),
                          key_valid, filled)

    def step(
        self,
        x: torch.Tensor,
        frame: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        slot_frame: torch.Tensor,
        shared: StepInputs | None = None,
    ) -> torch.Tensor:
        """One frame. x [B, N, D]; frame [B]. Writes this frame's keys/values into the ring
        (`keys`, `values` [B, S, N, D], updated in place); `slot_frame` [B, S] must already hold
        this frame in its slot. `shared`: `step_inputs(frame, slot_frame)`, when the caller steps
        several layers with the same frame. Returns y [B, N, D]."""
        b, n, d = x.shape
        shared = shared or self.step_inputs(frame, slot_frame)
        q, k, v = self.qkv(x[:, None]).unflatten(-1, (3, self.heads, self.head_dim)).unbind(-3)
        q, k = self._rotate(q, shared.rotation), self._rotate(k, shared.rotation)
        rows = torch.arange(b, device=x.device)
        keys[rows, shared.slot] = k[:, 0].flatten(-2).to(keys.dtype)
        values[rows, shared.slot] = v[:, 0].flatten(-2).to(values.dtype)
        key_valid = shared.key_valid
        if shared.filled is not None:
            keys, values, key_valid = keys[:, :shared.filled], values[:, :shared.filled], key_valid[:, :shared.filled]
        if ring_attention_available(x.device, self.head_dim) and not torch.is_grad_enabled():
            return self.out(ring_attention(q[:, 0], keys, values, key_valid))
        # Slots a reset emptied still hold the old episode's keys/values; masked scores weigh them by 0,
        # but 0 x NaN is NaN, so they are read as zeros (the kernel above never reads them).
        keep = key_valid[:, :, None, None]
        keys, values = torch.where(keep, keys, 0), torch.where(keep, values, 0)
        split = (self.heads, self.head_dim)
        y = self._attend(
            q, keys[:, None].unflatten(-1, split).to(q.dtype), values[:, None].unflatten(-1, split).to(q.dtype),
            key_valid[:, None],
        )
        return self.out(y[:, 0])
