"""Data-parallel scaling of the trainer: tokens/s on 1 GPU vs N GPUs at the same per-GPU batch.

    python3 benchmarks/ddp_scaling.py --data runs/data/doorkey8 --gpus 1,2 --out docs/benchmarks/ddp_scaling.json

Runs `worldsim train --gpus G` for each G (same model, per-GPU batch, window length and steps), reads
the logged `train/tokens_per_s` (all ranks' tokens per second of step time), skips the first
`--warmup` steps, and prints a table: tokens/s, the speed-up over the first G, and the scaling
efficiency (speed-up / (G / first G)). Writes the numbers and the GPU's name as JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def run(data: str, gpus: int, args, workdir: Path) -> float:
    out = workdir / f"run_{gpus}"
    cmd = [sys.executable, "-m", "train.cli", "train", "--data", data, "--out", str(out), "--gpus", str(gpus),
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--curriculum", f"0:{args.length}",
           "--warmup-steps", "10", "--log-every", "1", "--eval-at-end", "false", "--save-every", "0",
           "--tensorboard", "false", "--progress", "false", "--rollout-episodes", "0"]
    subprocess.run(cmd, check=True)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rates = [x["train/tokens_per_s"] for x in lines if "train/tokens_per_s" in x and x["step"] > args.warmup]
    return float(np.median(rates))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset folder (worldsim collect)")
    p.add_argument("--gpus", default="1,2", help="GPU counts to compare (default: 1,2)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the rate (default: 10)")
    p.add_argument("--batch-size", type=int, default=16, help="per GPU (default: 16)")
    p.add_argument("--length", type=int, default=256, help="window length in frames (default: 256)")
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args()
    counts = [int(g) for g in args.gpus.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rates = {g: run(args.data, g, args, Path(tmp)) for g in counts}
    base_g, base = counts[0], rates[counts[0]]
    rows = [{"gpus": g, "tokens_per_s": r, "speedup": r / base, "efficiency": (r / base) / (g / base_g)}
            for g, r in rates.items()]
    print(f"{'GPUs':>4}  {'tokens/s':>12}  {'speed-up':>8}  {'efficiency':>10}")
    for r in rows:
        print(f"{r['gpus']:>4}  {r['tokens_per_s']:>12,.0f}  {r['speedup']:>8.2f}  {r['efficiency']:>10.2f}")
    result = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "per_gpu_batch": args.batch_size, "length": args.length, "steps": args.steps,
              "warmup_steps_skipped": args.warmup, "data": args.data, "rows": rows}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
