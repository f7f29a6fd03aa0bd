"""Dream env throughput: DreamVectorEnv env-steps/s versus num_envs, beside the real MiniGrid env.

For each num_envs: a DreamVectorEnv over a seeded, untrained model of the given size (speed does
not depend on the weights) is reset and stepped with uniform random actions; after warm-up steps,
``--steps`` steps are timed (synchronising the device at the end) in two modes:

- numpy: observations decoded to numpy at the boundary (what SB3 and gymnasium agents get);
- torch: ``return_torch=True``, observations decoded on the device (GPU-native agents).

Reported: env-steps/s = num_envs * steps / seconds. The real env lines: gymnasium's SyncVectorEnv
of the real MiniGrid env with the same num_envs (CPU, one process: one core) and, once, an
AsyncVectorEnv of 16 processes, with the same random actions. ``--profile`` adds the top CUDA
kernels of one dream step at the largest num_envs. Termination is pinned off (an untrained model would end episodes at random);
truncation at the real env's limit still autoresets.

Run (from the repository root):

    PYTHONPATH=. python3 benchmarks/dream_speed.py --quick --device cpu --out runs/dream_speed.json
    PYTHONPATH=. python3 benchmarks/dream_speed.py --device cuda --out dream_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from envs.minigrid import MiniGridCodec
from worldsim import DreamVectorEnv, WorldModel, WorldModelConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the JSON results")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--env-id", default="MiniGrid-Empty-8x8-v0")
    p.add_argument("--num-envs", default="1,16,256,1024", help="comma-separated batch sizes")
    p.add_argument("--steps", type=int, default=100, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--quick", action="store_true", help="tiny model, few envs and steps: a smoke test")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--async-envs", type=int, default=16, help="processes of the async real-env line (0: skip)")
    p.add_argument("--precision", default="auto", choices=("auto", "float32", "bf16"),
                   help="DreamVectorEnv precision (auto: bf16 autocast on CUDA)")
    p.add_argument("--compile", action="store_true", help="DreamVectorEnv(compile=True): torch.compile the step")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"), help="SSD scan backend")
    p.add_argument("--profile", action="store_true", help="print the top kernels of a step at the largest batch")
    return p.parse_args()


def make_model(args) -> WorldModel:
    codec = MiniGridCodec(7)
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(
        vocab_size=codec.vocab_size, frame_shape=codec.frame_shape, num_actions=7, d_model=args.d_model,
        n_layers=args.n_layers, backend=args.backend, metadata={"env_id": args.env_id, "codec": codec.config}))
    with torch.no_grad():
        model.step_head[2].weight[1].zero_()
        model.step_head[2].bias[1] = -20.0
    return model


def time_dream(model, args, n: int, return_torch: bool) -> float:
    env = DreamVectorEnv(model, num_envs=n, device=args.device, return_torch=return_torch, start_pool=n,
                         precision=args.precision, compile=args.compile)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 7, n) for _ in range(args.warmup + args.steps)]
    if return_torch:
        actions = [torch.from_numpy(a).to(env.device) for a in actions]
    for a in actions[: args.warmup]:
        env.step(a)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for a in actions[args.warmup:]:
        env.step(a)
    if env.device.type == "cuda":
        torch.cuda.synchronize()
    return n * args.steps / (time.perf_counter() - start)


def profile_dream(model, args, n: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    env = DreamVectorEnv(model, num_envs=n, device=args.device, return_torch=True, start_pool=n,
                         precision=args.precision, compile=args.compile)
    env.reset(seed=0)
    actions = torch.randint(0, 7, (n,), device=env.device)
    for _ in range(3):
        env.step(actions)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            env.step(actions)
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60)


def time_real(args, n: int, mode: str = "sync") -> float:
    import minigrid  # noqa: F401

    # MiniGrid's mission string cannot live in shared memory.
    kwargs = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}
    env = gym.make_vec(args.env_id, num_envs=n, vectorization_mode=mode, **kwargs)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(args.warmup):
        env.step(rng.integers(0, 7, n))
    start = time.perf_counter()
    for _ in range(args.steps):
        env.step(rng.integers(0, 7, n))
    return n * args.steps / (time.perf_counter() - start)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.d_model, args.n_layers, args.steps, args.warmup = 32, 2, 10, 2
        args.num_envs = "1,8"
    model = make_model(args)
    rows = []
    print(f"{'num_envs':>8} {'dream numpy':>14} {'dream torch':>14} {'real (sync)':>14}   env-steps/s")
    for n in (int(v) for v in args.num_envs.split(",")):
        row = {"num_envs": n, "dream_numpy": time_dream(model, args, n, False),
               "dream_torch": time_dream(model, args, n, True), "real_sync": time_real(args, n)}
        rows.append(row)
        print(f"{n:>8} {row['dream_numpy']:>14.0f} {row['dream_torch']:>14.0f} {row['real_sync']:>14.0f}")
    real_async = None
    if args.async_envs:
        real_async = time_real(args, args.async_envs, "async")
        print(f"real env, AsyncVectorEnv of {args.async_envs} processes: {real_async:.0f} env-steps/s")
    best = max(rows, key=lambda r: r["num_envs"])
    single = min(rows, key=lambda r: r["num_envs"])
    for name, real in ((f"one real env on one core (num_envs={single['num_envs']})", single["real_sync"]),
                       (f"the real SyncVectorEnv of {best['num_envs']} on one core", best["real_sync"])):
        print(f"dream at {best['num_envs']} envs / {name}: {best['dream_numpy'] / real:.1f}x (numpy), "
              f"{best['dream_torch'] / real:.1f}x (torch)")
    if args.profile and args.device.startswith("cuda"):
        print(profile_dream(model, args, best["num_envs"]))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    results = {"rows": rows, "real_async": {"processes": args.async_envs, "env_steps_per_s": real_async},
               "device": device_name, "torch": torch.__version__, "env_id": args.env_id,
               "steps": args.steps, "precision": args.precision, "compile": args.compile, "model": model.config.to_dict()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
