"""`worldsim benchmark scaling`: what a frame costs as the context grows, the model beside its baselines.

    worldsim benchmark scaling --models ours,causal --out runs/benchmark/scaling

Two measurements per model, every model built MiniGrid-sized (7x7 frames, 138 tokens, 7 actions) at
the same parameter budget (``worldsim.baselines``); ``causal`` attends to every earlier frame (its
context is the longest length measured), so its attention ring is a KV cache that fills as it steps.

1. Training: one forward + backward on a [batch, T] window of random tokens for each T in
   --lengths (bf16 autocast on CUDA): median ms, tokens/s, peak memory. A T that runs out of memory
   is recorded as "oom" and the run goes on.
2. Inference: one state, batch 1, really stepped through every frame up to the largest of --frames;
   at each frame t of --frames the median ms per step over the next --window steps, the step's peak
   working memory, and the state bytes in use (the SSM state and attention ring; for the causal KV cache only
   its filled slots count, as a growing cache would hold them).

It prints both tables and writes OUT/scaling.json and OUT/scaling.svg (per-frame time vs t, training
time vs T, log-log). The device is named in the JSON; compare models as ratios within one run.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

from worldsim import runtime
from worldsim.baselines import BASELINES, baseline_config
from worldsim.checkpoint import atomic_write
from worldsim.checks import output_folder
from worldsim.config import WorldModelConfig
from worldsim.json_io import write_json
from worldsim.model import WorldModel

from .timing import PeakMemory, free_memory, summary, time_training_lengths, timed_ms

DEFAULT_LENGTHS = (256, 512, 1024, 2048, 4096, 8192)
DEFAULT_FRAMES = (64, 256, 1024, 4096, 8192)


def build_model(name: str, d_model: int, n_layers: int, span: int, device: torch.device) -> WorldModel:
    base = WorldModelConfig(vocab_size=138, frame_shape=(7, 7), num_actions=7, d_model=d_model, n_layers=n_layers)
    config = baseline_config(name, base, context=span if name == "causal" else None)
    torch.manual_seed(0)
    return WorldModel(config).to(device)


def state_bytes_in_use(state, frames_seen: int) -> int:
    """Bytes of the state that hold information after `frames_seen` steps: everything, except that
    of an attention ring only the slots written so far count (a ring longer than the frames seen is
    a KV cache still filling)."""
    total = state.frame.nbytes + state.slot_frame.nbytes
    for layer in state.layers:
        total += layer.ssm.nbytes + layer.conv.nbytes
        slots = layer.keys.shape[1]
        total += (layer.keys.nbytes + layer.values.nbytes) * min(slots, frames_seen) // max(1, slots)
    return total


def time_frames(model: WorldModel, frames: tuple[int, ...], window: int, device: torch.device) -> list[dict]:
    """Step one state through every frame up to max(frames) + window; time each step on its own."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    pool = [(torch.randint(cfg.vocab_size, (1, *cfg.frame_shape), generator=g).to(device),
             torch.randint(cfg.num_actions, (1,), generator=g).to(device)) for _ in range(16)]
    model.eval()
    points = []
    with torch.inference_mode():
        warm = model.initial_state(1, device)
        for i in range(20):
            model.step(warm, *pool[i % 16])
        del warm
        state = model.initial_state(1, device)
        starts = sorted(frames)
        for t in range(starts[-1] + window):
            if t in starts:
                if points:                   # the previous point is done: show it now (long runs)
                    _report(points[-1])
                points.append({"frame": t, "state_bytes_in_use": state_bytes_in_use(state, t),
                               "state_bytes_allocated": state.nbytes, "ms": [], "peak": PeakMemory(device)})
            current = points[-1] if points and t < points[-1]["frame"] + window else None
            frame, action = pool[t % 16]
            if current is None:
                model.step(state, frame, action)
                continue
            with current["peak"]:
                current["ms"].append(timed_ms(lambda: model.step(state, frame, action), device))
    return [{"frame": p["frame"], **summary(p["ms"]), "step_peak_mem_bytes": p.pop("peak").value(),
             "state_bytes_in_use": p["state_bytes_in_use"], "state_bytes_allocated": p["state_bytes_allocated"]}
            for p in points]


def _report(point: dict) -> None:
    print(f"  frame {point['frame']}: median {summary(point['ms'])['median_ms']:.3f} ms/step, "
          f"state in use {point['state_bytes_in_use'] / 2**20:.1f} MiB", file=sys.stderr, flush=True)


def scaling_benchmark(models: list[str], lengths=DEFAULT_LENGTHS, frames=DEFAULT_FRAMES, batch: int = 1,
                      window: int = 32, seconds: float = 3.0, d_model: int = 128, n_layers: int = 4,
                      device: str = "auto", out=None, parts=("train", "inference")) -> dict:
    for name in models:
        if name not in BASELINES:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(BASELINES)}")
    if not lengths or not frames or min(lengths) < 1 or min(frames) < 1 or window < 1:
        raise ValueError("lengths, frames and window must be positive")
    device = runtime.resolve_device(device)
    span = max(max(lengths), max(frames) + window)       # the causal model sees everything before
    result = {"benchmark": "scaling", "device": str(device),
              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch_version": torch.__version__, "batch": batch, "window": window, "models": {}}
    for name in models:
        model = build_model(name, d_model, n_layers, span, device)
        entry = {"parameters": sum(p.numel() for p in model.parameters()), "config": model.config.to_dict()}
        if "train" in parts:
            entry["train"] = time_training_lengths(model, batch, tuple(lengths), device, seed=0, seconds=seconds)
        if "inference" in parts:
            entry["inference"] = time_frames(model, tuple(frames), window, device)
            first, last = entry["inference"][0], entry["inference"][-1]
            entry["inference_ratio"] = {"frames": [first["frame"], last["frame"]],
                                        "ms_ratio": last["median_ms"] / first["median_ms"]}
        result["models"][name] = entry
        del model
        free_memory(device)
    if out is not None:
        out = output_folder(out)
        write_json(out / "scaling.json", result)
        atomic_write(out / "scaling.svg", lambda tmp: Path(tmp).write_text(cost_vs_length_svg(result)))
    return result


def _mib(x) -> str:
    return "-" if x is None else f"{x / 2**20:,.1f}"


def format_scaling_tables(result: dict) -> str:
    lines = [f"scaling on {result['device_name']}, batch {result['batch']}"]
    lines.append("training (forward + backward):  model      T    ms/iter     tokens/s   peak MiB")
    for name, r in result["models"].items():
        for row in r.get("train", []):
            if row["status"] != "ok":
                lines.append(f"{'':32}{name:>6} {row['seq_len']:>6}  {row['status']}")
                continue
            lines.append(f"{'':32}{name:>6} {row['seq_len']:>6} {row['median_ms']:>10.1f} {row['tokens_per_s']:>12,.0f}"
                         f" {_mib(row['peak_mem_bytes']):>10}")
    lines.append("inference (one step, batch 1):  model      t    ms/step   state MiB in use   step peak MiB")
    for name, r in result["models"].items():
        for p in r.get("inference", []):
            lines.append(f"{'':32}{name:>6} {p['frame']:>6} {p['median_ms']:>10.3f} {_mib(p['state_bytes_in_use']):>18}"
                         f" {_mib(p['step_peak_mem_bytes']):>15}")
        if "inference_ratio" in r:
            a, b = r["inference_ratio"]["frames"]
            lines.append(f"{'':32}{name:>6} ms at t={b} / t={a}: {r['inference_ratio']['ms_ratio']:.2f}")
    return "\n".join(lines)


def cost_vs_length_svg(result: dict) -> str:
    """Two log-log panels: ms per step vs t, and ms per training iteration vs T; one line per model."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    W, H, PAD = 380, 300, 50
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W}" height="{H}" font-family="sans-serif" font-size="11">']
    panels = [("inference", "frame", "ms per step at frame t"), ("train", "seq_len", "ms per training iteration vs T")]
    for k, (key, xkey, title) in enumerate(panels):
        series = {n: [(p[xkey], p["median_ms"]) for p in r.get(key, []) if p.get("status", "ok") == "ok"]
                  for n, r in result["models"].items()}
        pts = [p for s in series.values() for p in s]
        if not pts:
            continue
        x0, x1 = math.log10(min(p[0] for p in pts)), math.log10(max(p[0] for p in pts)) + 1e-9
        y0, y1 = math.log10(min(p[1] for p in pts)), math.log10(max(p[1] for p in pts)) + 1e-9
        ox = k * W

        def X(v, ox=ox, x0=x0, x1=x1):
            return ox + PAD + (math.log10(v) - x0) / (x1 - x0) * (W - 2 * PAD)

        def Y(v, y0=y0, y1=y1):
            return H - PAD - (math.log10(v) - y0) / (y1 - y0) * (H - 2 * PAD)

        parts.append(f'<text x="{ox + PAD}" y="20">{title} (log-log)</text>')
        parts.append(f'<line x1="{ox + PAD}" y1="{H - PAD}" x2="{ox + W - PAD}" y2="{H - PAD}" stroke="black"/>')
        parts.append(f'<line x1="{ox + PAD}" y1="{H - PAD}" x2="{ox + PAD}" y2="{PAD}" stroke="black"/>')
        for v in sorted({p[0] for p in pts}):
            parts.append(f'<text x="{X(v) - 10}" y="{H - PAD + 14}">{v}</text>')
        for v in (min(p[1] for p in pts), max(p[1] for p in pts)):
            parts.append(f'<text x="{ox + 2}" y="{Y(v) + 4}">{v:.3g}</text>')
        for i, (name, s) in enumerate(series.items()):
            color = colors[i % len(colors)]
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in s) + '"/>')
            parts.append(f'<text x="{ox + W - PAD - 40}" y="{PAD + 14 * i}" fill="{color}">{name}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"
