"""Codec registry: which class turns a checkpoint's frames of tokens back into observations.

A checkpoint's ``config.metadata["codec"]`` is the codec's own ``config`` dict (as the trainer copies
it from the dataset manifest), e.g. ``{"version": "minigrid-symbolic-v1", "view_size": 7}``. The
``version`` names the token layout; this registry maps it to an import string ``"module:Class"``
(like Gymnasium's entry points) so that ``worldsim`` itself never imports an env package at module
level. The class is imported on first use and built with ``Class.from_config(config)``.

What a codec provides is written down as a type, :class:`Codec`; a dream env needs one of three more:
:class:`EgocentricCodec` (frames are the agent's own view), :class:`WorldStateCodec` (frames are
the whole env state, and the agent's view is cut out of them) or :class:`PixelCodec` (a frame is
the observation, an image, in a learned tokenizer's tokens). ``codec_from_config`` refuses a class
that lacks part of :class:`Codec`. A codec built on a learned tokenizer (``image-fsq-v1``) also needs
the tokenizer's files, which live beside its frames: ``codec_from_config(config, files=FOLDER)``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from .checkpoint import CheckpointError

@runtime_checkable
class Codec(Protocol):
    """The contract between a real env's observations and a world model's token frames.

    ``version`` names the token layout (a checkpoint records it); ``vocab_size`` tokens, frames of
    ``frame_shape`` = (H, W) cells; ``unseen_token`` marks a cell the agent does not see."""

    version: str
    vocab_size: int
    unseen_token: int

    @property
    def frame_shape(self) -> tuple[int, int]: ...

    @property
    def config(self) -> dict:
        """Everything needed to rebuild the codec (``from_config``), as JSON-able values."""

    @classmethod
    def from_config(cls, config: Mapping) -> "Codec": ...

    def encode_episode(self, images: Any, directions: Any, agent_pos: Any = None) -> torch.Tensor:
        """Observations [..., view, view, 3] (or pixel images) and directions [...] -> token frames [..., H, W]."""

    def decode_batch(self, tokens: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Token frames [..., H, W] -> (images [..., view, view, 3] symbolic or [..., H, W, C] pixels,
        directions [...] or None where the observation has none)."""

    def legal_mask(self) -> torch.Tensor:
        """BoolTensor [H, W, vocab_size]: the tokens that may stand in each cell."""

    def render(self, tokens: Any, tile_size: int = ...) -> np.ndarray:
        """Token frames [..., H, W] -> RGB uint8 [..., H * tile, W * tile, 3]."""

    def world_cells(self, agent_pos: Any, agent_dir: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """The world cells (x, y) that each frame cell shows, for an agent at `agent_pos` facing `agent_dir`;
        None for frames whose cells show no known places (images)."""


@runtime_checkable
class EgocentricCodec(Codec, Protocol):
    """A codec whose frames are the agent's own view, so the agent always stands in one cell: what a
    dream env needs to turn frames back into the real env's observations."""

    @property
    def agent_cell(self) -> tuple[int, int]: ...


@runtime_checkable
class WorldStateCodec(Codec, Protocol):
    """A codec whose frames are the env's whole state, the agent one token among them (at any cell, its
    token ids from ``agent_token_base`` on): a dream starts from the real env's state and shows the
    agent the view it would have there."""

    agent_token_base: int

    def encode_env(self, env: Any) -> torch.Tensor:
        """The frame [H, W] of a real env's current state."""

    def observe_torch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [B, H, W] on a device -> the agent's (images uint8 [B, view, view, 3], directions [B]) there."""

    def render_view(self, tokens: Any, tile_size: int = ...) -> np.ndarray:
        """Frame(s) [..., H, W] -> RGB of the agent's egocentric view of each, as MiniGrid draws it."""


@runtime_checkable
class PixelCodec(Codec, Protocol):
    """A codec whose frame is the whole observation, an image (a learned tokenizer's patch tokens): a dream
    env shows the agent the decoded image, and the real env is read through ``observation_env``."""

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    def decode_torch(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [B, H, W] on a device -> images uint8 [B, *image_shape] there."""

    def observation_env(self, env: Any) -> Any:
        """The real env `env`, wrapped (if it must be) so that its observations are the images this codec reads."""


def is_dream_codec(codec: Any) -> bool:
    """Whether frames of `codec` can be turned into the agent's observations (what a dream env needs)."""
    return isinstance(codec, (EgocentricCodec, WorldStateCodec, PixelCodec))


def default_temperature(codec: Any) -> float:
    """The dream's sampling temperature for frames of `codec` when none is given, chosen by closed-loop
    measurement: argmax (0) for a world-state frame, the env's whole state, whose MiniGrid dynamics are
    deterministic (sampling every cell turns each small probability of a wrong transition into a
    lottery an agent learns to win); 1 otherwise (the agent's view, whose unseen places are uncertain
    for real)."""
    return 0.0 if isinstance(codec, WorldStateCodec) else 1.0


def one_agent_token_base(codec: Any) -> int | None:
    """The first agent token id when a sampled frame must place the agent itself (exactly one agent
    token, anywhere: ``worldsim.sampling.one_agent_logits``); None for codecs with a fixed agent cell."""
    return int(codec.agent_token_base) if isinstance(codec, WorldStateCodec) else None


def real_frame(codec: Any, obs: Any, env: Any = None) -> torch.Tensor:
    """The frame [H, W] of a real env's current step: its observation `obs` encoded, or, for a world-state
    codec, the state of `env` itself (the observation shows only part of it)."""
    if isinstance(codec, WorldStateCodec):
        if env is None:
            raise ValueError(f"{codec!r} encodes the whole env state, not an observation: pass the real env")
        return codec.encode_env(env)
    return codec.encode(obs)


def missing_members(codec: Any, protocol: type = Codec) -> list[str]:
    """The members of `protocol` (and of the protocols it extends) that `codec` lacks."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if klass is not object and getattr(klass, "_is_protocol", False) and klass is not Protocol:
            names |= {n for n in vars(klass) if not n.startswith("_")} | set(getattr(klass, "__annotations__", {}))
    return sorted(n for n in names if not hasattr(codec, n))


_REGISTRY: dict[str, str] = {
    "minigrid-symbolic-v1": "envs.minigrid:MiniGridCodec",
    "minigrid-map-v1": "envs.minigrid:MiniGridMapCodec",
    "minigrid-world-v1": "envs.minigrid:MiniGridWorldCodec",
    "image-fsq-v1": "envs.images.codec:ImageCodec",
}


def register_codec(version: str, entry_point: str, override: bool = False) -> None:
    """Map a codec ``version`` to ``"module:Class"``. Re-registering a version needs ``override``."""
    if not isinstance(entry_point, str) or entry_point.count(":") != 1:
        raise ValueError(f"codec entry point must be 'module:Class'; got {entry_point!r}")
    if version in _REGISTRY and _REGISTRY[version] != entry_point and not override:
        raise ValueError(f"codec version {version!r} is already registered as {_REGISTRY[version]!r}")
    _REGISTRY[version] = entry_point


def registered_codecs() -> dict[str, str]:
    return dict(_REGISTRY)


def load_codec_class(version: str):
    if version not in _REGISTRY:
        raise ValueError(f"unknown codec version {version!r}; known: {sorted(_REGISTRY)} "
                         "(register one with worldsim.codecs.register_codec)")
    module_name, _, attr = _REGISTRY[version].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ImportError(f"codec {version!r} lives in {module_name!r}, which cannot be imported ({e})") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no codec class {attr!r} (codec {version!r})") from None


def codec_from_config(config: Any, files: str | os.PathLike | None = None):
    """Build the codec a checkpoint or dataset names in its ``codec`` config dict. `files`: the folder
    that holds the frames (dataset or checkpoint), for a codec whose class sets ``needs_files`` (a
    learned tokenizer, kept beside the frames it made)."""
    if not isinstance(config, Mapping) or "version" not in config:
        raise ValueError(f"a codec config must be a dict with a 'version'; got {config!r}")
    klass = load_codec_class(config["version"])
    try:
        codec = klass.from_config(config, files=files) if getattr(klass, "needs_files", False) \
            else klass.from_config(config)
    except KeyError as e:             # a config written by another codec (e.g. egocentric for a map one)
        raise ValueError(f"codec config {dict(config)!r} lacks {e.args[0]!r}, which a {config['version']!r} codec "
                         "needs: it was not written by that codec") from None
    if not isinstance(codec, Codec):
        raise TypeError(f"codec {config['version']!r} ({type(codec).__name__}) lacks {missing_members(codec)} "
                        "of the worldsim.codecs.Codec interface")
    return codec


def _keeps_files(config: Any) -> bool:
    """Whether the codec `config` names keeps files beside its frames (a learned tokenizer)."""
    version = config.get("version") if isinstance(config, Mapping) else None
    return version in _REGISTRY and getattr(load_codec_class(version), "needs_files", False)


def save_codec_files(config: Any, folder: str | os.PathLike) -> None:
    """Put the files of the codec `config` names (a tokenizer) into `folder`, beside a model's weights;
    nothing for a codec without files. Its files must have been loaded in this process (by the dataset
    the model was trained on, or the checkpoint it was loaded from)."""
    if _keeps_files(config):
        codec_from_config(config).save_files(folder)


def load_codec_files(config: Any, folder: str | os.PathLike) -> None:
    """Load the files of the codec `config` names from `folder` (a checkpoint), when it keeps any there,
    so that the model's frames can be decoded in this process."""
    if _keeps_files(config):
        codec_from_config(config, files=folder)


def codec_for_model(config: Any, codec: Any = None):
    """The codec given, or the one a WorldModelConfig's metadata names; checked against the
    model's vocabulary and frame shape."""
    if codec is None:
        meta = getattr(config, "metadata", None) or {}
        if "codec" not in meta:
            raise CheckpointError("the model's config.metadata has no 'codec' entry; cannot decode its frames "
                                  "(pass a codec)")
        try:
            codec = codec_from_config(meta["codec"])
        except ValueError as e:         # say where the config came from: the checkpoint's config.json
            raise CheckpointError(f"metadata.codec of the model's config (config.json): {e}") from None
    vocab, shape = getattr(config, "vocab_size", None), getattr(config, "frame_shape", None)
    if (vocab is not None and codec.vocab_size != vocab) or \
            (shape is not None and tuple(codec.frame_shape) != tuple(shape)):
        raise CheckpointError(f"codec {getattr(codec, 'version', codec)!r} has vocab {codec.vocab_size} and frames "
                              f"{tuple(codec.frame_shape)}, but the model was built for vocab {vocab} and frames "
                              f"{tuple(shape)}")
    return codec
