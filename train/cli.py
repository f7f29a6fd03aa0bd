"""The `worldsim` command line."""

from __future__ import annotations

import argparse
import sys


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    summary = run_demo(out_dir=args.out, quick=args.quick, seed=args.seed)
    ok = summary["state_bytes_constant"] and summary["checkpoint_round_trip_exact"]
    return 0 if ok else 1


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
    add_benchmark_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
