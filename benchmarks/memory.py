"""`worldsim benchmark memory`: how well models recall what they saw long ago, side by side.

    worldsim collect --env MiniGrid-FourRooms-v0 --policy retrace:1000 --max-steps 2000 --episodes 32 --out data/retrace
    worldsim benchmark memory --data data/retrace --model ours=runs/ours/model --model causal=runs/causal/model

Each episode of a memory-task dataset (``envs.minigrid.memory_tasks``, or Memory Maze's ``retrace:C``
walk, ``envs.memory_maze_walks``) is a context walk of C steps and then a test phase. Every model is given the C + 1 context frames (teacher-forced), then generates
the test phase open loop: each frame is its own prediction fed back, with the real actions
(``train.evaluation.rollout_metrics``). Each generated cell is scored against the real frame, by how
long ago its world cell was last in view: gap 1, 2-4, ..., 4097+, or never seen. The exact-frame
rate is scored as well. The same frames are also predicted teacher-forced, each from the real frames
before it with the state carried through the episode (``recall_metrics``): what a model recalls,
apart from what its own errors do to a long open-loop rollout. The output is a table,
OUT/memory.json and OUT/memory.svg (accuracy vs gap; teacher-forced dashed).

Frames of images (a frame tokenizer's tokens) show no known world cells. There a frame's gap is the
frames since the agent last stood in the same cell facing the same way (its recorded pose: Memory Maze
records both), every token of it, and each generated frame is also decoded and scored in pixels against
the decoded real one: PSNR and SSIM by gap. Both are decoded by the same tokenizer, so these measure the
world model alone; the tokenizer's own error is in its report.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from envs.images.codec import ImageCodec
from envs.images.quality import psnr, ssim
from envs.minigrid.memory_tasks import parse_task
from train.evaluation import GAP_BUCKETS, Meter, gap_bucket, recall_metrics, rollout_metrics
from worldsim import runtime
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.stream import episode_bounds
from worldsim.checkpoint import atomic_write
from worldsim.checks import output_folder
from worldsim.json_io import write_json
from worldsim.simulator import load_world_model

SEEN = GAP_BUCKETS[:-1]            # every bucket but "never"


def context_of(policy: str) -> int:
    """C of a memory-task dataset's policy name ('retrace:C' or 'reasoning:C')."""
    task = parse_task(policy)
    if task is None:
        raise ValueError(f"the dataset's policy is {policy!r}, not a memory task (collect with --policy retrace:C "
                         "or reasoning:C)")
    return task[1]


def memory_benchmark(models: dict[str, str], data, out=None, episodes: int = 64, batch_size: int = 8,
                     sampling: str = "argmax", device: str = "auto") -> dict:
    """Score each named checkpoint on the dataset's test phases; returns (and writes) the results."""
    if not models:
        raise ValueError("give at least one model (name=checkpoint)")
    device = runtime.resolve_device(device)
    dataset = EpisodeDataset(data)
    context = context_of(dataset.manifest["policy"])
    stream = dataset.stream(range(dataset.num_episodes))
    extra_scores = None
    if isinstance(dataset.codec, ImageCodec):
        stream.gap = viewpoint_gaps(dataset, stream)
        extra_scores = functools.partial(score_pixels, dataset.codec)
    _, lengths = episode_bounds(stream)
    horizon = int(lengths.max()) - (context + 1)
    if horizon < 1:
        raise ValueError(f"the episodes of {data} end with their context walk ({context} steps): collect with a "
                         "larger --max-steps")
    precision = runtime.resolve_precision("auto", device)              # bf16 on CUDA
    autocast = functools.partial(runtime.autocast, device, precision)
    results = {}
    for name, path in models.items():
        model = load_world_model(path, device)        # a checkpoint folder or a shipped model's id
        trained_on = (model.config.metadata or {}).get("codec")
        if trained_on is not None and trained_on != dataset.manifest.get("codec"):
            raise ValueError(f"model {name!r} was trained on {trained_on.get('version')!r} frames, but {data} holds "
                             f"{dataset.manifest.get('codec', {}).get('version')!r} frames: collect the memory task "
                             "with the model's view (e.g. --view ego for the shipped models, --view map)")
        results[name] = rollout_metrics(
            model, stream, context=context + 1, horizon=horizon, count=episodes, batch_size=batch_size,
            sampling=sampling, device=device, autocast=autocast, extra_scores=extra_scores)
        results[name]["teacher_forced"] = recall_metrics(
            model, stream, context=context + 1, horizon=horizon, count=episodes, batch_size=batch_size,
            device=device, autocast=autocast, extra_scores=extra_scores)
        results[name]["checkpoint"] = str(path)
        results[name]["parameters"] = sum(p.numel() for p in model.parameters())
    result = {"benchmark": "memory", "data": str(data), "policy": dataset.manifest["policy"], "env_id": dataset.env_id,
              "context_steps": context, "test_steps": horizon, "sampling": sampling, "device": str(device),
              "gap_buckets": list(GAP_BUCKETS), "models": results}
    if out is not None:
        out = output_folder(out)
        write_json(out / "memory.json", result)
        atomic_write(out / "memory.svg", lambda tmp: Path(tmp).write_text(accuracy_vs_gap_svg(result)))
    return result


def viewpoint_gaps(dataset: EpisodeDataset, stream) -> np.ndarray:
    """int32 [N, H, W]: for every token of frame p, p minus the last earlier frame of its episode in which the
    agent stood in the same cell facing the same way (-1: never), from the recorded poses. ValueError for a
    dataset without poses (every pose recorded as zeros: the env gives none)."""
    poses = [dataset.episode(i) for i in range(dataset.num_episodes)]
    if not any(ep.agent_pos.any() or ep.agent_dir.any() for ep in poses):
        raise ValueError(f"{dataset.root} records no poses of its agent, so no frame can be said to show a place "
                         "seen before: the memory benchmark of images needs an env whose info gives the agent's "
                         "cell and direction (Memory Maze does)")
    gaps = []
    for ep in poses:
        last: dict[tuple[int, int, int], int] = {}
        gap = np.full(len(ep.agent_dir), -1, dtype=np.int32)
        for t, ((x, y), d) in enumerate(zip(ep.agent_pos.tolist(), ep.agent_dir.tolist())):
            if (x, y, d) in last:
                gap[t] = t - last[(x, y, d)]
            last[(x, y, d)] = t
        gaps.append(gap)
    gap = np.concatenate(gaps)
    if len(gap) != len(stream):
        raise ValueError(f"{dataset.root}: poses of {len(gap)} frames for a stream of {len(stream)}")
    return np.ascontiguousarray(np.broadcast_to(gap[:, None, None], stream.frames.shape))


def score_pixels(codec: ImageCodec, meter: Meter, pred: torch.Tensor, real: torch.Tensor, valid: torch.Tensor,
                 gap: torch.Tensor) -> None:
    """PSNR and SSIM of each predicted frame decoded against the real one decoded, overall and by the frame's
    gap (every token of an image frame has its frame's gap)."""
    b, g = pred.shape[:2]
    images = codec.decode_torch(torch.cat([pred, real]).flatten(0, 1))
    fake, true = images[: b * g], images[b * g:]
    w = valid.float()
    for name, score in (("psnr", psnr), ("ssim", ssim)):
        value = score(true, fake).float().reshape(b, g).to(w.device)
        meter.add(name, (value * w).sum(), w.sum())
        meter.add_buckets(f"{name}_gap", value, w, gap_bucket(gap[:, :, 0, 0]))


def format_memory_table(result: dict) -> str:
    pixels = any("psnr" in r for r in result["models"].values())
    scores = [("acc", "acc", "{:.3f}"), ("exact frame", "exact_frame", "{:.3f}")]
    by_gap = [("acc_gap", "gap {}", "{:.3f}")]
    if pixels:
        scores += [("PSNR", "psnr", "{:.1f}"), ("SSIM", "ssim", "{:.3f}")]
        by_gap = [("psnr_gap", "PSNR gap {}", "{:.1f}")]
    head = ["model", "params"] + [label for label, _, _ in scores] + [label.format(b) for _, label, _ in by_gap
                                                                    for b in GAP_BUCKETS]
    rows = [head]
    for name, r in result["models"].items():
        for label, m in ((name, r), (f"{name} (teacher-forced)", r.get("teacher_forced", {}))):
            rows.append([label, f"{r['parameters'] / 1e6:.2f} M"]
                        + [fmt.format(m[key]) if key in m else "-" for _, key, fmt in scores]
                        + [fmt.format(m[f"{key}_{b}"]) if f"{key}_{b}" in m else "-" for key, _, fmt in by_gap
                           for b in GAP_BUCKETS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    seen = ("PSNR of decoded frames by frames since the agent last stood there facing the same way" if pixels
            else "per-cell accuracy by frames since the cell was last seen")
    lines = [f"memory: {result['policy']} on {result['env_id']}, {result['context_steps']} context steps, "
             f"{result['test_steps']} generated open loop (and, teacher-forced, predicted from the real frames); "
             + seen]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def accuracy_vs_gap_svg(result: dict) -> str:
    """A small line chart: accuracy on remembered cells (y) per gap bucket (x), one line per model; for frames of
    images, PSNR of the decoded frames."""
    pixels = any("psnr" in r for r in result["models"].values())
    key, what = ("psnr_gap", "PSNR (dB)") if pixels else ("acc_gap", "accuracy")
    values = [m[f"{key}_{b}"] for r in result["models"].values() for m in (r, r.get("teacher_forced", {}))
              for b in SEEN if f"{key}_{b}" in m]
    top = 10.0 * np.ceil(max(values + [10.0]) / 10.0) if pixels else 1.0
    W, H, L, B, T = 560, 320, 50, 40, 20
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    x = {b: L + i * (W - L - 120) / max(1, len(SEEN) - 1) for i, b in enumerate(SEEN)}
    y = lambda v: T + (1 - v / top) * (H - T - B)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<line x1="{L}" y1="{y(0)}" x2="{W - 120}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{L}" y1="{y(0)}" x2="{L}" y2="{y(top)}" stroke="black"/>',
             f'<text x="{L}" y="{T - 6}">{what}</text>']
    for v in (0, top / 2, top):
        parts.append(f'<text x="{L - 30}" y="{y(v) + 4}">{v:.1f}</text>')
    for b in SEEN:
        parts.append(f'<text x="{x[b] - 12}" y="{H - B + 15}">{b}</text>')
    seen = "frames since the agent last stood there facing the same way" if pixels else \
        "frames since the cell was last seen"
    parts.append(f'<text x="{L}" y="{H - 5}">{seen}</text>')
    for i, (name, r) in enumerate(result["models"].items()):
        color = colors[i % len(colors)]
        for metrics, dash in ((r, ""), (r.get("teacher_forced", {}), ' stroke-dasharray="4 3"')):
            pts = [(x[b], y(metrics[f"{key}_{b}"])) for b in SEEN if f"{key}_{b}" in metrics]
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="'
                         + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts) + '"/>')
        parts.append(f'<text x="{W - 110}" y="{T + 15 * (i + 1)}" fill="{color}">{name}</text>')
    parts.append(f'<text x="{W - 110}" y="{H - B - 5}">dashed: teacher-forced</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"
