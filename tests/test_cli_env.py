"""The command line makes OpenMP's waiting threads sleep (a busy machine stays usable with two torch
threads), unless the user chose a policy. OpenMP reads the policy when torch loads; that the command
line's root imports no torch before main() runs is checked in test_cli_help.py."""

import subprocess
import sys


def _policy_seen_by_openmp(env_value=None):
    """OMP_WAIT_POLICY as the process has it after `worldsim models` ran (torch imported by then)."""
    code = ("import os, sys\nfrom train.cli import main\nmain(['models'])\nimport torch\n"
            "print('POLICY', os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return out.split("POLICY ")[1].split()


def test_the_command_line_sets_a_passive_wait_policy():
    assert _policy_seen_by_openmp() == ["PASSIVE", "True"]


def test_a_policy_the_user_chose_is_kept():
    assert _policy_seen_by_openmp("ACTIVE") == ["ACTIVE", "True"]
