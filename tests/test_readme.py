"""The README's commands stay in step with the code: every `worldsim` line parses with the real
command line, every Python block compiles, and only marked blocks are left to a GPU. (Running them
all takes the better part of an hour: `python3 scripts/readme_check.py` does that.)"""

import ast
import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

from train.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("readme_check", ROOT / "scripts" / "readme_check.py")
readme_check = importlib.util.module_from_spec(spec)
sys.modules["readme_check"] = readme_check          # dataclasses look their module up there
spec.loader.exec_module(readme_check)
BLOCKS = readme_check.readme_blocks((ROOT / "README.md").read_text())


def _commands(code: str):
    """Each command of a bash block: continuation lines joined, comments dropped, split at &&."""
    joined = code.replace("\\\n", " ")
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        command = []
        for word in words + ["&&"]:
            if word == "&&":
                if command:
                    yield command
                command = []
            else:
                command.append(word)


WORLDSIM_LINES = [c for b in BLOCKS if b.language == "bash" for c in _commands(b.code)
                  if c and c[0].split("/")[-1] == "worldsim"]


def test_the_readme_has_blocks_to_run_and_marks_gpu_ones():
    assert BLOCKS[0].language == "bash" and "pytest" in BLOCKS[0].code and "worldsim demo" in BLOCKS[0].code
    assert len(readme_check.runnable(BLOCKS)) >= 5
    assert any(b.gpu for b in BLOCKS)
    assert len(WORLDSIM_LINES) >= 8


@pytest.mark.parametrize("argv", WORLDSIM_LINES, ids=lambda argv: " ".join(argv[:4]))
def test_every_worldsim_line_parses(argv):
    build_parser().parse_args(argv[1:])


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.language == "python"], ids=lambda b: f"line {b.line}")
def test_every_python_block_compiles(block):
    ast.parse(block.code)
