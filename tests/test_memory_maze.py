"""Memory Maze through Gymnasium's API on the CPU (MuJoCo draws through EGL): the registered ids, one maze per
seed, where the ball is in info, and its frames recorded through a frame tokenizer like any env of images.
A reset builds a maze (a few seconds on a CPU), so these tests make few."""

import importlib.util

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the Memory Maze ids)
from envs.images.tokenizer import FrameTokenizer, TokenizerConfig
from envs.memory_maze import MemoryMazeEnv
from train.collect import collect
from worldsim.data.dataset import EpisodeDataset

# not importorskip: the package's own __init__ needs the retired `gym`, which envs.memory_maze does without
pytestmark = pytest.mark.skipif(importlib.util.find_spec("memory_maze") is None, reason="needs memory-maze")


def test_memory_maze_seeds_name_mazes_and_info_says_where_the_ball_is():
    assert [gym.spec(f"MemoryMaze-{s}-v0").max_episode_steps for s in ("9x9", "11x11", "13x13", "15x15")] == \
        [1000, 2000, 3000, 4000]
    env = gym.make("MemoryMaze-9x9-v0", max_episode_steps=6)
    assert env.action_space == gym.spaces.Discrete(6) and env.observation_space.shape == (64, 64, 3)

    def play(seed):
        obs, info = env.reset(seed=seed)
        frames, ends = [obs], []
        for _ in range(6):
            obs, reward, terminated, truncated, info = env.step(1)            # forward
            frames.append(obs)
            ends.append((terminated, truncated))
        return np.stack(frames), ends, info

    a, ends, info = play(3)
    b, _, _ = play(3)
    c, _, _ = play(4)
    assert a.dtype == np.uint8 and env.observation_space.contains(a[0])
    assert np.array_equal(a, b) and not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[-1])                                   # going forward changes the view
    assert ends[-1] == (False, True) and not any(t for t, _ in ends)          # the time limit truncates
    layout = info["maze_layout"]
    assert layout.shape == (9, 9) and set(np.unique(layout)) <= {0, 1}
    x, y = info["cell"]
    assert layout[y, x] == 1 and np.array_equal(info["cell"], np.floor(info["position"]))   # the ball is on the floor
    assert np.linalg.norm(info["heading"]) == pytest.approx(1.0, abs=1e-6) and info["target_pos"].shape == (2,)
    # the direction is the heading's nearest axis, as MiniGrid counts them (0: +x, 1: +y, 2: -x, 3: -y)
    assert np.dot(info["heading"], [(1, 0), (0, 1), (-1, 0), (0, -1)][info["direction"]]) >= np.cos(np.pi / 4) - 1e-9


def test_memory_maze_refuses_bad_settings_and_actions():
    with pytest.raises(ValueError, match="size must be one of 9x9, 11x11, 13x13, 15x15; got '8x8'"):
        MemoryMazeEnv(size="8x8")
    env = MemoryMazeEnv()
    with pytest.raises(RuntimeError, match="step\\(\\) before reset\\(\\)"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 6\) \(noop, forward, left"):
        env.step(6)
    env.close()


def test_memory_maze_frames_are_collected_through_a_frame_tokenizer(tmp_path):
    config = TokenizerConfig(image_shape=(64, 64, 3), patch=16, levels=(4, 4), width=8, blocks=0)
    FrameTokenizer(config).save(tmp_path / "tok")
    collect("MemoryMaze-9x9-v0", "random", episodes=1, out=tmp_path / "data", max_steps=4, num_envs=1,
            tokenizer=tmp_path / "tok", progress=False)
    data = EpisodeDataset(tmp_path / "data")
    episode = data.episode(0)
    assert data.num_actions == 6 and data.frame_shape == (4, 4) and data.manifest["max_steps"] == 4
    assert len(episode.actions) == 4 and episode.truncated[-1]
    first, _ = gym.make("MemoryMaze-9x9-v0").reset(seed=int(episode.seed))
    assert np.array_equal(episode.frames[0], data.codec.encode(first).numpy())


def test_the_retrace_walk_goes_back_through_the_cells_of_its_context_walk(tmp_path):
    config = TokenizerConfig(image_shape=(64, 64, 3), patch=16, levels=(4, 4), width=8, blocks=0)
    FrameTokenizer(config).save(tmp_path / "tok")
    context = 60
    collect("MemoryMaze-9x9-v0", "retrace:60", episodes=1, out=tmp_path / "data", max_steps=160, num_envs=1,
            tokenizer=tmp_path / "tok", progress=False, seed=5)
    data = EpisodeDataset(tmp_path / "data")
    episode = data.episode(0)
    assert data.manifest["policy"] == "retrace:60"
    cells = [tuple(c) for c in episode.agent_pos]
    walked = [c for i, c in enumerate(cells[:context + 1]) if i == 0 or c != cells[i - 1]]
    back = [c for i, c in enumerate(cells[context:]) if i == 0 or c != cells[context + i - 1]]
    assert len(set(walked)) >= 5                                        # the walk covers cells, random play spins
    # it gets back to the start, and every cell it moves through on the way is one of the walk's
    assert walked[0] in back and set(back[:back.index(walked[0])]) <= set(walked)
    assert set(episode.agent_dir.tolist()) <= {0, 1, 2, 3} and len(set(episode.agent_dir.tolist())) > 1
