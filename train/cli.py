"""The `worldsim` command line. Each command's modules are imported only when it runs."""

from __future__ import annotations

import argparse
import os
import re
import sys


class _Parser(argparse.ArgumentParser):
    """argparse takes an argument that starts with "-" for a value only if it reads as a negative
    number ("-1", "-.5"); "--curriculum -1:32" or "--lr -1e-3" would fail as "expected one argument".
    Here "-" and a digit always start a value, so that the option's own check says what is wrong
    with it. No option of worldsim is spelt "-<digit>". Subparsers inherit the class."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"-\.?\d")


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


def _add_demo(commands) -> None:
    from benchmarks.cli import add_demo_parser

    add_demo_parser(commands, help=COMMANDS["demo"])


def _add_models(commands) -> None:
    models = commands.add_parser(
        "models", help=COMMANDS["models"],
        description="List the pretrained world models inside the package: the gym id that loads each, "
        "its real env, size and headline numbers from its model card.")
    models.add_argument("--verbose", action="store_true", help="also print where each model and its card are")
    models.set_defaults(run=_models)


def _add_collect(commands) -> None:
    from .collect_cli import add_collect_parser

    add_collect_parser(commands, help=COMMANDS["collect"])


def _add_train(commands) -> None:
    from .train_cli import add_train_parser

    add_train_parser(commands, help=COMMANDS["train"])


def _add_tokenizer(commands) -> None:
    from .tokenizer_cli import add_tokenizer_parser

    add_tokenizer_parser(commands, help=COMMANDS["tokenizer"])


def _add_learn(commands) -> None:
    from .learn_cli import add_learn_parser

    add_learn_parser(commands, help=COMMANDS["learn"])


def _add_play(commands) -> None:
    from .play import add_play_parser

    add_play_parser(commands, help=COMMANDS["play"])


def _add_agent(commands) -> None:
    from agents.cli import add_agent_parser

    add_agent_parser(commands, help=COMMANDS["agent"])


def _add_benchmark(commands) -> None:
    from benchmarks.cli import add_benchmark_parser

    add_benchmark_parser(commands, help=COMMANDS["benchmark"])


# Every command, in the order `worldsim --help` lists them: its one-line help there and what builds
# its parser. A command's parser imports its modules (torch, Stable-Baselines3, MiniGrid, ...), so
# main() builds only the one being run; `worldsim --help` lists the others by these lines alone.
# Each command's builder takes its line from here.
COMMANDS = {
    "demo": "the shipped Empty-8x8 world model: a dream-vs-real GIF, PPO trained in the dream, the "
            "learned-vs-real table",
    "models": "list the world models shipped with worldsim (gym ids that work offline)",
    "collect": "run a policy in a MiniGrid env (many copies in parallel) and write episodes to a dataset folder",
    "train": "train a world model on a dataset (length curriculum, long context; resumable)",
    "tokenizer": "train a frame tokenizer for an env with image observations (FSQ over patches) and report how "
                 "well it reconstructs frames",
    "learn": "model-based RL from scratch: real data, world model and agent improving together, measured in "
             "real env steps (resumable)",
    "play": "steer through a checkpoint's dream by keyboard (pygame) or from an action list, optionally beside "
            "the real env, and record a GIF",
    "agent": "train a Stable-Baselines3 agent in the dream or the real env, and evaluate it",
    "benchmark": "benchmarks: agents in learned vs real envs, long-context memory, cost vs context length",
}
_BUILDERS = {"demo": _add_demo, "models": _add_models, "collect": _add_collect, "train": _add_train,
             "tokenizer": _add_tokenizer, "learn": _add_learn, "play": _add_play, "agent": _add_agent,
             "benchmark": _add_benchmark}


def build_parser(full: list[str] | None = None) -> argparse.ArgumentParser:
    """The `worldsim` parser. `full`: the commands whose parsers are built (default: all); the
    others are listed by name and help only, and their modules are not imported."""
    parser = _Parser(
        prog="worldsim",
        description="A learned simulator for reinforcement learning: collect episodes of a MiniGrid env, train "
        "a world model on them, use it as a Gymnasium env, and train and evaluate agents in it. "
        "Each command has its own help: worldsim COMMAND --help.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in COMMANDS.items():
        if full is None or name in full:
            _BUILDERS[name](commands)
        else:
            commands.add_parser(name, help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    # OpenMP threads that wait for work by spinning starve everything else on a busy machine: with two
    # torch threads and another program on a 2-core laptop a dream step took 5-10x longer than with
    # threads that sleep while they wait. Read by OpenMP when torch loads, so it is set before that.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(full=[command] if command else []).parse_args(argv)
    args.argv = argv[1:]          # the command's own arguments (`train --gpus N` relaunches with them)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
