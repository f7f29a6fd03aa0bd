"""Pure sampling of a world-model step's outputs, on the device. `worldsim.simulator.Simulator.step`
composes them (frames first, then termination: that order fixes which random numbers each draws)."""

from __future__ import annotations

import torch

TERMINATION_MODES = ("threshold", "sample")


def sample_frames(logits: torch.Tensor, *, legal: torch.Tensor, temperature: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """Next frames [B, H, W] long from frame logits [B, H, W, V]: every cell from
    softmax(logits / temperature) restricted to the codec's legal tokens `legal` [H, W, V] (so every
    frame decodes); temperature 0 takes the argmax and draws nothing."""
    logits = logits.float().masked_fill(~legal, float("-inf"))
    if temperature == 0:
        return logits.argmax(-1)
    # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T), in one
    # elementwise pass (torch.multinomial over B·H·W rows is far slower at large batch).
    uniform = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-20)
    return (logits / temperature - torch.log(-torch.log(uniform))).argmax(-1)


def sample_termination(done_logits: torch.Tensor, *, mode: str,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(done probability [B] float32, terminated [B] bool) from done logits [B]: "threshold":
    sigmoid > 0.5 (deterministic, like MiniGrid's own goal/lava termination); "sample": a Bernoulli
    draw of it."""
    p_done = torch.sigmoid(done_logits.float())
    if mode == "sample":
        return p_done, torch.rand(p_done.shape, generator=generator, device=p_done.device) < p_done
    return p_done, p_done > 0.5
