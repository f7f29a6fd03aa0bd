"""The trainable pieces besides the world model: the auxiliary head and the optimizer's groups."""

from __future__ import annotations

import torch
import torch.nn as nn


class AuxHead(nn.Module):
    """State regularisation: from the last layer's features at frame t, predict the tokens of
    frame t - d. `cell`: each cell from its own features; `pooled`: every cell from the frame's
    mean feature plus a learned position (all information must pass through one vector)."""

    def __init__(self, d_model: int, vocab_size: int, frame_shape: tuple[int, int], max_delay: int,
                 mode: str = "cell", hidden: int = 0):
        super().__init__()
        self.mode = mode
        hidden = hidden or d_model
        self.delay_embed = nn.Embedding(max_delay + 1, d_model)
        if mode == "pooled":
            self.position_embed = nn.Parameter(torch.randn(*frame_shape, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, vocab_size))

    def forward(self, features: torch.Tensor, delay: int) -> torch.Tensor:
        """features [B, T, H, W, D] -> logits [B, T, H, W, V] of frame t - delay."""
        x = features
        if self.mode == "pooled":
            x = x.mean(dim=(2, 3), keepdim=True) + self.position_embed
        x = x + self.delay_embed.weight[delay]
        return self.mlp(self.norm(x))


def parameter_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices (linear and conv weights); none on biases, norms,
    embeddings (token, action, position) or the SSM's per-head A_log, D, dt_bias."""
    decay, no_decay, seen = [], [], set()
    for module in modules:
        embeddings = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2 and id(p) not in embeddings and "embed" not in leaf:
                decay.append(p)
            else:
                no_decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
