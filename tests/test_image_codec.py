"""The image codec: MiniGrid's RGB view collected as frames of a tokenizer's tokens, the tokenizer
carried into the dataset and on into the world model trained on it, and frames never decoded by a
tokenizer other than the one that made them."""

import json
import shutil

import numpy as np
import pytest
import torch

import envs.images.codec as image_codec
from envs.images.codec import ImageCodec
from envs.images.sources import random_frames
from envs.images.tokenizer import TokenizerConfig
from train.cli import main
from train.collect import collect
from train.tokenizer import TokenizerTraining, train_tokenizer
from worldsim import WorldModel
from worldsim.checkpoint import CheckpointError
from worldsim.codecs import codec_from_config
from worldsim.data.dataset import DatasetError, EpisodeDataset, verify_dataset

ENV = "MiniGrid-Empty-5x5-v0"


def _tokenizer(folder, seed=0):
    frames = random_frames(ENV, 64, seed=seed, num_envs=2)
    config = TokenizerConfig(image_shape=(56, 56, 3), patch=8, levels=(4, 4, 4), width=8, blocks=0)
    tokenizer, _ = train_tokenizer(frames, config, TokenizerTraining(steps=20, batch_size=8, seed=seed),
                                   progress=False)
    tokenizer.save(folder)
    return folder


@pytest.fixture(scope="module")
def rgb_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgb")
    tok = _tokenizer(root / "tok")
    collect(ENV, "random", episodes=4, out=root / "data", max_steps=12, num_envs=2, view="rgb", tokenizer=tok,
            progress=False)
    return root


@pytest.fixture
def forget_loaded_tokenizers():
    """Each test process keeps the tokenizers it loaded; these tests check what is found on disk alone."""
    saved = dict(image_codec._LOADED)
    image_codec._LOADED.clear()
    yield
    image_codec._LOADED.clear()
    image_codec._LOADED.update(saved)


def test_rgb_frames_are_the_tokenizers_tokens_of_minigrids_rgb_view(rgb_data):
    data = EpisodeDataset(rgb_data / "data")
    codec = data.codec
    assert isinstance(codec, ImageCodec) and codec.frame_shape == (7, 7) and codec.vocab_size == 64
    assert data.manifest["codec"]["version"] == "image-fsq-v1" and (rgb_data / "data" / "tokenizer").is_dir()
    episode = data.episode(0)
    # The first frame is the tokenizer's encoding of the real env's RGB partial view after reset.
    import gymnasium as gym
    from minigrid.wrappers import RGBImgPartialObsWrapper

    env = RGBImgPartialObsWrapper(gym.make(ENV, max_steps=12))
    image = env.reset(seed=int(episode.seed))[0]["image"]
    assert np.array_equal(episode.frames[0], codec.encode(image).numpy())
    assert verify_dataset(rgb_data / "data").ok
    # No places in an image: the memory metrics' gaps are all unknown.
    assert (data.stream([0]).gap == -1).all()
    decoded, directions = codec.decode_batch(episode.frames[:2])
    assert decoded.shape == (2, 56, 56, 3) and decoded.dtype == np.uint8 and directions is None


def test_a_dataset_without_its_tokenizer_or_with_another_is_refused(rgb_data, tmp_path, forget_loaded_tokenizers):
    shutil.copytree(rgb_data / "data", tmp_path / "data")
    assert isinstance(EpisodeDataset(tmp_path / "data").codec, ImageCodec)       # from its own files
    image_codec._LOADED.clear()
    shutil.rmtree(tmp_path / "data" / "tokenizer")
    with pytest.raises(DatasetError, match="need the tokenizer they were made with"):
        EpisodeDataset(tmp_path / "data")
    _tokenizer(tmp_path / "data" / "tokenizer", seed=1)
    with pytest.raises(DatasetError, match="holds another tokenizer"):
        EpisodeDataset(tmp_path / "data")
    assert not verify_dataset(tmp_path / "data").ok


@pytest.fixture(scope="module")
def rgb_run(rgb_data):
    """A tiny world model trained two steps on the RGB frames, by the command line."""
    tiny = [f"--model.{k}={v}" for k, v in dict(d_model=32, n_layers=1, d_state=8, headdim=16, n_heads=2,
                                                 attn_window=3, chunk_size=16, backend="torch").items()]
    run = rgb_data / "run"
    assert main(["train", "--data", str(rgb_data / "data"), "--out", str(run), "--steps", "2", "--batch-size", "2",
                 "--curriculum", "0:6", "--num-threads", "1", "--progress", "false", "--eval-every", "0",
                 "--rollout-episodes", "1", "--rollout-context", "2", "--rollout-horizon", "2", "--eval-windows", "1",
                 "--eval-length", "6", *tiny]) == 0
    return run


def test_a_world_model_trained_on_rgb_frames_carries_its_tokenizer(rgb_run, tmp_path, forget_loaded_tokenizers):
    run = tmp_path / "run"
    shutil.copytree(rgb_run, run)
    meta = json.loads((run / "model" / "config.json").read_text())["config"]["metadata"]
    assert meta["codec"]["version"] == "image-fsq-v1"
    image_codec._LOADED.clear()
    model = WorldModel.from_pretrained(run / "model")                 # its tokenizer from its own folder
    codec = codec_from_config(meta["codec"])
    assert codec.vocab_size == model.config.vocab_size
    image_codec._LOADED.clear()
    shutil.rmtree(run / "model" / "tokenizer")
    with pytest.raises(CheckpointError, match="cannot be decoded"):
        WorldModel.from_pretrained(run / "model")


def test_collecting_rgb_needs_a_tokenizer_for_that_view(tmp_path):
    with pytest.raises(ValueError, match="pass tokenizer"):
        collect(ENV, "random", episodes=1, out=tmp_path / "a", view="rgb", progress=False)
    folder = tmp_path / "tok"
    config = TokenizerConfig(image_shape=(64, 64, 3), patch=8, levels=(2, 2), width=4, blocks=0)
    from envs.images.tokenizer import FrameTokenizer

    FrameTokenizer(config).save(folder)
    with pytest.raises(ValueError, match=r"reads images of \(64, 64, 3\)"):
        collect(ENV, "random", episodes=1, out=tmp_path / "b", view="rgb", tokenizer=folder, progress=False)
    assert torch.is_tensor(ImageCodec.from_tokenizer_folder(folder).legal_mask())


def test_a_dream_of_rgb_frames_is_a_gymnasium_env_that_shows_images(rgb_run):
    from gymnasium.utils.env_checker import check_env

    from envs.images.sources import image_env
    from worldsim import DreamEnv, DreamVectorEnv

    env = DreamEnv(rgb_run / "model", device="cpu")
    assert env.observation_space == image_env(ENV).observation_space
    check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    real_obs, _ = image_env(ENV).reset(seed=3)
    codec = env.codec
    assert info["start"] == "real" and obs.dtype == np.uint8
    assert np.array_equal(obs, codec.decode_batch(codec.encode(real_obs)[None])[0][0])    # its first view, tokenized
    obs, reward, terminated, truncated, info = env.step(2)
    assert obs.shape == (56, 56, 3) and "uncertainty" in info
    vec = DreamVectorEnv(rgb_run / "model", num_envs=3, device="cpu", return_torch=True)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (3, 56, 56, 3) and obs.dtype == torch.uint8
    obs, *_ = vec.step(torch.tensor([0, 1, 2]))
    assert obs.shape == (3, 56, 56, 3)
    with pytest.raises(ValueError, match="images already"):
        DreamEnv(rgb_run / "model", device="cpu", obs_mode="rgb")


def test_a_native_agent_trains_in_the_rgb_dream_and_is_scored_on_the_real_envs_images(rgb_run, tmp_path):
    from agents.evaluation import evaluate_policy
    from agents.training import train_agent

    info = train_agent(ENV, where="dream", algo="native-ppo", steps=64, out=tmp_path / "agent",
                       checkpoint=rgb_run / "model", num_envs=4, device="cpu",
                       hyperparams={"num_steps": 16, "minibatch_size": 32, "epochs": 1})
    assert info["features"] == "pixels" and info["network"]["observation_shape"] == [56, 56, 3]
    assert info["observation"]["kind"] == "pixels" and info["observation"]["image_shape"] == [56, 56, 3]
    real = evaluate_policy(tmp_path / "agent", episodes=2, where="real", device="cpu", max_episode_steps=5)
    dream = evaluate_policy(tmp_path / "agent", ENV, episodes=2, where="dream", checkpoint=rgb_run / "model",
                            device="cpu", max_episode_steps=5)
    assert real["episodes"] == dream["episodes"] == 2 and max(real["lengths"]) <= 5
    with pytest.raises(ValueError, match="use features 'pixels'"):
        train_agent(ENV, where="dream", algo="native-ppo", steps=8, out=tmp_path / "a2", features="cnn",
                    checkpoint=rgb_run / "model", device="cpu")
    with pytest.raises(ValueError, match="trains with algo 'native-ppo'"):
        train_agent(ENV, where="dream", algo="ppo", steps=8, out=tmp_path / "a3", checkpoint=rgb_run / "model",
                    device="cpu")
    with pytest.raises(ValueError, match="this agent sees MiniGrid's symbolic cells"):
        train_agent(ENV, where="real", algo="native-ppo", steps=8, out=tmp_path / "a4", features="pixels",
                    device="cpu")


def test_loading_the_image_codec_registers_the_minigrid_ids_its_frames_come_from():
    """A dream over an image model must make its real env in a process that never imported minigrid."""
    import subprocess
    import sys

    code = ("import gymnasium as gym; from worldsim.codecs import load_codec_class; "
            "assert 'MiniGrid-Empty-5x5-v0' not in gym.registry; load_codec_class('image-fsq-v1'); "
            "assert 'MiniGrid-Empty-5x5-v0' in gym.registry")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_fidelity_benchmark_refuses_a_model_of_images_by_name(rgb_run):
    from benchmarks.fidelity import fidelity_benchmark

    with pytest.raises(ValueError, match="a model of images"):
        fidelity_benchmark(rgb_run / "model", ["random"], episodes=1, horizon=2, device="cpu")


def test_play_steps_an_rgb_dream_beside_the_real_envs_images(rgb_run, tmp_path):
    assert main(["play", "--checkpoint", str(rgb_run / "model"), "--actions", "2,2,1,2", "--real", "--record",
                 str(tmp_path / "play.gif"), "--device", "cpu", "--quiet"]) == 0
    assert (tmp_path / "play.gif").stat().st_size > 0
