"""`worldsim collect`'s command line: its parser, and the run that collects (``train.collect``) or
verifies a dataset."""

from __future__ import annotations

import argparse
import sys

from worldsim.data.dataset import verify_dataset

from .collect import VIEWS, collect


def _run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        report = verify_dataset(args.verify)
        print(report)
        return 0 if report.ok else 1
    missing = [flag for flag, value in (("--env", args.env), ("--episodes", args.episodes), ("--out", args.out))
               if value is None]
    if missing:
        args.collect_parser.error(f"the following arguments are required (unless --verify): {', '.join(missing)}")
    try:
        summary = collect(args.env, policy=args.policy, episodes=args.episodes, out=args.out,
                          max_steps=args.max_steps, num_envs=args.num_envs, seed=args.seed,
                          shard_episodes=args.shard_episodes, vectorization=args.vector,
                          deterministic=args.deterministic, epsilon=args.epsilon, view=args.view,
                          tokenizer=args.tokenizer)
    except KeyboardInterrupt:
        print(f"interrupted: finished shards are in {args.out}; run the same command again to continue",
              file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:                          # DatasetError is a ValueError
        print(f"worldsim collect: error: {e}", file=sys.stderr)
        return 1
    total = summary["dataset"]
    print(f"{args.out}: {total['episodes']} episodes, {total['steps']} steps "
          f"(this run: {summary['collected_episodes']} episodes, {summary['collected_steps']} steps, "
          f"{summary['steps_per_s']:.0f} steps/s)")
    return 0


def add_collect_parser(subparsers, help: str | None = None) -> argparse.ArgumentParser:
    """Register `collect` on the `worldsim` command's subparsers."""
    p = subparsers.add_parser(
        "collect", help=help,
        description="Run a policy in copies of a real env and write episodes (token frames, actions, "
        "rewards, terminations, agent poses) as checksummed .npz shards plus manifest.json. A MiniGrid env is "
        "recorded in one of its views; any other env with image observations and Discrete actions or a Box "
        "of floats (e.g. CrafterReward-v1) as its images, through a frame tokenizer (--tokenizer). Episode k is "
        "reset with seed SEED + k; re-running with the same --out continues an interrupted run. "
        "With --verify DIR, check a dataset instead and exit 1 on problems.",
    )
    p.add_argument("--env", help="gymnasium id: a MiniGrid env, e.g. MiniGrid-FourRooms-v0, or an env of images with "
                   "Discrete or Box actions, e.g. CrafterReward-v1 or MemoryMaze-9x9-v0")
    p.add_argument("--policy", default="random",
                   help="'random', 'explore' (covers the layout and comes back), 'expert' (scripted: explores, "
                   "fetches keys, unlocks doors, walks to the goal), 'retrace:C' / 'reasoning:C' (memory tasks: "
                   "C steps of explore, then back along the path / on to seen places by new routes; in Memory Maze "
                   "'walk', to random cells along shortest paths, and 'retrace:C'), a folder written "
                   "by `worldsim agent train`, or a Stable-Baselines3 PPO/A2C/DQN model .zip trained on the image "
                   "(ImgObsWrapper) or Dict(image, direction) observation; an SB3 zip runs code as it loads (pickle): "
                   "use only zips you trust (default: random)")
    p.add_argument("--episodes", type=int, help="episodes the dataset should hold (seeds SEED .. SEED+N-1)")
    p.add_argument("--out", help="dataset folder (created, or continued if it holds the same kind of dataset)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="episode step limit, replacing the env's own (default: the env's; an env of images without one "
                   "needs it)")
    p.add_argument("--num-envs", type=int, default=4, help="env copies stepped together (default: 4)")
    p.add_argument("--vector", choices=("sync", "async"), default="sync",
                   help="gymnasium vector env: 'sync' steps copies in this process, 'async' one process per "
                   "copy (default: sync, faster for MiniGrid on few cores)")
    p.add_argument("--seed", type=int, default=0, help="first episode's reset seed (default: 0)")
    p.add_argument("--shard-episodes", type=int, default=64, help="episodes per shard file (default: 64)")
    p.add_argument("--deterministic", action="store_true",
                   help="with a Stable-Baselines3 policy: take its most likely action instead of sampling")
    p.add_argument("--epsilon", metavar="E|LOW:HIGH", default=None,
                   help="replace each action by a random one with probability E, or with a probability drawn "
                   "per episode from [LOW, HIGH]: e.g. an expert with 0:1 gives data from expert to random "
                   "walk (default: none)")
    p.add_argument("--view", choices=sorted(VIEWS), default=None,
                   help="what a frame of a MiniGrid env records: 'world', the whole grid with the agent, north up (a dream starts from "
                   "the real layout and shows the agent its view of the dreamed grid: measured, its agents transfer "
                   "far better); 'ego', the agent's egocentric view (the dream imagines everything out of sight); or "
                   "'map', the cells it sees now placed on the world grid, the rest unseen (the memory benchmark's "
                   "allocentric variant, not a dream); or 'rgb', the agent's view in pixels as MiniGrid's RGB partial view draws "
                   "it, made into tokens by the frame tokenizer --tokenizer. Other envs record their images, 'rgb' "
                   "(default: world for MiniGrid, rgb for other envs)")
    p.add_argument("--tokenizer", metavar="DIR", help="for view rgb: a folder written by `worldsim tokenizer` for this "
                   "env; it is copied into the dataset folder")
    p.add_argument("--verify", metavar="DIR", help="check the dataset in DIR, print a summary, exit 1 on problems")
    p.set_defaults(run=_run, collect_parser=p)
    return p
