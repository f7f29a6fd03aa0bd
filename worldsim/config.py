"""WorldModelConfig: every size and switch of the model, saved as JSON beside the weights."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .actions import ActionBox
from .checks import check_field_types


def _int_pair(name: str, value: Any, form: str = "[H, W]") -> tuple[int, int]:
    """`value` as a tuple of two integers, or a ValueError naming the field and the value."""
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"WorldModelConfig: {name} must be a pair of integers {form}; got {value!r}")
    return (int(value[0]), int(value[1]))


@dataclass
class WorldModelConfig:
    vocab_size: int
    frame_shape: tuple[int, int]
    num_actions: int                  # Discrete actions 0 .. num_actions - 1; 0 for a Box of floats:
    action_box: dict[str, list[float]] | None = None   # ... its {"low": [...], "high": [...]} (worldsim.actions)

    d_model: int = 128
    n_layers: int = 4
    # Spatial blocks of the block-wise scan, one (b_h, b_w) per layer. None: alternate the whole
    # frame (plain Mamba2) with quarter-frame blocks, mixing large and small as the paper does.
    # Blocks that do not divide the frame are padded; the padding never enters the SSM state.
    block_sizes: list[tuple[int, int]] | None = None

    # Mamba2 mixer. ssm=False drops it: attention-only layers (the frame-local attention baseline).
    ssm: bool = True
    d_state: int = 32
    expand: int = 2
    headdim: int = 32
    ngroups: int = 1
    d_conv: int = 4
    chunk_size: int | None = None  # None: the kernel backend's own default
    dt_min: float = 1e-3
    dt_max: float = 0.1
    backend: str = "auto"  # ssd_scan backend: auto | torch | triton

    # Frame-local attention: each frame sees itself and the previous `attn_window` frames.
    attn_window: int = 10
    n_heads: int = 4
    # Rotary embedding over each token's row and column as well as its frame, so a score can depend
    # on where two cells lie relative to each other ("the cell in front of the agent"). Learned
    # absolute position embeddings alone make the model learn every such offset cell by cell.
    # Off by default until it is shown to help a dream's closed-loop results.
    spatial_rotary: bool = False

    # Before each MLP, every cell adds a depthwise 3x3 convolution of its neighbours' features, so what
    # the next cell holds (a key, an agent facing this way) is one weight away, not an attention lookup.
    neighbour_mixing: bool = False

    mlp_ratio: float = 4.0

    # Told the corruption level of its input frames (adaLN, beside the action), as diffusion forcing
    # tells the noise level: for training on corrupted inputs. The dream runs at level 0.
    noise_conditioning: bool = False

    # Free-form provenance (codec version, env id, ...) that checkpoints carry along.
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Kinds first: int() would turn "ab" into a bare "invalid literal" and 7.5 quietly into 7, and
        # the default blocks need n_layers to be an integer.
        check_field_types(self, "WorldModelConfig")
        self.frame_shape = _int_pair("frame_shape", self.frame_shape)
        if self.block_sizes is None:
            h, w = self.frame_shape
            whole, quarter = (h, w), (math.ceil(h / 2), math.ceil(w / 2))
            self.block_sizes = [whole if i % 2 == 0 else quarter for i in range(self.n_layers)]
        if not isinstance(self.block_sizes, (list, tuple)):
            raise ValueError(f"WorldModelConfig: block_sizes must be null or a list of [b_h, b_w] pairs, one per "
                             f"layer; got {self.block_sizes!r}")
        self.block_sizes = [_int_pair(f"block_sizes[{i}]", b, "[b_h, b_w]") for i, b in enumerate(self.block_sizes)]
        if not isinstance(self.metadata, dict):
            raise ValueError(f"WorldModelConfig: metadata must be a dict; got {self.metadata!r}")
        self.validate()

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"WorldModelConfig: {what}")

        check_field_types(self, "WorldModelConfig")
        need(self.vocab_size >= 2, f"vocab_size must be >= 2, got {self.vocab_size}")
        for name in ("d_model", "n_heads", "d_state", "headdim", "expand", "ngroups"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.mlp_ratio > 0, f"mlp_ratio must be > 0, got {self.mlp_ratio}")
        need(self.chunk_size is None or (isinstance(self.chunk_size, int) and self.chunk_size >= 1),
             f"chunk_size must be null or an integer >= 1, got {self.chunk_size!r}")
        need(len(self.frame_shape) == 2 and min(self.frame_shape) >= 1,
             f"frame_shape must be (H, W) with H, W >= 1, got {self.frame_shape}")
        if self.action_box is None:
            need(self.num_actions >= 1, f"num_actions must be >= 1, got {self.num_actions}")
        else:
            ActionBox.from_json(self.action_box, "WorldModelConfig")
            need(self.num_actions == 0, f"num_actions must be 0 for a Box of actions (action_box), got "
                                        f"{self.num_actions}")
        need(self.n_layers >= 1, f"n_layers must be >= 1, got {self.n_layers}")
        need(len(self.block_sizes) == self.n_layers,
             f"block_sizes needs one (b_h, b_w) per layer ({self.n_layers}), got {len(self.block_sizes)}")
        h, w = self.frame_shape
        for i, (bh, bw) in enumerate(self.block_sizes):
            need(1 <= bh <= h and 1 <= bw <= w,
                 f"block_sizes[{i}] = {(bh, bw)} must fit inside the frame {self.frame_shape}")
        d_inner = self.expand * self.d_model
        if self.ssm:                                  # the mixer's shapes matter only when there is one
            need(d_inner % self.headdim == 0,
                 f"expand * d_model ({d_inner}) must be divisible by headdim ({self.headdim})")
            need((d_inner // self.headdim) % self.ngroups == 0,
                 f"SSM heads ({d_inner // self.headdim}) must be divisible by ngroups ({self.ngroups})")
        need(self.d_model % self.n_heads == 0,
             f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        need((self.d_model // self.n_heads) % 2 == 0,
             f"attention head size d_model / n_heads must be even (rotary), got {self.d_model // self.n_heads}")
        need(not self.spatial_rotary or self.d_model // self.n_heads >= 8,
             f"spatial_rotary needs an attention head size d_model / n_heads >= 8, got {self.d_model // self.n_heads}")
        need(self.attn_window >= 0, f"attn_window must be >= 0, got {self.attn_window}")
        # the carried convolution state holds the last d_conv - 1 inputs: at least one
        need(self.d_conv >= 2, f"d_conv must be >= 2, got {self.d_conv}")
        need(0 < self.dt_min <= self.dt_max, f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        need(self.backend in ("auto", "torch", "triton"),
             f"backend must be auto, torch or triton, got {self.backend!r}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def ssm_heads(self) -> int:
        return self.d_inner // self.headdim

    @property
    def tokens_per_frame(self) -> int:
        return self.frame_shape[0] * self.frame_shape[1]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["frame_shape"] = list(self.frame_shape)
        d["block_sizes"] = [list(b) for b in self.block_sizes]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WorldModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"WorldModelConfig: unknown fields {unknown}")
        # Configs written before these switches existed describe models trained without them.
        return cls(**{"spatial_rotary": False, "neighbour_mixing": False, **d})
