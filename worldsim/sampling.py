"""One imagined step for a batch: a WorldModel step, then the next frame, reward and termination
sampled on the device. Shared by the dream envs and by planners branching model rollouts."""

from __future__ import annotations

import torch

TERMINATION_MODES = ("threshold", "sample")


def sample_step(
    model_step,
    state,
    frames: torch.Tensor,
    actions: torch.Tensor,
    legal: torch.Tensor,
    temperature: float,
    termination: str,
    generator: torch.Generator,
    bf16: bool = False,
    rewards_only_on_termination: bool = False,
):
    """`model_step(state, frames, actions)` (WorldModel.step, maybe compiled; the state is updated
    in place), then sampling:

    - next frame: every cell from softmax(logits / temperature) restricted to the codec's legal
      tokens `legal` [H, W, V] (so every frame decodes); temperature 0 takes the argmax;
    - termination: "threshold": sigmoid(done logit) > 0.5; "sample": a Bernoulli draw of it;
    - reward: the predicted reward; with `rewards_only_on_termination` (an env that pays only on the
      terminating step, as the trainer records in the checkpoint) zero on steps that do not end.

    Returns next frames [B, H, W] long, reward [B] float32, terminated [B] bool, done probability [B].
    """
    with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=bf16):
        out, _ = model_step(state, frames, actions)
    logits = out.frame_logits.float().masked_fill(~legal, float("-inf"))
    if temperature == 0:
        nxt = logits.argmax(-1)
    else:
        # Gumbel-max: argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T), in one
        # elementwise pass (torch.multinomial over B·H·W rows is far slower at large batch).
        uniform = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-20)
        nxt = (logits / temperature - torch.log(-torch.log(uniform))).argmax(-1)
    p_done = torch.sigmoid(out.done_logits.float())
    if termination == "sample":
        terminated = torch.rand(p_done.shape, generator=generator, device=p_done.device) < p_done
    else:
        terminated = p_done > 0.5
    reward = out.reward.float()
    if rewards_only_on_termination:
        reward = reward * terminated
    return nxt, reward, terminated, p_done
