"""The learned-vs-real benchmark: PPO trained in the real env vs PPO trained in the dream vs the planner.

``learned_vs_real(env_id, checkpoint, steps, seeds, ...)`` (CLI: ``worldsim benchmark learned-vs-real``;
the table, CSV and SVG: ``benchmarks.learned_vs_real_report``) does, for each seed s in first_seed .. first_seed + seeds - 1:

1. trains PPO in the REAL env ``env_id`` for ``steps`` agent steps with seed s (``train_agent``);
2. trains PPO in the DREAM of ``checkpoint`` with the same step budget and seed;
3. evaluates both policies in the REAL env for ``eval_episodes`` episodes (``evaluate_policy``;
   the most likely actions, or sampled ones with ``deterministic_eval=False``), episode i reset with seed ``10_000 + s * stride + i``
   (stride = max(eval_episodes, planner_episodes)), so both policies meet the same layouts and no
   layout is shared between training seeds;
4. runs the planner (``agents.planner``, MPC with the world model) in the REAL env for
   ``planner_episodes`` episodes from the same start seeds, its generator seeded with s.

Reported per method (pooled over all seeds' episodes, and per seed): success rate with its 95%
Wilson interval, mean return with its 95% Student t interval, real env steps and wall time.

Real env steps, what is counted:

- real PPO: the agent's training steps in the real env (SB3's ``num_timesteps``; PPO rounds the
  budget up to whole rollouts of ``n_steps * num_envs``), summed over seeds;
- dream PPO: 0 agent steps in the real env, plus the real env steps that produced the world model's
  training data (all collected transitions, training and held-out episodes alike). That count is read
  from ``--world-model-data DIR``'s ``manifest.json`` if given, else from the dataset folder named in
  the checkpoint's ``config.json`` metadata, else from the run's ``train_config.json`` data summary
  (frames - episodes), else it is unknown (null). It is a one-time cost shared by every seed, so it
  is counted once;
- planner: the real steps it acted (its evaluation episodes); it trains nothing in the real env
  beyond the world model (whose data steps are listed separately, as for dream PPO);
- evaluation steps of the two PPO policies are reported separately (``eval_real_steps``) and are
  not added to the training counts.

Wall time: training + evaluation for the PPO rows (world-model training time is not included),
acting time for the planner.

Outputs under ``out``: ``seed_<s>/{real,dream}/`` (policy.zip, agent.json, tb/), ``seed_<s>/<method>.json``
(each job's result, written when it finishes),
``learned_vs_real.json`` (every number, per-seed results, per-episode data and the learning curves:
SB3's per-rollout ``rollout/ep_rew_mean`` against timesteps, read from the TensorBoard logs),
``learning_curves.csv`` and ``learning_curves.svg`` (a plain SVG drawn here; no matplotlib needed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.evaluation import CONFIDENCE, SUCCESS_DEFINITION, evaluate_policy, mean_interval, wilson_interval
from agents.training import DEFAULT_NUM_ENVS, train_agent
from worldsim.checkpoint import atomic_write
from worldsim.checks import output_folder, positive_int
from worldsim.json_io import json_default_or_str, write_json
from worldsim.zoo import resolve_checkpoint

from .learned_vs_real_report import LABELS, METHODS, write_curves_csv, write_curves_svg

EVAL_SEED_BASE = 10_000
RESULT_FILE = "learned_vs_real.json"
CURVES_CSV = "learning_curves.csv"
CURVES_SVG = "learning_curves.svg"
# The target for a useful dream: an agent trained only in it keeps at least 90% of the real-env success
# of an agent trained in the real env with the same budget.
RATIO_FLOOR = 0.9


# ---------------------------------------------------------------------------------------- helpers


def _shown(path: Path) -> str:
    """A path as a user would write it: relative to the working folder when it lies inside it."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else os.fspath(path)
    except (OSError, ValueError):
        return os.fspath(path)


def _read_json(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _manifest_steps(root: Path) -> dict | None:
    m = _read_json(root / "manifest.json")
    if m is None or not isinstance(m.get("totals"), dict) or "steps" not in m["totals"]:
        return None
    t = m["totals"]
    return {"steps": int(t["steps"]), "episodes": int(t.get("episodes", 0)), "env_id": m.get("env_id"),
            "source": _shown(root / "manifest.json"),
            "what": "all transitions collected in the real env (dataset manifest totals.steps)"}


def world_model_data_steps(checkpoint, world_model_data=None) -> dict[str, Any]:
    """The real env steps behind a world model: {"steps" (int or None), "episodes", "source", "what"}.

    Looks in order at `world_model_data`'s manifest.json, the model card of a shipped model
    (card.json), the dataset named in the checkpoint's config.json metadata, and a train_config.json
    in the checkpoint folder or up to three folders above it (a run folder holds model/ and
    checkpoints/checkpoint-N/model/)."""
    if world_model_data is not None:
        root = Path(world_model_data)
        found = _manifest_steps(root)
        if found is None:
            raise FileNotFoundError(f"--world-model-data {os.fspath(world_model_data)!r} has no readable "
                                    "manifest.json with totals.steps (expected a folder written by `worldsim collect`)")
        return found
    ckpt = Path(checkpoint)
    card = _read_json(ckpt / "card.json") or {}                     # a model shipped in worldsim/models
    if isinstance(card.get("data"), dict) and "steps" in card["data"]:
        return {"steps": int(card["data"]["steps"]), "episodes": int(card["data"].get("episodes", 0)),
                "env_id": card.get("env_id"), "source": _shown(ckpt / "card.json"),
                "what": "all transitions collected in the real env for the shipped model (its card.json)"}
    config = _read_json(ckpt / "config.json") or {}
    dataset = (config.get("metadata") or {}).get("dataset")
    if dataset:
        found = _manifest_steps(Path(dataset))
        if found is not None:
            return found
    for folder in [ckpt, *list(ckpt.resolve().parents)[:3]]:
        tc = _read_json(folder / "train_config.json")
        data = (tc or {}).get("data")
        if isinstance(data, dict) and "train_frames" in data:
            frames = int(data.get("train_frames", 0)) + int(data.get("eval_frames", 0))
            episodes = int(data.get("train_episodes", 0)) + int(data.get("eval_episodes", 0))
            return {"steps": frames - episodes, "episodes": episodes, "env_id": data.get("env_id"),
                    "source": _shown(folder / "train_config.json"),
                    "what": "training + held-out transitions of the world model's data (train_config.json: "
                            "frames - episodes)"}
    return {"steps": None, "episodes": None, "env_id": None, "source": None,
            "what": "unknown: no --world-model-data, no dataset in the checkpoint metadata, no train_config.json"}


def read_learning_curve(tb_dir) -> list[dict[str, float]]:
    """SB3's per-rollout rollout/ep_rew_mean (and ep_len_mean) vs timesteps from TensorBoard logs."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    points: dict[int, dict[str, float]] = {}
    runs = sorted({p.parent for p in Path(tb_dir).rglob("events.out.tfevents.*")})
    for run in runs:
        acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        for tag, key in (("rollout/ep_rew_mean", "mean_episode_reward"), ("rollout/ep_len_mean", "mean_episode_length")):
            if tag in tags:
                for ev in acc.Scalars(tag):
                    points.setdefault(int(ev.step), {"timesteps": int(ev.step)})[key] = float(ev.value)
    return [points[k] for k in sorted(points) if "mean_episode_reward" in points[k]]


def summarize(returns, successes, lengths) -> dict[str, Any]:
    """Success rate (Wilson CI) and mean return (t CI) of a list of episodes."""
    n, k = len(returns), int(sum(bool(s) for s in successes))
    ci, method = mean_interval(returns)
    return {"episodes": n, "successes": k, "success_rate": k / n, "success_ci": list(wilson_interval(k, n)),
            "mean_return": float(np.mean(returns)), "return_ci": None if ci is None else list(ci),
            "return_ci_method": method, "mean_length": float(np.mean(lengths)), "steps": int(np.sum(lengths))}


def _run_planner(checkpoint, env_id, seeds, planner_config, device, max_episode_steps):
    from dataclasses import replace

    from agents.planner import Planner, PlannerConfig, run_episodes

    config = planner_config or PlannerConfig()
    planner = Planner(checkpoint, config=replace(config), device=device)
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    return run_episodes(planner, env_id, seeds, **kwargs)


# ---------------------------------------------------------------------------------------- the benchmark


def _run_job(method: str, s: int, stride: int, common: dict) -> tuple[dict, list | None]:
    """One seed of one method: (its per-seed result, its learning curve or None), also written to
    OUT/seed_<s>/<method>.json as soon as it is done (a run stopped early keeps its finished jobs).
    Runs in a worker process when the benchmark runs jobs in parallel: plain data in and out."""
    result = _job_result(method, s, stride, common)
    path = Path(common["out"]) / f"seed_{s}" / f"{method}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"method": method, "seed": s, "result": result[0], "curve": result[1]}, default=json_default_or_str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return result


def _job_result(method: str, s: int, stride: int, common: dict) -> tuple[dict, list | None]:
    env_id, device, max_steps = common["env_id"], common["device"], common["max_episode_steps"]
    if common["verbose"] and method == "planner":      # PPO jobs announce themselves through their progress lines
        print(f"{time.strftime('%H:%M:%S')} {LABELS[method]}, seed {s}: started", flush=True)
    eval_seed = EVAL_SEED_BASE + s * stride
    if method == "planner":
        from dataclasses import replace

        from agents.planner import PlannerConfig

        pc = replace(common["planner_config"] or PlannerConfig(), seed=s)
        t0 = time.time()
        p_seeds = [eval_seed + i for i in range(common["planner_episodes"])]
        eps = _run_planner(common["checkpoint"], env_id, p_seeds, pc, device, max_steps)
        return {
            **summarize([e["return"] for e in eps], [e["success"] for e in eps], [e["steps"] for e in eps]),
            "real_train_steps": 0, "wall_seconds": time.time() - t0,
            "returns": [float(e["return"]) for e in eps], "success": [bool(e["success"]) for e in eps],
            "lengths": [int(e["steps"]) for e in eps], "eval_seeds": p_seeds,
            "planner_config": pc.__dict__.copy(),
        }, None
    where = "real" if method == "real_ppo" else "dream"
    if where == "real" and common["real_device"] is not None:
        device = common["real_device"]
    agent_dir = Path(common["out"]) / f"seed_{s}" / where
    shutil.rmtree(agent_dir / "tb", ignore_errors=True)              # one TensorBoard run per folder
    t0 = time.time()
    progress = (lambda line: print(f"{time.strftime('%H:%M:%S')} seed {s}, {line}", flush=True)) \
        if common["verbose"] else None
    info = train_agent(env_id, where=where, algo="ppo", steps=common["steps"], out=agent_dir,
                       checkpoint=common["checkpoint"] if where == "dream" else None, num_envs=common["num_envs"],
                       seed=s, device=device, hyperparams=common["hyperparams"], max_episode_steps=max_steps,
                       progress=progress)
    t1 = time.time()
    ev = evaluate_policy(agent_dir, env_id, episodes=common["eval_episodes"], where="real", seed=eval_seed,
                         deterministic=common["deterministic_eval"], max_episode_steps=max_steps, device=device)
    t2 = time.time()
    return {
        **summarize(ev["returns"], ev["success"], ev["lengths"]),
        "train_timesteps": int(info["num_timesteps"]),
        "real_train_steps": int(info["num_timesteps"]) if where == "real" else 0,
        "eval_real_steps": int(sum(ev["lengths"])),
        "train_seconds": t1 - t0, "eval_seconds": t2 - t1, "wall_seconds": t2 - t0,
        "policy": str(agent_dir), "returns": ev["returns"], "success": ev["success"],
        "lengths": ev["lengths"], "eval_seeds": ev["seeds"],
    }, read_learning_curve(agent_dir / "tb")


def _run_jobs(jobs, common, stride, workers, say) -> dict:
    """{(method, seed): (result, curve)} for every job, one after another or in `workers` processes."""
    def done(job, result):
        r = result[0]
        say(f"{LABELS[job[0]]}, seed {job[1]}: success {r['success_rate']:.3f}, mean return {r['mean_return']:z.3f} "
            f"({r['wall_seconds']:.0f} s)")

    results = {}
    if workers <= 1:
        for job in jobs:
            results[job] = _run_job(*job, stride, common)
            done(job, results[job])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # spawn: CUDA cannot be used in a forked child; each worker imports torch afresh.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool:
        futures = {pool.submit(_run_job, *job, stride, common): job for job in jobs}
        say(f"{len(jobs)} jobs in {workers} processes ...")
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done(futures[future], results[futures[future]])
    return results


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)                 # the workers share the cores


def learned_vs_real(env_id: str, checkpoint, steps: int, seeds: int = 3, eval_episodes: int = 100,
                    planner_episodes: int = 10, out: str | os.PathLike = "runs/benchmark", num_envs: int = DEFAULT_NUM_ENVS,
                    device: str = "auto", world_model_data=None, planner_config=None, hyperparams: dict | None = None,
                    max_episode_steps: int | None = None, verbose: bool = False, workers: int = 1,
                    real_device: str | None = None, first_seed: int = 0,
                    deterministic_eval: bool = True) -> dict[str, Any]:
    """Run the learned-vs-real benchmark (see the module docstring); returns the result dict that is
    also written to OUT/learned_vs_real.json. planner_config: an agents.planner.PlannerConfig
    (its seed is replaced by the training seed); hyperparams override the PPO defaults for both.
    `workers` > 1 runs the (method, seed) jobs in that many processes at once; results are the same
    as one after another (each job seeds itself). `real_device` (default: `device`) is where the
    real-env PPO runs: its small CNN is as fast on the CPU, which leaves a shared GPU to the dream
    (GPU time-slicing between many processes' small kernels is slow). Seeds are first_seed ..
    first_seed + seeds - 1. `deterministic_eval` False samples the evaluated policies' actions instead
    of taking the most likely one (in an env whose every episode starts alike, greedy evaluation
    repeats one trial). `verbose` prints a progress line about every 10 s."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id must be a real env id such as 'MiniGrid-Empty-8x8-v0'; got {env_id!r}")
    checkpoint_shown = _shown(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) and os.path.isdir(checkpoint) \
        else (checkpoint or env_id)                         # a shipped model is named by its id
    checkpoint = resolve_checkpoint(checkpoint, env_id)
    if checkpoint is None:
        raise FileNotFoundError(f"no checkpoint given, and no world model is shipped for {env_id} "
                                "(`worldsim models` lists the shipped ones)")
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"checkpoint {os.fspath(checkpoint)!r} does not exist "
                                "(expected a world-model folder written by WorldModel.save_pretrained)")
    if not (Path(checkpoint) / "config.json").is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(checkpoint)!r} has no config.json "
                                "(expected a world-model folder written by WorldModel.save_pretrained)")
    steps = positive_int("steps", steps)
    n_seeds = positive_int("seeds", seeds)
    eval_episodes = positive_int("eval_episodes", eval_episodes)
    planner_episodes = positive_int("planner_episodes", planner_episodes, allow_zero=True)
    num_envs = positive_int("num_envs", num_envs)
    workers = positive_int("workers", workers)
    first_seed = positive_int("first_seed", first_seed, allow_zero=True)
    if planner_config is not None:
        planner_config.validate()
    wm_data = world_model_data_steps(checkpoint, world_model_data)
    out = output_folder(out)
    stride = max(eval_episodes, planner_episodes)
    say = print if verbose else (lambda *a, **k: None)

    common = dict(env_id=env_id, checkpoint=checkpoint, steps=steps, num_envs=num_envs, device=device,
                  real_device=real_device, verbose=verbose, deterministic_eval=bool(deterministic_eval),
                  hyperparams=hyperparams, max_episode_steps=max_episode_steps, eval_episodes=eval_episodes,
                  planner_episodes=planner_episodes, planner_config=planner_config, out=out)
    seeds = range(first_seed, first_seed + n_seeds)
    jobs = [(method, s) for s in seeds for method in ("real_ppo", "dream_ppo")]
    jobs += [("planner", s) for s in seeds] if planner_episodes else []
    results = _run_jobs(jobs, common, stride, workers, say)
    per_seed = []
    curves = {"real_ppo": [], "dream_ppo": []}
    for s in seeds:
        row: dict[str, Any] = {"seed": s, "eval_seed_start": EVAL_SEED_BASE + s * stride}
        for method in METHODS:
            if (method, s) in results:
                row[method], curve = results[(method, s)]
                if curve is not None:
                    curves[method].append({"seed": s, "points": curve})
        per_seed.append(row)

    pooled: dict[str, Any] = {}
    for method in METHODS:
        rows = [r[method] for r in per_seed if method in r]
        if not rows:
            continue
        summary = summarize([x for r in rows for x in r["returns"]], [x for r in rows for x in r["success"]],
                            [x for r in rows for x in r["lengths"]])
        summary["wall_seconds"] = float(sum(r["wall_seconds"] for r in rows))
        summary["seeds"] = len(rows)
        if method == "real_ppo":
            summary["real_steps"] = int(sum(r["real_train_steps"] for r in rows))
            summary["real_steps_what"] = "agent training steps in the real env (SB3 num_timesteps), all seeds"
        elif method == "dream_ppo":
            summary["real_steps"] = wm_data["steps"]
            summary["real_steps_what"] = ("0 agent steps in the real env + the world model's data: "
                                          + wm_data["what"] + " (counted once for all seeds)")
        else:
            summary["real_steps"] = summary["steps"]
            summary["real_steps_what"] = "real steps acted by the planner (its evaluation episodes only)"
        if method != "planner":
            summary["eval_real_steps"] = int(sum(r["eval_real_steps"] for r in rows))
            summary["train_timesteps_per_seed"] = [r["train_timesteps"] for r in rows]
        pooled[method] = summary

    real_sr, dream_sr = pooled["real_ppo"]["success_rate"], pooled["dream_ppo"]["success_rate"]
    ratio = None if real_sr == 0 else dream_sr / real_sr
    result = {
        "benchmark": "learned-vs-real", "env_id": env_id, "checkpoint": checkpoint_shown,
        "steps": steps, "seeds": n_seeds, "first_seed": first_seed, "eval_episodes_per_seed": eval_episodes,
        "planner_episodes_per_seed": planner_episodes, "num_envs": num_envs, "device": device,
        "real_device": real_device or device,
        "max_episode_steps": max_episode_steps, "hyperparams": hyperparams,
        "eval_seed_rule": f"seed s, episode i: reset seed {EVAL_SEED_BASE} + s * {stride} + i (same for all methods)",
        "deterministic_eval": bool(deterministic_eval), "success_definition": SUCCESS_DEFINITION, "confidence": CONFIDENCE,
        "world_model_data": wm_data, "methods": pooled, "per_seed": per_seed,
        "success_ratio_dream_over_real": ratio,
        "success_ratio_note": "pooled dream-PPO success rate / pooled real-PPO success rate (null if real is 0)",
        "ratio_floor": RATIO_FLOOR, "meets_floor": None if ratio is None else bool(ratio >= RATIO_FLOOR),
        "learning_curves": curves,
        "learning_curves_what": "SB3 rollout/ep_rew_mean (mean return of the last <=100 training episodes) after "
                                "each PPO rollout, vs timesteps; read from each agent's TensorBoard log",
        "files": {"json": str(out / RESULT_FILE), "curves_csv": str(out / CURVES_CSV),
                  "curves_svg": str(out / CURVES_SVG)},
    }
    write_curves_csv(out / CURVES_CSV, curves)
    write_curves_svg(out / CURVES_SVG, curves, env_id)
    write_json(out / RESULT_FILE, result, default=json_default_or_str)
    return result
