"""Image features for MiniGrid's symbolic 7x7x3 view, shared by the Stable-Baselines3 agents and the
native PPO, so a policy of either kind reads the same numbers in the dream and in the real env; and
features of pixel images (an agent in the dream of an image model)."""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

# MiniGrid symbolic channel ranges: OBJECT_TO_IDX (0..10), COLOR_TO_IDX (0..5), STATE_TO_IDX (0..2).
CHANNEL_MAX = (10.0, 5.0, 2.0)


def _channels_first(space: spaces.Box) -> bool:
    """SB3 wraps image-like envs in VecTransposeImage (HWC -> CHW); accept either layout."""
    shape = space.shape
    if len(shape) != 3 or 3 not in (shape[0], shape[-1]):
        raise ValueError(f"MiniGrid features expect a (7, 7, 3) or (3, 7, 7) symbolic image; got {shape}")
    return shape[0] == 3 and shape[-1] != 3


class _ScaledGrid(torch.nn.Module):
    """[B, H, W, 3] or [B, 3, H, W] symbolic cells -> [B, 3, H, W] floats in [0, 1]."""

    def __init__(self, channels_first: bool):
        super().__init__()
        self.channels_first = channels_first
        self.register_buffer("scale", torch.tensor(CHANNEL_MAX).view(1, 3, 1, 1), persistent=False)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        if not self.channels_first:
            x = x.permute(0, 3, 1, 2)
        return x / self.scale


class MiniGridCNN(BaseFeaturesExtractor):
    """rl-starter-files' image model: Conv(3->16, 2x2), ReLU, MaxPool 2x2, Conv(16->32, 2x2), ReLU,
    Conv(32->64, 2x2), ReLU; 7x7 -> 6x6 -> 3x3 -> 2x2 -> 1x1, so 64 features for the default view."""

    def __init__(self, observation_space: spaces.Box, features_dim: int = 64):
        channels_first = _channels_first(observation_space)
        h, w = observation_space.shape[1:] if channels_first else observation_space.shape[:2]
        if min(h, w) < 5:
            raise ValueError(f"MiniGridCNN needs a view of at least 5x5 cells; got {h}x{w}")
        convs = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 2), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 2), torch.nn.ReLU(), torch.nn.Flatten())
        with torch.no_grad():
            n_flat = convs(torch.zeros(1, 3, h, w)).shape[1]
        super().__init__(observation_space, n_flat)
        self.net = torch.nn.Sequential(_ScaledGrid(channels_first), convs)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class MiniGridFlat(BaseFeaturesExtractor):
    """The scaled symbolic grid, flattened (for an MLP on top)."""

    def __init__(self, observation_space: spaces.Box):
        channels_first = _channels_first(observation_space)
        super().__init__(observation_space, int(np.prod(observation_space.shape)))
        self.net = torch.nn.Sequential(_ScaledGrid(channels_first), torch.nn.Flatten())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class PixelCNN(BaseFeaturesExtractor):
    """Pixel images uint8 [B, H, W, C] (C in 1, 3, 4) scaled to [0, 1], then the DQN Nature paper's convs:
    Conv(C->32, 8x8, stride 4), Conv(32->64, 4x4, stride 2), Conv(64->64, 3x3), ReLU after each
    (56x56 -> 13x13 -> 5x5 -> 3x3: 576 features)."""

    def __init__(self, observation_space: spaces.Box):
        shape = observation_space.shape
        if len(shape) != 3 or shape[-1] not in (1, 3, 4) or min(shape[:2]) < 36:
            raise ValueError(f"pixel features read images H x W x C with C in 1, 3, 4 and H, W >= 36; got {shape}")
        convs = torch.nn.Sequential(
            torch.nn.Conv2d(shape[-1], 32, 8, stride=4), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 4, stride=2), torch.nn.ReLU(),
            torch.nn.Conv2d(64, 64, 3), torch.nn.ReLU(), torch.nn.Flatten())
        with torch.no_grad():
            n_flat = convs(torch.zeros(1, shape[-1], *shape[:2])).shape[1]
        super().__init__(observation_space, n_flat)
        self.convs = convs

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.convs(observations.permute(0, 3, 1, 2).float() / 255.0)


FEATURES = ("cnn", "mlp", "pixels")
# The features that read MiniGrid's symbolic cells (the others read pixels).
SYMBOLIC_FEATURES = ("cnn", "mlp")


def features_extractor(kind: str, space: spaces.Box) -> BaseFeaturesExtractor:
    """The features extractor called `kind` ("cnn": MiniGridCNN, "mlp": MiniGridFlat, "pixels": PixelCNN)
    for `space`."""
    if kind not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}; got {kind!r}")
    return {"cnn": MiniGridCNN, "mlp": MiniGridFlat, "pixels": PixelCNN}[kind](space)
