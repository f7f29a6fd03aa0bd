"""Learning parity of the native PPO in real MiniGrid: success after a fixed budget, over seeds.

For each env and seed, the native PPO (``agents.ppo``, its default settings: rl-starter-files' 16
envs x 128 steps) trains in the real env for ``--steps`` steps, then is scored on ``--episodes``
held-out episodes (reset seeds 10,000 + i, sampled actions, as ``worldsim agent eval``). The
reference is rl-baselines3-zoo's MiniGrid figure: DoorKey-5x5 solved (success >= 0.95) in 100k steps.

    PYTHONPATH=. python3 benchmarks/ppo_parity.py --out docs/agents/native_ppo_parity_cpu.json
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from agents.evaluation import evaluate_policy, wilson_interval
from agents.ppo import NativePolicy, train_ppo
from agents.torch_envs import RealTorchVecEnv
from worldsim.json_io import write_json


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--envs", default="MiniGrid-DoorKey-5x5-v0,MiniGrid-Empty-8x8-v0")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"benchmark": "ppo_parity", "machine": platform.processor() or platform.machine(),
               "threads": args.threads, "steps": args.steps, "episodes_per_seed": args.episodes,
               "eval": "reset seeds 10000 + i, sampled actions", "runs": []}
    print(f"{'env':<26} {'seed':>4} {'success':>8} {'mean return':>12} {'train s':>8}")
    for env_id in args.envs.split(","):
        for seed in range(args.seeds):
            envs = RealTorchVecEnv(env_id, 16)
            start = time.perf_counter()
            network, history = train_ppo(envs, total_steps=args.steps, seed=seed)
            seconds = time.perf_counter() - start
            envs.close()
            r = evaluate_policy(NativePolicy(network, torch.device("cpu")), env_id, episodes=args.episodes,
                                seed=10_000, deterministic=False)
            results["runs"].append({"env_id": env_id, "seed": seed, "train_steps": history[-1]["steps"],
                                    "train_seconds": seconds, "success_rate": r["success_rate"],
                                    "success_ci": r["success_ci"], "mean_return": r["mean_return"]})
            write_json(args.out, results)
            print(f"{env_id:<26} {seed:>4} {r['success_rate']:>8.2f} {r['mean_return']:>12.3f} {seconds:>8.1f}",
                  flush=True)
    for env_id in args.envs.split(","):
        runs = [r for r in results["runs"] if r["env_id"] == env_id]
        wins = sum(round(r["success_rate"] * args.episodes) for r in runs)
        n = args.episodes * len(runs)
        lo, hi = wilson_interval(wins, n)
        print(f"{env_id}: pooled success {wins / n:.3f} [{lo:.3f}, {hi:.3f}] over {len(runs)} seeds")
    write_json(args.out, results)


if __name__ == "__main__":
    main()
