"""An env of images that is not MiniGrid, end to end on the CPU: Crafter through Gymnasium's API, collected
through a frame tokenizer, a world model trained on it, its dream checked as a Gymnasium env, and an agent
trained in that dream scored in real Crafter."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the Crafter ids)
from envs.crafter import CrafterEnv, crafter_score
from envs.images.sources import random_frames
from envs.images.tokenizer import TokenizerConfig
from train.cli import main
from train.collect import collect
from train.tokenizer import TokenizerTraining, train_tokenizer
from worldsim.data.dataset import EpisodeDataset, verify_dataset

pytest.importorskip("crafter")
# Crafter with a 16 x 16 world instead of 64 x 64: a reset takes 0.05 s instead of 0.8 s; any registered id
# of images goes through the same paths.
ENV = "TinyCrafterReward-v1"
if ENV not in gym.registry:
    gym.register(ENV, entry_point="envs.crafter:CrafterEnv", kwargs={"area": 16}, max_episode_steps=10_000)


def test_the_crafter_ids_are_registered_with_the_benchmarks_spaces_and_time_limit():
    env = gym.make("CrafterReward-v1")
    assert env.spec.max_episode_steps == 10_000 and env.action_space == gym.spaces.Discrete(17)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and env.observation_space.contains(obs) and info["achievements"].sum() == 0
    assert gym.make("CrafterNoReward-v1").unwrapped._env._reward is False
    with pytest.raises(ValueError, match="area must be an int of at least 9"):
        gym.make("CrafterReward-v1", area=4)


def test_a_crafter_seed_names_one_world_and_its_episodes_end_as_gymnasium_says():
    from gymnasium.utils.env_checker import check_env

    env = gym.make(ENV, max_episode_steps=40)
    check_env(env.unwrapped, skip_render_check=True)
    actions = np.random.default_rng(0).integers(17, size=40)

    def play(seed):
        obs, info = env.reset(seed=seed)
        frames, ends = [obs], []
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(int(a))
            frames.append(obs)
            ends.append((terminated, truncated))
            if terminated or truncated:
                break
        return np.stack(frames), ends, info

    a, ends, info = play(7)
    b, _, _ = play(7)
    c, _, _ = play(8)
    assert a.shape[1:] == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a[0], c[0])
    assert ends[-1] == (False, True) and len(ends) == 40          # the time limit truncates; nobody died
    assert info["achievements"].shape == (22,)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 17\)"):
        env.unwrapped.step(17)


def test_the_crafter_score_is_the_geometric_mean_of_success_rates_in_percent():
    counts = np.zeros((4, 22), dtype=np.int64)
    counts[:2, 0] = 1                                  # one achievement in half the episodes: 50%
    counts[:, 1] = 3                                   # another in every episode: 100%
    score = crafter_score(counts)
    assert score["success_rates"][:3] == [50.0, 100.0, 0.0]
    assert score["score"] == pytest.approx(np.exp((np.log(51) + np.log(101)) / 22) - 1)
    lo, hi = score["score_ci"]
    assert lo < score["score"] < hi and crafter_score(counts)["score_ci"] == [lo, hi]
    assert crafter_score(np.ones((3, 22)))["score_ci"] == pytest.approx([100.0, 100.0])
    with pytest.raises(ValueError, match="at least one episode"):
        crafter_score(np.zeros((0, 22)))


@pytest.fixture(scope="module")
def crafter_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafter")
    frames = random_frames(ENV, 64, num_envs=2)
    config = TokenizerConfig(image_shape=(64, 64, 3), patch=16, levels=(4, 4), width=8, blocks=0)
    tokenizer, _ = train_tokenizer(frames, config, TokenizerTraining(steps=10, batch_size=8), progress=False)
    tokenizer.save(root / "tok")
    collect(ENV, "random", episodes=3, out=root / "data", max_steps=10, num_envs=2, tokenizer=root / "tok",
            progress=False)
    return root


def test_collect_records_any_env_of_images_as_tokens_of_its_frames(crafter_data):
    data = EpisodeDataset(crafter_data / "data")
    assert data.env_id == ENV and data.frame_shape == (4, 4) and data.num_actions == 17
    assert data.manifest["max_steps"] == 10 and verify_dataset(crafter_data / "data").ok
    episode = data.episode(1)
    first, _ = gym.make(ENV).reset(seed=int(episode.seed))
    assert np.array_equal(episode.frames[0], data.codec.encode(first).numpy())
    assert len(episode.actions) == 10 and episode.truncated[-1] and not episode.agent_pos.any()


def test_collecting_from_an_env_of_images_refuses_what_it_cannot_record(crafter_data, tmp_path):
    tok = crafter_data / "tok"
    with pytest.raises(ValueError, match="pass tokenizer"):
        collect(ENV, "random", episodes=1, out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match=f"view 'world' is MiniGrid's; {ENV} is not a MiniGrid env"):
        collect(ENV, "random", episodes=1, out=tmp_path / "b", view="world", tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="'expert' is scripted for MiniGrid"):
        collect(ENV, "expert", episodes=1, out=tmp_path / "c", tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="needs uint8 image observations"):
        collect("CartPole-v1", "random", episodes=1, out=tmp_path / "d", tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="unknown env id 'Nope-v0'"):
        collect("Nope-v0", "random", episodes=1, out=tmp_path / "e", tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="'walk' steers by the maze and the agent's pose that Memory Maze gives"):
        collect(ENV, "walk", episodes=1, out=tmp_path / "g", tokenizer=tok, progress=False)
    with pytest.raises(ValueError, match="'walk' is scripted for Memory Maze"):
        collect("MiniGrid-Empty-5x5-v0", "walk", episodes=1, out=tmp_path / "h", progress=False)
    other = TokenizerConfig(image_shape=(56, 56, 3), patch=8, levels=(2, 2), width=4, blocks=0)
    from envs.images.tokenizer import FrameTokenizer

    FrameTokenizer(other).save(tmp_path / "tok56")
    with pytest.raises(ValueError, match=r"shows images of \(64, 64, 3\); the tokenizer reads \(56, 56, 3\)"):
        collect(ENV, "random", episodes=1, out=tmp_path / "f", tokenizer=tmp_path / "tok56", progress=False)
    assert not any((tmp_path / name).exists() for name in "abcdefgh")


@pytest.fixture(scope="module")
def crafter_run(crafter_data):
    tiny = [f"--model.{k}={v}" for k, v in dict(d_model=32, n_layers=1, d_state=8, headdim=16, n_heads=2,
                                                 attn_window=3, chunk_size=16, backend="torch").items()]
    run = crafter_data / "run"
    assert main(["train", "--data", str(crafter_data / "data"), "--out", str(run), "--steps", "2",
                 "--batch-size", "2", "--curriculum", "0:6", "--num-threads", "1", "--progress", "false",
                 "--eval-every", "0", "--rollout-episodes", "1", "--rollout-context", "2", "--rollout-horizon", "2",
                 "--eval-windows", "1", "--eval-length", "6", *tiny]) == 0
    return run


def test_a_crafter_dream_is_a_gymnasium_env_and_an_agent_trained_there_plays_real_crafter(crafter_run, tmp_path,
                                                                                        monkeypatch):
    from gymnasium.utils.env_checker import check_env

    from agents.evaluation import evaluate_policy, format_table
    from agents.training import train_agent
    from worldsim import DreamEnv

    env = DreamEnv(crafter_run / "model", device="cpu")
    assert env.observation_space == gym.make(ENV).observation_space and env.action_space.n == 17
    check_env(env, skip_render_check=True)
    data = crafter_run.parent / "data"
    real_resets = []
    real_reset = CrafterEnv.reset

    def counted_reset(self, *, seed=None, options=None):
        real_resets.append(seed)
        return real_reset(self, seed=seed, options=options)

    monkeypatch.setattr(CrafterEnv, "reset", counted_reset)
    info = train_agent(ENV, where="dream", algo="native-ppo", steps=32, out=tmp_path / "agent",
                       checkpoint=crafter_run / "model", num_envs=2, device="cpu", starts=data,
                       hyperparams={"num_steps": 16, "minibatch_size": 16, "epochs": 1})
    assert info["features"] == "pixels" and info["observation"]["image_shape"] == [64, 64, 3]
    assert info["starts"] == str(data.resolve())
    assert not real_resets               # the dream started from the data's first frames, not from 256 real resets
    real = evaluate_policy(tmp_path / "agent", episodes=2, where="real", device="cpu", max_episode_steps=5)
    assert real["episodes"] == 2 and real["lengths"] == [5, 5]
    assert len(real["achievements"]["names"]) == len(real["achievements"]["success_rates"]) == 22
    assert "Crafter score" in format_table(real)
    # The same agent trains in the real env of images (the baseline a dream is compared with).
    baseline = train_agent(ENV, where="real", algo="native-ppo", steps=16, out=tmp_path / "real_agent", num_envs=2,
                           device="cpu", max_episode_steps=8, hyperparams={"num_steps": 8, "minibatch_size": 8,
                                                                           "epochs": 1})
    assert baseline["features"] == "pixels" and baseline["observation"]["image_shape"] == [64, 64, 3]
    with pytest.raises(ValueError, match="trains with algo 'native-ppo'"):
        train_agent(ENV, where="real", algo="ppo", steps=8, out=tmp_path / "sb3", device="cpu")
    # The agent collects more data, as `learn` does with its agents.
    collect(ENV, str(tmp_path / "agent"), episodes=2, out=tmp_path / "more", max_steps=4, num_envs=2,
            tokenizer=crafter_run.parent / "tok", progress=False)
    assert EpisodeDataset(tmp_path / "more").manifest["policy"].startswith("native-ppo:agent@")
