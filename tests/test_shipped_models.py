"""The world models shipped in the package: they load, match their cards, and their gym ids work."""

import hashlib
import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim  # noqa: F401  (registers the ids)
from train.cli import main as worldsim_main
from worldsim.model import WorldModel
from worldsim.zoo import MODELS_DIR, dream_id_for, resolve_checkpoint, shipped_model, shipped_models

SHIPPED = shipped_models()


def test_the_promised_models_are_shipped():
    env_ids = {m.env_id for m in SHIPPED}
    assert {"MiniGrid-Empty-8x8-v0", "MiniGrid-DoorKey-8x8-v0", "MiniGrid-FourRooms-v0"} <= env_ids


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.env_id)
def test_files_load_and_match_their_card(model):
    card = model.card
    weights = (model.path / "model.safetensors").read_bytes()
    assert len(weights) == card["model"]["file_bytes"] <= 10 * 2**20          # small enough to ship
    assert hashlib.sha256(weights).hexdigest() == card["model"]["sha256"]
    loaded = WorldModel.from_pretrained(model.path, device="cpu")
    assert sum(p.numel() for p in loaded.parameters()) == card["model"]["parameters"]
    config = json.loads((model.path / "config.json").read_text())["config"]
    assert config == card["model"]["config"]
    assert config["metadata"]["env_id"] == card["env_id"] == model.env_id
    assert card["gym_id"] == model.dream_id == dream_id_for(model.env_id)
    # The card's numbers are the training run's, not placeholders.
    assert card["data"]["steps"] > 0 and card["training"]["steps"] > 0 and card["training"]["gpu"]
    assert 0.9 < card["metrics"]["eval/acc"] <= 1.0 and card["metrics"]["eval/acc"] > card["metrics"]["eval/copy_acc"]
    assert (model.path / "README.md").read_text().startswith(f"# {model.dream_id}")


@pytest.mark.parametrize("model", SHIPPED, ids=lambda m: m.env_id)
def test_registered_id_passes_check_env(model):
    assert model.dream_id in gym.registry
    env = gym.make(model.dream_id, device="cpu")
    try:
        check_env(env.unwrapped, skip_render_check=True)
        real = gym.make(model.env_id)
        assert env.action_space == real.action_space
        assert env.observation_space["image"] == real.observation_space["image"]
        obs, _ = env.reset(seed=3)
        real_obs, _ = real.reset(seed=3)                   # the dream starts from the real reset
        np.testing.assert_array_equal(obs["image"], real_obs["image"])
    finally:
        env.close()


def test_vector_id_steps_a_batch():
    env = gym.make_vec(SHIPPED[0].dream_id, num_envs=3, device="cpu", image_only=True)
    try:
        obs, _ = env.reset(seed=0)
        obs, reward, terminated, truncated, _ = env.step(np.zeros(3, dtype=np.int64))
        assert obs.shape == (3, 7, 7, 3) and reward.shape == (3,)
    finally:
        env.close()


def test_lookup_by_either_id_and_clear_error():
    m = SHIPPED[0]
    assert shipped_model(m.env_id).path == shipped_model(m.dream_id).path == m.path
    with pytest.raises(KeyError, match="no shipped world model for 'MiniGrid-Nope-v0'; shipped: .*Empty-8x8"):
        shipped_model("MiniGrid-Nope-v0")
    assert shipped_models(MODELS_DIR / "nowhere") == []


def test_models_command_lists_every_id(capsys):
    assert worldsim_main(["models"]) == 0
    printed = capsys.readouterr().out
    for m in SHIPPED:
        assert m.dream_id in printed and f"{m.card['metrics']['eval/acc']:.3f}" in printed


def test_checkpoint_arguments_accept_shipped_ids(tmp_path):
    m = shipped_model("MiniGrid-Empty-8x8-v0")
    assert resolve_checkpoint(None, "MiniGrid-Empty-8x8-v0") == str(m.path)     # the env's own model
    assert resolve_checkpoint(m.dream_id) == resolve_checkpoint(m.env_id) == str(m.path)
    assert resolve_checkpoint(str(tmp_path)) == str(tmp_path)                     # a folder stays a folder
    assert resolve_checkpoint("no/such/folder") == "no/such/folder"               # the caller reports it
    assert resolve_checkpoint(None, "MiniGrid-Unlock-v0") is None
    assert resolve_checkpoint(None) is None


def test_agent_cli_dreams_in_the_shipped_model_by_default(capsys):
    import argparse

    from agents.cli import _where, add_agent_parser

    parser = argparse.ArgumentParser(prog="worldsim")
    add_agent_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["agent", "train", "--env", "MiniGrid-DoorKey-8x8-v0", "--in", "dream",
                              "--steps", "1", "--out", "o"])
    assert _where(args) == "dream" and args.checkpoint == str(shipped_model("MiniGrid-DoorKey-8x8-v0").path)
    args = parser.parse_args(["agent", "train", "--env", "MiniGrid-Unlock-v0", "--in", "dream", "--steps", "1",
                              "--out", "o"])
    with pytest.raises(ValueError, match="none is shipped for MiniGrid-Unlock-v0"):
        _where(args)
