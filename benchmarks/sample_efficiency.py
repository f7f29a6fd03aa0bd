"""Sample efficiency: `worldsim learn` against PPO in the real env, at equal real env steps.

For each seed, both methods spend the same budget of real steps and are scored on the same held-out
real seeds:
- `learn` (`train.learn`): one point per round, at the real steps its training data used;
- the native PPO trained in the real env: scored whenever its real steps cross a mark (the budget
  cut into `marks` equal parts).
Both curves start at 0 real steps from uniform random play (learn's round 0, scored once).
Per method: the real steps to reach 0.5 and 0.9 success (first scored point at or above; None if
never within the budget) and the area under the success curve (success held from each point to the
next, over the budget, in [0, 1]), with t intervals over seeds. Writes sample_efficiency.json and
sample_efficiency.svg; evaluation steps are never counted as real steps.

Each seed's learn run is its own folder (learn-seed<N>, which `learn` continues, and which can be
run apart beforehand, several seeds at once) and each PPO curve its own file (ppo-seed<N>.json,
reused when its settings match): running the benchmark again continues where it stopped, and
``ppo_only`` makes the PPO curves alone, on a machine without a GPU, for a later full run. With
learn's ``stop_at_success``, a learn curve ends at the round that reached it, and the area under it
holds that round's success to the end of the budget.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from agents.evaluation import evaluate_policy, mean_interval
from agents.ppo import NativePolicy, PPOSettings, train_ppo
from agents.torch_envs import make_torch_env
from train.learn import EVAL_SEED, LearnConfig, learn
from worldsim.checks import output_folder, positive_int
from worldsim.json_io import write_json
from worldsim.runtime import resolve_device
from worldsim.svg_plot import write_line_plot

THRESHOLDS = (0.5, 0.9)
COLOURS = {"learn": "#1f77b4", "ppo_real": "#d62728"}


def steps_to(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """Real steps of the first point whose success reaches `threshold` (None: none does)."""
    return next((steps for steps, success in curve if success >= threshold), None)


def area_under(curve: list[tuple[int, float]], budget: int) -> float:
    """Mean success over [0, budget], each point's success held until the next point (0 before the first)."""
    area, points = 0.0, sorted(curve) + [(budget, None)]
    for (x0, y0), (x1, _) in zip(points, points[1:]):
        area += y0 * max(0, min(x1, budget) - min(x0, budget))
    return area / budget


def real_ppo_curve(env_id: str, budget: int, marks: int, seed: int, eval_episodes: int, num_envs: int,
                   ppo: dict, device: str) -> list[tuple[int, float]]:
    """The native PPO in the real env for `budget` steps, scored after each iteration that passes one of
    `marks` equal marks (once, however many it passes)."""
    envs = make_torch_env(env_id, "real", num_envs, device=device)
    targets = [budget * (i + 1) // marks for i in range(marks)]
    curve: list[tuple[int, float]] = []

    def score(policy, record):
        if not targets or record["steps"] < targets[0]:
            return
        while targets and record["steps"] >= targets[0]:      # one score, however many marks it passed
            targets.pop(0)
        frozen = NativePolicy(copy.deepcopy(policy), resolve_device(device), seed=seed)
        result = evaluate_policy(frozen, env_id, episodes=eval_episodes, where="real",
                                 seed=EVAL_SEED + seed * 10_000, deterministic=False, device=device)
        curve.append((int(record["steps"]), float(result["success_rate"])))

    try:
        train_ppo(envs, total_steps=budget, settings=PPOSettings.from_overrides(ppo), seed=seed, on_iteration=score)
    finally:
        envs.close()
    return curve


def cached_ppo_curve(path: Path, settings: dict[str, Any], compute) -> list[tuple[int, float]]:
    """The PPO curve saved in `path` for these settings, else `compute()`'s, saved there atomically."""
    if path.is_file():
        saved = json.loads(path.read_text())
        before = saved.get("settings") or {}
        if before != settings:
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise ValueError(f"{path} holds a PPO curve of other settings ({', '.join(changed)}); run with the same "
                             "settings or choose another --out")
        return [(int(steps), float(success)) for steps, success in saved["curve"]]
    curve = compute()
    write_json(path, {"settings": settings, "curve": curve})
    return curve


def ppo_baseline(env_id: str, real_steps: int, seed: int, out: Path, ppo_envs: int, ppo: dict, marks: int,
                 eval_episodes: int, device: str) -> list[tuple[int, float]]:
    """One seed's PPO curve in the real env, kept in OUT/ppo-seed<N>.json."""
    settings = {"env_id": env_id, "real_steps": real_steps, "marks": marks, "seed": seed,
                "eval_episodes": eval_episodes, "num_envs": ppo_envs, "ppo": ppo}
    return cached_ppo_curve(out / f"ppo-seed{seed}.json", settings,
                            lambda: real_ppo_curve(env_id, real_steps, marks, seed, eval_episodes, ppo_envs, ppo, device))


def summarise(curves: list[list[tuple[int, float]]], budget: int) -> dict[str, Any]:
    out: dict[str, Any] = {"curves": curves}
    for t in THRESHOLDS:
        reached = [steps_to(c, t) for c in curves]
        those = [r for r in reached if r is not None]
        out[f"steps_to_{t}"] = {"per_seed": reached, "seeds_reaching": len(those),
                                "mean_of_those": sum(those) / len(those) if those else None,
                                "ci": mean_interval(those)[0] if those else None}
    aucs = [area_under(c, budget) for c in curves]
    ci, method = mean_interval(aucs)
    out["auc"] = {"per_seed": aucs, "mean": sum(aucs) / len(aucs), "ci": ci, "ci_method": method}
    return out


def sample_efficiency_benchmark(env_id: str, real_steps: int, seeds: int = 3, out: str | Path = "runs/benchmark",
                                learn_settings: dict | None = None, ppo_envs: int = 16, ppo: dict | None = None,
                                marks: int = 10, eval_episodes: int = 50, device: str = "auto",
                                ppo_only: bool = False, progress=print) -> dict[str, Any]:
    """Both methods for seeds 0..seeds-1 (see the module docstring); with `ppo_only`, the PPO curves alone
    (kept for a later full run; their random-play start is learn's round 0, so it is not in them)."""
    positive_int("real_steps", real_steps)
    positive_int("seeds", seeds)
    positive_int("marks", marks)
    out = output_folder(out)
    say = progress or (lambda line: None)
    learn_curves, ppo_curves = [], []
    header = {"benchmark": "sample_efficiency", "env_id": env_id, "real_steps": real_steps, "seeds": seeds,
              "eval_episodes": eval_episodes, "eval_seed": EVAL_SEED}
    if ppo_only:
        for seed in range(seeds):
            ppo_curves.append(ppo_baseline(env_id, real_steps, seed, out, ppo_envs, ppo or {}, marks, eval_episodes,
                                           device))
            say(f"seed {seed}: PPO in the real env {ppo_curves[-1]}")
        return {**header, "ppo_settings": {"num_envs": ppo_envs, **(ppo or {})},
                "methods": {"ppo_real": summarise(ppo_curves, real_steps)}}
    for seed in range(seeds):
        config = LearnConfig(env_id=env_id, real_steps=real_steps, seed=seed, eval_episodes=eval_episodes,
                             device=device, **(learn_settings or {}))
        records = learn(config, out / f"learn-seed{seed}", progress=say)
        learn_curves.append([(r["real_steps"], r["real_success"]) for r in records])
        # Both start from uniform random play, scored once on the same held-out seeds (learn's round 0).
        ppo_curves.append([learn_curves[-1][0]] + ppo_baseline(env_id, real_steps, seed, out, ppo_envs, ppo or {},
                                                                marks, eval_episodes, device))
        say(f"seed {seed}: learn {learn_curves[-1][-1]}, PPO in the real env {ppo_curves[-1][-1]}")
    result = {**header, "learn_settings": learn_settings or {},
              "ppo_settings": {"num_envs": ppo_envs, **(ppo or {})},
              "methods": {"learn": summarise(learn_curves, real_steps), "ppo_real": summarise(ppo_curves, real_steps)}}
    write_json(out / "sample_efficiency.json", result)
    lines = [(COLOURS[m], c) for m, curves in (("learn", learn_curves), ("ppo_real", ppo_curves)) for c in curves]
    write_line_plot(out / "sample_efficiency.svg", f"{env_id}: real success vs real env steps", "real env steps",
                    lines, [(COLOURS["learn"], "worldsim learn"), (COLOURS["ppo_real"], "native PPO in the real env")],
                    x_range=(0, real_steps), y_range=(0, 1))
    return result


def format_table(result: dict[str, Any]) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:,.0f}" if v >= 2 else f"{v:.3f}"

    rows = [("method", "AUC (95% CI)", *[f"steps to {t} (seeds reaching)" for t in THRESHOLDS])]
    for name, label in (("learn", "worldsim learn"), ("ppo_real", "native PPO, real env")):
        if name not in result["methods"]:
            continue
        m = result["methods"][name]
        ci = m["auc"]["ci"]
        auc = f"{m['auc']['mean']:.3f}" + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")
        rows.append((label, auc, *[f"{fmt(m[f'steps_to_{t}']['mean_of_those'])} "
                                   f"({m[f'steps_to_{t}']['seeds_reaching']}/{result['seeds']})" for t in THRESHOLDS]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return (f"{result['env_id']}: {result['seeds']} seeds, {result['real_steps']:,} real steps each, "
            f"{result['eval_episodes']} held-out real episodes per point\n" + "\n".join(lines))
