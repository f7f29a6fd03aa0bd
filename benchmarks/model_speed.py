"""How fast the world model runs, as an env (recurrent `step`) and in training (parallel forward).

What it measures, for each scan backend (torch always; triton when mamba_ssm imports on CUDA):

1. `step()` latency at frame 100 versus frame 10,000, for batch 1 and a large batch.
   The design promises that a step costs the same at frame 10 and at frame 10,000 and that the
   state never grows; this checks both.
   - "jump": the state is built by 100 real steps, cloned, and the clone's frame counter moved to
     10,000 (its ring of attention slots renumbered to match, see `jump_to_frame`). The two states
     are then timed in alternating rounds, side by side. Cheap at any batch size. The ring's keys
     keep their old rotary phase, which changes the numbers but not the work.
   - "curve" (batch 1): one state really stepped through every frame up to 10,000 + a window,
     every step timed; the median over a window of steps starting at t = 100, 1,000, 10,000.
   Each step is timed alone (synchronize, perf_counter, step, synchronize): the latency an env
   sees. Reported: median ms/step (and spread), state.nbytes at each point (must not change), and
   on CUDA the peak memory a step allocates beyond what was allocated before it.
2. Training forward + backward (loss: cross entropy of the next-frame logits against random
   tokens) versus sequence length T at a fixed batch, bf16 autocast on CUDA, float32 on CPU:
   ms per iteration, tokens/s (B*T*H*W / time) and, on CUDA, peak memory. An out-of-memory
   configuration is recorded as "oom" and the run goes on.

The step path runs in float32 under torch.inference_mode(). Inputs are seeded random tokens;
the model's weights are seeded too, so both backends run the same network.

Run (from the repository root):

    # CPU smoke test, well under a minute:
    PYTHONPATH=. python3 benchmarks/model_speed.py --quick --device cpu --out runs/model_speed.json
    # GPU, the full benchmark (about 2.5 min per backend on an H200, most of it the real
    # 10,000-step run; triton's first calls compile for ~20 s each):
    PYTHONPATH=. python3 benchmarks/model_speed.py --device cuda --out model_speed.json

`--baseline` times a baseline of `worldsim.baselines` instead (same parameter budget). For cost vs
context length, ours beside full causal attention, use `worldsim benchmark scaling`.

It prints a table per measurement and writes every number, the model config, the torch version
and the device name to --out as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import time
from pathlib import Path
from dataclasses import dataclass

import torch

from benchmarks.timing import PeakMemory, free_memory, summary, time_training_lengths, timed_ms
from worldsim.baselines import BASELINES, baseline_config
from worldsim.config import WorldModelConfig
from worldsim.kernels import DEFAULT_CHUNK_SIZE, triton_available
from worldsim.model import WorldModel
from worldsim.state import ModelState

MiB = 2**20


# ---- settings -----------------------------------------------------------------------------------


@dataclass
class Settings:
    step_batches: tuple[int, ...]
    early_frame: int              # the state is built by this many real steps
    late_frame: int               # ... and its clone jumped to this frame
    rounds: int                   # alternating timing rounds (early, late, early, late, ...)
    steps_per_round: int
    curve_checkpoints: tuple[int, ...]  # real stepping at batch 1, timed in windows from these frames
    curve_window: int
    train_batch: int
    train_lengths: tuple[int, ...]
    train_seconds: float          # timing budget per training configuration (sets the iterations)


QUICK = Settings(
    step_batches=(1, 4), early_frame=100, late_frame=10_000, rounds=4, steps_per_round=10,
    curve_checkpoints=(100, 300), curve_window=30,
    train_batch=2, train_lengths=(8, 32), train_seconds=0.5,
)
FULL = Settings(
    step_batches=(1, 1024), early_frame=100, late_frame=10_000, rounds=10, steps_per_round=20,
    curve_checkpoints=(100, 1_000, 10_000), curve_window=200,
    # Batch 4: T=2048 peaks near 54 GiB (measured with the torch scan; batch 8 took 106 GiB on an H200).
    train_batch=4, train_lengths=(32, 128, 512, 2048), train_seconds=5.0,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the JSON results")
    p.add_argument("--quick", action="store_true", help="small batches and lengths: a smoke test")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--backends", default="torch,triton", help="comma-separated scan backends")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=4)
    p.add_argument("--parts", default="jump,curve,train",
                   help="comma-separated subset of jump (step latency at frame 100 vs 10,000), "
                        "curve (really stepping 10,000 frames at batch 1), train (forward+backward vs length)")
    p.add_argument("--train-batch", type=int, default=None, help="override the training batch size")
    p.add_argument("--baseline", default="ours", choices=BASELINES,
                   help="which model (worldsim.baselines; same parameter budget): ours, mamba2, local, causal")
    p.add_argument("--context", type=int, default=None,
                   help="the causal baseline's attention span in frames (default: everything before: the last "
                        "frame stepped, or with --parts train alone the longest training length; its training "
                        "cost grows with the span, so time steps and training in separate runs)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for --quick on CPU, which keeps OpenMP from thrashing "
                        "on small shared machines; otherwise torch's own choice)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda, but torch sees no CUDA device")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in args.backends:
        if b not in ("torch", "triton"):
            p.error(f"unknown backend {b!r}: choose from torch, triton")
    return args


def model_config(args: argparse.Namespace, backend: str, s: Settings, parts: set[str]) -> WorldModelConfig:
    # A MiniGrid-sized model: 7x7 egocentric view, 138 tokens, 7 actions; then the chosen baseline.
    base = WorldModelConfig(
        vocab_size=138, frame_shape=(7, 7), num_actions=7,
        d_model=args.d_model, n_layers=args.n_layers, backend=backend,
    )
    context = None
    if args.baseline == "causal":
        stepped = {"jump": s.late_frame, "curve": max(s.curve_checkpoints) + s.curve_window}
        context = args.context or max([stepped[p] for p in parts if p in stepped] or [max(s.train_lengths)])
    return baseline_config(args.baseline, base, context=context)


# ---- 1. step() latency --------------------------------------------------------------------------


class InputPool:
    """A few seeded random (frame, action) batches on the device, cycled through while stepping."""

    def __init__(self, config: WorldModelConfig, batch: int, device: torch.device, seed: int, size: int = 16):
        g = torch.Generator().manual_seed(seed)
        h, w = config.frame_shape
        self.frames = torch.randint(config.vocab_size, (size, batch, h, w), generator=g).to(device)
        self.actions = torch.randint(config.num_actions, (size, batch), generator=g).to(device)
        self.i = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.i = (self.i + 1) % len(self.frames)
        return self.frames[self.i], self.actions[self.i]


def run_steps(model: WorldModel, state: ModelState, pool: InputPool, n: int) -> None:
    for _ in range(n):
        model.step(state, *pool.next())


def timed_steps(model, state, pool, n, device, peak: PeakMemory) -> list[float]:
    """Per-step latencies (ms) of n steps, each timed on its own."""
    out = []
    for _ in range(n):
        frame, action = pool.next()
        with peak:
            out.append(timed_ms(lambda: model.step(state, frame, action), device))
    return out


def jump_to_frame(state: ModelState, frame: int, window: int) -> None:
    """Move every env's frame counter to `frame` in place, as if it had stepped that far.

    The ring slots are renumbered the way `step` would have filled them: slot j holds the newest
    frame f <= frame - 1 with f % (window + 1) == j (empty, -1, if there is none).
    """
    slots = window + 1
    state.frame.fill_(frame)
    last = state.frame[:, None] - 1
    j = torch.arange(slots, device=state.device)
    slot_frame = last - torch.remainder(last - j, slots)
    state.slot_frame.copy_(slot_frame.masked_fill(slot_frame < 0, -1))


def bench_step_jump(model: WorldModel, batch: int, s: Settings, device: torch.device, seed: int) -> dict:
    """Step latency at s.early_frame vs s.late_frame, the late state reached by a counter jump."""
    cfg = model.config
    pool = InputPool(cfg, batch, device, seed)
    early = model.initial_state(batch, device)
    run_steps(model, early, pool, s.early_frame)  # also the warm-up (triton compiles here)
    late = early.clone()
    jump_to_frame(late, s.late_frame, cfg.attn_window)

    points = {}
    for name, state in (("early", early), ("late", late)):
        points[name] = {"frame": int(state.frame[0]), "ms": [], "peak": PeakMemory(device),
                        "nbytes_before": state.nbytes}
    for _ in range(s.rounds):  # alternate, so drift (clocks, other load) hits both alike
        for name, state in (("early", early), ("late", late)):
            pt = points[name]
            pt["ms"] += timed_steps(model, state, pool, s.steps_per_round, device, pt["peak"])
    results = []
    for name, state in (("early", early), ("late", late)):
        pt = points[name]
        results.append({
            "frame": pt["frame"], "frames_timed": [pt["frame"], int(state.frame[0]) - 1],
            **summary(pt["ms"]),
            "state_nbytes": pt["nbytes_before"], "state_nbytes_after": state.nbytes,
            "step_peak_mem_delta_bytes": pt["peak"].value(),
        })
    nbytes = {r["state_nbytes"] for r in results} | {r["state_nbytes_after"] for r in results}
    return {
        "batch": batch, "points": results,
        "ratio_late_over_early": results[1]["median_ms"] / results[0]["median_ms"],
        "state_nbytes_constant": len(nbytes) == 1,
    }


def bench_step_curve(model: WorldModel, s: Settings, device: torch.device, seed: int) -> dict:
    """Batch 1, really stepping every frame: median latency in a window from each checkpoint."""
    cfg = model.config
    pool = InputPool(cfg, 1, device, seed)
    run_steps(model, model.initial_state(1, device), pool, 20)  # warm-up on a throwaway state
    state = model.initial_state(1, device)
    peak = PeakMemory(device)
    starts = sorted(s.curve_checkpoints)
    total = starts[-1] + s.curve_window
    ms, nbytes = [], {}
    wall = time.perf_counter()
    for t in range(total):
        if t in starts:
            nbytes[t] = state.nbytes
        ms += timed_steps(model, state, pool, 1, device, peak)
    wall = time.perf_counter() - wall
    points = [
        {"frame": t, "frames_timed": [t, t + s.curve_window - 1], **summary(ms[t : t + s.curve_window]),
         "state_nbytes": nbytes[t]}
        for t in starts
    ]
    return {
        "batch": 1, "steps": total, "wall_s": wall, "points": points,
        "ratio_last_over_first": points[-1]["median_ms"] / points[0]["median_ms"],
        "state_nbytes_constant": len(set(nbytes.values()) | {state.nbytes}) == 1,
        "step_peak_mem_delta_bytes": peak.value(),
    }


def bench_step(model: WorldModel, s: Settings, device: torch.device, seed: int, jump: bool, curve: bool) -> dict:
    model.eval()
    out = {"jump": [], "curve": None}
    with torch.inference_mode():
        for batch in s.step_batches if jump else []:
            try:
                out["jump"].append(bench_step_jump(model, batch, s, device, seed))
            except torch.cuda.OutOfMemoryError:
                out["jump"].append({"batch": batch, "status": "oom"})
            free_memory(device)
        if curve:
            out["curve"] = bench_step_curve(model, s, device, seed)
    return out


# ---- 2. training forward + backward -------------------------------------------------------------


def bench_train(model: WorldModel, s: Settings, device: torch.device, seed: int) -> list[dict]:
    return time_training_lengths(model, s.train_batch, s.train_lengths, device, seed, s.train_seconds)


# ---- report -------------------------------------------------------------------------------------


def fmt_ms(x: float) -> str:
    return f"{x:9.3f}" if x < 100 else f"{x:9.1f}"


def fmt_mib(x: int | None) -> str:
    return "        -" if x is None else f"{x / MiB:9.1f}"


def print_tables(results: dict) -> None:
    s = results["settings"]
    threads = f" | {results['cpu_threads']} CPU threads" if results["device"] == "cpu" else ""
    print(f"\nworldsim model speed | torch {results['torch_version']} | {results['device_name']}{threads}")
    print(f"model: d_model={results['model_config']['d_model']} n_layers={results['model_config']['n_layers']} "
          f"frame={results['model_config']['frame_shape']} params={results['num_parameters']:,}")
    for b, info in results["backends"].items():
        if info["status"] != "ok":
            print(f"backend {b}: skipped ({info['reason']})")

    e, l = s["early_frame"], s["late_frame"]
    print(f"\n1a. step() latency, frame counter jumped {e} -> {l} (median ms/step, each step synchronized)")
    print(f"{'backend':8} {'batch':>6} {f't={e}':>9} {f't={l}':>9} {'ratio':>7} "
          f"{'state MiB':>9} {'const':>6} {'peak+ MiB':>9}")
    for b, res in results["step"].items():
        for row in res["jump"]:
            if row.get("status") == "oom":
                print(f"{b:8} {row['batch']:6d}  out of memory")
                continue
            p0, p1 = row["points"]
            print(f"{b:8} {row['batch']:6d} {fmt_ms(p0['median_ms'])} {fmt_ms(p1['median_ms'])} "
                  f"{row['ratio_late_over_early']:7.3f} {fmt_mib(p0['state_nbytes'])} "
                  f"{str(row['state_nbytes_constant']):>6} {fmt_mib(max_or_none(p0, p1))}")

    curves = {b: r["curve"] for b, r in results["step"].items() if r["curve"]}
    if curves:
        ts = s["curve_checkpoints"]
        print(f"\n1b. step() latency, batch 1, really stepped to frame {ts[-1] + s['curve_window']} "
              f"(median ms/step over {s['curve_window']} steps from t)")
        print(f"{'backend':8} " + " ".join(f"{f't={t}':>9}" for t in ts)
              + f" {'ratio':>7} {'const':>6} {'wall s':>7}")
        for b, c in curves.items():
            print(f"{b:8} " + " ".join(fmt_ms(p["median_ms"]) for p in c["points"])
                  + f" {c['ratio_last_over_first']:7.3f} {str(c['state_nbytes_constant']):>6} {c['wall_s']:7.1f}")

    print(f"\n2. training forward+backward, batch {s['train_batch']}, {results['train_precision']}")
    print(f"{'backend':8} {'T':>6} {'ms/iter':>9} {'tokens/s':>11} {'peak MiB':>9}")
    for b, rows in results["train"].items():
        for r in rows:
            if r["status"] == "oom":
                print(f"{b:8} {r['seq_len']:6d}  out of memory")
            else:
                print(f"{b:8} {r['seq_len']:6d} {fmt_ms(r['median_ms'])} {r['tokens_per_s']:11.3g} "
                      f"{fmt_mib(r['peak_mem_bytes'])}")


def max_or_none(*points: dict) -> int | None:
    vals = [p["step_peak_mem_delta_bytes"] for p in points if p["step_peak_mem_delta_bytes"] is not None]
    return max(vals) if vals else None


def environment(device: torch.device) -> dict:
    env = {
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": device.type,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda_version"] = torch.version.cuda
        env["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    else:
        env["device_name"] = cpu_name()
    env["cpu_threads"] = torch.get_num_threads()
    return env


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- main ---------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads is None and args.quick and device.type == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    s = QUICK if args.quick else FULL
    if args.train_batch:
        s = dataclasses.replace(s, train_batch=args.train_batch)
    parts = set(args.parts.split(","))
    if not parts <= {"jump", "curve", "train"}:
        raise SystemExit(f"--parts takes jump, curve and train, got {args.parts!r}")
    results = {
        "benchmark": "model_speed", "baseline": args.baseline, "quick": args.quick, **environment(device),
        "settings": {**vars(s), "seed": args.seed, "parts": sorted(parts)},
        "step_precision": "float32, torch.inference_mode",
        "train_precision": "bf16 autocast" if device.type == "cuda" else "float32",
        "backends": {}, "step": {}, "train": {},
    }
    for backend in args.backends:
        if backend == "triton" and not (device.type == "cuda" and triton_available()):
            why = "needs CUDA" if device.type != "cuda" else "mamba_ssm does not import"
            results["backends"][backend] = {"status": "skipped", "reason": why}
            continue
        torch.manual_seed(args.seed)
        model = WorldModel(model_config(args, backend, s, parts)).to(device)
        # One config for all runs; only the scan backend (the key of each result) differs.
        results["model_config"] = {k: v for k, v in model.config.to_dict().items() if k != "backend"}
        results["num_parameters"] = sum(p.numel() for p in model.parameters())
        results["backends"][backend] = {
            "status": "ok", "chunk_size": model.config.chunk_size or DEFAULT_CHUNK_SIZE[backend],
        }
        start = time.perf_counter()
        print(f"[{backend}] step() ...", flush=True)
        results["step"][backend] = bench_step(model, s, device, args.seed, "jump" in parts, "curve" in parts)
        if "train" in parts:
            print(f"[{backend}] training ...", flush=True)
            results["train"][backend] = bench_train(model, s, device, args.seed)
        results["backends"][backend]["wall_s"] = time.perf_counter() - start
        del model
        free_memory(device)

    if "model_config" not in results:
        raise SystemExit("no backend could run: " + json.dumps(results["backends"]))
    print_tables(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
