"""Nothing bad passes quietly: settings out of range, training that diverges, damaged or non-finite
checkpoints, env ids a file would use to choose imports, torn logs and resume state."""

import json
import sys

import pytest
import torch
from safetensors.torch import save_file

from train.config import TrainConfig, TrainError
from train.trainer import MAX_NONFINITE_STEPS, Trainer
from worldsim import DreamEnv, WorldModel, WorldModelConfig
from worldsim.checkpoint import CheckpointError

from conftest import tiny_minigrid_model
from test_trainer import config, synthetic_data


@pytest.mark.parametrize("settings,message", [
    (dict(steps="ten"), "steps must be an integer; got 'ten'"),
    (dict(lr=float("inf")), "lr must be a finite number; got inf"),
    (dict(lr=True), "lr must be a finite number; got True"),
    (dict(grad_clip=-1.0), "grad_clip must be >= 0 (0: no clipping), got -1"),
    (dict(weight_decay=-10.0), "weight_decay must be >= 0, got -10"),
    (dict(beta1=1.5), "beta1 must be in [0, 1), got 1.5"),
    (dict(seed=-1), "seed must be >= 0, got -1"),
    (dict(progress="yes"), "progress must be true or false; got 'yes'"),
])
def test_training_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(TrainError) as e:
        TrainConfig(**settings)
    assert message in str(e.value)


@pytest.mark.parametrize("settings,message", [
    (dict(d_model=0), "d_model must be >= 1, got 0"),
    (dict(d_model="128"), "d_model must be an integer; got '128'"),
    (dict(d_model=128.0), "d_model must be an integer; got 128.0"),
    (dict(mlp_ratio=-1.0), "mlp_ratio must be > 0, got -1"),
    (dict(vocab_size=None), "vocab_size must be an integer; got None"),
    (dict(chunk_size=0), "chunk_size must be null or an integer >= 1, got 0"),
])
def test_model_settings_of_the_wrong_kind_are_refused(settings, message):
    base = dict(vocab_size=10, frame_shape=(3, 4), num_actions=3)
    with pytest.raises(ValueError) as e:
        WorldModelConfig(**{**base, **settings})
    assert message in str(e.value)


def test_diverged_training_stops_and_writes_no_final_model(tmp_path):
    trainer = Trainer(config(steps=40, save_every=0), synthetic_data(), out=tmp_path / "run")
    with torch.no_grad():
        trainer.model.token_embed.weight.fill_(float("nan"))     # every loss from here on is NaN
    with pytest.raises(TrainError, match=rf"not finite at {MAX_NONFINITE_STEPS} steps in a row \(steps 1-"
                                         rf"{MAX_NONFINITE_STEPS}\); stopped without writing a final model"):
        trainer.fit()
    assert trainer.step == MAX_NONFINITE_STEPS
    assert not (tmp_path / "run" / "model").exists()


def test_until_must_be_a_step(tmp_path):
    trainer = Trainer(config(steps=4), synthetic_data(), out=tmp_path / "run")
    with pytest.raises(TrainError, match="until must be a step number >= 1 .*; got -5"):
        trainer.fit(until=-5)


def test_damaged_and_non_finite_checkpoints_are_refused(tmp_path):
    model = tiny_minigrid_model()
    model.save_pretrained(tmp_path / "good")
    assert "weights_sha256" in json.loads((tmp_path / "good" / "config.json").read_text())
    WorldModel.from_pretrained(tmp_path / "good")                                  # loads
    # 200 flipped bytes in the weights
    model.save_pretrained(tmp_path / "flipped")
    weights = tmp_path / "flipped" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(len(data) - 400, len(data) - 200):
        data[i] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model.safetensors is not the file its config.json was written with"):
        WorldModel.from_pretrained(tmp_path / "flipped")
    # non-finite weights: not written, and not loaded (a file without a recorded digest)
    with torch.no_grad():
        model.frame_head.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match=r"weights are not all finite \(e.g. frame_head.weight\)"):
        model.save_pretrained(tmp_path / "nan")
    assert not (tmp_path / "nan").exists()
    (tmp_path / "nan").mkdir()
    config = json.loads((tmp_path / "good" / "config.json").read_text())
    del config["weights_sha256"]
    (tmp_path / "nan" / "config.json").write_text(json.dumps(config))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "nan" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"holds weights that are not all finite \(e.g. frame_head.weight\)"):
        WorldModel.from_pretrained(tmp_path / "nan")


def test_a_checkpoint_cannot_choose_an_import(tmp_path, monkeypatch):
    """metadata.env_id "module:Env" would make gymnasium import `module`; a file's env id is taken only
    if it is registered."""
    (tmp_path / "planted_module.py").write_text("raise SystemExit('planted module ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = tiny_minigrid_model()
    model.config.metadata["env_id"] = "planted_module:Env"
    with pytest.raises(ValueError, match="names env id 'planted_module:Env', which is not a registered"):
        DreamEnv(model, device="cpu")
    assert "planted_module" not in sys.modules


def test_an_agent_file_cannot_choose_an_import(tmp_path, monkeypatch):
    from agents.evaluation import evaluate_policy
    from agents.ppo import ActorCritic, save_policy

    (tmp_path / "planted_agent.py").write_text("raise SystemExit('planted module ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    network = ActorCritic((7, 7, 3), 7)
    save_policy(network, tmp_path / "agent")
    (tmp_path / "agent" / "agent.json").write_text(json.dumps(
        {"algo": "native-ppo", "network": network.spec(), "env_id": "planted_agent:Env"}))
    with pytest.raises(ValueError, match="agent.json names env id 'planted_agent:Env'"):
        evaluate_policy(tmp_path / "agent", episodes=1)
    assert "planted_agent" not in sys.modules


def test_a_torn_metrics_line_is_dropped_on_resume(tmp_path):
    data = synthetic_data()
    run = tmp_path / "run"
    Trainer(config(steps=6, save_every=2), data, out=run).fit(until=2)
    with open(run / "metrics.jsonl", "a") as f:          # a crash in the middle of a write
        f.write('{"step": 3, "train/lo')
    with pytest.warns(RuntimeWarning, match="line 3 is not a complete JSON record"):
        resumed = Trainer.resume(run, data=data)
        resumed.fit(until=4)
    steps = [json.loads(ln)["step"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resume_state_with_a_negative_step_is_refused(tmp_path):
    data = synthetic_data()
    run = tmp_path / "run"
    Trainer(config(steps=6, save_every=2), data, out=run).fit(until=2)
    state_file = next(run.glob("checkpoints/checkpoint-*/trainer_state.json"))
    state = json.loads(state_file.read_text())
    state["step"] = -100
    state_file.write_text(json.dumps(state))
    with pytest.raises(TrainError, match="step must be a non-negative integer; got -100"):
        Trainer.resume(run, data=data)


@pytest.mark.parametrize("settings,message", [
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0; got nan"),
    (dict(temperature=float("inf")), "temperature must be a finite number >= 0; got inf"),
    (dict(tile_size=0), "tile_size must be a positive integer; got 0"),
    (dict(max_episode_steps=2.7), "max_episode_steps must be a positive integer; got 2.7"),
])
def test_dream_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError) as e:
        DreamEnv(tiny_minigrid_model(), device="cpu", **settings)
    assert message in str(e.value)


@pytest.mark.parametrize("spec", ["", " , "])
def test_play_refuses_an_empty_action_list(spec):
    from train.play import parse_actions

    with pytest.raises(ValueError, match="names no action"):
        parse_actions(spec)


def test_a_batch_that_cannot_fit_is_refused_at_once():
    import gymnasium as gym

    import worldsim  # noqa: F401  (registers the dream ids)

    with pytest.raises(ValueError, match=r"num_envs=2,147,483,648 needs .* GiB for the model state alone .* "
                                         r"at most [\d,]+ envs fit"):
        gym.make_vec("worldsim/MiniGrid-Empty-8x8-Dream-v0", num_envs=2**31, device="cpu")


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
    data = synthetic_data()
    run = tmp_path / "run"
    Trainer(config(steps=8, save_every=2, keep_last=3), data, out=run).fit(until=4)
    newest = run / "checkpoints" / "checkpoint-00000004"
    (newest / "trainer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.warns(RuntimeWarning, match="resuming from checkpoint-00000002: newer checkpoints cannot be read"):
        resumed = Trainer.resume(run, data=data)
    assert resumed.step == 2
    for checkpoint in (run / "checkpoints").iterdir():
        (checkpoint / "trainer.safetensors").write_bytes(b"damaged")
    with pytest.raises(TrainError, match="cannot resume: no checkpoint of .* can be read"):
        Trainer.resume(run, data=data)


def test_what_a_crash_left_half_written_is_cleaned_when_the_run_goes_on(tmp_path):
    data = synthetic_data()
    run = tmp_path / "run"
    Trainer(config(steps=6, save_every=2), data, out=run).fit(until=2)
    leftovers = [run / ".tmp-model-1a2b3c4d", run / "checkpoints" / ".tmp-checkpoint-00000004-5e6f7a8b"]
    for folder in leftovers:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    (run / ".latest.9c0d1e2f.tmp").write_text("checkpoints/checkpoint-000")
    Trainer.resume(run, data=data).fit()
    assert not any(p.exists() for p in leftovers) and not (run / ".latest.9c0d1e2f.tmp").exists()
    assert (run / "model").is_dir() and (run / "latest").is_file()


def test_more_unclear_inputs_get_named(tmp_path):
    from agents.training import train_agent

    with pytest.raises(TrainError, match=r"curriculum must be a list of \[step, length\] .*; got \[0, 32\]"):
        TrainConfig(curriculum=[0, 32])
    with pytest.raises(ValueError, match="options must be a dict such as .* or None; got 'start'"):
        DreamEnv(tiny_minigrid_model(), device="cpu").reset(options="start")
    with pytest.raises(ValueError, match=r"PPO refuses the hyperparameters .*'batch_size': 0.*batch_size"):
        train_agent("MiniGrid-Empty-5x5-v0", where="real", steps=64, out=tmp_path / "a", num_envs=1,
                    hyperparams={"batch_size": 0})
