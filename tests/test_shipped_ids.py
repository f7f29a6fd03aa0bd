"""A shipped model's id (its real env id or its dream id) works wherever a checkpoint folder does,
in Python as on the command line; anything else is a clear error listing the shipped ids."""

import argparse
import json

import gymnasium as gym
import numpy as np
import pytest

import worldsim  # noqa: F401  (registers the ids)
from worldsim.dream_vector_env import DreamVectorEnv
from worldsim.zoo import shipped_model, shipped_models

ENV_ID = "MiniGrid-Empty-8x8-v0"
IDS = [ENV_ID, shipped_model(ENV_ID).dream_id]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def retrace(tmp_path_factory):
    """A short memory-task dataset of the shipped model's env, for `worldsim benchmark memory`."""
    from train.collect import collect

    out = tmp_path_factory.mktemp("shipped") / "retrace"
    collect(ENV_ID, "retrace:6", episodes=1, out=out, max_steps=12, num_envs=1, progress=False, view="ego")
    return str(out)


def benchmark_memory(data, model, out) -> int:
    from train.cli import main

    return main(["benchmark", "memory", "--data", data, "--model", model, "--episodes", "1", "--device", "cpu",
                 "--out", str(out)])


@pytest.mark.parametrize("checkpoint", IDS)
def test_gym_make_dream(checkpoint):
    env = gym.make("worldsim/Dream-v0", checkpoint=checkpoint, device="cpu")
    real_obs, _ = gym.make(ENV_ID).reset(seed=0)
    obs, _ = env.reset(seed=0)
    assert np.array_equal(obs["image"], real_obs["image"])
    env.step(2)
    env.close()


@pytest.mark.parametrize("checkpoint", IDS)
def test_dream_vector_env(checkpoint):
    envs = DreamVectorEnv(checkpoint=checkpoint, num_envs=2, device="cpu")
    obs, _ = envs.reset(seed=0)
    assert obs["image"].shape == (2, 7, 7, 3)
    envs.step(np.array([2, 1]))
    envs.close()


def test_sb3_vec_env():
    from agents.sb3_vec_env import DreamSB3VecEnv

    vec = DreamSB3VecEnv(checkpoint=ENV_ID, num_envs=2, device="cpu", image_only=True)
    assert vec.reset().shape == (2, 7, 7, 3)
    vec.close()


def test_planner():
    from agents.planner import Planner, PlannerConfig

    planner = Planner(ENV_ID, config=PlannerConfig(horizon=2, population=4), device="cpu")
    real = gym.make(ENV_ID)
    obs, _ = real.reset(seed=0)
    planner.reset(obs)
    assert 0 <= planner.act(obs) < planner.num_actions


def test_memory_benchmark(retrace, tmp_path):
    assert benchmark_memory(retrace, f"shipped={ENV_ID}", tmp_path / "out") == 0
    result = json.loads((tmp_path / "out" / "memory.json").read_text())
    assert result["models"]["shipped"]["parameters"] > 0


def test_play():
    from train.play import add_play_parser

    parser = argparse.ArgumentParser()
    add_play_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["play", "--checkpoint", IDS[1], "--actions", "forward", "--device", "cpu", "--quiet"])
    assert args.run(args) == 0


def test_neither_a_folder_nor_a_shipped_id(retrace, tmp_path, capsys):
    from agents.planner import Planner

    missing = str(tmp_path / "no-such-model")
    shipped = [m.env_id for m in shipped_models()]
    for make in (lambda: gym.make("worldsim/Dream-v0", checkpoint=missing, device="cpu"),
                 lambda: DreamVectorEnv(checkpoint=missing, device="cpu"),
                 lambda: Planner(missing, device="cpu")):
        with pytest.raises(FileNotFoundError) as e:
            make()
        assert missing in str(e.value) and all(m in str(e.value) for m in shipped)
    assert benchmark_memory(retrace, f"x={missing}", tmp_path / "out") == 1
    err = capsys.readouterr().err
    assert missing in err and ENV_ID in err
