"""Closed-loop fidelity of a world model: does its dream behave like the real env where policies go?

For each policy, from the same real reset seeds (seed, seed + 1, ...):

1. **Real actions replayed in the dream.** The policy plays real episodes; the dream starts from the
   same first frame and is fed the same actions, each new frame being its own previous output (open
   loop, sampled by the dream's own decoder: the codec's legal tokens at the dream's temperature).
   Per step: per-cell accuracy and exact-frame rate against the real frame, the first step where
   the frames differ, and whether reward (within 0.1) and termination agree. Accuracy is given
   over all cells and over the *knowable* ones: a cell showing a place of the world never in view
   before in the episode cannot be known from the past (the dream must imagine it), so the
   knowable-cell accuracy is the model's fidelity and the difference is the world it invents.
2. **The same policy, closed loop, in the dream and in the real env** (policies that act on what the
   agent sees; a scripted expert reads the agent's pose, which a dream does not have): success
   (terminated with a positive return), return and length; the **optimism gap** = dream success -
   real success.
3. **Dream successes replayed in the real env**: the actions of each successful dream episode,
   replayed from the same reset seed in the real env; the fraction that succeed there too (1.0: the
   dream's successes are real; low: the policy found ways to win that only the dream allows, or the
   dream imagined a different world beyond the first view, where the same actions lead elsewhere:
   replay is open loop, so read it beside the closed-loop real success).
4. **One-step transitions, teacher-forced.** Along the same real episodes the model is given the real
   frames so far and the action, and predicts the next frame with the dream's decoder; wrong
   predictions are counted by transition kind: the action, what the agent faced and what it carried.
   This names the dynamics a dream gets wrong (e.g. "pickup facing nothing" turning into carrying a
   key), which is where a dream-trained agent finds its exploits.

    result = fidelity_benchmark("MiniGrid-DoorKey-8x8-v0", policies=["random", "expert", "runs/agent"])
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.evaluation import wilson_interval
from train.collect_policies import ScriptedPolicy, make_policy
from train.replay import REPORT_STEPS, REWARD_TOLERANCE, padded_episodes, real_episodes, replay_in_dream
from worldsim.checks import output_folder, positive_int
from worldsim.codecs import PixelCodec
from worldsim.json_io import write_json
from worldsim.simulator import Simulator
ONE_STEP_KINDS_SHOWN = 4


@torch.no_grad()
def one_step_errors(sim: Simulator, episodes: list[dict[str, Any]], horizon: int, seed: int) -> dict[str, Any]:
    """Teacher-forced next-frame predictions (the dream's decoder) along the real episodes, wrong ones
    counted by transition kind (`transition_kind`), the kinds with most errors first; with the model's
    mean uncertainty (info["uncertainty"]) per kind: whether the model knows where it is wrong, which
    pessimism and the exploration bonus rely on."""
    lengths, real, acts = padded_episodes(sim, episodes, horizon)
    gen = torch.Generator(device=sim.device)
    gen.manual_seed(seed)
    state = sim.initial_state(len(episodes))
    tally: dict[str, list[float]] = {}                  # kind -> [steps, wrong, summed uncertainty]
    for t in range(real.shape[1] - 1):
        predicted, _, _, info = sim.step(state, real[:, t].to(sim.device), acts[:, t].to(sim.device), gen)
        wrong = (predicted.cpu() != real[:, t + 1]).flatten(1).any(1)
        unsure = info["uncertainty"].float().cpu()
        for i in np.flatnonzero(t < lengths):
            counts = tally.setdefault(episodes[i]["transitions"][t], [0, 0, 0.0])
            counts[0] += 1
            counts[1] += int(wrong[i])
            counts[2] += float(unsure[i])
    kinds = sorted(tally.items(), key=lambda kv: (-kv[1][1], -kv[1][0], kv[0]))
    return {"steps": int(lengths.sum()), "wrong": sum(int(w) for _, w, _ in tally.values()),
            "by_transition": [{"transition": k, "steps": int(n), "wrong": int(w), "mean_uncertainty": u / n}
                              for k, (n, w, u) in kinds]}


def dream_episodes(checkpoint, env_id: str, policy_spec: str, seeds: list[int], codec, num_actions: int,
                   temperature: float, device: str, max_steps: int | None) -> list[dict[str, Any]]:
    """The policy's first dream episode from each seed's real start (sub-env i of a DreamVectorEnv reset
    with seeds[0] starts from seed seeds[0] + i), with its actions."""
    from worldsim import DreamVectorEnv

    n = len(seeds)
    policy = make_policy(policy_spec, n, num_actions, codec.view_size)
    env = DreamVectorEnv(checkpoint, num_envs=n, real_env_id=env_id, device=device, start_pool=n,
                         temperature=temperature, max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seeds[0])
    for i, seed in enumerate(seeds):
        policy.start(i, seed, Simulator.unbatch(obs, i), None, None)
    active = np.ones(n, dtype=bool)
    actions, returns, ended = [[] for _ in range(n)], np.zeros(n), [None] * n
    while active.any():
        chosen = policy.act(obs, None, active)
        obs, reward, terminated, truncated, _ = env.step(chosen)
        for i in np.flatnonzero(active):
            actions[i].append(int(chosen[i]))
            returns[i] += reward[i]
            if terminated[i] or truncated[i]:
                active[i], ended[i] = False, "terminated" if terminated[i] else "truncated"
    env.close()
    return [{"seed": s, "actions": a, "return": float(r), "ended": e, "success": e == "terminated" and r > 0}
            for s, a, r, e in zip(seeds, actions, returns, ended)]


def replay_in_real(env_id: str, episodes: list[dict[str, Any]], max_steps: int | None) -> list[bool]:
    """Whether each episode's actions, replayed in the real env from its seed, reach the goal."""
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    results = []
    for e in episodes:
        env = gym.make(env_id, **kwargs)
        env.reset(seed=e["seed"])
        ret, success = 0.0, False
        for a in e["actions"]:
            _, r, te, tr, _ = env.step(a)
            ret += r
            if te or tr:
                success = bool(te and ret > 0)
                break
        env.close()
        results.append(success)
    return results


def _rate(flags: list[bool]) -> dict[str, Any]:
    k, n = int(sum(flags)), len(flags)
    return {"rate": k / n if n else None, "count": k, "of": n, "ci": list(wilson_interval(k, n)) if n else None}


def fidelity_benchmark(checkpoint, policies: list[str], *, env_id: str | None = None, episodes: int = 16,
                       seed: int = 10_000, horizon: int = 500, temperature: float | None = None,
                       device: str = "auto", max_episode_steps: int | None = None,
                       out: str | Path | None = None, progress=print) -> dict[str, Any]:
    """Score a world model's dream against the real env for each policy ('random', 'expert', 'explore',
    or a folder from `worldsim agent train`); see the module docstring. Writes OUT/fidelity.json and
    OUT/fidelity.svg when `out` is given."""
    positive_int("episodes", episodes)
    positive_int("horizon", horizon)
    if not policies:
        raise ValueError("policies: give at least one ('random', 'expert', or an agent folder)")
    sim = Simulator.from_checkpoint(checkpoint, device=device,
                                    **({} if temperature is None else {"temperature": temperature}))
    trained_on = (sim.model.config.metadata or {}).get("env_id")
    env_id = env_id or trained_on
    if env_id is None:
        raise ValueError("the checkpoint names no env; pass env_id")
    if trained_on is not None and env_id != trained_on:
        raise ValueError(f"the checkpoint was trained on {trained_on!r}, not {env_id!r}")
    codec, num_actions = sim.codec, sim.num_actions
    if isinstance(codec, PixelCodec):
        raise ValueError(f"the fidelity benchmark reads MiniGrid's symbolic cells (events such as a door opening or "
                         f"a key carried); {checkpoint!s} is a model of images ({codec.config['version']}), which it "
                         "does not score yet")
    seeds = [seed + i for i in range(episodes)]
    if out is not None:
        output_folder(out)
    result: dict[str, Any] = {
        "benchmark": "fidelity", "env_id": env_id, "checkpoint": str(checkpoint), "episodes": episodes,
        "seeds": [seeds[0], seeds[-1]], "horizon": horizon, "temperature": sim.temperature,
        "decoder": f"per-cell sampling over the codec's legal tokens at temperature {sim.temperature:g}"
                   if sim.temperature else "per-cell argmax over the codec's legal tokens",
        "reward_tolerance": REWARD_TOLERANCE, "success_definition": "terminated with a positive return",
        "device": str(sim.device), "policies": {}}
    for spec in policies:
        start = time.perf_counter()
        real = real_episodes(env_id, spec, seeds, codec, num_actions, max_episode_steps)
        row: dict[str, Any] = {"replay": replay_in_dream(sim, real, horizon, seed),
                               "one_step": one_step_errors(sim, real, horizon, seed)}
        real_success = _rate([e["success"] for e in real])
        row["real"] = {"success": real_success, "mean_return": float(np.mean([e["return"] for e in real])),
                       "mean_length": float(np.mean([len(e["actions"]) for e in real]))}
        if ScriptedPolicy.parse(spec) is not None:
            row["closed_loop"] = None
            row["closed_loop_note"] = "a scripted policy reads the agent's pose, which a dream does not have"
        else:
            dream = dream_episodes(sim.model, env_id, spec, seeds, codec, num_actions, sim.temperature,
                                   sim.device, max_episode_steps)
            dream_success = _rate([e["success"] for e in dream])
            wins = [e for e in dream if e["success"]]
            row["dream"] = {"success": dream_success, "mean_return": float(np.mean([e["return"] for e in dream])),
                            "mean_length": float(np.mean([len(e["actions"]) for e in dream]))}
            row["optimism_gap"] = dream_success["rate"] - real_success["rate"]
            row["dream_successes_real"] = _rate(replay_in_real(env_id, wins, max_episode_steps)) if wins else None
        row["seconds"] = round(time.perf_counter() - start, 1)
        result["policies"][spec] = row
        if progress:
            progress(f"fidelity: {spec} done in {row['seconds']:.0f} s")
        if out is not None:
            write_json(Path(out) / "fidelity.json", result)
    if out is not None:
        write_accuracy_svg(Path(out) / "fidelity.svg", result)
    return result


def format_fidelity_table(result: dict[str, Any]) -> str:
    def pct(v):
        return "-" if v is None else f"{v:.3f}"

    steps = [s for s in REPORT_STEPS if any(s in r["replay"]["by_step"] for r in result["policies"].values())]
    head = ["policy"] + [f"known@{s}" for s in steps] + ["all cells", "exact", "1st diff", "reward", "done",
                                                          "real succ", "dream succ", "gap", "dream wins real"]
    rows = [head]
    for spec, r in result["policies"].items():
        rep = r["replay"]
        cells = [spec] + [pct(rep["by_step"].get(s, {}).get("knowable_cell_accuracy")) for s in steps]
        cells += [pct(rep["mean_cell_accuracy"])]
        diverged = len(rep["first_divergence_steps"]) - rep["never_diverged"]
        cells += [pct(rep["mean_exact_frame"]),
                  "-" if rep["median_first_divergence"] is None else
                  f"{rep['median_first_divergence']:.0f} ({diverged}/{len(rep['first_divergence_steps'])})",
                  pct(rep["reward_agreement"]), pct(rep["termination_agreement"]),
                  pct(r["real"]["success"]["rate"])]
        if r.get("dream"):
            wins = r["dream_successes_real"]
            cells += [pct(r["dream"]["success"]["rate"]), f"{r['optimism_gap']:+.3f}",
                      "-" if wins is None else f"{wins['count']}/{wins['of']}"]
        else:
            cells += ["n/a", "n/a", "n/a"]
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"{result['env_id']}: {result['episodes']} episodes per policy, seeds {result['seeds'][0]}.."
             f"{result['seeds'][1]}, dream decoder: {result['decoder']}"]
    for j, row in enumerate(rows):
        lines.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("known@N: per-cell accuracy, on the cells the past could tell (not a place first in view), of "
                 "the open-loop dream N steps after the real start, fed the real actions; all cells: per-cell "
                 "accuracy over every cell and step; exact: exact-frame rate over all replayed steps; 1st diff: median first step whose "
                 "frame differs (episodes that differed at all / all); reward / done: per-step agreement; gap: dream - real success; dream wins real: "
                 "successful dream episodes whose actions also succeed in the real env")
    lines.append("")
    lines.append("One-step transitions, teacher-forced: the kinds most often predicted wrong (wrong / steps, and "
                 "the model's mean uncertainty there, nats per cell)")
    for spec, r in result["policies"].items():
        one = r["one_step"]
        worst = [f"{k['transition']} {k['wrong']}/{k['steps']} ({k['mean_uncertainty']:.4f})"
                 for k in one["by_transition"][:ONE_STEP_KINDS_SHOWN] if k["wrong"]]
        lines.append(f"  {spec}: {one['wrong']}/{one['steps']} wrong" + (": " + "; ".join(worst) if worst else ""))
    return "\n".join(lines)


def write_accuracy_svg(path: Path, result: dict[str, Any]) -> None:
    """Knowable-cell accuracy of the replayed dream vs step, one line per policy (a plain SVG)."""
    from worldsim.svg_plot import write_line_plot

    curves = {spec: r["replay"]["accuracy_curve"] for spec, r in result["policies"].items()}
    xmax = max((len(c) for c in curves.values()), default=1) or 1
    ymin = min([v for c in curves.values() for v in c if np.isfinite(v)] + [0.9])
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    lines, legend = [], []
    for i, (spec, curve) in enumerate(curves.items()):
        c = colors[i % len(colors)]
        lines.append((c, [(t + 1, v) for t, v in enumerate(curve) if np.isfinite(v)]))
        legend.append((c, Path(spec).name or spec))
    write_line_plot(path, f"{result['env_id']}: open-loop dream accuracy on knowable cells vs step",
                    "steps after the real start", lines, legend, x_range=(1, xmax), y_range=(ymin, 1.0))
