"""Nothing bad passes quietly: settings out of range, training that diverges, damaged or non-finite
checkpoints, env ids a file would use to choose imports, torn logs and resume state."""

import errno
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from train.config import TrainConfig, TrainError
from train.trainer import MAX_NONFINITE_STEPS, Trainer
from worldsim import DreamEnv, WorldModel, WorldModelConfig
from worldsim.checkpoint import CheckpointError, NoSpaceError, atomic_write

from conftest import tiny_minigrid_model
from test_trainer import TINY, config, synthetic_data


@pytest.mark.parametrize("settings,message", [
    (dict(steps="ten"), "steps must be an integer; got 'ten'"),
    (dict(lr=float("inf")), "lr must be a finite number; got inf"),
    (dict(lr=True), "lr must be a finite number; got True"),
    (dict(lr=1e30), "lr must be in (0, 1], got 1e+30"),
    (dict(batch_size=0), "TrainConfig: batch_size must be >= 1, got 0"),
    (dict(min_batch_size=-2), "TrainConfig: min_batch_size must be >= 1, got -2"),
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


def test_a_run_that_ends_while_diverging_writes_no_final_model(tmp_path):
    """Shorter than MAX_NONFINITE_STEPS, yet every step non-finite: the end is no success either."""
    trainer = Trainer(config(steps=3, save_every=0), synthetic_data(), out=tmp_path / "run")
    with torch.no_grad():
        trainer.model.token_embed.weight.fill_(float("nan"))
    with pytest.raises(TrainError, match=r"not finite at the last 3 steps \(steps 1-3\); stopped without writing a "
                                         r"final model .*Lower the learning rate"):
        trainer.fit()
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
    with pytest.raises(CheckpointError, match=r"holds weights that are not all finite \(e.g. frame_head.weight\)"), \
            pytest.warns(RuntimeWarning, match="records no weights_sha256"):
        WorldModel.from_pretrained(tmp_path / "nan")


def test_weights_of_another_env_under_a_config_are_refused(tmp_path):
    """DoorKey's config.json over Empty's weights (same shapes) would dream DoorKey from Empty's weights."""
    shipped = Path(__file__).parents[1] / "worldsim" / "models"
    mixed = shutil.copytree(shipped / "MiniGrid-DoorKey-8x8-v0", tmp_path / "mixed")
    shutil.copy(shipped / "MiniGrid-Empty-8x8-v0" / "model.safetensors", mixed)
    with pytest.raises(CheckpointError, match="mixed/model.safetensors is not the file its config.json was written "
                                              "with .*: it is damaged or was replaced"):
        WorldModel.from_pretrained(mixed)
    payload = json.loads((mixed / "config.json").read_text())
    for digest, check in [(5, pytest.raises(CheckpointError, match="config.json: weights_sha256 must be the 64 hex "
                                                                    "digits of the weights' sha256; got 5")),
                          (None, pytest.warns(RuntimeWarning, match="config.json records no weights_sha256, so "
                                                                    ".*model.safetensors cannot be checked"))]:
        (mixed / "config.json").write_text(json.dumps({**payload, "weights_sha256": digest}))
        with check:                        # without a digest it loads (older checkpoints), but never quietly
            WorldModel.from_pretrained(mixed)


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
    (dict(temperature=float("nan")), "or a finite number >= 0; got nan"),
    (dict(temperature=float("inf")), "or a finite number >= 0; got inf"),
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
    with pytest.raises(ValueError, match="hyperparameter batch_size must be a positive integer; got 0"):
        train_agent("MiniGrid-Empty-5x5-v0", where="real", steps=64, out=tmp_path / "a", num_envs=1,
                    hyperparams={"batch_size": 0})
    with pytest.raises(ValueError, match=r"PPO refuses the hyperparameters .*'batch_size': 1.*batch_size"):
        train_agent("MiniGrid-Empty-5x5-v0", where="real", steps=64, out=tmp_path / "a", num_envs=1,
                    hyperparams={"batch_size": 1})      # a count, but SB3 needs two: its own words, passed on



# ---- the command line: one line naming the option or file, the value and what is allowed -------

@pytest.fixture(scope="module")
def places(tmp_path_factory):
    """A tiny dataset, a copy of it whose manifest lists "shards": 5, a model checkpoint, a run folder
    of empty JSON objects, a config file with "steps": "ten", and a regular file where a folder belongs."""
    from train.collect import collect

    root = tmp_path_factory.mktemp("places")
    collect("MiniGrid-Empty-5x5-v0", episodes=2, out=root / "data", max_steps=5, num_envs=1, progress=False)
    shutil.copytree(root / "data", root / "bad_data")
    manifest = json.loads((root / "bad_data" / "manifest.json").read_text())
    (root / "bad_data" / "manifest.json").write_text(json.dumps({**manifest, "shards": 5}))
    tiny_minigrid_model().save_pretrained(root / "model")
    (root / "empty_run" / "checkpoints" / "checkpoint-00000001").mkdir(parents=True)
    for name in ("train_config.json", "checkpoints/checkpoint-00000001/trainer_state.json"):
        (root / "empty_run" / name).write_text("{}")
    (root / "steps.json").write_text(json.dumps({"steps": "ten"}))
    (root / "a_file").write_text("not a folder")
    return {name: str(root / name) for name in ("data", "bad_data", "model", "empty_run", "a_file")} \
        | {"new": str(root / "new"), "steps_json": str(root / "steps.json")}


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, what it printed) of `worldsim ARGV`, argparse's own exits included."""
    from train.cli import main

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    printed = capsys.readouterr()
    return code, printed.err + printed.out


TRAIN = ["train", "--data", "{data}", "--out", "{new}/run", "--num-threads", "1", "--progress", "false"]
AGENT = ["agent", "train", "--env", "MiniGrid-Empty-5x5-v0", "--steps", "8", "--num-envs", "1", "--out", "{new}/agent"]
EVAL = ["agent", "eval", "--env", "MiniGrid-Empty-5x5-v0", "--policy", "{a_file}", "--episodes", "1"]
DEVICE = "device must be 'auto' or a device name such as 'cpu', 'cuda' or 'cuda:1'; got "


@pytest.mark.parametrize("argv,code,message", [
    (["collect", "--env", "MiniGrid-Empty-5x5-v0", "--episodes", "1", "--out", "{new}/d", "--seed", "-1"], 1,
     "seed must be a non-negative integer; got -1"),
    (TRAIN + ["--seed", "-1"], 2, "seed must be >= 0, got -1"),
    (AGENT + ["--seed", "-1"], 1, "seed must be a non-negative integer; got -1"),
    (TRAIN + ["--device", "tpu"], 2, DEVICE + "'tpu'"),
    (AGENT + ["--device", "gpu"], 1, DEVICE + "'gpu'"),
    (EVAL + ["--device", "gpu"], 1, DEVICE + "'gpu'"),
    (EVAL + ["--seed", "-1"], 1, "seed must be a non-negative integer; got -1"),
    (TRAIN + ["--beta1", "1.5"], 2, "beta1 must be in [0, 1), got 1.5"),
    (TRAIN + ["--config", "{steps_json}"], 2, "steps.json: TrainConfig: steps must be an integer; got 'ten'"),
    (["train", "--data", "{data}", "--out", "{a_file}", "--curriculum", "2", "--holdout-fraction", "0"], 2,
     "out '{a_file}' is a file; expected a folder"),
    (["collect", "--env", "MiniGrid-Empty-5x5-v0", "--episodes", "1", "--out", "{a_file}"], 1,
     "dataset folder '{a_file}' is a file; expected a folder"),
    (AGENT[:-1] + ["{a_file}"], 1, "out '{a_file}' is a file; expected a folder"),
    (AGENT[:-1] + ["{a_file}/agent"], 1, "out '{a_file}/agent' cannot be a folder: '{a_file}' above it is a file"),
    (["benchmark", "fidelity", "--checkpoint", "{model}", "--episodes", "1", "--horizon", "2", "--device", "cpu",
      "--out", "{a_file}"], 1, "out '{a_file}' is a file; expected a folder"),
    (TRAIN + ["--curriculum", "[0,32]"], 2, "curriculum must be a list of [step, length] or [step, length, batch] "
     "stages, e.g. [[0, 32], [500, 64]]; got [0, 32]"),
    (TRAIN + ["--curriculum", "-1:32"], 2,        # not taken for an unknown option "-1:32"
     "argument --curriculum: curriculum stage '-1:32' must be STEP:LEN or STEP:LEN:BATCH"),
    (TRAIN + ["--curriculum", "[0,32"], 2, "argument --curriculum: '[0,32' is not valid JSON"),
    (TRAIN + ["--model.chunk_size", "many"], 2, "argument --model.chunk_size: expected an integer or none; got 'many'"),
    (TRAIN + ["--model.block_sizes", "7x"], 2, "argument --model.block_sizes: block sizes must be HxW per layer"),
    (["train", "--data", "{bad_data}", "--out", "{new}/run"], 2, "manifest.json: shards must be a list of shard "
     "entries; got 5"),
    (["collect", "--verify", "{bad_data}"], 1, "manifest.json: shards must be a list of shard entries; got 5"),
    (AGENT + ["--hyperparams", "n_steps=-5"], 1, "hyperparameter n_steps must be a positive integer; got -5"),
    (AGENT + ["--hyperparams", "batch_size=0"], 1, "hyperparameter batch_size must be a positive integer; got 0"),
    (AGENT + ["--hyperparams", "learning_rate=fast"], 1, "hyperparameter learning_rate='fast': not a Python literal"),
    (AGENT + ["--hyperparams", "learning_rate=-1"], 1, "hyperparameter learning_rate must be a positive number or "
     "'lin_X'"),
    (["train", "--resume", "{empty_run}"], 2, "train_config.json must hold the run's settings, an object with "
     "format_version 1 and \"train\" (the training settings); got {{}}"),
], ids=lambda v: " ".join(v[-2:]) if isinstance(v, list) else None)
def test_bad_input_on_the_command_line_is_named_in_one_line(places, capsys, argv, code, message):
    got, printed = run_cli([a.format(**places) for a in argv], capsys)
    assert (got, "Traceback" in printed) == (code, False), printed
    assert message.format(**places) in printed


@pytest.mark.parametrize("field,value,message", [
    ("d_model", "128", "d_model must be an integer; got '128'"),
    ("d_model", 128.0, "d_model must be an integer; got 128.0"),
    ("d_model", None, "d_model must be an integer; got None"),
    ("frame_shape", "ab", "frame_shape must be a pair of integers [H, W]; got 'ab'"),
    ("frame_shape", [7.5, 7], "frame_shape must be a pair of integers [H, W]; got [7.5, 7]"),
    ("mlp_ratio", -1, "mlp_ratio must be > 0, got -1"),
    ("n_layers", "2", "n_layers must be an integer; got '2'"),
    ("block_sizes", "x", "block_sizes must be null or a list of [b_h, b_w] pairs, one per layer; got 'x'"),
    ("block_sizes", [[1], [7, 7]], "block_sizes[0] must be a pair of integers [b_h, b_w]; got [1]"),
    ("metadata", 3, "metadata must be a dict; got 3"),
])
def test_a_checkpoint_config_of_the_wrong_kind_names_the_file_and_field(tmp_path, places, field, value, message):
    shutil.copytree(places["model"], tmp_path / "model")
    payload = json.loads((tmp_path / "model" / "config.json").read_text())
    payload["config"][field] = value
    if field == "n_layers":
        payload["config"]["block_sizes"] = None         # the default blocks are built from n_layers
    (tmp_path / "model" / "config.json").write_text(json.dumps(payload))
    with pytest.raises(CheckpointError) as e:
        WorldModel.from_pretrained(tmp_path / "model")
    assert f"config.json is not a valid worldsim config: WorldModelConfig: {message}" in str(e.value)


@pytest.fixture(scope="module")
def two_step_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("resume") / "run"
    Trainer(config(steps=6, save_every=2), synthetic_data(), out=run).fit(until=2)
    return run


@pytest.mark.parametrize("edit,message", [
    (lambda s: "garbage{", "trainer_state.json is not valid JSON (Expecting value"),
    (lambda s: "", "trainer_state.json is not valid JSON (the file is empty)"),
    (lambda s: [1, 2], "trainer_state.json must hold a JSON object (the trainer state); got [1, 2]"),
    (lambda s: {**s, "format_version": 7}, "format_version must be 1; got 7"),
    (lambda s: {**s, "sampler": 5}, "sampler must be an object whose \"bit_generator\" is a numpy PCG64 state; got 5"),
    (lambda s: {**s, "aux_rng": "x"}, "aux_rng must be a numpy PCG64 state; got 'x'"),
    (lambda s: {**s, "rng": {"python": 3}}, "rng must be the python and numpy RNG states, as saved; got {'python': 3}"),
    (lambda s: {**s, "interval": {"loss": 5}},
     "interval must be an object of metric: [sum, weight] pairs of numbers; got {'loss': 5}"),
    (lambda s: {**s, "last_eval": "x"}, "last_eval must be a step number, or -1 (no evaluation yet); got 'x'"),
    (lambda s: {**s, "world_size": "two"}, "world_size must be a positive integer; got 'two'"),
])
def test_a_garbage_trainer_state_is_refused_naming_the_file_and_key(tmp_path, two_step_run, edit, message):
    run = shutil.copytree(two_step_run, tmp_path / "run")
    state_file = run / "checkpoints" / "checkpoint-00000002" / "trainer_state.json"
    new = edit(json.loads(state_file.read_text()))
    state_file.write_text(new if isinstance(new, str) else json.dumps(new))
    with pytest.raises(TrainError) as e:
        Trainer.resume(run, data=synthetic_data())
    assert str(state_file) in str(e.value) and message in str(e.value)


@pytest.mark.parametrize("text,message", [
    ("", "train_config.json is not valid JSON (the file is empty)"),
    ("{}", "train_config.json must hold the run's settings, an object with format_version 1 and \"train\" (the "
           "training settings); got {}"),
    ('{"format_version": 1, "train": 3}', "train_config.json must hold the run's settings, an object with "
                                          "format_version 1 and \"train\" (the training settings); got "
                                          "{'format_version': 1, 'train': 3}"),
])
def test_a_run_config_that_is_empty_or_foreign_is_refused_before_anything_else(tmp_path, two_step_run, text, message):
    run = shutil.copytree(two_step_run, tmp_path / "run")
    (run / "train_config.json").write_text(text)
    with pytest.raises(TrainError) as e:
        Trainer.resume(run, data=synthetic_data())
    assert f"cannot resume: {run / message}" in str(e.value)      # not "no training data"


def test_a_codec_config_written_by_another_codec_is_named():
    """Egocentric weights whose metadata names the map-view codec (which needs the grid's size)."""
    from worldsim.codecs import codec_from_config

    with pytest.raises(ValueError, match=re.escape("codec config {'version': 'minigrid-map-v1', 'view_size': 7} "
                                                   "lacks ['width', 'height']: a 'minigrid-map-v1' codec needs")):
        codec_from_config({"version": "minigrid-map-v1", "view_size": 7})
    with pytest.raises(ValueError, match="lacks 'view_size', which a 'minigrid-symbolic-v1' codec needs"):
        codec_from_config({"version": "minigrid-symbolic-v1"})
    model = tiny_minigrid_model()
    model.config.metadata["codec"] = {"version": "minigrid-map-v1", "view_size": 7}
    with pytest.raises(CheckpointError, match=re.escape("metadata.codec of the model's config (config.json): codec "
                                                        "config {'version': 'minigrid-map-v1', 'view_size': 7} lacks")):
        DreamEnv(model, device="cpu")


@pytest.mark.parametrize("plant", ["fifo", "/dev/zero"])
def test_training_names_a_shard_that_is_no_regular_file(tmp_path, places, plant):
    """Not "missing": it is there, but a pipe or a device, which training refuses to read."""
    import os

    from worldsim.data.dataset import DatasetError, EpisodeDataset

    data = shutil.copytree(places["data"], tmp_path / "data")
    shard = data / "shard-00000.npz"
    shard.unlink()
    os.mkfifo(shard) if plant == "fifo" else shard.symlink_to(plant)
    with pytest.raises(DatasetError, match="shard-00000.npz: not a regular file \\(a pipe, device or folder\\); a "
                                           "shard must be a file"):
        EpisodeDataset(data)
    shard.unlink()
    with pytest.raises(DatasetError, match="shard-00000.npz: shard listed in the manifest is missing"):
        EpisodeDataset(data)


def test_an_sb3_zip_is_unpickled_once_by_the_algorithm_its_metadata_names(tmp_path, monkeypatch):
    """An SB3 zip's pickles run code as they load: one load, by the class its JSON names, not PPO,
    then A2C, then DQN in turn."""
    import gymnasium as gym
    from stable_baselines3 import A2C

    from agents import training

    A2C("MlpPolicy", gym.make("CartPole-v1"), device="cpu").save(tmp_path / "alone.zip")
    loads = []
    for name, cls in training.ALGOS.items():
        monkeypatch.setattr(cls, "load", classmethod(lambda c, *a, **k: loads.append(c.__name__) or "policy"))
    assert training.load_policy(tmp_path / "alone.zip", device="cpu") == ("policy", {})
    assert loads == ["A2C"]


# ---- a full disk --------------------------------------------------------------------------------

def test_a_full_disk_is_named_and_the_file_there_before_is_kept(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("before")

    def fill_the_disk(tmp):
        Path(tmp).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(NoSpaceError, match=f"cannot write {re.escape(str(path))}: no space left on device") as e:
        atomic_write(path, fill_the_disk)
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, OSError)
    assert path.read_text() == "before" and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),   # torch's short write
], ids=["ENOSPC", "unexpected pos"])
def test_a_checkpoint_the_disk_has_no_room_for_keeps_the_previous_one(tmp_path, two_step_run, monkeypatch, failure):
    from train.run_folder import list_checkpoints

    run = shutil.copytree(two_step_run, tmp_path / "run")
    data = synthetic_data()
    trainer = Trainer.resume(run, data=data)

    def fill_the_disk(*args, **kwargs):
        raise failure

    monkeypatch.setattr(torch, "save", fill_the_disk)          # the optimizer state, in each checkpoint
    checkpoints = run / "checkpoints"
    with pytest.raises(NoSpaceError, match=re.escape(
            f"cannot write checkpoint {checkpoints / 'checkpoint-00000004'}: no space left on device; the previous "
            f"checkpoint {checkpoints / 'checkpoint-00000002'} is kept: free some space, then resume with --resume")):
        trainer.fit(until=4)
    monkeypatch.undo()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-00000002"]
    assert not list(checkpoints.glob(".tmp-*")) and (run / "latest").read_text().strip().endswith("checkpoint-00000002")
    assert Trainer.resume(run, data=data).step == 2


def test_a_metrics_line_the_disk_has_no_room_for_is_named(tmp_path, two_step_run, monkeypatch):
    import builtins

    from train import run_folder

    run = shutil.copytree(two_step_run, tmp_path / "run")
    trainer = Trainer.resume(run, data=synthetic_data())

    def full_when_appending(path, mode="r", *args, **kwargs):
        if "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(run_folder, "open", full_when_appending, raising=False)   # the module's own `open`
    with pytest.raises(NoSpaceError, match=re.escape(f"cannot append to {run / 'metrics.jsonl'}: no space left on "
                                                     "device; the checkpoints written so far are kept")):
        trainer.fit(until=3)


def test_the_train_command_reports_a_full_disk_in_one_line(places, capsys, monkeypatch):
    def fill_the_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fill_the_disk)
    tiny = [f"--model.{k}={v}" for k, v in TINY.items()]
    run = Path(places["new"]) / "full"
    code, printed = run_cli(["train", "--data", places["data"], "--out", str(run), "--steps", "1", "--batch-size", "1",
                             "--curriculum", "2", "--holdout-fraction", "0", "--num-threads", "1", "--progress", "false",
                             "--tensorboard", "false", *tiny], capsys)
    assert (code, "Traceback" in printed) == (1, False), printed
    assert f"worldsim train: error: cannot write checkpoint {run / 'checkpoints' / 'checkpoint-00000001'}: no space " \
           "left on device; no checkpoint was written" in printed
