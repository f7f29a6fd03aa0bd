"""`worldsim --help` and every subcommand's help read as plain text for a user, and `worldsim --help`
starts without importing the heavy modules (torch, Stable-Baselines3, MiniGrid)."""

import argparse
import subprocess
import sys

import pytest

from train.cli import COMMANDS, build_parser

# Names from the code that mean nothing to a user of the command line.
INTERNAL_NAMES = ("TrainConfig", "WorldModelConfig", "save_pretrained", "train.evaluation", "worldsim.data", "envs.minigrid")

def _parsers(parser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


PARSERS = dict(_parsers(build_parser()))


@pytest.mark.parametrize("path", [pytest.param(path, id=" ".join(("worldsim", *path))) for path in PARSERS])
def test_help_is_plain_text_with_a_help_line_for_every_option(path):
    parser = PARSERS[path]
    text = parser.format_help()
    assert "%%" not in text and "``" not in text, text
    assert not [name for name in INTERNAL_NAMES if name in text], text
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        words = (action.help or "").split("(default:")[0].strip()
        assert words, f"worldsim {' '.join(path)} {'/'.join(action.option_strings)} has no help"


def test_the_quick_command_list_matches_the_commands():
    """main() lists the commands it does not build by COMMANDS' lines: the same text as the full parser."""
    assert build_parser(full=[]).format_help() == build_parser().format_help()
    assert list(COMMANDS) == [path[0] for path in PARSERS if len(path) == 1]


@pytest.mark.parametrize("argv", [["--help"], ["demo", "--help"], ["models", "--help"]])
def test_help_starts_without_heavy_imports(argv):
    code = ("import sys\nfrom train.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'stable_baselines3', 'minigrid', 'scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    assert "usage: worldsim" in out and "HEAVY []" in out, out
