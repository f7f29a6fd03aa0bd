"""Imports point one way, benchmarks -> train -> agents -> envs -> worldsim: the contract in pyproject.toml,
checked by import-linter (function-level imports included)."""

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_one_way(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
