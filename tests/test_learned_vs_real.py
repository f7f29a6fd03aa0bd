"""The learned-vs-real benchmark end to end on a tiny world model (CPU, small budgets), and its CLI."""

import argparse
import csv
import json
import math

import pytest

from agents.planner import PlannerConfig
from benchmarks.cli import add_benchmark_parser
from benchmarks.learned_vs_real import learned_vs_real, world_model_data_steps
from benchmarks.learned_vs_real_report import format_benchmark_table

from conftest import tiny_minigrid_model

ENV_ID = "MiniGrid-Empty-5x5-v0"
EVAL_EPISODES, PLANNER_EPISODES, SEEDS = 4, 1, 1


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    path = root / "model"
    tiny_minigrid_model(env_id=ENV_ID, done_bias=20.0).save_pretrained(path)   # dream episodes end (curves fill)
    # a run's train_config.json beside model/, as the trainer writes it
    (root / "train_config.json").write_text(json.dumps({"data": {
        "env_id": ENV_ID, "train_frames": 110, "train_episodes": 10, "eval_frames": 22, "eval_episodes": 2}}))
    return path


@pytest.fixture(scope="module")
def result(tmp_path_factory, checkpoint):
    out = tmp_path_factory.mktemp("bench") / "out"
    return learned_vs_real(ENV_ID, checkpoint, steps=256, seeds=SEEDS, eval_episodes=EVAL_EPISODES,
                           planner_episodes=PLANNER_EPISODES, out=out, num_envs=2, device="cpu",
                           planner_config=PlannerConfig(optimizer="random", horizon=2, population=4, iterations=1),
                           max_episode_steps=12)


def _check_ci(summary):
    lo, hi = summary["success_ci"]
    assert 0 <= lo <= summary["success_rate"] <= hi <= 1
    assert summary["success_rate"] == summary["successes"] / summary["episodes"]
    if summary["return_ci"] is not None:
        lo, hi = summary["return_ci"]
        assert lo - 1e-9 <= summary["mean_return"] <= hi + 1e-9
    assert math.isfinite(summary["mean_return"])


def test_end_to_end_numbers_come_from_real_episodes(result, checkpoint):
    m = result["methods"]
    assert set(m) == {"real_ppo", "dream_ppo", "planner"}
    assert m["real_ppo"]["episodes"] == m["dream_ppo"]["episodes"] == SEEDS * EVAL_EPISODES
    assert m["planner"]["episodes"] == SEEDS * PLANNER_EPISODES
    for s in m.values():
        _check_ci(s)
        assert s["wall_seconds"] > 0
    # real steps: real PPO = its training timesteps; dream PPO = the world model's data (train_config:
    # (110 - 10) + (22 - 2) transitions); planner = the steps it acted
    assert m["real_ppo"]["real_steps"] == sum(m["real_ppo"]["train_timesteps_per_seed"]) >= 256 * SEEDS
    assert m["dream_ppo"]["real_steps"] == 120
    assert result["world_model_data"]["source"].endswith("train_config.json")
    assert m["planner"]["real_steps"] == m["planner"]["steps"] >= 1
    ratio = result["success_ratio_dream_over_real"]
    if m["real_ppo"]["success_rate"] > 0:
        assert ratio == pytest.approx(m["dream_ppo"]["success_rate"] / m["real_ppo"]["success_rate"])
    else:
        assert ratio is None

    assert len(result["per_seed"]) == SEEDS
    for row in result["per_seed"]:
        for method in ("real_ppo", "dream_ppo"):
            r = row[method]
            _check_ci(r)
            assert len(r["returns"]) == len(r["success"]) == len(r["lengths"]) == EVAL_EPISODES
            assert all(1 <= n <= 12 for n in r["lengths"])          # real episodes under the step limit
            assert r["eval_seeds"] == [row["eval_seed_start"] + i for i in range(EVAL_EPISODES)]
            assert r["eval_seeds"][0] >= 10_000
        assert row["planner"]["eval_seeds"] == row["real_ppo"]["eval_seeds"][:PLANNER_EPISODES]
        assert all(1 <= n <= 12 for n in row["planner"]["lengths"])

    # learning curves: per-rollout mean episode reward vs timesteps, for both trainings
    for method in ("real_ppo", "dream_ppo"):
        runs = result["learning_curves"][method]
        assert [r["seed"] for r in runs] == list(range(SEEDS))
        for r in runs:
            assert r["points"], method
            steps = [p["timesteps"] for p in r["points"]]
            assert steps == sorted(steps) and steps[0] > 0
            assert all(math.isfinite(p["mean_episode_reward"]) for p in r["points"])

    # files
    saved = json.loads(open(result["files"]["json"]).read())
    assert saved["methods"]["real_ppo"]["episodes"] == SEEDS * EVAL_EPISODES and len(saved["per_seed"]) == SEEDS
    rows = list(csv.DictReader(open(result["files"]["curves_csv"])))
    assert {r["method"] for r in rows} == {"real_ppo", "dream_ppo"}
    assert open(result["files"]["curves_svg"]).read().startswith("<svg")

    table = format_benchmark_table(result)
    for label in ("PPO trained in real env", "PPO trained in dream", "planner", "seed 0", "dream/real success ratio"):
        assert label in table


def test_parallel_workers_give_the_same_results(result, checkpoint, tmp_path):
    again = learned_vs_real(ENV_ID, checkpoint, steps=256, seeds=SEEDS, eval_episodes=EVAL_EPISODES,
                            planner_episodes=PLANNER_EPISODES, out=tmp_path, num_envs=2, device="cpu",
                            planner_config=PlannerConfig(optimizer="random", horizon=2, population=4, iterations=1),
                            max_episode_steps=12, workers=3)
    for method in ("real_ppo", "dream_ppo", "planner"):
        for key in ("returns", "success", "lengths", "eval_seeds"):
            assert again["per_seed"][0][method][key] == result["per_seed"][0][method][key], (method, key)
    assert again["learning_curves"] == result["learning_curves"]
    saved = json.loads((tmp_path / "seed_0" / "dream_ppo.json").read_text())   # each job on disk when done
    assert saved["result"]["returns"] == result["per_seed"][0]["dream_ppo"]["returns"]


def test_world_model_data_from_manifest(tmp_path, checkpoint):
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"env_id": ENV_ID, "totals": {"episodes": 3, "steps": 77, "frames": 80}}))
    got = world_model_data_steps(checkpoint, data)
    assert got["steps"] == 77 and got["episodes"] == 3 and "manifest" in got["what"]
    with pytest.raises(FileNotFoundError, match="manifest"):
        world_model_data_steps(checkpoint, tmp_path / "nowhere")
    lone = tmp_path / "lone"
    tiny_minigrid_model(env_id=ENV_ID).save_pretrained(lone)
    assert world_model_data_steps(lone)["steps"] is None


def _parser():
    parser = argparse.ArgumentParser(prog="worldsim")
    add_benchmark_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_parsing():
    args = _parser().parse_args(["benchmark", "learned-vs-real", "--env", ENV_ID, "--checkpoint", "ck", "--steps", "256",
                                 "--seeds", "2", "--eval-episodes", "4", "--planner-episodes", "1", "--out", "o",
                                 "--num-envs", "2", "--device", "cpu", "--world-model-data", "d"])
    assert args.benchmark_command == "learned-vs-real" and args.env == ENV_ID and args.checkpoint == "ck"
    assert (args.steps, args.seeds, args.eval_episodes, args.planner_episodes, args.num_envs) == (256, 2, 4, 1, 2)
    assert (args.out, args.device, args.world_model_data) == ("o", "cpu", "d")
    defaults = _parser().parse_args(["benchmark", "learned-vs-real", "--env", ENV_ID, "--checkpoint", "ck",
                                     "--steps", "1", "--seeds", "1"])
    assert defaults.eval_episodes == 100 and defaults.planner_episodes == 10 and defaults.device == "auto"
    no_checkpoint = _parser().parse_args(["benchmark", "learned-vs-real", "--env", ENV_ID, "--steps", "1",
                                          "--seeds", "1"])
    assert no_checkpoint.checkpoint is None                      # the model shipped for --env, if any
    with pytest.raises(FileNotFoundError, match="no world model is shipped for MiniGrid-Empty-5x5-v0"):
        learned_vs_real(ENV_ID, None, steps=1, seeds=1)
    with pytest.raises(SystemExit):
        _parser().parse_args(["benchmark"])


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no_such_ckpt"
    args = _parser().parse_args(["benchmark", "learned-vs-real", "--env", ENV_ID, "--checkpoint", str(missing),
                                 "--steps", "8", "--seeds", "1", "--out", str(tmp_path / "o")])
    assert args.run(args) == 1
    err = capsys.readouterr().err
    assert "worldsim benchmark learned-vs-real: error:" in err and "no_such_ckpt" in err and "does not exist" in err
    with pytest.raises(FileNotFoundError, match="does not exist"):
        learned_vs_real(ENV_ID, missing, steps=8, seeds=1)
    with pytest.raises(ValueError, match="seeds"):
        learned_vs_real(ENV_ID, _saved(tmp_path), steps=8, seeds=0)


def _saved(tmp_path):
    path = tmp_path / "ck"
    tiny_minigrid_model(env_id=ENV_ID).save_pretrained(path)
    return path
