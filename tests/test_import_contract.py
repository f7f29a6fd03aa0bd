"""Imports point one way, benchmarks -> train -> agents -> envs -> worldsim: the contract in pyproject.toml,
checked by import-linter (function-level imports included)."""

from pathlib import Path

import pytest

lint_imports = pytest.importorskip("importlinter.cli").lint_imports   # a test extra; absent on GPU machines

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_one_way(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0
