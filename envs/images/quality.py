"""How faithfully a tokenizer reconstructs frames: PSNR, SSIM and the exact-frame rate.

All take uint8 images [N, H, W, C] and give one number per frame, so that a report can give means
and spreads. SSIM is the standard one (Wang et al. 2004): an 11-tap Gaussian window (sigma 1.5) over
each channel, constants K1 = 0.01 and K2 = 0.03 of the 255 range, averaged over pixels and channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(real: torch.Tensor, recon: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    real, recon = torch.as_tensor(real), torch.as_tensor(recon)
    if real.shape != recon.shape or real.ndim != 4 or real.dtype != torch.uint8 or recon.dtype != torch.uint8:
        raise ValueError(f"frames must be two uint8 arrays of the same shape [N, H, W, C]; got {real.dtype} "
                         f"{tuple(real.shape)} and {recon.dtype} {tuple(recon.shape)}")
    return real.double(), recon.double().to(real.device)


def psnr(real: torch.Tensor, recon: torch.Tensor, cap: float = 100.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per frame in dB; a frame reconstructed exactly gets `cap`."""
    a, b = _pair(real, recon)
    mse = (a - b).pow(2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(255.0 ** 2 / mse.clamp_min(1e-12))).clamp(max=cap)


def ssim(real: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Structural similarity per frame, in [-1, 1] (1: identical)."""
    a, b = _pair(real, recon)
    if min(a.shape[1:3]) < 11:
        raise ValueError(f"SSIM's 11-pixel window needs frames of at least 11 x 11 pixels; got {tuple(a.shape[1:3])}")
    channels = a.shape[-1]
    a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    taps = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-taps ** 2 / (2 * 1.5 ** 2))
    g = (g / g.sum()).to(a.device)
    window = (g[:, None] * g[None, :]).expand(channels, 1, 11, 11).contiguous()

    def blur(x):
        return F.conv2d(x, window, groups=channels)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return score.mean(dim=(1, 2, 3))


def exact(real: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """1.0 per frame whose every pixel is reconstructed exactly, else 0.0."""
    a, b = _pair(real, recon)
    return (a == b).flatten(1).all(1).double()
