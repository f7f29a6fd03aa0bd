import json

import pytest
import torch

from worldsim import CheckpointError, WorldModel

from conftest import random_episode, randomized, tiny_config


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = randomized(WorldModel(tiny_config(metadata={"env_id": "MiniGrid-Empty-8x8-v0"})))
    model.save_pretrained(tmp_path / "ckpt")
    return model, tmp_path / "ckpt"


def test_round_trip_gives_the_same_model(saved):
    model, path = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = WorldModel.from_pretrained(path).eval()
    assert loaded.config == model.config
    frames, actions = random_episode(model.config, 1, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames, actions).frame_logits, model(frames, actions).frame_logits,
                                   rtol=0, atol=0)


def test_run_time_overrides(saved):
    _, path = saved
    assert WorldModel.from_pretrained(path, chunk_size=8).config.chunk_size == 8


def test_missing_folder_or_files_are_named(saved, tmp_path):
    _, path = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        WorldModel.from_pretrained(tmp_path / "nope")
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        WorldModel.from_pretrained(path)
    (path / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        WorldModel.from_pretrained(path)


def test_malformed_files_are_named(saved):
    _, path = saved
    weights = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(weights[:100])
    with pytest.raises(CheckpointError, match="model.safetensors is not the file its config.json was written with"):
        WorldModel.from_pretrained(path)
    payload = json.loads((path / "config.json").read_text())
    del payload["weights_sha256"]                       # a checkpoint from before digests were recorded
    (path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"), \
            pytest.warns(RuntimeWarning, match="records no weights_sha256"):
        WorldModel.from_pretrained(path)
    (path / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="config.json is not a valid worldsim config"):
        WorldModel.from_pretrained(path)


def test_config_that_does_not_fit_the_weights(saved):
    _, path = saved
    payload = json.loads((path / "config.json").read_text())
    payload["config"]["d_model"] = 64
    (path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        WorldModel.from_pretrained(path)
    payload["config"]["colour"] = "blue"
    (path / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError, match="unknown fields"):
        WorldModel.from_pretrained(path)


def test_an_interrupted_save_keeps_the_old_checkpoint(saved, monkeypatch):
    model, path = saved
    before = (path / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("worldsim.checkpoint.save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save_pretrained(path)
    assert (path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
