"""`worldsim benchmark memory`: how well models recall what they saw long ago, side by side.

    worldsim collect --env MiniGrid-FourRooms-v0 --policy retrace:1000 --max-steps 2000 --episodes 32 --out data/retrace
    worldsim benchmark memory --data data/retrace --model ours=runs/ours/model --model causal=runs/causal/model

Each episode of a memory-task dataset (``envs.minigrid.memory_tasks``) is a context walk of C steps
and then a test phase. Every model is given the C + 1 context frames (teacher-forced), then generates
the test phase open loop: each frame is its own prediction fed back, with the real actions
(``train.evaluation.rollout_metrics``). Each generated cell is scored against the real frame, by how
long ago its world cell was last in view: gap 1, 2-4, ..., 4097+, or never seen. The exact-frame
rate is scored as well. The same frames are also predicted teacher-forced, each from the real frames
before it with the state carried through the episode (``recall_metrics``): what a model recalls,
apart from what its own errors do to a long open-loop rollout. The output is a table,
OUT/memory.json and OUT/memory.svg (accuracy vs gap; teacher-forced dashed).
"""

from __future__ import annotations

import functools
from pathlib import Path

from envs.minigrid.memory_tasks import parse_task
from train.evaluation import GAP_BUCKETS, recall_metrics, rollout_metrics
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
            sampling=sampling, device=device, autocast=autocast)
        results[name]["teacher_forced"] = recall_metrics(
            model, stream, context=context + 1, horizon=horizon, count=episodes, batch_size=batch_size,
            device=device, autocast=autocast)
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


def format_memory_table(result: dict) -> str:
    head = ["model", "params", "acc", "exact frame"] + [f"gap {b}" for b in GAP_BUCKETS]
    rows = [head]
    for name, r in result["models"].items():
        for label, m in ((name, r), (f"{name} (teacher-forced)", r.get("teacher_forced", {}))):
            rows.append([label, f"{r['parameters'] / 1e6:.2f} M", f"{m.get('acc', float('nan')):.3f}",
                         f"{m.get('exact_frame', float('nan')):.3f}"]
                        + [f"{m[f'acc_gap_{b}']:.3f}" if f"acc_gap_{b}" in m else "-" for b in GAP_BUCKETS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"memory: {result['policy']} on {result['env_id']}, {result['context_steps']} context steps, "
             f"{result['test_steps']} generated open loop (and, teacher-forced, predicted from the real frames); "
             "per-cell accuracy by frames since the cell was last seen"]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def accuracy_vs_gap_svg(result: dict) -> str:
    """A small line chart: accuracy on remembered cells (y) per gap bucket (x), one line per model."""
    W, H, L, B, T = 560, 320, 50, 40, 20
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    x = {b: L + i * (W - L - 120) / max(1, len(SEEN) - 1) for i, b in enumerate(SEEN)}
    y = lambda v: T + (1 - v) * (H - T - B)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
             f'<line x1="{L}" y1="{y(0)}" x2="{W - 120}" y2="{y(0)}" stroke="black"/>',
             f'<line x1="{L}" y1="{y(0)}" x2="{L}" y2="{y(1)}" stroke="black"/>']
    for v in (0, 0.5, 1):
        parts.append(f'<text x="{L - 30}" y="{y(v) + 4}">{v:.1f}</text>')
    for b in SEEN:
        parts.append(f'<text x="{x[b] - 12}" y="{H - B + 15}">{b}</text>')
    parts.append(f'<text x="{L}" y="{H - 5}">frames since the cell was last seen</text>')
    for i, (name, r) in enumerate(result["models"].items()):
        color = colors[i % len(colors)]
        for metrics, dash in ((r, ""), (r.get("teacher_forced", {}), ' stroke-dasharray="4 3"')):
            pts = [(x[b], y(metrics[f"acc_gap_{b}"])) for b in SEEN if f"acc_gap_{b}" in metrics]
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="'
                         + " ".join(f"{px:.1f},{py:.1f}" for px, py in pts) + '"/>')
        parts.append(f'<text x="{W - 110}" y="{T + 15 * (i + 1)}" fill="{color}">{name}</text>')
    parts.append(f'<text x="{W - 110}" y="{H - B - 5}">dashed: teacher-forced</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"
