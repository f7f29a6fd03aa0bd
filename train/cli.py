"""The `worldsim` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, quick=args.quick, seed=args.seed, device=args.device)
    return 0


def _models(args: argparse.Namespace) -> int:
    from worldsim.zoo import shipped_models

    models = shipped_models()
    if not models:
        print("no world models are shipped in this installation")
        return 0
    rows = [("gym id", "real env", "params", "MB", "next-frame acc", "dream/real success")]
    for m in models:
        c = m.card
        lvr = c.get("learned_vs_real") or {}
        ratio = lvr.get("success_ratio_dream_over_real")
        rows.append((m.dream_id, m.env_id, f"{c['model']['parameters'] / 1e6:.2f} M",
                     f"{c['model']['file_bytes'] / 2**20:.1f}", f"{c['metrics']['eval/acc']:.3f}",
                     "-" if ratio is None else f"{ratio:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    if args.verbose:
        for m in models:
            print(f"\n{m.dream_id}: {m.path}\n  card: {m.path / 'README.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worldsim", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="the shipped Empty-8x8 world model: a dream-vs-real GIF, PPO trained in the dream, the learned-vs-real table",
        description="Offline, on the world model shipped for MiniGrid-Empty-8x8-v0: dream an episode beside the "
        "real env under the same actions (GIF), train PPO in the dream and in the real env with the same budget, "
        "evaluate both in the real env and print the learned-vs-real table. A few minutes on 2 CPU cores; "
        "uses the GPU when there is one.",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="tiny budgets, seconds instead of minutes (used by CI)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the GIF's episode (default: 0)")
    demo.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda (default: auto)")
    demo.set_defaults(run=_demo)

    models = commands.add_parser(
        "models", help="list the world models shipped with worldsim (gym ids that work offline)",
        description="List the pretrained world models inside the package: the gym id that loads each, "
        "its real env, size and headline numbers from its model card.")
    models.add_argument("--verbose", action="store_true", help="also print where each model and its card are")
    models.set_defaults(run=_models)

    from agents.benchmark import add_benchmark_parser
    from agents.cli import add_agent_parser

    from .collect import add_collect_parser
    from .play import add_play_parser
    from .trainer import add_train_parser

    add_collect_parser(commands)
    add_train_parser(commands)
    add_play_parser(commands)
    add_agent_parser(commands)
    from .memory_benchmark import add_memory_parser
    from .scaling_benchmark import add_scaling_parser

    benchmark_commands = add_benchmark_parser(commands)
    add_memory_parser(benchmark_commands)
    add_scaling_parser(benchmark_commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv[1:]          # the command's own arguments (`train --gpus N` relaunches with them)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
