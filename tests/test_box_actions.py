"""Continuous actions: an env of images that acts in a Box of floats is collected, trained on and dreamed,
its actions embedded by an MLP into the model's conditioning; bad actions and mismatched parts are refused."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from box_action_env import ENV_ID, PushSquareEnv, register
from envs.images.sources import random_frames
from envs.images.tokenizer import TokenizerConfig
from train.collect import collect
from train.tokenizer import TokenizerTraining, train_tokenizer
from train.trainer import train
from worldsim import DreamEnv, DreamVectorEnv, WorldModel
from worldsim.actions import ActionBox
from worldsim.config import WorldModelConfig
from worldsim.data.dataset import EpisodeDataset, verify_dataset

torch.set_num_threads(1)
register()
BOX = {"low": [-1.0, -1.0], "high": [1.0, 1.0]}
TINY = dict(d_model=32, n_layers=2, d_state=16, headdim=16, n_heads=2, attn_window=4, backend="torch")


@pytest.fixture(scope="module")
def box_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("box")
    frames = random_frames(ENV_ID, 512, num_envs=4)
    # Trained enough that the background has one token whatever the square does around it.
    config = TokenizerConfig(image_shape=(36, 36, 3), patch=9, levels=(5, 5, 5), width=32, blocks=0)
    tokenizer, _ = train_tokenizer(frames, config, TokenizerTraining(steps=1000, batch_size=32, lr=1e-2),
                                   progress=False)
    tokenizer.save(root / "tok")
    collect(ENV_ID, "random", episodes=120, out=root / "data", num_envs=8, tokenizer=root / "tok", progress=False)
    return root


@pytest.fixture(scope="module")
def box_model(box_data):
    run = box_data / "run"
    train(data=str(box_data / "data"), out=str(run), steps=500, batch_size=16, curriculum=[[0, 12]], lr=3e-3,
          warmup_steps=10, eval_every=0, rollout_episodes=0, num_threads=1, progress=False, model=TINY, seed=0)
    return run / "model"


def test_collect_records_the_box_actions_that_produced_each_frame(box_data):
    data = EpisodeDataset(box_data / "data")
    assert data.num_actions == 0 and data.manifest["action_box"] == BOX and data.action_box == ActionBox.from_json(
        BOX, "test")
    assert verify_dataset(box_data / "data").ok
    episode = data.episode(3)
    assert episode.actions.dtype == np.float32 and episode.actions.shape == (len(episode), 2)
    assert np.abs(episode.actions).max() <= 1 and episode.actions.std() > 0.3    # uniform in the box
    # Replaying the recorded actions from the episode's seed gives back every recorded frame.
    env = gym.make(ENV_ID)
    image, _ = env.reset(seed=int(episode.seed))
    replayed = [image]
    for action in episode.actions:
        replayed.append(env.step(action)[0])
    assert np.array_equal(data.codec.encode(np.stack(replayed)).numpy(), episode.frames)


def test_a_box_action_model_steps_exactly_as_it_runs_in_parallel():
    config = WorldModelConfig(vocab_size=16, frame_shape=(4, 4), num_actions=0, action_box=BOX, **TINY)
    model = WorldModel(config).eval()
    torch.nn.init.normal_(model.final_modulation.weight, std=0.1)     # let the action reach the output at init
    frames, actions = torch.randint(0, 16, (2, 6, 4, 4)), torch.rand(2, 6, 2) * 2 - 1
    parallel = model(frames, actions).frame_logits
    state, stepped = model.initial_state(2), []
    for t in range(6):
        out, state = model.step(state, frames[:, t], actions[:, t])
        stepped.append(out.frame_logits)
    assert torch.allclose(torch.stack(stepped, 1), parallel, atol=1e-5)
    assert not torch.allclose(model(frames, -actions).frame_logits, parallel)


def test_the_model_learns_what_each_action_does(box_data, box_model):
    """Teacher-forced next frames are predicted better with the actions taken than with their opposites:
    the action's MLP carries where the square moves."""
    model = WorldModel.from_pretrained(box_model).eval()
    assert model.config.action_box == BOX and model.config.num_actions == 0
    data = EpisodeDataset(box_data / "data")
    hits = {"taken": 0, "opposite": 0}
    total = 0
    with torch.no_grad():
        for i in range(data.num_episodes - 12, data.num_episodes):
            ep = data.episode(i)
            frames = torch.from_numpy(ep.frames[:-1].astype(np.int64))[None]
            targets = torch.from_numpy(ep.frames[1:].astype(np.int64))[None]
            for name, sign in (("taken", 1.0), ("opposite", -1.0)):
                actions = torch.from_numpy(sign * ep.actions)[None]
                predicted = model(frames, actions).frame_logits.argmax(-1)
                hits[name] += int((predicted == targets).sum())
            total += targets.numel()
    taken, opposite = hits["taken"] / total, hits["opposite"] / total
    assert taken > opposite + 0.04, (taken, opposite)


def test_a_box_action_dream_is_a_gymnasium_env_with_the_real_envs_action_box(box_model):
    from gymnasium.utils.env_checker import check_env

    env = DreamEnv(box_model, device="cpu")
    assert env.action_space == PushSquareEnv().action_space
    check_env(env, skip_render_check=True)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.5], dtype=np.float32))
    assert obs.shape == (36, 36, 3) and "uncertainty" in info
    with pytest.raises(ValueError, match=r"action\[1\] = 1.5 is not in the action box \[-1.0, 1.0\]"):
        env.step(np.array([0.0, 1.5], dtype=np.float32))
    with pytest.raises(ValueError, match=r"action must be numbers of shape \(2,\)"):
        env.step(np.zeros(3, dtype=np.float32))

    vec = DreamVectorEnv(box_model, num_envs=3, device="cpu")
    assert vec.single_action_space == env.action_space
    vec.reset(seed=1)
    obs, *_ = vec.step(vec.action_space.sample())
    assert obs.shape == (3, 36, 36, 3)
    with pytest.raises(ValueError, match=r"actions\[2, 0\] = nan is not in the action box"):
        vec.step(np.array([[0, 0], [0, 0], [np.nan, 0]], dtype=np.float32))
    with pytest.raises(ValueError, match=r"actions must be numbers of shape \(3, 2\)"):
        vec.step(np.zeros(3, dtype=np.int64))


def test_sb3_ppo_trains_in_a_box_action_dream(box_model, tmp_path):
    from stable_baselines3 import PPO

    from agents.sb3_vec_env import DreamSB3VecEnv

    env = DreamSB3VecEnv(checkpoint=box_model, num_envs=2, device="cpu")
    assert env.action_space == PushSquareEnv().action_space
    # An MLP over the pixels: enough to show SB3 acting in the box.
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    agent.learn(32)
    assert agent.num_timesteps >= 32


def test_mismatched_actions_are_refused_by_name(box_data, box_model, tmp_path):
    from train.config import TrainError

    with pytest.raises(ValueError, match=r"num_actions must be 0 for a Box of actions"):
        WorldModelConfig(vocab_size=16, frame_shape=(4, 4), num_actions=3, action_box=BOX)
    with pytest.raises(ValueError, match="action_box needs low < high"):
        WorldModelConfig(vocab_size=16, frame_shape=(4, 4), num_actions=0, action_box={"low": [1], "high": [0]})
    model = WorldModel(WorldModelConfig(vocab_size=16, frame_shape=(4, 4), num_actions=0, action_box=BOX, **TINY))
    with pytest.raises(TypeError, match=r"actions must be a float tensor \(a Box of 2 floats\)"):
        model(torch.zeros(1, 2, 4, 4, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long))
    # A discrete model does not take this data, nor a Box model discrete data.
    discrete = tmp_path / "discrete"
    WorldModel(WorldModelConfig(vocab_size=125, frame_shape=(4, 4), num_actions=3, **TINY)).save_pretrained(discrete)
    with pytest.raises(TrainError, match="action_box: data .*low.*, model None"):
        train(data=str(box_data / "data"), out=str(tmp_path / "run"), steps=1, init_from=str(discrete),
              progress=False, num_threads=1)
    # An env whose Box of actions is not a vector is refused when collecting.
    gym.register("WorldsimTest/MatrixActions-v0", entry_point=_matrix_action_env, max_episode_steps=4)
    with pytest.raises(ValueError, match=r"acts in Box.*\(2, 2\).*Box of floats of shape \(N,\)"):
        collect("WorldsimTest/MatrixActions-v0", "random", episodes=1, out=tmp_path / "m",
                tokenizer=box_data / "tok", progress=False)
    assert not (tmp_path / "m").exists()


def test_what_acts_in_discrete_actions_only_refuses_a_box_action_model(box_model, tmp_path):
    from agents.planner import Planner
    from train.play import PlaySession

    with pytest.raises(ValueError, match="the planner searches sequences of Discrete actions; this model acts in a Box"):
        Planner(box_model, device="cpu")
    with pytest.raises(ValueError, match="play steps a dream by keys, one per Discrete action; this model acts in Box"):
        PlaySession(box_model, device="cpu")


def test_the_native_ppo_trains_in_a_box_action_dream_and_plays_the_real_env(box_data, box_model, tmp_path):
    from agents.evaluation import evaluate_policy
    from agents.training import train_agent

    info = train_agent(ENV_ID, where="dream", algo="native-ppo", steps=64, out=tmp_path / "agent",
                       checkpoint=box_model, num_envs=4, device="cpu",
                       hyperparams={"num_steps": 16, "minibatch_size": 32, "epochs": 1})
    assert info["network"]["action_box"] == BOX and info["network"]["num_actions"] == 0
    for where in ("real", "dream"):
        result = evaluate_policy(tmp_path / "agent", episodes=3, where=where, device="cpu",
                                 **({"checkpoint": str(box_model)} if where == "dream" else {}))
        assert result["episodes"] == 3 and all(1 <= n <= 16 for n in result["lengths"])
    # The same agent trains in the real env of images (the baseline a dream is compared with).
    real = train_agent(ENV_ID, where="real", algo="native-ppo", steps=32, out=tmp_path / "real_agent", num_envs=2,
                       device="cpu", hyperparams={"num_steps": 16, "minibatch_size": 16, "epochs": 1})
    assert real["network"]["action_box"] == BOX
    # The agent collects more data, as `learn` does with its agents.
    collect(ENV_ID, str(tmp_path / "agent"), episodes=2, out=tmp_path / "more", num_envs=2,
            tokenizer=box_data / "tok", progress=False)
    more = EpisodeDataset(tmp_path / "more")
    assert more.manifest["policy"].startswith("native-ppo:agent@") and more.episode(0).actions.shape[1] == 2


def _matrix_action_env():
    env = PushSquareEnv()
    env.action_space = gym.spaces.Box(-1, 1, (2, 2), dtype=np.float32)
    return env


def test_a_dataset_manifest_with_a_bad_action_box_is_refused(box_data, tmp_path):
    import shutil

    from worldsim.data.dataset import DatasetError

    shutil.copytree(box_data / "data", tmp_path / "data")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    manifest["action_box"] = {"low": [-1.0], "high": ["x"]}
    (tmp_path / "data" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="action_box must be"):
        EpisodeDataset(tmp_path / "data")
