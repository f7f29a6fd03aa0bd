"""Timing and memory helpers shared by the speed benchmarks (benchmarks/model_speed.py and
`worldsim benchmark scaling`): each measurement drains the device before and after, so a number is
the latency a caller sees, and CUDA peak memory is read relative to what was allocated before."""

from __future__ import annotations

import gc
import math
import statistics
import time

import torch
import torch.nn.functional as F

from worldsim import runtime


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(fn, device: torch.device) -> float:
    """Wall-clock milliseconds of fn(), with the device drained before and after."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return (time.perf_counter() - start) * 1e3


def summary(ms: list[float]) -> dict:
    qs = statistics.quantiles(ms, n=10) if len(ms) >= 2 else [ms[0]] * 9
    return {
        "median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms),
        "p10_ms": qs[0], "p90_ms": qs[-1], "n": len(ms),
    }


class PeakMemory:
    """On CUDA: the most memory allocated inside `with` blocks beyond what was allocated on entry."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.device = device
        self.delta = 0

    def __enter__(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.delta = max(self.delta, torch.cuda.max_memory_allocated(self.device) - self.base)

    def value(self) -> int | None:
        return self.delta if self.cuda else None


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def time_training(model, batch: int, length: int, device: torch.device, seed: int, seconds: float) -> dict:
    """One training iteration (forward + backward of the next-frame cross entropy against random
    targets, bf16 autocast on CUDA) on a [batch, length] window of seeded random tokens: median ms
    over ~`seconds` of repeats after a warm-up, tokens/s and, on CUDA, peak memory."""
    cfg = model.config
    h, w = cfg.frame_shape
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(cfg.vocab_size, (batch, length, h, w), generator=g).to(device)
    actions = torch.randint(cfg.num_actions, (batch, length), generator=g).to(device)
    targets = torch.randint(cfg.vocab_size, (batch, length, h, w), generator=g).to(device)
    autocast = runtime.autocast(device, runtime.resolve_precision("auto", device))      # bf16 on CUDA
    losses = []

    def iteration():
        model.zero_grad(set_to_none=True)
        with autocast:
            logits = model(frames, actions).frame_logits
            loss = F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten())
        loss.backward()
        losses.append(loss.detach())

    first = timed_ms(iteration, device)           # warm-up: compiles, allocator growth
    second = timed_ms(iteration, device)
    iters = max(3, min(20, math.ceil(seconds * 1e3 / second)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ms = [timed_ms(iteration, device) for _ in range(iters)]
    stats = summary(ms)
    tokens = batch * length * h * w
    return {
        "batch": batch, "seq_len": length, "status": "ok", **stats,
        "first_iter_ms": first, "tokens": tokens, "tokens_per_s": tokens / (stats["median_ms"] / 1e3),
        "peak_mem_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        "loss": float(losses[-1]),
    }


def time_training_lengths(model, batch: int, lengths, device: torch.device, seed: int, seconds: float) -> list[dict]:
    """`time_training` at each window length in turn; a length that runs out of CUDA memory is
    recorded as {"status": "oom"} and the next one still runs."""
    model.train()
    rows = []
    for length in lengths:
        oom = False
        try:
            rows.append(time_training(model, batch, length, device, seed, seconds))
        except torch.cuda.OutOfMemoryError:
            oom = True  # handled outside the except block, so the traceback's tensors can be freed
        model.zero_grad(set_to_none=True)
        free_memory(device)
        if oom:
            rows.append({"batch": batch, "seq_len": length, "status": "oom"})
    return rows
