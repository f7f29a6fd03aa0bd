"""The model and its baselines as WorldModelConfig switches, at the same parameter budget (±10%).

    baseline_config("ours", base)     block-wise scan + frame-local attention (the base config as is)
    baseline_config("mamba2", base)   plain Mamba2: every layer scans the whole frame as one block
    baseline_config("local", base)    frame-local attention only, no SSM; d_model grows to keep the budget
    baseline_config("causal", base, context=c)
                                      causal attention over the last c frames, no SSM (the budget as
                                      local): with c at least the sequence length, full causal attention

All of them run through the same `WorldModel` (forward, step, state), so trainer, dream envs and
benchmarks take them unchanged. The causal baseline's attention ring is its KV cache: c + 1 frames,
of which `step` attends only the filled part (cost grows with the frames seen, up to c).
Training it attends over the whole window at once under a frame-causal mask (fused attention): time
and mask memory grow as T^2, the quadratic cost the baseline is there to show.
The widened baselines take a head count whose head size fused attention kernels accept.
"""

from __future__ import annotations

import dataclasses

from .config import WorldModelConfig

BASELINES = ("ours", "mamba2", "local", "causal")
BUDGET_TOLERANCE = 0.10


def parameter_count(config: WorldModelConfig) -> int:
    from .model import WorldModel

    return sum(p.numel() for p in WorldModel(config).parameters())


def _attention_friendly_heads(config: WorldModelConfig, near: int) -> WorldModelConfig:
    """The head count nearest `near` whose head size is a multiple of 8: fused attention kernels
    (flash, memory-efficient) need that; without it the widened baselines fall back to unfused
    attention, several times slower and far larger in memory. Heads add no parameters."""
    fits = [h for h in range(1, config.d_model + 1) if config.d_model % h == 0 and (config.d_model // h) % 8 == 0]
    if not fits:
        return config
    return dataclasses.replace(config, n_heads=min(fits, key=lambda h: (abs(h - near), h)))


def baseline_config(name: str, base: WorldModelConfig, context: int | None = None) -> WorldModelConfig:
    """`base` switched to baseline `name`, with about as many parameters as `base` (see the module).
    `context`: the causal baseline's attention span in frames (needed for it, refused for the others)."""
    if (name == "causal") != (context is not None):
        raise ValueError("the causal baseline needs context=C (frames it attends back); the others take none")
    if name == "causal":
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise ValueError(f"context must be a positive number of frames; got {context!r}")
        return dataclasses.replace(baseline_config("local", base), attn_window=context)
    if name == "ours":
        return base
    if name == "mamba2":
        return dataclasses.replace(base, block_sizes=[tuple(base.frame_shape)] * base.n_layers)
    if name == "local":
        target = parameter_count(base)
        # Attention-only layers are smaller: widen them (in steps the heads divide) to the budget.
        step = base.n_heads * 2
        best = None
        for d in range(base.d_model, 3 * base.d_model + 1, step):
            candidate = dataclasses.replace(base, ssm=False, d_model=d)
            gap = abs(parameter_count(candidate) - target)
            if best is None or gap < best[0]:
                best = (gap, candidate)
            elif gap > best[0]:
                break                                 # the count only grows with d from here
        return _attention_friendly_heads(best[1], base.n_heads)
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")
