"""Codec registry: which class turns a checkpoint's frames of tokens back into observations.

A checkpoint's ``config.metadata["codec"]`` is the codec's own ``config`` dict (as the trainer copies
it from the dataset manifest), e.g. ``{"version": "minigrid-symbolic-v1", "view_size": 7}``. The
``version`` names the token layout; this registry maps it to an import string ``"module:Class"``
(like Gymnasium's entry points) so that ``worldsim`` itself never imports an env package at module
level. The class is imported on first use and built with ``Class.from_config(config)``.

A codec used by the dream envs provides: ``vocab_size``, ``frame_shape``, ``config``,
``from_config(config)``, ``encode(obs)``, ``decode_batch(tokens) -> (images, directions)``,
``legal_mask() -> BoolTensor[H, W, vocab]``, ``agent_cell`` and ``render(tokens, tile_size)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .checkpoint import CheckpointError

_REGISTRY: dict[str, str] = {
    "minigrid-symbolic-v1": "envs.minigrid:MiniGridCodec",
    "minigrid-map-v1": "envs.minigrid:MiniGridMapCodec",
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


def codec_from_config(config: Any):
    """Build the codec a checkpoint or dataset names in its ``codec`` config dict."""
    if not isinstance(config, Mapping) or "version" not in config:
        raise ValueError(f"a codec config must be a dict with a 'version'; got {config!r}")
    return load_codec_class(config["version"]).from_config(config)


def codec_for_model(config: Any, codec: Any = None):
    """The codec given, or the one a WorldModelConfig's metadata names; checked against the
    model's vocabulary and frame shape."""
    if codec is None:
        meta = getattr(config, "metadata", None) or {}
        if "codec" not in meta:
            raise CheckpointError("the model's config.metadata has no 'codec' entry; cannot decode its frames "
                                  "(pass a codec)")
        codec = codec_from_config(meta["codec"])
    vocab, shape = getattr(config, "vocab_size", None), getattr(config, "frame_shape", None)
    if (vocab is not None and codec.vocab_size != vocab) or \
            (shape is not None and tuple(codec.frame_shape) != tuple(shape)):
        raise CheckpointError(f"codec {getattr(codec, 'version', codec)!r} has vocab {codec.vocab_size} and frames "
                              f"{tuple(codec.frame_shape)}, but the model was built for vocab {vocab} and frames "
                              f"{tuple(shape)}")
    return codec
