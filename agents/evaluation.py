"""Evaluate a policy in the real env or in the dream, with 95% confidence intervals.

Episode i is reset with seed ``seed + i`` (in the dream: starts from the real env's reset with that
seed), so episodes are distinct and the same seeds give the same start layouts in both.

- **success**: the episode *terminated* (not truncated by the step limit) with a return > 0. In
  MiniGrid the only positive reward is for reaching the goal (1 - 0.9 * steps / max_steps), and a
  lava / wrong-object termination gives 0, so this is "reached the goal". In the dream the reward
  and termination are the model's predictions.
- success rate: k / n with the Wilson score interval.
- mean return: with a Student t interval (n - 1 degrees of freedom).
- achievements (real envs whose info carries ``achievements``, such as Crafter): each achievement's
  success rate over the episodes and the Crafter score, their geometric mean (``envs.crafter``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SUCCESS_DEFINITION = "terminated (not truncated) with episode return > 0 (MiniGrid: reached the goal)"


# ---------------------------------------------------------------------------------------- statistics


def _z(confidence: float) -> float:
    return float(stats.norm.ppf(0.5 + confidence / 2))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion successes / n (bounds in [0, 1])."""
    if n < 1:
        raise ValueError(f"need at least one trial; got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}]; got {successes}")
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if successes == 0 else max(0.0, center - half)     # exact at the edges (no rounding past 0 / 1)
    hi = 1.0 if successes == n else min(1.0, center + half)
    return lo, hi


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[tuple[float, float] | None, str]:
    """(confidence interval of the mean, method): Student t with n-1 degrees of freedom. None for a
    single value (no spread to estimate)."""
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 2:
        return None, "undefined for fewer than 2 episodes"
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    q = float(stats.t.ppf(0.5 + confidence / 2, n - 1))
    return (mean - q * sem, mean + q * sem), "student t"


# ---------------------------------------------------------------------------------------- episodes


def _run_real(model, env_id, seeds, deterministic, max_episode_steps, batch):
    import gymnasium as gym

    from .observations import policy_image_shape, real_observation_wrapper

    kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    observe = real_observation_wrapper(policy_image_shape(model))     # what the policy reads
    try:
        envs = [observe(gym.make(env_id, **kwargs)) for _ in range(min(batch, len(seeds)))]
    except gym.error.Error as e:
        raise ValueError(f"cannot make the real env {env_id!r} ({e})") from None
    returns, lengths, terminated, achievements = [], [], [], []
    for lo in range(0, len(seeds), len(envs)):
        chunk = seeds[lo:lo + len(envs)]
        obs = [env.reset(seed=int(s))[0] for env, s in zip(envs, chunk)]
        last_info = [{} for _ in chunk]
        ret, length = np.zeros(len(chunk)), np.zeros(len(chunk), dtype=np.int64)
        term, active = np.zeros(len(chunk), dtype=bool), np.ones(len(chunk), dtype=bool)
        while active.any():
            idx = np.flatnonzero(active)
            actions, _ = model.predict(np.stack([obs[i] for i in idx]), deterministic=deterministic)
            for i, a in zip(idx, _env_actions(model, actions, len(idx))):
                obs[i], r, te, tr, last_info[i] = envs[i].step(a)
                ret[i] += r
                length[i] += 1
                if te or tr:
                    active[i], term[i] = False, bool(te)
        returns += ret.tolist()
        lengths += length.tolist()
        terminated += term.tolist()
        achievements += [info.get("achievements") for info in last_info]
    names = getattr(envs[0].unwrapped, "achievement_names", None)
    for env in envs:
        env.close()
    if names is None or any(a is None for a in achievements):
        return returns, lengths, terminated, None
    from envs.crafter import crafter_score

    return returns, lengths, terminated, {"names": list(names), **crafter_score(np.stack(achievements))}


def _env_actions(model, actions, n: int) -> np.ndarray:
    """A policy's actions for n envs as they take them: integers, or a Box's float32 rows."""
    from gymnasium import spaces

    if isinstance(getattr(model, "action_space", None), spaces.Box):     # anything with predict() plays
        return np.asarray(actions, dtype=np.float32).reshape(n, -1)
    return np.asarray(actions).reshape(n).astype(np.int64)


def _run_dream(model, env_id, seeds, deterministic, max_episode_steps, batch, checkpoint, device, temperature):
    from worldsim import DreamVectorEnv

    n = min(batch, len(seeds))
    venv = DreamVectorEnv(checkpoint, num_envs=n, real_env_id=env_id, image_only=True, device=device,
                          max_episode_steps=max_episode_steps, start_pool=n,
                          **({} if temperature is None else {"temperature": temperature}))
    returns, lengths, terminated = [], [], []
    try:
        for lo in range(0, len(seeds), n):
            k = len(seeds[lo:lo + n])
            # sub-env j starts from the real env's reset with seed seeds[lo] + j = seed + lo + j
            obs, _ = venv.reset(seed=int(seeds[lo]))
            ret, length = np.zeros(n), np.zeros(n, dtype=np.int64)
            term, active = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
            active[:k] = True
            while active.any():
                actions, _ = model.predict(obs, deterministic=deterministic)
                obs, r, te, tr, _ = venv.step(_env_actions(model, actions, n))
                ret[active] += r[active]
                length[active] += 1
                done = active & (te | tr)
                term[done] = te[done]
                active &= ~done              # a finished sub-env restarts (autoreset); its next episode is ignored
            returns += ret[:k].tolist()
            lengths += length[:k].tolist()
            terminated += term[:k].tolist()
    finally:
        venv.close()
    return returns, lengths, terminated


def evaluate_policy(policy, env_id: str | None = None, episodes: int = 100, where: str = "real", checkpoint=None,
                    seed: int = 0, deterministic: bool = True, max_episode_steps: int | None = None,
                    device: str = "auto", batch: int = 16, out: str | os.PathLike | None = None,
                    temperature: float | None = None) -> dict[str, Any]:
    """Run `episodes` episodes of a policy (a folder from train_agent, a policy .zip, or an SB3 model) in
    the real env `env_id` or in the dream of `checkpoint` (sampled at `temperature`; None: the dream's
    default), episode i with seed seed + i, `batch` at a time.

    Returns success_rate, success_ci (Wilson), mean_return, return_ci (t), episodes, per-episode
    returns / lengths / successes / seeds and the settings; with `out`, also writes it as JSON.
    `env_id` defaults to the one in the policy folder's agent.json.
    """
    from worldsim.checks import positive_int, registered_env_id
    from worldsim.runtime import resolve_device

    from .training import check_place, load_policy

    positive_int("episodes", episodes)
    positive_int("batch", batch)
    positive_int("seed", seed, allow_zero=True)          # gymnasium refuses negative reset seeds
    resolve_device(device)
    check_place(where, checkpoint, "evaluating")
    if where != "dream" and temperature is not None:
        raise ValueError(f"temperature {temperature!r} is the dream's sampling temperature: use it with where='dream'")
    if isinstance(policy, (str, os.PathLike)):
        model, info = load_policy(policy, device=device)
        policy_name = os.fspath(policy)
    else:
        if not hasattr(policy, "predict"):
            raise TypeError(f"policy must be a path or an SB3 model with predict(); got {type(policy).__name__}")
        model, info, policy_name = policy, {}, type(policy).__name__
    if env_id is None:
        if info.get("env_id") is None:
            raise ValueError("no env_id given and the policy has no agent.json naming one")
        import envs  # noqa: F401  (registers the ids the file may name: MiniGrid's, Crafter's)

        env_id = registered_env_id(info["env_id"], "the policy's agent.json")
    if info.get("env_id") and info["env_id"].split(":")[-1] != env_id.split(":")[-1]:
        raise ValueError(f"the policy was trained on {info['env_id']!r}, not {env_id!r}")

    seeds = [int(seed) + i for i in range(int(episodes))]
    achievements = None          # the dream predicts no achievements
    if where == "real":
        returns, lengths, terminated, achievements = _run_real(model, env_id, seeds, deterministic, max_episode_steps,
                                                               batch)
    else:
        returns, lengths, terminated = _run_dream(model, env_id, seeds, deterministic, max_episode_steps, batch,
                                                  checkpoint, device, temperature)
    result = {
        "env_id": env_id, "where": where, "seed": int(seed), "deterministic": bool(deterministic),
        "policy": policy_name, "trained_in": info.get("where"), "algo": info.get("algo"),
        **({"dream_temperature": temperature} if where == "dream" else {}),
        "checkpoint": None if checkpoint is None else (os.path.abspath(checkpoint)
                                                       if isinstance(checkpoint, (str, os.PathLike)) else repr(checkpoint)),
        **episodes_summary(returns, lengths, terminated), "seeds": seeds,
        **({} if achievements is None else {"achievements": achievements}),
    }
    if out is not None:
        write_result(out, result)
    return result


def episodes_summary(returns, lengths, terminated) -> dict[str, Any]:
    """What evaluations report of a list of episodes: success (terminated with a positive return) with
    its Wilson interval, mean return with its t interval, lengths, and the per-episode values."""
    successes = [bool(t and r > 0) for t, r in zip(terminated, returns)]
    n, k = len(returns), int(sum(successes))
    return_ci, ci_method = mean_interval(returns)
    return {
        "episodes": n, "success_definition": SUCCESS_DEFINITION, "confidence": CONFIDENCE,
        "successes": k, "success_rate": k / n, "success_ci": list(wilson_interval(k, n)),
        "success_ci_method": "wilson score",
        "mean_return": float(np.mean(returns)), "return_std": float(np.std(returns, ddof=1)) if n > 1 else 0.0,
        "return_ci": None if return_ci is None else list(return_ci), "return_ci_method": ci_method,
        "mean_length": float(np.mean(lengths)), "terminated_rate": float(np.mean(terminated)),
        "returns": [float(r) for r in returns], "lengths": [int(x) for x in lengths], "success": successes,
    }


def write_result(out: str | os.PathLike, result: dict[str, Any]) -> None:
    """An evaluation's JSON, written atomically (its folder made if need be)."""
    from worldsim.json_io import write_json

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)


def format_interval(interval) -> str:
    """"[lo, hi]" to 3 decimals, or "n/a"; values that round to zero print as 0.000, never -0.000
    (a dream's predicted rewards can be a hair below zero)."""
    return "n/a" if interval is None else f"[{interval[0]:z.3f}, {interval[1]:z.3f}]"


def format_table(result: dict[str, Any]) -> str:
    """A small table: metric, value, 95% CI."""
    ci = format_interval
    rows = [("metric", "value", f"{int(result['confidence'] * 100)}% CI"),
            ("success rate", f"{result['success_rate']:.3f} ({result['successes']}/{result['episodes']})",
             ci(result["success_ci"])),
            ("mean return", f"{result['mean_return']:z.3f}", ci(result["return_ci"])),
            ("mean length", f"{result['mean_length']:.1f}", "")]
    if "achievements" in result:
        rows.append(("Crafter score (%)", f"{result['achievements']['score']:.2f}",
                     ci(result["achievements"]["score_ci"])))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    place = "real env" if result["where"] == "real" else "dream"
    actions = "the planner's" if "planner" in result else "deterministic" if result["deterministic"] else "sampled"
    lines = [f"{result['env_id']} in the {place}: {result['episodes']} episodes, seeds "
             f"{result['seeds'][0]}..{result['seeds'][-1]}, {actions} actions"]
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"success = {result['success_definition']}; return CI: {result['return_ci_method']}")
    return "\n".join(lines)
