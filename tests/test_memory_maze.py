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


def test_a_tokenizer_of_maze_frames_learns_from_walks_that_cover_the_maze():
    from train.tokenizer import policy_frames

    frames = policy_frames("MemoryMaze-9x9-v0", 40, seed=2, policy="walk")
    assert frames.shape == (40, 64, 64, 3) and frames.dtype == np.uint8
    assert len({f.tobytes() for f in frames}) > 30                        # it moves: the views change
    with pytest.raises(ValueError, match="'expert' is scripted for MiniGrid"):
        policy_frames("MemoryMaze-9x9-v0", 10, policy="expert")


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


@pytest.fixture(scope="module")
def retrace_data(tmp_path_factory):
    """One Memory Maze episode of the memory task: a 60-step walk, then back (160 steps in all)."""
    root = tmp_path_factory.mktemp("maze")
    config = TokenizerConfig(image_shape=(64, 64, 3), patch=16, levels=(4, 4), width=8, blocks=0)
    FrameTokenizer(config).save(root / "tok")
    collect("MemoryMaze-9x9-v0", "retrace:60", episodes=1, out=root / "data", max_steps=160, num_envs=1,
            tokenizer=root / "tok", progress=False, seed=1)
    return root


def test_the_retrace_walk_goes_back_through_the_cells_of_its_context_walk(retrace_data):
    data = EpisodeDataset(retrace_data / "data")
    episode = data.episode(0)
    context = 60
    assert data.manifest["policy"] == "retrace:60"
    cells = [tuple(c) for c in episode.agent_pos]
    walked = [c for i, c in enumerate(cells[:context + 1]) if i == 0 or c != cells[i - 1]]
    back = [c for i, c in enumerate(cells[context:]) if i == 0 or c != cells[context + i - 1]]
    assert len(set(walked)) >= 5                                        # the walk covers cells, random play spins
    # it gets back to the start, and every cell it moves through on the way is one of the walk's; then it walks
    # the same cells again, facing the same way
    assert walked[0] in back and set(back[:back.index(walked[0])]) <= set(walked)
    again = back[back.index(walked[0]):]
    assert again[:5] == walked[:5]
    assert set(episode.agent_dir.tolist()) <= {0, 1, 2, 3} and len(set(episode.agent_dir.tolist())) > 1


def test_the_memory_benchmark_scores_maze_frames_in_pixels_by_frames_since_the_place_was_seen(retrace_data, tmp_path):
    from benchmarks.memory import format_memory_table, memory_benchmark
    from train.cli import main

    tiny = [f"--model.{k}={v}" for k, v in dict(d_model=32, n_layers=1, d_state=8, headdim=16, n_heads=2,
                                                 attn_window=3, chunk_size=16, backend="torch").items()]
    run = tmp_path / "run"
    assert main(["train", "--data", str(retrace_data / "data"), "--out", str(run), "--steps", "2",
                 "--batch-size", "1", "--curriculum", "0:16", "--num-threads", "1", "--progress", "false",
                 "--eval-every", "0", "--rollout-episodes", "0", "--eval-windows", "0", *tiny]) == 0
    result = memory_benchmark({"tiny": str(run / "model")}, retrace_data / "data", out=tmp_path / "bench",
                              episodes=1, device="cpu")
    r = result["models"]["tiny"]
    assert result["context_steps"] == 60 and result["test_steps"] == 161 - 61     # 161 frames
    for scores in (r, r["teacher_forced"]):
        assert 0 < scores["psnr"] <= 100 and -1 <= scores["ssim"] <= 1
        # the way back faces the other way (views never seen); the walk once more shows views seen long ago
        assert "psnr_gap_never" in scores and "psnr_gap_65-256" in scores
    assert "PSNR gap 65-256" in format_memory_table(result)
    assert "PSNR (dB)" in (tmp_path / "bench" / "memory.svg").read_text()


class _Poses:
    """Just what viewpoint_gaps reads of a dataset: poses (x, y, direction) per frame of each episode."""

    def __init__(self, *episodes):
        from types import SimpleNamespace

        self.root = "poses"
        self.episodes = [SimpleNamespace(agent_pos=np.array([p[:2] for p in ep]), agent_dir=np.array([p[2] for p in ep]))
                         for ep in episodes]
        self.num_episodes = len(episodes)
        self.frames = np.zeros((sum(len(ep) for ep in episodes), 2, 3), dtype=np.int64)   # as a stream holds them

    def episode(self, i):
        return self.episodes[i]

    def __len__(self):
        return len(self.frames)


def test_a_frames_gap_counts_back_to_the_same_cell_faced_the_same_way_within_its_episode():
    from benchmarks.memory import viewpoint_gaps

    poses = _Poses([(1, 1, 0), (2, 1, 0), (1, 1, 0), (1, 1, 3), (1, 1, 0)], [(1, 1, 0), (1, 1, 0)])
    gaps = viewpoint_gaps(poses, poses)
    assert gaps.shape == (7, 2, 3) and (gaps == gaps[:, :1, :1]).all()
    assert gaps[:, 0, 0].tolist() == [-1, -1, 2, -1, 2, -1, 1]       # episodes do not see each other's frames
    still = _Poses([(0, 0, 0)] * 3)
    with pytest.raises(ValueError, match="records no poses of its agent"):
        viewpoint_gaps(still, still)
