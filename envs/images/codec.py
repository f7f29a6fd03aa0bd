"""The codec of envs with image observations: frames of tokens made by a learned frame tokenizer.

A frame is the tokenizer's grid of patch tokens (``envs.images.tokenizer``), so a frame is the whole
observation: there is no direction to fold in and no place outside the agent's sight. The codec's
config names the tokenizer by the sha256 of its weights. Its files travel inside every folder that
holds its frames (a dataset, a world model) under ``tokenizer/``; the codec is rebuilt from a folder
it is given (``files``), or from a tokenizer this process has already loaded with the same weights.
A tokenizer whose weights are not the ones named is refused, so frames are never decoded by the
wrong tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.images.sources import as_image_env  # also registers the MiniGrid ids, as loading a codec must
from envs.images.tokenizer import FrameTokenizer, weights_sha256

VERSION = "image-fsq-v1"
TOKENIZER_FOLDER = "tokenizer"
# Tokenizers loaded in this process, by the sha256 of their weights: a model's config names its
# tokenizer this way, and the dataset it was trained on has loaded it already.
_LOADED: dict[str, FrameTokenizer] = {}


def _tensor(values: Any) -> torch.Tensor:
    """A tensor of `values` (a tensor as it is; arrays copied, as torch cannot share a read-only one)."""
    return values if isinstance(values, torch.Tensor) else torch.as_tensor(np.array(values))


class ImageCodec:
    """Images uint8 [H, W, C] <-> token frames [H/p, W/p] through a frame tokenizer."""

    version = VERSION
    unseen_token = -1               # no token: every patch of an image is in sight
    needs_files = True              # codec_from_config hands from_config the folder that holds the tokenizer

    def __init__(self, tokenizer: FrameTokenizer, sha256: str):
        self.tokenizer = tokenizer.eval()
        self.sha256 = sha256
        _LOADED.setdefault(sha256, self.tokenizer)

    @classmethod
    def from_tokenizer_folder(cls, folder: str | Path) -> ImageCodec:
        """The codec of the tokenizer saved in `folder` (``worldsim tokenizer --out``)."""
        tokenizer = FrameTokenizer.load(folder)
        return cls(tokenizer, weights_sha256(folder))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.tokenizer.config.frame_shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.tokenizer.config.image_shape

    @property
    def config(self) -> dict:
        return {"version": VERSION, "image_shape": list(self.image_shape), "frame_shape": list(self.frame_shape),
                "vocab_size": self.vocab_size, "tokenizer_sha256": self.sha256}

    @classmethod
    def from_config(cls, config: Mapping, files: str | Path | None = None) -> ImageCodec:
        """The codec `config` names, with its tokenizer from `files`/tokenizer or one already loaded."""
        if config.get("version") != VERSION:
            raise ValueError(f"codec version {config.get('version')!r} is not this codec's {VERSION!r}")
        sha = config["tokenizer_sha256"]
        if files is not None and (Path(files) / TOKENIZER_FOLDER).is_dir():
            folder = Path(files) / TOKENIZER_FOLDER
            found = weights_sha256(folder)
            if found != sha:
                raise ValueError(f"{folder} holds another tokenizer (weights sha256 {found[:12]}...) than the one "
                                 f"these frames were made with ({str(sha)[:12]}...)")
            return cls(FrameTokenizer.load(folder), sha)
        if sha in _LOADED:
            return cls(_LOADED[sha], sha)
        where = f"{Path(files) / TOKENIZER_FOLDER} does not exist" if files is not None else "no folder was given"
        raise ValueError(f"frames of an image codec need the tokenizer they were made with (weights sha256 "
                         f"{str(sha)[:12]}...), kept in a {TOKENIZER_FOLDER}/ folder beside them; {where}")

    def save_files(self, folder: str | Path) -> None:
        """Put the tokenizer into `folder`/tokenizer, so that frames kept in `folder` can be decoded."""
        target = Path(folder) / TOKENIZER_FOLDER
        if not target.is_dir() or weights_sha256(target) != self.sha256:
            self.tokenizer.save(target)

    # ----------------------------------------------------------------------------- frames

    def encode(self, obs: Any) -> torch.Tensor:
        """One image [H, W, C] -> its frame [H/p, W/p] of tokens (int64, on the CPU)."""
        return self.encode_episode(np.asarray(obs)[None])[0]

    def encode_episode(self, images: Any, directions: Any = None, agent_pos: Any = None) -> torch.Tensor:
        """Images [T, H, W, C] -> frames [T, H/p, W/p] (int64, on the CPU); directions and poses are not read."""
        images = _tensor(images)
        return torch.cat([self.tokenizer.encode(images[i:i + 256]).cpu() for i in range(0, len(images), 256)])

    def decode_batch(self, tokens: Any) -> tuple[np.ndarray, None]:
        """Frames [..., H/p, W/p] -> (images uint8 [..., H, W, C], None: an image has no direction)."""
        return self.tokenizer.decode(_tensor(tokens)).cpu().numpy(), None

    def decode_torch(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames [B, H/p, W/p] on a device -> images uint8 [B, H, W, C] there, with no host sync (the dream's
        own frames, whose tokens are legal by construction, are not checked)."""
        if next(self.tokenizer.parameters()).device != frames.device:
            self.tokenizer.to(frames.device)
        return self.tokenizer.decode(frames, check=False)

    def observation_env(self, env: Any) -> Any:
        """`env` as it shows itself in images: as it is when it observes images already, MiniGrid through its RGB
        partial view drawn at this codec's size; ValueError when its images are not this codec's."""
        return as_image_env(env, self.image_shape)

    def legal_mask(self) -> torch.Tensor:
        """Every token may stand in every cell."""
        return torch.ones(*self.frame_shape, self.vocab_size, dtype=torch.bool)

    def render(self, tokens: Any, tile_size: int | None = None) -> np.ndarray:
        """Frames [..., H/p, W/p] -> the images they decode to (RGB; a one-channel image in grey). The
        image's own size: `tile_size` is accepted for the interface and not used."""
        images = self.decode_batch(tokens)[0]
        if images.shape[-1] == 1:
            images = np.repeat(images, 3, axis=-1)
        return np.ascontiguousarray(images[..., :3])

    def world_cells(self, agent_pos: Any, agent_dir: Any) -> None:
        """None: the patches of an image show no known places, so memory metrics have no gaps to read."""
        return None

    def __repr__(self) -> str:
        return (f"ImageCodec(image_shape={self.image_shape}, frame_shape={self.frame_shape}, vocab_size="
                f"{self.vocab_size}, tokenizer={self.sha256[:12]})")
