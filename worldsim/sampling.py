"""Pure sampling of a world-model step's outputs, on the device. `worldsim.simulator.Simulator.step`
composes them. The random numbers are drawn first, apart from the model step (`draw_uniforms`), so a
step can run with numbers drawn outside it: a captured CUDA graph replays the same kernels with the
draws of each step, and gives the same frames as the eager step from the same generator."""

from __future__ import annotations

from typing import NamedTuple

import torch

TERMINATION_MODES = ("threshold", "sample")


class Uniforms(NamedTuple):
    """One step's uniform draws: frames [B, H, W, V] (None at temperature 0: argmax draws nothing)
    and termination [B] (None unless termination is sampled)."""

    frames: torch.Tensor | None
    done: torch.Tensor | None


def draw_uniforms(batch: int, cells: tuple[int, int, int], *, temperature: float, termination: str,
                  generator: torch.Generator | None, device: torch.device) -> Uniforms:
    """The uniforms a step needs, drawn from `generator` in a fixed order: frames first, then termination."""
    frames = None if temperature == 0 else torch.rand((batch, *cells), generator=generator, device=device)
    done = torch.rand((batch,), generator=generator, device=device) if termination == "sample" else None
    return Uniforms(frames, done)


def legal_logits(logits: torch.Tensor, legal: torch.Tensor | None) -> torch.Tensor:
    """Frame logits [B, H, W, V] as float32 with the tokens `legal` [H, W, V] forbids at -inf; None:
    `logits` are already that (a step masks once for sampling and for its uncertainty)."""
    return logits if legal is None else logits.float().masked_fill(~legal, float("-inf"))


def one_agent_logits(logits: torch.Tensor, agent_token_base: int | None) -> torch.Tensor:
    """Frame logits [B, H, W, V] (legal ones) constrained to frames with exactly one agent: the agent
    stands in the cell where the model finds it most likely (the largest log-odds of its agent tokens
    against the rest), which keeps only agent tokens, and every other cell loses them. Sampling each
    cell independently could place no agent or two; this decodes the pose first, deterministically
    (MiniGrid moves the agent deterministically), and the rest of the frame around it. None: no
    constraint (the codec fixes the agent's cell)."""
    if agent_token_base is None:
        return logits
    b, h, w, v = logits.shape
    is_agent_token = torch.arange(v, device=logits.device) >= agent_token_base
    agent = logits.masked_fill(~is_agent_token, float("-inf")).logsumexp(-1)
    other = logits.masked_fill(is_agent_token, float("-inf")).logsumexp(-1)
    cell = (agent - other).flatten(1).nan_to_num(nan=float("-inf")).argmax(1)     # [B]
    at_agent = torch.zeros(b, h * w, dtype=torch.bool, device=logits.device)
    at_agent.scatter_(1, cell[:, None], True)
    allowed = at_agent.view(b, h, w, 1) == is_agent_token
    return logits.masked_fill(~allowed, float("-inf"))


def sample_frames(logits: torch.Tensor, *, legal: torch.Tensor | None, temperature: float,
                  uniform: torch.Tensor | None) -> torch.Tensor:
    """Next frames [B, H, W] long from frame logits [B, H, W, V]: every cell from
    softmax(logits / temperature) restricted to the codec's legal tokens `legal` [H, W, V] (so every
    frame decodes; None: `legal_logits` already applied), using `uniform` [B, H, W, V]; temperature
    0 takes the argmax."""
    logits = legal_logits(logits, legal)
    if temperature == 0:
        return logits.argmax(-1)
    if uniform is None:
        raise ValueError(f"sampling at temperature {temperature} needs uniforms (draw_uniforms); got None")
    # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T), in one
    # elementwise pass (torch.multinomial over B·H·W rows is far slower at large batch).
    return (logits / temperature - torch.log(-torch.log(uniform.clamp(min=1e-20)))).argmax(-1)


def frame_entropy(logits: torch.Tensor, *, legal: torch.Tensor | None) -> torch.Tensor:
    """The model's uncertainty about the next frame, [B] float32: the mean over cells of the entropy
    (nats) of each cell's distribution over its legal tokens (None: `legal_logits` already applied),
    at temperature 1 whatever the decoder's."""
    logp = torch.log_softmax(legal_logits(logits, legal), dim=-1)
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1).flatten(1).mean(1)


def sample_termination(done_logits: torch.Tensor, *, mode: str,
                       uniform: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(done probability [B] float32, terminated [B] bool) from done logits [B]: "threshold":
    sigmoid > 0.5 (deterministic, like MiniGrid's own goal/lava termination); "sample": a Bernoulli
    draw of it with `uniform` [B]."""
    p_done = torch.sigmoid(done_logits.float())
    if mode == "sample":
        if uniform is None:
            raise ValueError("termination='sample' needs uniforms (draw_uniforms); got None")
        return p_done, uniform < p_done
    return p_done, p_done > 0.5
