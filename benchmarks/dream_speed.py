"""Dream env throughput: DreamVectorEnv env-steps/s versus num_envs and step mode, beside the real env.

For each num_envs and step mode, a DreamVectorEnv over the world model is reset and stepped with
uniform random actions; after warm-up (which includes CUDA-graph capture and compilation), steps are
timed for about ``--seconds`` (synchronising the device at the end). Step modes:

- eager: the step as plain PyTorch calls;
- graphs: the whole env step captured once as a CUDA graph and replayed (the default on CUDA);
- compiled: the model step under ``torch.compile`` (compiled again for every batch size, so only at
  ``--compile-envs``);
- compiled+graphs: both.

Observations: "torch" keeps them on the device (``return_torch=True``, for GPU-native agents);
"numpy" decodes them to numpy at the boundary (what SB3 gets). Reported: env-steps/s = num_envs x
steps / seconds.

Also measured in the same run: the per-step time of the env far into an episode (frame 10,000)
over near its start (frame 100), with truncation moved out of the way; the real env through
gymnasium on one core (one env, and a batch of envs in one process) and on all cores
(AsyncVectorEnv, one process per core); and envpool's MiniGrid on all cores when envpool is
installed (an optional benchmark dependency).

Run (from the repository root):

    PYTHONPATH=. python3 benchmarks/dream_speed.py --quick --device cpu --out runs/dream_speed.json
    PYTHONPATH=. python3 benchmarks/dream_speed.py --device cuda --out dream_speed.json
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import time

import gymnasium as gym
import numpy as np
import torch

from worldsim import DreamVectorEnv, WorldModel
from worldsim.json_io import write_json
from worldsim.simulator import load_world_model
from worldsim.zoo import resolve_checkpoint

MODES = ("eager", "graphs", "compiled", "compiled+graphs")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the JSON results")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--checkpoint", default="MiniGrid-DoorKey-8x8-v0",
                   help="world model: a checkpoint folder or a shipped model's id (default: the DoorKey-8x8 one)")
    p.add_argument("--num-envs", default="1,16,256,1024,4096,16384", help="comma-separated batch sizes")
    p.add_argument("--modes", default="eager,graphs", help=f"step modes at every batch size, of {MODES}")
    p.add_argument("--compile-envs", default="4096,16384",
                   help="batch sizes also timed compiled and compiled+graphs (empty: none)")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per configuration (about)")
    p.add_argument("--warmup", type=int, default=5, help="steps before timing")
    p.add_argument("--long-frames", type=int, default=10_000, help="frame of the late per-step timing")
    p.add_argument("--long-envs", default="1,64", help="batch sizes of the frame 100 vs late timing")
    p.add_argument("--real-envs", type=int, default=64, help="batch of the one-process real env line")
    p.add_argument("--cores", type=int, default=os.cpu_count(), help="processes / threads of the all-cores lines")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "triton"), help="SSD scan backend")
    p.add_argument("--profile-envs", type=int, default=0,
                   help="also print the top GPU kernels of eager and compiled steps at this batch size")
    p.add_argument("--skip-real", action="store_true", help="time the dream only")
    p.add_argument("--quick", action="store_true", help="few envs and seconds: a smoke test")
    return p.parse_args(argv)


def make_env(model: WorldModel, args, n: int, mode: str, return_torch: bool, max_episode_steps=None):
    cuda = torch.device(args.device).type == "cuda"
    if "graphs" in mode and not cuda:
        return None
    return DreamVectorEnv(model, num_envs=n, device=args.device, return_torch=return_torch, start_pool=min(n, 256),
                          compile="compiled" in mode, cuda_graphs=cuda and "graphs" in mode,
                          max_episode_steps=max_episode_steps)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_steps(env, steps_or_seconds: tuple[int | None, float | None], warmup: int, seed: int = 0) -> dict:
    """Step `env` with random actions: `warmup` steps, then a fixed number of steps or about `seconds`."""
    n = env.num_envs
    gen = torch.Generator().manual_seed(seed)
    pool = torch.randint(0, 7, (64, n), generator=gen)
    actions = pool.to(env.device) if env.return_torch else pool.numpy()
    env.reset(seed=seed)
    start = time.perf_counter()
    for i in range(warmup):
        env.step(actions[i % 64])
    _sync(env.device)
    warm_s = time.perf_counter() - start
    steps, seconds = steps_or_seconds
    done, start = 0, time.perf_counter()
    while True:
        env.step(actions[done % 64])
        done += 1
        if steps is not None and done >= steps:
            break
        if seconds is not None and done % 8 == 0:
            _sync(env.device)
            if time.perf_counter() - start >= seconds:
                break
    _sync(env.device)
    elapsed = time.perf_counter() - start
    return {"steps": done, "seconds": elapsed, "env_steps_per_s": n * done / elapsed, "warmup_seconds": warm_s}


def long_episode_ratio(model, args, n: int) -> dict:
    """Seconds per step around frame 100 and around frame `long_frames`, in one episode."""
    # Speed does not depend on the weights: a copy whose termination head never fires keeps every
    # episode going to the late frame (the real weights end some episodes, which restarts them).
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.step_head[2].weight[1].zero_()
        model.step_head[2].bias[1] = -20.0
    env = make_env(model, args, n, "graphs" if torch.device(args.device).type == "cuda" else "eager", True,
                   max_episode_steps=10 * args.long_frames)
    gen = torch.Generator().manual_seed(1)
    actions = torch.randint(0, 7, (64, n), generator=gen).to(env.device)
    env.reset(seed=0)
    window, marks, t = 50, {}, 0
    for target in (100, args.long_frames):
        while t < target - window:
            env.step(actions[t % 64])
            t += 1
        _sync(env.device)
        start = time.perf_counter()
        for _ in range(window):
            env.step(actions[t % 64])
            t += 1
        _sync(env.device)
        marks[target] = (time.perf_counter() - start) / window
    frames = env._state.frame
    return {"num_envs": n, "seconds_per_step_at_100": marks[100], "seconds_per_step_late": marks[args.long_frames],
            "late_frame": args.long_frames, "ratio": marks[args.long_frames] / marks[100],
            "max_frame_reached": int(frames.max()), "min_frame_reached": int(frames.min())}


def profile_step(env) -> str:
    from torch.profiler import ProfilerActivity, profile

    actions = torch.randint(0, 7, (env.num_envs,), device=env.device)
    env.reset(seed=0)
    for _ in range(3):
        env.step(actions)
    _sync(env.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            env.step(actions)
        _sync(env.device)
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=22, max_name_column_width=70)


def time_real(env_id: str, n: int, mode: str, steps: int) -> float:
    import minigrid  # noqa: F401

    kwargs = {"vector_kwargs": {"shared_memory": False}} if mode == "async" else {}   # missions are strings
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode=mode, **kwargs)
    env.reset(seed=0)
    return _random_steps_per_second(env, n, steps)


def _random_steps_per_second(env, n: int, steps: int) -> float:
    """Env-steps/s of a reset vector env of `n` envs under uniform random actions (after 5 warm-up
    steps), timed over `steps` steps; closes the env."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        env.step(rng.integers(0, 7, n))
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, 7, n))
    elapsed = time.perf_counter() - start
    env.close()
    return n * steps / elapsed


def time_envpool(env_id: str, cores: int, steps: int) -> dict:
    try:
        import envpool
    except Exception as e:  # noqa: BLE001 - an optional dependency, absent or broken
        return {"available": False, "why": f"envpool does not import ({type(e).__name__}: {e})"}
    if env_id not in envpool.list_all_envs():
        return {"available": False, "why": f"envpool {envpool.__version__} has no {env_id}"}
    n = 4 * cores
    env = envpool.make_gymnasium(env_id, num_envs=n, num_threads=cores, seed=0)
    env.reset()
    return {"available": True, "version": envpool.__version__, "num_envs": n, "threads": cores,
            "env_steps_per_s": _random_steps_per_second(env, n, steps)}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.num_envs, args.compile_envs, args.seconds, args.warmup = "1,8", "", 0.2, 2
        args.long_frames, args.long_envs, args.real_envs, args.cores = 300, "2", 8, 2
    model = load_world_model(args.checkpoint, torch.device(args.device))
    if args.backend != "auto":
        model = WorldModel.from_pretrained(resolve_checkpoint(args.checkpoint), device=args.device,
                                           backend=args.backend).eval()
    env_id = model.config.metadata["env_id"]
    sizes = [int(v) for v in args.num_envs.split(",") if v]
    compile_sizes = {int(v) for v in args.compile_envs.split(",") if v}
    modes = [m for m in args.modes.split(",") if m]
    bad = sorted(set(modes) - set(MODES))
    if bad:
        raise SystemExit(f"--modes: unknown {bad}; choose from {MODES}")
    device_name = torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" \
        else platform.processor() or "cpu"
    results = {
        "benchmark": "dream_speed", "device": device_name, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
        "checkpoint": str(args.checkpoint), "env_id": env_id, "parameters": sum(p.numel() for p in model.parameters()),
        "scan_backend": args.backend, "precision": "auto (bf16 autocast on CUDA, float32 on CPU)",
        "seconds_per_row": args.seconds, "actions": "uniform random", "rows": [], "long_episode": [], "real": {}}
    rows = results["rows"]
    print(f"{'num_envs':>8} {'mode':>16} {'obs':>6} {'env-steps/s':>12} {'warm-up s':>10}")
    for n in sizes:
        for mode in modes + [m for m in ("compiled", "compiled+graphs") if n in compile_sizes and m not in modes]:
            for obs in ("torch", "numpy"):
                try:
                    env = make_env(model, args, n, mode, obs == "torch")
                    if env is None:
                        continue
                    r = time_steps(env, (None, args.seconds), args.warmup)
                    env.close()
                except Exception as e:  # noqa: BLE001 - record it, time the rest
                    rows.append({"num_envs": n, "mode": mode, "obs": obs, "error": f"{type(e).__name__}: {e}"})
                    print(f"{n:>8} {mode:>16} {obs:>6} failed: {type(e).__name__}: {e}", flush=True)
                    continue
                rows.append({"num_envs": n, "mode": mode, "obs": obs, **r})
                write_json(args.out, results)       # as results come: a run cut short keeps them
                print(f"{n:>8} {mode:>16} {obs:>6} {r['env_steps_per_s']:>12,.0f} {r['warmup_seconds']:>10.1f}",
                      flush=True)
    if args.profile_envs:
        for mode in ("eager", "compiled"):
            print(f"top kernels of a {mode} step at {args.profile_envs} envs:")
            print(profile_step(make_env(model, args, args.profile_envs, mode, True)))
    long_rows = results["long_episode"]
    for n in (int(v) for v in args.long_envs.split(",") if v):
        long_rows.append(r := long_episode_ratio(model, args, n))
        write_json(args.out, results)
        print(f"per-step time at frame {r['late_frame']:,} / frame 100, {r['num_envs']} envs: {r['ratio']:.3f} "
              f"({r['seconds_per_step_late'] * 1e3:.3f} / {r['seconds_per_step_at_100'] * 1e3:.3f} ms)")
    if not args.skip_real:
        real = results["real"]
        real.update({"env_id": env_id,
                     "one_env_one_core": time_real(env_id, 1, "sync", 2000),
                     f"sync_{args.real_envs}_envs_one_core": time_real(env_id, args.real_envs, "sync", 200),
                     f"async_{args.cores}_processes": time_real(env_id, args.cores, "async", 500),
                     "envpool_all_cores": time_envpool(env_id, args.cores, 500)})
        print("real env, env-steps/s:", {k: (round(v) if isinstance(v, float) else v) for k, v in real.items()})
    write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
