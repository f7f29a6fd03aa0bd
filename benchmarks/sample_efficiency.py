"""Sample efficiency: `worldsim learn` against PPO in the real env, at equal real env steps.

For each seed, every method spends the same budget of real steps and is scored on the same held-out
real seeds:
- `learn` (`train.learn`): one point per round, at the real steps its training data used;
- PPO trained in the real env, scored whenever its real steps cross a mark (the budget cut into
  `marks` equal parts). The baselines (`BASELINES`): the native PPO with its own defaults
  (rl-starter-files'), and Stable-Baselines3's PPO with rl-baselines3-zoo's MiniGrid settings and
  with the settings tuned for DoorKey-8x8 in the learned-vs-real runs (64 envs).
All curves start at 0 real steps from uniform random play (learn's round 0, scored once).
Per method: the real steps to reach 0.5 and 0.9 success (first scored point at or above; None if
never within the budget) and the area under the success curve (success held from each point to the
next, over the budget, in [0, 1]), with t intervals over seeds. Writes sample_efficiency.json and
sample_efficiency.svg; evaluation steps are never counted as real steps.

Each seed's learn run is its own folder (learn-seed<N>, which `learn` continues, and which can be
run apart beforehand, several seeds at once) and each baseline's curve its own file
(ppo-seed<N>.json for the native PPO, sb3-zoo-seed<N>.json, sb3-doorkey-tuned-seed<N>.json; reused
when its settings match): running the benchmark again continues where it stopped, and ``ppo_only``
makes the baseline curves alone, on a machine without a GPU, for a later full run. With
learn's ``stop_at_success``, a learn curve ends at the round that reached it, and the area under it
holds that round's success to the end of the budget.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from agents.evaluation import evaluate_policy, mean_interval
from agents.ppo import NativePolicy, PPOSettings, train_ppo
from agents.torch_envs import make_torch_env
from agents.training import DEFAULT_NUM_ENVS, train_agent
from train.learn import EVAL_SEED, LearnConfig, learn
from worldsim.checks import output_folder, positive_int
from worldsim.json_io import write_json
from worldsim.runtime import resolve_device
from worldsim.svg_plot import write_line_plot

THRESHOLDS = (0.5, 0.9)
NATIVE = "ppo_real"
# Stable-Baselines3 PPO baselines: real envs and hyperparameters over SB3's (agents.training's
# defaults are rl-baselines3-zoo's MiniGrid entry; the tuned ones are docs/agents' DoorKey-8x8 runs).
SB3_BASELINES = {
    "sb3_zoo": {"num_envs": DEFAULT_NUM_ENVS, "hyperparams": {}},
    "sb3_doorkey_tuned": {"num_envs": 64, "hyperparams": {"n_steps": 128, "batch_size": 256, "n_epochs": 4,
                                                          "ent_coef": 0.01, "learning_rate": 5e-4}},
}
BASELINES = (NATIVE, *SB3_BASELINES)
LABELS = {"learn": "worldsim learn", NATIVE: "native PPO, real env", "sb3_zoo": "SB3 PPO, rl-zoo settings, real env",
          "sb3_doorkey_tuned": "SB3 PPO, DoorKey-tuned settings, real env"}
COLOURS = {"learn": "#1f77b4", NATIVE: "#d62728", "sb3_zoo": "#2ca02c", "sb3_doorkey_tuned": "#9467bd"}


def steps_to(curve: list[tuple[int, float]], threshold: float) -> int | None:
    """Real steps of the first point whose success reaches `threshold` (None: none does)."""
    return next((steps for steps, success in curve if success >= threshold), None)


def area_under(curve: list[tuple[int, float]], budget: int) -> float:
    """Mean success over [0, budget], each point's success held until the next point (0 before the first)."""
    area, points = 0.0, sorted(curve) + [(budget, None)]
    for (x0, y0), (x1, _) in zip(points, points[1:]):
        area += y0 * max(0, min(x1, budget) - min(x0, budget))
    return area / budget


class MarkScorer:
    """Scores a policy on the held-out real seeds of `seed` whenever training passes one of `marks` equal
    marks of `budget` steps (once, however many marks a step passes), with sampled actions."""

    def __init__(self, env_id: str, budget: int, marks: int, seed: int, eval_episodes: int, device: str):
        self.env_id, self.seed, self.eval_episodes, self.device = env_id, seed, eval_episodes, device
        self.targets = [budget * (i + 1) // marks for i in range(marks)]
        self.curve: list[tuple[int, float]] = []

    def due(self, steps: int) -> bool:
        if not self.targets or steps < self.targets[0]:
            return False
        while self.targets and steps >= self.targets[0]:
            self.targets.pop(0)
        return True

    def score(self, steps: int, policy) -> None:
        result = evaluate_policy(policy, self.env_id, episodes=self.eval_episodes, where="real",
                                 seed=EVAL_SEED + self.seed * 10_000, deterministic=False, device=self.device)
        self.curve.append((int(steps), float(result["success_rate"])))


def real_ppo_curve(env_id: str, budget: int, marks: int, seed: int, eval_episodes: int, num_envs: int,
                   ppo: dict, device: str) -> list[tuple[int, float]]:
    """The native PPO in the real env for `budget` steps, scored after each iteration that passes a mark."""
    envs = make_torch_env(env_id, "real", num_envs, device=device)
    scorer = MarkScorer(env_id, budget, marks, seed, eval_episodes, device)

    def score(policy, record):
        if scorer.due(record["steps"]):
            scorer.score(record["steps"], NativePolicy(copy.deepcopy(policy), resolve_device(device), seed=seed))

    try:
        train_ppo(envs, total_steps=budget, settings=PPOSettings.from_overrides(ppo), seed=seed, on_iteration=score)
    finally:
        envs.close()
    return scorer.curve


class _ScoreAtMarks(BaseCallback):
    """An SB3 callback that hands its model to a MarkScorer when a mark has passed, checked at the start
    of each rollout and at the end of training: after the update of the steps so far, as the native
    PPO is scored after each iteration's update."""

    def __init__(self, scorer: MarkScorer):
        super().__init__()
        self.scorer = scorer

    def _score_if_due(self) -> None:
        if self.scorer.due(self.num_timesteps):
            self.scorer.score(self.num_timesteps, self.model)

    def _on_rollout_start(self) -> None:
        self._score_if_due()

    def _on_training_end(self) -> None:
        self._score_if_due()

    def _on_step(self) -> bool:
        return True


def sb3_ppo_curve(env_id: str, budget: int, marks: int, seed: int, eval_episodes: int, num_envs: int,
                  hyperparams: dict, device: str, scratch: Path) -> list[tuple[int, float]]:
    """Stable-Baselines3's PPO in the real env (`agents.training.train_agent`) for `budget` steps,
    scored at each mark. Its policy file goes to `scratch`."""
    scorer = MarkScorer(env_id, budget, marks, seed, eval_episodes, device)
    train_agent(env_id, where="real", algo="ppo", steps=budget, out=scratch, num_envs=num_envs, seed=seed,
                device=device, hyperparams=hyperparams, callbacks=[_ScoreAtMarks(scorer)])
    return scorer.curve


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


def baseline_file(name: str, seed: int) -> str:
    return f"ppo-seed{seed}.json" if name == NATIVE else f"{name.replace('_', '-')}-seed{seed}.json"


def ppo_baseline(name: str, env_id: str, real_steps: int, seed: int, out: Path, ppo_envs: int, ppo: dict, marks: int,
                 eval_episodes: int, device: str) -> list[tuple[int, float]]:
    """One seed's curve of baseline `name` in the real env, kept in OUT/`baseline_file`. `ppo_envs` and
    `ppo` set the native PPO; the SB3 baselines have theirs fixed (SB3_BASELINES)."""
    common = {"env_id": env_id, "real_steps": real_steps, "marks": marks, "seed": seed, "eval_episodes": eval_episodes}
    path = out / baseline_file(name, seed)
    if name == NATIVE:
        return cached_ppo_curve(path, {**common, "num_envs": ppo_envs, "ppo": ppo},
                                lambda: real_ppo_curve(env_id, real_steps, marks, seed, eval_episodes, ppo_envs, ppo,
                                                       device))
    sb3 = SB3_BASELINES[name]
    return cached_ppo_curve(path, {**common, "algo": "sb3-ppo", **sb3},
                            lambda: sb3_ppo_curve(env_id, real_steps, marks, seed, eval_episodes, sb3["num_envs"],
                                                  sb3["hyperparams"], device, path.with_name(path.stem + "-policy")))


def check_baselines(baselines) -> tuple[str, ...]:
    names = tuple(baselines)
    unknown = [b for b in names if b not in BASELINES]
    if unknown or not names:
        raise ValueError(f"baselines: {unknown or 'none'} given; choose one or more of {', '.join(BASELINES)}")
    return names


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
                                ppo_only: bool = False, baselines=BASELINES, progress=print) -> dict[str, Any]:
    """learn and each of `baselines` for seeds 0..seeds-1 (see the module docstring); with `ppo_only`,
    the baseline curves alone (kept for a later full run; their random-play start is learn's round 0,
    so it is not in them)."""
    positive_int("real_steps", real_steps)
    positive_int("seeds", seeds)
    positive_int("marks", marks)
    baselines = check_baselines(baselines)
    out = output_folder(out)
    say = progress or (lambda line: None)
    curves: dict[str, list[list[tuple[int, float]]]] = {name: [] for name in ("learn", *baselines)}
    header = {"benchmark": "sample_efficiency", "env_id": env_id, "real_steps": real_steps, "seeds": seeds,
              "eval_episodes": eval_episodes, "eval_seed": EVAL_SEED,
              "baseline_settings": {name: {"num_envs": ppo_envs, **(ppo or {})} if name == NATIVE else SB3_BASELINES[name]
                                    for name in baselines}}
    for seed in range(seeds):
        start: list[tuple[int, float]] = []
        if not ppo_only:
            config = LearnConfig(env_id=env_id, real_steps=real_steps, seed=seed, eval_episodes=eval_episodes,
                                 device=device, **(learn_settings or {}))
            records = learn(config, out / f"learn-seed{seed}", progress=say)
            curves["learn"].append([(r["real_steps"], r["real_success"]) for r in records])
            start = curves["learn"][-1][:1]     # every method starts from uniform random play (learn's round 0)
        for name in baselines:
            curves[name].append(start + ppo_baseline(name, env_id, real_steps, seed, out, ppo_envs, ppo or {}, marks,
                                                     eval_episodes, device))
        say(f"seed {seed}: " + ", ".join(f"{LABELS[name]} {c[-1][-1]}" for name, c in curves.items() if c))
    if ppo_only:
        return {**header, "methods": {name: summarise(curves[name], real_steps) for name in baselines}}
    result = {**header, "learn_settings": learn_settings or {},
              "methods": {name: summarise(c, real_steps) for name, c in curves.items()}}
    write_json(out / "sample_efficiency.json", result)
    write_line_plot(out / "sample_efficiency.svg", f"{env_id}: real success vs real env steps", "real env steps",
                    [(COLOURS[name], c) for name, cs in curves.items() for c in cs],
                    [(COLOURS[name], LABELS[name]) for name in curves], x_range=(0, real_steps), y_range=(0, 1))
    return result


def format_table(result: dict[str, Any]) -> str:
    def fmt(v):
        return "-" if v is None else f"{v:,.0f}" if v >= 2 else f"{v:.3f}"

    rows = [("method", "AUC (95% CI)", *[f"steps to {t} (seeds reaching)" for t in THRESHOLDS])]
    for name, m in result["methods"].items():
        label = LABELS[name]
        ci = m["auc"]["ci"]
        auc = f"{m['auc']['mean']:.3f}" + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")
        rows.append((label, auc, *[f"{fmt(m[f'steps_to_{t}']['mean_of_those'])} "
                                   f"({m[f'steps_to_{t}']['seeds_reaching']}/{result['seeds']})" for t in THRESHOLDS]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return (f"{result['env_id']}: {result['seeds']} seeds, {result['real_steps']:,} real steps each, "
            f"{result['eval_episodes']} held-out real episodes per point\n" + "\n".join(lines))
