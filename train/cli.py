"""The `worldsim` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(out_dir=args.out, quick=args.quick, seed=args.seed)
    ok = summary["state_bytes_constant"] and summary["checkpoint_round_trip_exact"]
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="end-to-end on MiniGrid-Empty-8x8: collect, train a tiny model, check recurrence, save/load",
        description="Collect random MiniGrid episodes, train a tiny world model on CPU with the trainer, and "
        "report held-out next-frame accuracy (beside the copy-previous-frame baseline), open-loop rollout "
        "accuracy, step-vs-forward agreement, state size and a checkpoint round trip.",
    )
    demo.add_argument("--out", default="runs/demo",
                      help="folder for the demo's dataset and its run/ (replaced on each demo; default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="a few seconds instead of a minute (used by CI)")
    demo.add_argument("--seed", type=int, default=0, help="seed for collection, init and sampling")
    demo.set_defaults(run=_demo)

    from agents.benchmark import add_benchmark_parser
    from agents.cli import add_agent_parser

    from .collect import add_collect_parser
    from .play import add_play_parser
    from .trainer import add_train_parser

    add_collect_parser(commands)
    add_train_parser(commands)
    add_play_parser(commands)
    add_agent_parser(commands)
    add_benchmark_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
