"""The learned-vs-real benchmark's report: the table printed, and the learning curves as CSV and as a
plain SVG (no plotting library). The run itself: ``benchmarks.learned_vs_real``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from agents.evaluation import format_interval

from worldsim.svg_plot import write_line_plot

METHODS = ("real_ppo", "dream_ppo", "planner")
LABELS = {"real_ppo": "PPO trained in real env", "dream_ppo": "PPO trained in dream", "planner": "planner (MPC)"}


def write_curves_csv(path: Path, curves) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "timesteps", "mean_episode_reward", "mean_episode_length"])
        for method, runs in curves.items():
            for run in runs:
                for p in run["points"]:
                    w.writerow([method, run["seed"], p["timesteps"], p["mean_episode_reward"],
                                p.get("mean_episode_length", "")])


def write_curves_svg(path: Path, curves, title: str) -> None:
    """The learning curves as a plain SVG: one polyline per method and seed."""
    pts = [p for runs in curves.values() for run in runs for p in run["points"]]
    xmax = max([p["timesteps"] for p in pts], default=1) or 1
    ys = [p["mean_episode_reward"] for p in pts]
    ymin, ymax = min(ys + [0.0]), max(ys + [1.0])
    colors = {"real_ppo": "#1f77b4", "dream_ppo": "#d62728"}
    lines = [(colors.get(method, "black"), [(p["timesteps"], p["mean_episode_reward"]) for p in run["points"]])
             for method, runs in curves.items() for run in runs]
    legend = [(colors.get(method, "black"), LABELS.get(method, method)) for method in curves]
    write_line_plot(path, f"{title}: training mean episode reward vs timesteps", "timesteps", lines, legend,
                    x_range=(0, xmax), y_range=(ymin, ymax))


# ---------------------------------------------------------------------------------------- table


def format_benchmark_table(result: dict[str, Any]) -> str:
    """The learned-vs-real table (pooled over seeds), then per-seed rows and what was counted."""
    ci = format_interval

    def steps(v):
        return "unknown" if v is None else f"{v:,}"

    head = ("method", "episodes", "success (95% CI)", "mean return (95% CI)", "real env steps", "wall s")
    rows = [head]
    for method in METHODS:
        m = result["methods"].get(method)
        if m is None:
            continue
        rows.append((LABELS[method], str(m["episodes"]),
                     f"{m['success_rate']:.3f} {ci(m['success_ci'])}",
                     f"{m['mean_return']:z.3f} {ci(m['return_ci'])}",
                     f"0 + {steps(m['real_steps'])} (world-model data)" if method == "dream_ppo" else steps(m["real_steps"]),
                     f"{m['wall_seconds']:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"learned vs real on {result['env_id']}: {result['seeds']} seed(s), {result['steps']:,} agent steps each, "
             f"{result['eval_episodes_per_seed']} eval + {result['planner_episodes_per_seed']} planner episodes per "
             f"seed in the real env (pooled over seeds)"]
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    ratio = result["success_ratio_dream_over_real"]
    verdict = "n/a" if ratio is None else ("met" if result["meets_floor"] else "NOT met")
    lines.append(f"dream/real success ratio: {'undefined (real success 0)' if ratio is None else f'{ratio:.3f}'} "
                 f"(target >= {result['ratio_floor']}, i.e. the dream-trained agent keeps at least "
                 f"{result['ratio_floor']:.0%} of the real-trained agent's success: {verdict})")
    lines.append("per seed (success rate / mean return):")
    for r in result["per_seed"]:
        cells = [f"{LABELS[m]} {r[m]['success_rate']:.3f} / {r[m]['mean_return']:z.3f}" for m in METHODS if m in r]
        lines.append(f"  seed {r['seed']}: " + "; ".join(cells))
    lines.append("real env steps: " + "; ".join(f"{LABELS[m]}: {result['methods'][m]['real_steps_what']}"
                                                for m in METHODS if m in result["methods"]))
    lines.append("PPO evaluation steps are not in those counts (JSON: eval_real_steps); wall time excludes "
                 "world-model training.")
    lines.append(f"success = {result['success_definition']}; evaluation "
                 + ("takes each policy's most likely action" if result.get("deterministic_eval", True)
                    else "samples each policy's actions"))
    return "\n".join(lines)
