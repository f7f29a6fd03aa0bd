"""SB3 agents: training in the real env and in the dream, evaluation with confidence intervals, the CLI."""

import argparse
import json
import math

import numpy as np
import pytest

from agents.cli import add_agent_parser
from agents.evaluation import evaluate_policy, format_table, mean_interval, wilson_interval
from agents.training import MiniGridCNN, load_policy, parse_hyperparams, train_agent

from conftest import MINIGRID_ENV_ID, tiny_minigrid_model

REAL_ID = "MiniGrid-Empty-5x5-v0"


@pytest.fixture(scope="module")
def never_done(tmp_path_factory):
    path = tmp_path_factory.mktemp("agents") / "never_done"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(path)   # episodes end by truncation
    return path


@pytest.fixture(scope="module")
def always_done(tmp_path_factory):
    path = tmp_path_factory.mktemp("agents") / "always_done"
    tiny_minigrid_model(done_bias=20.0).save_pretrained(path)    # every episode terminates after 1 step
    return path


@pytest.fixture(scope="module")
def real_agent(tmp_path_factory):
    out = tmp_path_factory.mktemp("agents") / "real"
    info = train_agent(REAL_ID, where="real", algo="ppo", steps=256, out=out, num_envs=2, seed=0, device="cpu")
    return out, info


@pytest.fixture(scope="module")
def dream_agent(tmp_path_factory, never_done):
    out = tmp_path_factory.mktemp("agents") / "dream"
    info = train_agent(MINIGRID_ENV_ID, where="dream", algo="ppo", steps=256, out=out, checkpoint=never_done,
                       num_envs=2, seed=0, device="cpu", max_episode_steps=8)
    return out, info


def _check_written(out, info, where):
    assert (out / "policy.zip").is_file()
    saved = json.loads((out / "agent.json").read_text())
    assert saved["where"] == where and saved["algo"] == "ppo" and saved["steps"] == 256 and saved["seed"] == 0
    assert saved["num_timesteps"] >= 256 and saved["hyperparams"]["n_steps"] == 128
    assert info["policy_path"] == str(out / "policy.zip")
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    return saved


# ---------------------------------------------------------------------------------------- training


def test_train_real_writes_policy_json_and_tensorboard(real_agent):
    out, info = real_agent
    saved = _check_written(out, info, "real")
    assert saved["env_id"] == REAL_ID and saved["checkpoint"] is None
    model, loaded = load_policy(out, device="cpu")
    assert isinstance(model.policy.features_extractor, MiniGridCNN) and loaded == saved


def test_train_dream_writes_policy_json_and_tensorboard(dream_agent, never_done):
    out, info = dream_agent
    saved = _check_written(out, info, "dream")
    assert saved["env_id"] == MINIGRID_ENV_ID and saved["checkpoint"] == str(never_done.resolve())


@pytest.mark.parametrize("algo, params", [("a2c", {}), ("dqn", {"learning_starts": 32, "buffer_size": 512})])
def test_other_algorithms_train_in_the_real_env(tmp_path, algo, params):
    info = train_agent(REAL_ID, where="real", algo=algo, steps=64, out=tmp_path, num_envs=1, seed=0,
                       device="cpu", features="mlp", hyperparams=params)
    assert info["algo"] == algo and (tmp_path / "policy.zip").is_file()
    model, saved = load_policy(tmp_path / "policy.zip", device="cpu")
    assert type(model).__name__ == algo.upper() and saved["algo"] == algo


def test_training_errors(tmp_path, never_done):
    with pytest.raises(ValueError, match="checkpoint"):
        train_agent(REAL_ID, where="dream", steps=10, out=tmp_path)
    with pytest.raises(ValueError, match="unknown algo 'sac'"):
        train_agent(REAL_ID, where="real", algo="sac", steps=10, out=tmp_path)
    with pytest.raises(ValueError, match="steps"):
        train_agent(REAL_ID, where="real", steps=0, out=tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train_agent(REAL_ID, where="dream", checkpoint=tmp_path / "nope", steps=10, out=tmp_path)
    with pytest.raises(ValueError, match="unknown real env"):
        train_agent("MiniGrid-Nope-v0", where="real", steps=10, out=tmp_path)
    with pytest.raises(ValueError, match="trained on"):   # the checkpoint belongs to Empty-8x8
        train_agent(REAL_ID, where="dream", checkpoint=never_done, steps=10, out=tmp_path, device="cpu")


# ---------------------------------------------------------------------------------------- statistics


def test_wilson_interval_by_hand():
    # 5/10: p = 0.5, z = 1.959964, z^2 = 3.841459; centre = (0.5 + z^2/20) / (1 + z^2/10) = 0.5,
    # half = z / (1 + z^2/10) * sqrt(0.25/10 + z^2/400) = 1.415990 * 0.186024 = 0.263408
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5) and hi == pytest.approx(0.763407, abs=1e-5)
    # 0/10: lower bound 0, upper z^2/(n + z^2) = 3.841459 / 13.841459 = 0.277535
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.277535, abs=1e-5)
    lo, hi = wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.277535, abs=1e-5)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_mean_interval_by_hand():
    # [1, 2, 3, 4]: mean 2.5, s = sqrt(5/3) = 1.290994, sem = 0.645497, t(0.975, 3) = 3.182446
    (lo, hi), method = mean_interval([1, 2, 3, 4])
    assert lo == pytest.approx(2.5 - 3.182446 * 0.645497, abs=1e-5)
    assert hi == pytest.approx(2.5 + 3.182446 * 0.645497, abs=1e-5)
    assert "t" in method
    assert mean_interval([1.0])[0] is None
    assert mean_interval([2.0, 2.0, 2.0])[0] == (2.0, 2.0)


# ---------------------------------------------------------------------------------------- evaluation


def _check_result(result, episodes):
    assert result["episodes"] == episodes == len(result["returns"]) == len(result["lengths"]) == len(result["success"])
    assert result["seeds"] == list(range(result["seed"], result["seed"] + episodes))
    assert all(math.isfinite(r) for r in result["returns"]) and all(n >= 1 for n in result["lengths"])
    lo, hi = result["success_ci"]
    assert 0.0 <= lo <= result["success_rate"] <= hi <= 1.0
    assert result["success_rate"] == sum(result["success"]) / episodes
    assert result["mean_return"] == pytest.approx(np.mean(result["returns"]))
    lo, hi = result["return_ci"]
    assert lo <= result["mean_return"] <= hi
    assert "success rate" in format_table(result)


def test_eval_in_the_real_env(real_agent, tmp_path):
    out, _ = real_agent
    result = evaluate_policy(out, REAL_ID, episodes=6, where="real", seed=3, deterministic=False, device="cpu",
                             batch=4, max_episode_steps=20, out=tmp_path / "eval.json")
    _check_result(result, 6)
    assert json.loads((tmp_path / "eval.json").read_text())["returns"] == result["returns"]
    assert all(n <= 20 for n in result["lengths"])
    # MiniGrid's only positive reward is the goal's: success <=> positive return
    assert result["success"] == [r > 0 for r in result["returns"]]
    again = evaluate_policy(out, REAL_ID, episodes=6, where="real", seed=3, deterministic=False, device="cpu",
                            batch=6, max_episode_steps=20)
    assert again["returns"] == result["returns"]   # SB3 samples with torch's global RNG; episodes are seeded


def test_eval_of_a_policy_that_reaches_the_goal(tmp_path):
    class Forward:                        # Empty-5x5 starts facing the goal's row: forward, forward, turn...
        def predict(self, obs, deterministic=True):
            return np.full(len(obs), 2), None

    result = evaluate_policy(Forward(), REAL_ID, episodes=3, device="cpu", max_episode_steps=5)
    assert result["success"] == [False] * 3 and result["lengths"] == [5] * 3 and result["mean_return"] == 0.0

    class Scripted:                       # forward, forward, right, forward, forward: reaches (3, 3) from (1, 1)
        def __init__(self):
            self.t = 0

        def predict(self, obs, deterministic=True):
            a = [2, 2, 1, 2, 2][self.t % 5]
            self.t += 1
            return np.full(len(obs), a), None

    result = evaluate_policy(Scripted(), REAL_ID, episodes=1, batch=1, device="cpu")
    assert result["success"] == [True] and result["lengths"] == [5] and result["return_ci"] is None
    assert result["mean_return"] == pytest.approx(1 - 0.9 * 5 / 100)


def test_eval_in_the_dream(dream_agent, never_done, always_done):
    out, _ = dream_agent
    result = evaluate_policy(out, MINIGRID_ENV_ID, episodes=5, where="dream", checkpoint=never_done, seed=0,
                             device="cpu", batch=3, max_episode_steps=6)
    _check_result(result, 5)
    assert result["lengths"] == [6] * 5 and result["success"] == [False] * 5   # truncated: never a success
    result = evaluate_policy(out, MINIGRID_ENV_ID, episodes=4, where="dream", checkpoint=always_done, device="cpu")
    _check_result(result, 4)
    assert result["lengths"] == [1] * 4 and result["terminated_rate"] == 1.0
    assert result["success"] == [r > 0 for r in result["returns"]]


def test_eval_errors(real_agent, tmp_path, never_done):
    out, _ = real_agent
    with pytest.raises(FileNotFoundError, match="no policy"):
        evaluate_policy(tmp_path / "missing", REAL_ID, episodes=1)
    with pytest.raises(ValueError, match="checkpoint"):
        evaluate_policy(out, REAL_ID, episodes=1, where="dream")
    with pytest.raises(ValueError, match="episodes"):
        evaluate_policy(out, REAL_ID, episodes=0)
    with pytest.raises(ValueError, match="trained on"):
        evaluate_policy(out, MINIGRID_ENV_ID, episodes=1)


# ---------------------------------------------------------------------------------------- command line


def test_table_prints_a_zero_return_without_a_minus_sign():
    """A dream's predicted rewards can sum to a hair below zero (or to -0.0): the table shows 0.000."""
    result = {"env_id": REAL_ID, "where": "dream", "episodes": 2, "seeds": [0, 1], "deterministic": True,
              "confidence": 0.95, "success_rate": 0.0, "successes": 0, "success_ci": [0.0, 0.8],
              "mean_return": -0.0, "return_ci": [-1e-6, -0.0], "return_ci_method": "student t",
              "mean_length": 5.0, "success_definition": "reached the goal"}
    line = next(line for line in format_table(result).splitlines() if line.startswith("mean return"))
    assert line.split()[2:] == ["0.000", "[0.000,", "0.000]"]


def _parser():
    parser = argparse.ArgumentParser(prog="worldsim")
    add_agent_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parses_train_and_eval():
    args = _parser().parse_args(["agent", "train", "--env", REAL_ID, "--in", "dream", "--checkpoint", "ck",
                                 "--algo", "a2c", "--steps", "100", "--out", "o", "--num-envs", "3", "--seed", "7"])
    assert (args.command, args.agent_command, args.where, args.algo, args.steps, args.num_envs, args.seed) == \
        ("agent", "train", "dream", "a2c", 100, 3, 7)
    args = _parser().parse_args(["agent", "eval", "--env", REAL_ID, "--policy", "p", "--deterministic"])
    assert (args.agent_command, args.where, args.episodes, args.deterministic, args.checkpoint) == \
        ("eval", "real", 100, True, None)
    with pytest.raises(SystemExit):
        _parser().parse_args(["agent", "train", "--env", REAL_ID, "--algo", "sac", "--steps", "1", "--out", "o"])
    with pytest.raises(SystemExit):
        _parser().parse_args(["agent"])


def test_cli_train_and_eval_end_to_end(tmp_path, capsys):
    out = tmp_path / "agent"
    args = _parser().parse_args(["agent", "train", "--env", REAL_ID, "--in", "real", "--steps", "128", "--out",
                                 str(out), "--num-envs", "1", "--device", "cpu", "--quiet",
                                 "--hyperparams", "n_steps=64, batch_size=32,ent_coef=0.01"])
    assert args.run(args) == 0 and (out / "policy.zip").is_file()
    params = json.loads((out / "agent.json").read_text())["hyperparams"]
    assert (params["n_steps"], params["batch_size"], params["ent_coef"], params["n_epochs"]) == (64, 32, 0.01, 10)
    args = _parser().parse_args(["agent", "eval", "--policy", str(out), "--episodes", "3", "--device", "cpu",
                                 "--max-episode-steps", "10", "--deterministic"])
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert "success rate" in printed and "mean return" in printed
    saved = json.loads((out / "eval_real.json").read_text())
    assert saved["episodes"] == 3 and saved["env_id"] == REAL_ID and saved["deterministic"] is True


def test_hyperparams_are_parsed_and_checked():
    assert parse_hyperparams("learning_rate=1e-3, normalize_advantage=False,device='cpu'") == \
        {"learning_rate": 1e-3, "normalize_advantage": False, "device": "cpu"}
    assert parse_hyperparams(None) == {} and parse_hyperparams("buffer_size=5", "dqn") == {"buffer_size": 5}
    for text, why in [("n_step=3", "'n_step': PPO takes no such argument"), ("ent_coef", "expected KEY=VALUE"),
                      ("gamma=high", "not a Python literal"), ("buffer_size=5", "PPO takes no such")]:
        with pytest.raises(ValueError, match=why):
            parse_hyperparams(text)


def test_cli_errors(tmp_path, capsys):
    args = _parser().parse_args(["agent", "train", "--env", REAL_ID, "--in", "dream", "--steps", "10", "--out",
                                 str(tmp_path)])
    assert args.run(args) == 1
    assert "--in dream needs --checkpoint" in capsys.readouterr().err
    args = _parser().parse_args(["agent", "eval", "--env", REAL_ID, "--policy", str(tmp_path / "none")])
    assert args.run(args) == 1
    assert "does not exist" in capsys.readouterr().err
    args = _parser().parse_args(["agent", "eval", "--env", REAL_ID, "--policy", str(tmp_path), "--in", "dream"])
    assert args.run(args) == 1
    assert "--in dream needs --checkpoint" in capsys.readouterr().err
