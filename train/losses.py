"""The training losses of a world model, and their breakdown.

- `time_weights`: long-context training weighs the context frames of a window apart from the rest.
- `prediction_losses`: the next-frame, reward and termination losses of one chunk of a window,
  masked where the target lies in another episode and weighed over time; the frame loss is also
  reported on cells seen before ("remembered": the target cell's gap >= 0) and on cells never seen
  before (gap == -1).
- `aux_reconstruction_loss`: the state-regularisation loss: a small head (`train.modules.AuxHead`)
  reads the features at frame t and reconstructs frame t - d of the same episode.

Each loss is normalised by the whole window's weight, so that the chunks' losses of a truncated-
backprop window add up to the window's mean loss. The breakdown goes into a `Meter`
(`train.evaluation`) when one is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .windows import Window, segment_ids

if TYPE_CHECKING:
    from worldsim.model import WorldModelOutput

    from .evaluation import Meter


def time_weights(length: int, context_fraction: float, prefix_weight: float, min_length: int = 0,
                 device=None) -> torch.Tensor:
    """[L] loss weight of each window position: long-context training gives the first
    floor(context_fraction * L) frames (the context) weight `prefix_weight`, the rest 1; windows
    shorter than `min_length` weigh every frame 1."""
    w = torch.ones(length, device=device)
    if context_fraction > 0 and length >= min_length:
        w[: int(context_fraction * length)] = prefix_weight
    return w


def prediction_losses(out: WorldModelOutput, win: Window, sl: slice, weight: torch.Tensor,
                      normalizer: torch.Tensor, reward_loss: str = "mse", meter: Meter | None = None,
                      done_pos_weight: float = 1.0, focal_gamma: float = 0.0) -> dict[str, torch.Tensor]:
    """Losses of the window positions `sl` (the chunk `out` was computed on).

    weight [B, len(sl)]: has_target times the time weight; `normalizer`: the sum of the weights
    over the whole window, so that summing chunk losses gives the window's mean loss. Returns the
    frame, reward and termination losses (scalars with gradients); records the breakdown in `meter`.
    `done_pos_weight` weighs the rare steps that terminate (termination loss) or pay a reward
    (reward loss). `focal_gamma` > 0 trains on the focal loss (1 - p)^gamma x cross-entropy per cell,
    p the probability of the true token: the many cells a frame copies from the last weigh little
    next to the few it gets wrong, such as a rare transition's; the metrics stay cross-entropy.
    """
    targets = win.targets[:, sl]
    logits = out.frame_logits.float()
    ce = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    per_frame = ce.mean(dim=(2, 3))
    trained = per_frame if not focal_gamma else (ce * (-ce).exp().neg().add(1).pow(focal_gamma)).mean(dim=(2, 3))
    reward_pred = out.reward.float()
    reward_true = win.rewards[:, sl]
    if reward_loss == "mse":
        r = (reward_pred - reward_true).square()
    elif reward_loss == "smooth_l1":
        r = F.smooth_l1_loss(reward_pred, reward_true, reduction="none")
    else:
        raise ValueError(f"reward_loss must be mse or smooth_l1, got {reward_loss!r}")
    # Sparse rewards come with termination in MiniGrid-like tasks: weigh the steps that pay as the
    # terminating steps are weighed, or the head learns to predict 0 everywhere.
    r = r * torch.where(reward_true != 0, float(done_pos_weight), 1.0)
    d = F.binary_cross_entropy_with_logits(
        out.done_logits.float(), win.terminated[:, sl].float(), reduction="none",
        pos_weight=torch.tensor(float(done_pos_weight), device=out.done_logits.device))
    losses = {
        "frame": (trained * weight).sum() / normalizer,
        "reward": (r * weight).sum() / normalizer,
        "done": (d * weight).sum() / normalizer,
    }
    if meter is not None:
        with torch.no_grad():
            total_w = weight.sum()
            meter.add("frame_loss", (per_frame * weight).sum(), total_w)
            meter.add("reward_loss", (r * weight).sum(), total_w)
            meter.add("done_loss", (d * weight).sum(), total_w)
            cell_w = weight[:, :, None, None].expand_as(ce)
            seen = (win.target_gap[:, sl] >= 0).float()
            meter.add("frame_loss_remembered", (ce * cell_w * seen).sum(), (cell_w * seen).sum())
            meter.add("frame_loss_new", (ce * cell_w * (1 - seen)).sum(), (cell_w * (1 - seen)).sum())
            hits = (logits.argmax(-1) == targets).float()
            meter.add("acc", (hits * cell_w).sum(), cell_w.sum())
    return losses


def aux_valid(resets: torch.Tensor, delay: int) -> torch.Tensor:
    """[B, L] bool: position t has a frame t - delay in the same episode inside the window."""
    b, length = resets.shape
    segment = segment_ids(resets)
    valid = torch.zeros(b, length, dtype=torch.bool, device=resets.device)
    if delay < length:
        valid[:, delay:] = segment[:, delay:] == segment[:, : length - delay]
    return valid


def aux_reconstruction_loss(head: nn.Module, features: torch.Tensor, win: Window, sl: slice, delay: int,
                            valid: torch.Tensor, normalizer: torch.Tensor,
                            meter: Meter | None = None) -> torch.Tensor:
    """Cross-entropy of `head(features, delay)` against the tokens of frame t - delay, at the
    positions of `sl` where `valid` [B, L] (whole window) holds; `normalizer`: valid.sum().
    features [B, len(sl), H, W, D]: the model's last-layer features of the chunk."""
    frame_index = torch.arange(sl.start, sl.stop, device=features.device)          # t of each chunk position
    v = valid[:, sl].float()
    targets = win.frames[:, (frame_index - delay).clamp_min(0)]                  # [B, c, H, W] tokens of t - d
    logits = head(features, delay).float()
    ce = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(targets.shape)
    per_frame = ce.mean(dim=(2, 3))
    if meter is not None:
        with torch.no_grad():
            meter.add("aux_loss", (per_frame * v).sum(), v.sum())
            cell_v = v[:, :, None, None].expand_as(ce)
            meter.add("aux_acc", ((logits.argmax(-1) == targets).float() * cell_v).sum(), cell_v.sum())
    return (per_frame * v).sum() / normalizer
