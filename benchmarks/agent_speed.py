"""Agent training throughput: agent-steps/s including policy updates, side by side in one run.

- SB3 PPO in the real env: rl-baselines3-zoo's MiniGrid settings (8 envs, n_steps 128, batch 64,
  10 epochs) on one CPU core, the way a user trains today;
- SB3 PPO in the dream: 64 dream envs on the device through ``DreamSB3VecEnv`` (n_steps 128,
  batch 256, 4 epochs: the settings of the DoorKey learned-vs-real runs);
- native PPO in the dream (``agents.ppo``) at each ``--native-envs`` (rollouts of ``--native-steps``,
  minibatches of ``--native-minibatch``, 4 epochs), timed after its first iteration (which pays for
  CUDA-graph capture);
- native PPO in the real env (16 envs, rl-starter-files' settings) for reference.

Each line trains from scratch for about the given number of steps and reports env steps / wall
seconds of training (rollouts and updates). Ratios are against SB3 PPO in the real env on one core.

    PYTHONPATH=. python3 benchmarks/agent_speed.py --quick --device cpu --out runs/agent_speed.json
    PYTHONPATH=. python3 benchmarks/agent_speed.py --device cuda --out agent_speed.json
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from agents.ppo import PPOSettings, train_ppo
from agents.torch_envs import make_torch_env
from agents.training import DEFAULT_HYPERPARAMS, make_env, policy_kwargs_for
from worldsim.json_io import write_json
from worldsim.zoo import resolve_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the JSON results")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--env-id", default="MiniGrid-DoorKey-8x8-v0")
    p.add_argument("--checkpoint", default=None, help="world model (default: the one shipped for --env-id)")
    p.add_argument("--sb3-real-steps", type=int, default=16_384)
    p.add_argument("--sb3-dream-steps", type=int, default=16_384)
    p.add_argument("--native-envs", default="1024,4096", help="comma-separated dream batch sizes")
    p.add_argument("--native-steps", type=int, default=64, help="native PPO rollout length in the dream")
    p.add_argument("--native-minibatch", type=int, default=8192)
    p.add_argument("--native-iterations", type=int, default=6, help="iterations per native dream line")
    p.add_argument("--native-real-steps", type=int, default=32_768)
    p.add_argument("--quick", action="store_true", help="tiny budgets: a smoke test")
    return p.parse_args(argv)


def sb3_line(env_id, where, steps, num_envs, params, checkpoint, device) -> dict:
    from stable_baselines3 import PPO

    venv = make_env(env_id, where, num_envs, 0, checkpoint, device)
    model = PPO("MlpPolicy", venv, seed=0, device=device, policy_kwargs=policy_kwargs_for("cnn"), **params)
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    venv.close()
    return {"steps": int(model.num_timesteps), "seconds": seconds, "agent_steps_per_s": model.num_timesteps / seconds,
            "num_envs": num_envs, "hyperparams": params, "device": str(model.device)}


def native_line(env_id, where, num_envs, settings, iterations, checkpoint, device) -> dict:
    envs = make_torch_env(env_id, where, num_envs, checkpoint=checkpoint, device=device)
    batch = num_envs * settings.num_steps
    _, history = train_ppo(envs, total_steps=batch * iterations, settings=settings, seed=0)
    envs.close()
    first, last = history[0], history[-1]
    steady = (last["steps"] - first["steps"]) / (last["seconds"] - first["seconds"]) if len(history) > 1 else None
    return {"steps": last["steps"], "seconds": last["seconds"], "agent_steps_per_s": steady,
            "agent_steps_per_s_with_first_iteration": last["steps"] / last["seconds"],
            "first_iteration_seconds": first["seconds"], "num_envs": num_envs,
            "hyperparams": {"num_steps": settings.num_steps, "minibatch_size": settings.minibatch_size,
                            "epochs": settings.epochs}, "device": str(envs.device)}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.sb3_real_steps, args.sb3_dream_steps, args.native_envs = 1024, 256, "8"
        args.native_steps, args.native_minibatch, args.native_iterations, args.native_real_steps = 8, 32, 2, 512
    checkpoint = resolve_checkpoint(args.checkpoint, args.env_id)
    device_name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" \
        else platform.processor() or "cpu"
    results = {"benchmark": "agent_speed", "device": device_name, "cpu_cores": os.cpu_count(),
               "torch": torch.__version__, "env_id": args.env_id, "checkpoint": str(checkpoint), "rows": {}}
    rows = results["rows"]

    def report(name: str, row: dict) -> None:
        rows[name] = row
        write_json(args.out, results)           # as results come: a run cut short keeps them
        print(f"{name:<34} {row['agent_steps_per_s']:>12,.0f} agent-steps/s ({row['steps']:,} steps, "
              f"{row['seconds']:.1f} s)", flush=True)

    torch.set_num_threads(1)     # the one-core line, and the policy updates of the CPU lines
    report("sb3_ppo_real_one_core", sb3_line(args.env_id, "real", args.sb3_real_steps, 8,
                                             DEFAULT_HYPERPARAMS["ppo"], None, "cpu"))
    dream_params = dict(n_steps=128, batch_size=256, n_epochs=4, ent_coef=0.01, learning_rate=5e-4)
    if args.quick:
        dream_params.update(n_steps=32, batch_size=32)
    report("sb3_ppo_dream_64_envs", sb3_line(args.env_id, "dream", args.sb3_dream_steps, 8 if args.quick else 64,
                                             dream_params, checkpoint, args.device))
    for n in (int(v) for v in args.native_envs.split(",") if v):
        settings = PPOSettings(num_steps=args.native_steps, minibatch_size=args.native_minibatch)
        report(f"native_ppo_dream_{n}_envs", native_line(args.env_id, "dream", n, settings, args.native_iterations,
                                                         checkpoint, args.device))
    real_settings = PPOSettings(num_steps=8 if args.quick else 128)
    report("native_ppo_real_16_envs", native_line(args.env_id, "real", 16, real_settings,
                                                  max(2, args.native_real_steps // (16 * real_settings.num_steps)),
                                                  None, "cpu"))
    base = rows["sb3_ppo_real_one_core"]["agent_steps_per_s"]
    ratios = {name: row["agent_steps_per_s"] / base for name, row in rows.items() if row["agent_steps_per_s"]}
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.1f}x SB3 PPO in the real env on one core")
    results["ratio_to_sb3_real_one_core"] = ratios
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
