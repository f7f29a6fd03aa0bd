"""Training against the model's own errors: input frames that are wrong the way dream frames are.

Trained on true frames only (teacher forcing), a world model never sees a wrong input; in the dream
every frame after the first is its own output, and one wrong cell can derail the next frames. Two
trainer switches change the *inputs* of a training window (the targets stay the real next frames):

- `corrupt_frames` (`--input-noise S`): per input frame a level sigma ~ U(0, S) and that fraction of
  its cells replaced by random legal tokens, a token analogue of diffusion forcing's noise. A model
  with `noise_conditioning` is told sigma through adaLN, as diffusion forcing tells the noise level;
  the dream runs at sigma = 0.
- `self_forced_frames` (`--self-forcing P`): scheduled sampling. A no-grad teacher-forced pass samples
  every next frame the way the dream decodes (legal tokens, at the dream's default temperature for
  the model's frames: 1 for the agent's view, argmax for a world view); each input frame that has
  a prediction is replaced by it with probability P (ramped up from 0 over `--self-forcing-ramp`
  steps).

Random draws use torch's global generator on the training device, which checkpoints save and resume
restores, so a resumed run draws the same corruption.
"""

from __future__ import annotations

import torch

from worldsim.sampling import sample_frames

from .windows import Window


def random_legal_tokens(shape: tuple[int, ...], legal: torch.Tensor, device: torch.device,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Tokens [*shape, H, W] drawn uniformly from each cell's legal tokens (legal [H, W, V] bool)."""
    flat = torch.zeros(*shape, *legal.shape, device=device)
    uniform = torch.rand(flat.shape, device=device, generator=generator)
    return sample_frames(flat, legal=legal, temperature=1.0, uniform=uniform)


def corrupt_cells(frames: torch.Tensor, level: torch.Tensor | float, legal: torch.Tensor,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """frames [B, L, H, W] with each cell replaced, with probability `level` (a number, or [B, L] per
    frame), by a random legal token (which may be the true one)."""
    level = torch.as_tensor(level, device=frames.device, dtype=torch.float32)
    if level.dim() == 2:
        level = level[:, :, None, None]
    hit = torch.rand(frames.shape, device=frames.device, generator=generator) < level
    noise = random_legal_tokens(frames.shape[:2], legal, frames.device, generator)
    return torch.where(hit, noise, frames)


def corrupt_frames(frames: torch.Tensor, max_level: float, legal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [B, L, H, W] -> (corrupted frames, level [B, L] float32): in each frame a level ~ U(0,
    max_level) and each cell replaced with that probability by a random legal token."""
    level = torch.rand(frames.shape[:2], device=frames.device) * max_level
    return corrupt_cells(frames, level, legal), level


def self_forcing_probability(step: int, prob: float, ramp_steps: int) -> float:
    """The replacement probability at optimizer step `step`: linear from 0 to `prob` over `ramp_steps`."""
    if ramp_steps <= 0:
        return prob
    return prob * min(1.0, step / ramp_steps)


@torch.no_grad()
def self_forced_frames(model, win: Window, prob: float, legal: torch.Tensor, autocast,
                       temperature: float = 1.0) -> torch.Tensor:
    """The window's input frames with each frame t + 1 replaced, with probability `prob`, by the
    model's sample of it (at `temperature`; 0: argmax) from the true frames <= t (a teacher-forced
    pass, no gradients). Frames that start an episode have no prediction and stay true."""
    was_training = model.training
    model.eval()
    with autocast():
        logits = model(win.frames, win.actions, resets=win.resets).frame_logits
    model.train(was_training)
    logits = logits.float()
    predicted = sample_frames(logits, legal=legal, temperature=temperature,         # prediction of frame t + 1
                              uniform=torch.rand(logits.shape, device=logits.device))
    frames = win.frames.clone()
    swap = (torch.rand(win.frames.shape[:2], device=frames.device) < prob) & win.has_target
    swap[:, -1] = False                                                         # frame L lies past the window
    target_pos = swap.nonzero(as_tuple=True)
    frames[target_pos[0], target_pos[1] + 1] = predicted[target_pos]
    return frames
