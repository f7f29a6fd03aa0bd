"""A learned frame tokenizer for image observations: finite scalar quantization (FSQ) over patches.

An image H x W x C (uint8) is cut into p x p patches. A small conv net maps each patch, with context
from its neighbours, to a few numbers; each is squashed and rounded to one of a fixed number of levels
(FSQ, Mentzer et al. 2023), and the patch's token is its levels read as one mixed-radix number, so the
vocabulary is the product of the levels. A decoder maps the token grid back to pixels. FSQ has no
codebook that can collapse and no commitment loss: rounding with a straight-through gradient is the
whole quantizer, which keeps training a plain reconstruction loss.

The frame of tokens (H/p x W/p) is what a world model predicts, exactly as it predicts MiniGrid's
symbolic cells. Saved as ``tokenizer.safetensors`` + ``tokenizer.json`` (its config and the weights'
sha256, checked on load); loading never runs code from the files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldsim.checkpoint import CheckpointError, atomic_write, file_sha256

WEIGHTS_NAME = "tokenizer.safetensors"
CONFIG_NAME = "tokenizer.json"
FORMAT = "worldsim-fsq-tokenizer"
FORMAT_VERSION = 1
# Token ids are stored in frames of int16 at most (worldsim.data.dataset.frame_dtype).
MAX_VOCAB = 2 ** 15
# A token gets a patch-table entry when at least this share of its patches were one patch, exactly.
TABLE_PURITY = 0.9


@dataclass(frozen=True)
class TokenizerConfig:
    """`image_shape`: (H, W, C) of the observations; `patch`: pixels per token side (H and W must be
    multiples); `levels`: FSQ levels per latent number (vocabulary = their product); `width`: channels
    of the conv net; `blocks`: residual blocks over the token grid in the encoder and in the decoder."""

    image_shape: tuple[int, int, int]
    patch: int = 8
    levels: tuple[int, ...] = (8, 5, 5, 5)
    width: int = 64
    blocks: int = 2

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        object.__setattr__(self, "levels", tuple(self.levels))
        shape = self.image_shape
        if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
            raise ValueError(f"image_shape must be three positive ints (H, W, C); got {shape!r}")
        if not (isinstance(self.patch, int) and self.patch > 0 and shape[0] % self.patch == 0
                and shape[1] % self.patch == 0):
            raise ValueError(f"patch must be a positive int dividing the image's height and width {shape[:2]}; "
                             f"got {self.patch!r}")
        if not self.levels or not all(isinstance(v, int) and v >= 2 for v in self.levels):
            raise ValueError(f"levels must be ints >= 2, one per latent number; got {self.levels!r}")
        if math.prod(self.levels) > MAX_VOCAB:
            raise ValueError(f"levels {self.levels} make a vocabulary of {math.prod(self.levels)} tokens; at most "
                             f"{MAX_VOCAB} are allowed")
        for name in ("width", "blocks"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= (1 if name == "width" else 0)):
                raise ValueError(f"{name} must be a {'positive' if name == 'width' else 'non-negative'} int; "
                                 f"got {value!r}")

    @property
    def vocab_size(self) -> int:
        return math.prod(self.levels)

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.image_shape[0] // self.patch, self.image_shape[1] // self.patch

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TokenizerConfig":
        known = {f.name for f in fields(cls)}
        if not isinstance(d, dict) or set(d) - known or "image_shape" not in d:
            raise ValueError(f"a tokenizer config is a dict with image_shape and optionally "
                             f"{sorted(known - {'image_shape'})}; got {d!r}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def weights_sha256(folder: str | os.PathLike) -> str:
    """The sha256 its config records for the weights of the tokenizer saved in `folder` (its identity)."""
    config_file = Path(folder) / CONFIG_NAME
    try:
        sha = json.loads(config_file.read_text())["weights_sha256"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{config_file} is not a worldsim tokenizer config: {e}") from None
    if not (isinstance(sha, str) and len(sha) == 64):
        raise CheckpointError(f"{config_file}: weights_sha256 must be 64 hex digits; got {sha!r}")
    return sha


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(nn.GroupNorm(1, width), nn.GELU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.GELU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class FrameTokenizer(nn.Module):
    """Images uint8 [..., H, W, C] <-> token frames int64 [..., H/p, W/p]."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        h, w, c = config.image_shape
        p, width, dims = config.patch, config.width, len(config.levels)
        self.encoder = nn.Sequential(nn.Conv2d(c, width, p, stride=p),
                                     *[_Residual(width) for _ in range(config.blocks)],
                                     nn.GroupNorm(1, width), nn.GELU(), nn.Conv2d(width, dims, 1))
        # Token grid -> pixels: features per token, unfolded into its p x p pixels (pixel shuffle), then
        # two small convs at full resolution so that neighbouring patches can agree along their seams.
        fine = 16
        self.decoder = nn.Sequential(nn.Conv2d(dims, width, 1), *[_Residual(width) for _ in range(config.blocks)],
                                     nn.GroupNorm(1, width), nn.GELU(), nn.Conv2d(width, fine * p * p, 1),
                                     nn.PixelShuffle(p), nn.GELU(), nn.Conv2d(fine, fine, 3, padding=1), nn.GELU(),
                                     nn.Conv2d(fine, c, 3, padding=1))
        levels = torch.tensor(config.levels, dtype=torch.float32)
        basis = torch.cumprod(torch.tensor((1, *config.levels[:-1])), 0)
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        # The patch table (fit_patch_table): for each token that stood for one patch of pixels almost
        # everywhere in training, those pixels, which decode gives back exactly; saved with the weights.
        self.register_buffer("patch_table", torch.zeros(config.vocab_size, p * p * c, dtype=torch.uint8))
        self.register_buffer("table_known", torch.zeros(config.vocab_size, dtype=torch.bool))

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def _check_images(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or tuple(images.shape[-3:]) != self.config.image_shape:
            raise ValueError(f"the tokenizer reads uint8 images [..., {', '.join(map(str, self.config.image_shape))}]; "
                             f"got {images.dtype} of shape {tuple(images.shape)}")

    def quantize(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent [N, dims, h, w] -> levels [N, dims, h, w] as whole numbers 0..L-1 (float, with a
        straight-through gradient)."""
        scaled = torch.sigmoid(latent) * (self.levels - 1)[:, None, None]
        return scaled + (scaled.round() - scaled).detach()

    def _encode_levels(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(-1, *self.config.image_shape).permute(0, 3, 1, 2).float() / 255.0
        return self.quantize(self.encoder(x * 2 - 1))

    def _decode_levels(self, q: torch.Tensor) -> torch.Tensor:
        """Levels [N, dims, h, w] -> pixels in [0, 1], [N, C, H, W]."""
        centred = q / (self.levels - 1)[:, None, None] * 2 - 1
        return self.decoder(centred)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [0, 1], [N, C, H, W] (what training compares with the input)."""
        self._check_images(images)
        return self._decode_levels(self._encode_levels(images))

    def tokens_from_levels(self, q: torch.Tensor) -> torch.Tensor:
        """Levels [N, dims, h, w] (whole numbers) -> token ids int64 [N, h, w], read in mixed radix."""
        return (q.round().long() * self.basis[:, None, None]).sum(1)

    def levels_from_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [N, h, w] -> levels [N, dims, h, w] (float whole numbers): the inverse."""
        return ((tokens.long()[:, None] // self.basis[:, None, None]) % self.levels.long()[:, None, None]).float()

    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [N, H, W, C] -> their patches [N, h, w, p * p * C], in token order."""
        (h, w), p, c = self.config.frame_shape, self.config.patch, self.config.image_shape[2]
        return images.reshape(-1, h, p, w, p, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, p * p * c)

    def _unpatch(self, patches: torch.Tensor) -> torch.Tensor:
        (h, w), p, c = self.config.frame_shape, self.config.patch, self.config.image_shape[2]
        return patches.reshape(-1, h, w, p, p, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, *self.config.image_shape)

    @torch.no_grad()
    def fit_patch_table(self, frames: torch.Tensor, batch: int = 512, purity: float = TABLE_PURITY) -> int:
        """Where the frames are made of a finite set of tiles (grid worlds, sprites), the conv decoder comes
        within a few levels of each pixel but rarely all of them. So after training: each token that stood
        for one patch of pixels in at least `purity` of its places in `frames` (uint8 [N, H, W, C]) decodes
        to exactly that patch; a token of many patches (natural images), or that never came up, keeps the
        conv decoder. Returns how many tokens have a table entry."""
        self._check_images(frames)
        dim, cells = self.patch_table.shape[1], math.prod(self.config.frame_shape)
        weights = torch.randint(0, 2**31, (dim,), generator=torch.Generator().manual_seed(0)).to(self.basis.device)
        tokens, hashes = [], []
        for i in range(0, len(frames), batch):
            images = torch.as_tensor(frames[i:i + batch], device=self.basis.device)
            tokens.append(self.encode(images).reshape(-1))
            # a patch told apart from others by a 64-bit hash of its pixels
            hashes.append((self._patches(images).reshape(-1, dim).long() * weights).sum(1))
        tokens, hashes = torch.cat(tokens), torch.cat(hashes)
        pairs, counts = torch.unique(torch.stack([tokens, hashes], 1), dim=0, return_counts=True)
        total = torch.bincount(tokens, minlength=self.vocab_size)
        best = torch.zeros_like(total).scatter_reduce(0, pairs[:, 0], counts, "amax")
        mode = torch.zeros_like(total)
        top = counts == best[pairs[:, 0]]
        mode[pairs[top, 0]] = pairs[top, 1]                 # each token's most common patch (by hash)
        known = (total > 0) & (best >= purity * total)
        # Each known token's patch, read from one place that shows it (no second pass over the frames).
        shows = torch.nonzero(known[tokens] & (hashes == mode[tokens]))[:, 0]
        first = torch.full_like(total, len(tokens)).scatter_reduce(0, tokens[shows], shows, "amin")
        entries = torch.nonzero(known)[:, 0]
        at = first[entries].cpu()
        images = torch.as_tensor(frames[(at // cells).numpy()], device=self.basis.device)
        table = torch.zeros_like(self.patch_table)
        table[entries] = self._patches(images).reshape(len(at), cells, dim)[torch.arange(len(at)), at % cells]
        self.patch_table.copy_(table)
        self.table_known.copy_(known)
        return int(known.sum())

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images [..., H, W, C] -> tokens int64 [..., H/p, W/p]."""
        self._check_images(images)
        lead = images.shape[:-3]
        tokens = self.tokens_from_levels(self._encode_levels(images.to(self.basis.device)))
        return tokens.reshape(*lead, *self.config.frame_shape)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, check: bool = True) -> torch.Tensor:
        """tokens [..., H/p, W/p] -> uint8 images [..., H, W, C]. `check`: refuse ids outside the vocabulary
        (reads them on the host)."""
        tokens = torch.as_tensor(tokens, device=self.basis.device)
        if tuple(tokens.shape[-2:]) != self.config.frame_shape:
            raise ValueError(f"the tokenizer decodes frames of {self.config.frame_shape} tokens; got shape "
                             f"{tuple(tokens.shape)}")
        if check and tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}); got {int(tokens.min())}..{int(tokens.max())}")
        lead, flat = tokens.shape[:-2], tokens.reshape(-1, *self.config.frame_shape).long()
        pixels = self._decode_levels(self.levels_from_tokens(flat))
        images = (pixels * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        known = self.table_known[flat]
        # Tokens with a table entry take its pixels (a select, not a test: no host sync).
        patches = torch.where(known[..., None], self.patch_table[flat], self._patches(images))
        images = self._unpatch(patches)
        return images.reshape(*lead, *self.config.image_shape)

    # ------------------------------------------------------------------------------------- files

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the weights and config into `folder`, each atomically; the config records the
        weights' sha256."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
        payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": self.config.to_dict(),
                   "weights_sha256": file_sha256(folder / WEIGHTS_NAME)}
        atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=2)))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> "FrameTokenizer":
        """The tokenizer saved in `folder`; CheckpointError naming the file when anything does not fit."""
        folder = Path(folder)
        config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        try:
            payload = json.loads(config_file.read_text())
            if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format {payload.get('format')!r} version {payload.get('format_version')!r}, "
                                 f"expected {FORMAT!r} version {FORMAT_VERSION}")
            config = TokenizerConfig.from_dict(payload["config"])
            expected_sha = payload["weights_sha256"]
        except (OSError, json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{config_file} is not a worldsim tokenizer config: {e}") from None
        if not weights_file.is_file() or file_sha256(weights_file) != expected_sha:
            raise CheckpointError(f"{weights_file} is missing, damaged or replaced (its sha256 is not the one "
                                  f"{CONFIG_NAME} records)")
        try:
            tensors = load_file(weights_file)
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{weights_file} is not a readable safetensors file: {e}") from None
        tokenizer = cls(config)
        expected = tokenizer.state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
            raise CheckpointError(f"{weights_file} does not fit the tokenizer its {CONFIG_NAME} describes")
        tokenizer.load_state_dict(tensors)
        return tokenizer.to(device).eval()
