"""`worldsim tokenizer`'s command line: train a frame tokenizer on random-play frames of an image env
and write it with a report of how well it reconstructs held-out frames."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

from worldsim.checks import output_folder, positive_int

from .flags import parse_bool

REPORT_NAME = "report.json"
# Held-out frames come from env copies seeded this far from the training ones: other layouts.
HELDOUT_SEED_OFFSET = 1_000_000


def _levels(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--levels must be comma-separated ints such as 8,5,5,5; got {text!r}") from None


def _run(args: argparse.Namespace) -> int:
    import torch

    from envs.images.sources import image_env
    from envs.images.tokenizer import CONFIG_NAME, TokenizerConfig
    from worldsim.json_io import write_json
    from worldsim.runtime import resolve_device

    from .tokenizer import TokenizerTraining, policy_frames, reconstruction, train_tokenizer

    try:
        env = image_env(args.env)
        image_shape = tuple(int(v) for v in env.observation_space.shape)
        env.close()
        config = TokenizerConfig(image_shape=image_shape, patch=args.patch, levels=args.levels, width=args.width,
                                 blocks=args.blocks)
        training = TokenizerTraining(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        positive_int("frames", args.frames)
        positive_int("heldout_frames", args.heldout_frames)
        device = resolve_device(args.device)
        if device.type == "cpu":
            torch.set_num_threads(positive_int("threads", args.threads))
        if (Path(args.out) / CONFIG_NAME).exists():
            raise ValueError(f"--out {args.out!r} already holds a tokenizer; choose a new folder")
        out = output_folder(args.out)
    except ValueError as e:
        print(f"worldsim tokenizer: error: {e}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        frames = policy_frames(args.env, args.frames, args.seed, args.policy, args.epsilon)
        heldout = policy_frames(args.env, args.heldout_frames, args.seed + HELDOUT_SEED_OFFSET, args.policy,
                                args.epsilon)
    except ValueError as e:
        print(f"worldsim tokenizer: error: {e}", file=sys.stderr)
        return 1
    print(f"{args.env}: {len(frames):,} training and {len(heldout):,} held-out frames of {config.image_shape} -> "
          f"{config.frame_shape} tokens, vocabulary {config.vocab_size}")
    tokenizer, history = train_tokenizer(frames, config, training, device=device, heldout=heldout,
                                         progress=args.progress)
    tokenizer.save(out)
    report = {"env_id": args.env, "frames_from": {"policy": args.policy, "epsilon": args.epsilon},
              "tokenizer": config.to_dict(), "training": asdict(training),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "seconds": time.perf_counter() - start, "train": reconstruction(tokenizer, frames[:len(heldout)]),
              "heldout": reconstruction(tokenizer, heldout), "history": history}
    write_json(out / REPORT_NAME, report)
    h = report["heldout"]
    print(f"held-out frames: PSNR {h['psnr_mean']:.2f} dB (min {h['psnr_min']:.2f}), SSIM "
          f"{h['ssim_mean'] if h['ssim_mean'] is not None else float('nan'):.4f}, exact {h['exact_frame_rate']:.4f}; "
          f"{h['tokens_used']} of {h['vocab_size']} tokens used")
    print(f"wrote {out} ({CONFIG_NAME}, weights, {REPORT_NAME})")
    return 0


def add_tokenizer_parser(subparsers, help: str | None = None) -> argparse.ArgumentParser:
    """Register `tokenizer` on the `worldsim` command's subparsers."""
    p = subparsers.add_parser(
        "tokenizer", help=help,
        description="Train a frame tokenizer (finite scalar quantization over image patches) for an env with image "
        "observations, on frames of random play or of a collection policy, and report its "
        "reconstruction of frames from other seeds (PSNR, SSIM, exact frames). MiniGrid envs are read through their "
        "RGB partial view.")
    p.add_argument("--env", required=True, help="gymnasium id of an env with uint8 image observations and Discrete "
                   "actions, or a MiniGrid id")
    p.add_argument("--out", required=True, help="new folder for the tokenizer and its report")
    p.add_argument("--frames", type=int, default=20_000, help="training frames (default: 20000)")
    p.add_argument("--policy", default="random",
                   help="what plays the frames: 'random', or a policy of `worldsim collect` for the env (MiniGrid: "
                   "'expert', 'explore'; Memory Maze: 'walk'; an agent folder); the tokenizer must see the tiles an "
                   "agent will meet (default: random)")
    p.add_argument("--epsilon", metavar="E|LOW:HIGH", default=None,
                   help="mix the policy with random actions, as `worldsim collect --epsilon` (default: none)")
    p.add_argument("--heldout-frames", type=int, default=2_000, help="held-out frames, from other seeds (default: 2000)")
    p.add_argument("--patch", type=int, default=8, help="pixels per token side (default: 8)")
    p.add_argument("--levels", type=_levels, default=(8, 5, 5, 5),
                   help="FSQ levels per latent number; the vocabulary is their product (default: 8,5,5,5 = 1000)")
    p.add_argument("--width", type=int, default=64, help="channels of the conv net (default: 64)")
    p.add_argument("--blocks", type=int, default=2, help="residual blocks in encoder and decoder (default: 2)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps (default: 2000)")
    p.add_argument("--batch-size", type=int, default=64, help="frames per step (default: 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default: 0.001)")
    p.add_argument("--seed", type=int, default=0, help="seed of the env copies and of training (default: 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch on a CPU device (default: 1)")
    p.add_argument("--progress", type=parse_bool, default=True, metavar="BOOL",
                   help="show a progress bar (default: true)")
    p.set_defaults(run=_run)
    return p
