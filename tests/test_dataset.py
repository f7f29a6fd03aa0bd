"""The dataset format and its read API: round trip, stream layout, split, gaps, and damaged files."""

import json

import gymnasium as gym
import minigrid  # noqa: F401
import numpy as np
import pytest

from envs.minigrid import MiniGridCodec
from envs.minigrid.explore import ExploreAgent
from envs.minigrid.visibility import view_to_world
from train.collect import collect
from worldsim.data.dataset import DatasetError, DatasetWriter, Episode, EpisodeDataset, verify_dataset
from worldsim.data.gap import episode_gap

ENV = "MiniGrid-Empty-5x5-v0"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Seven random episodes of at most 12 steps, in shards of three."""
    root = tmp_path_factory.mktemp("tiny")
    collect(ENV, "random", episodes=7, out=root, max_steps=12, num_envs=3, seed=10, shard_episodes=3,
            progress=False, view="ego")
    return root


def rollout(env_id, seed, steps, policy="random", max_steps=None):
    """Run an env directly, keeping what a dataset should hold plus brute-force view geometry."""
    env = gym.make(env_id, **({} if max_steps is None else {"max_steps": max_steps}))
    u = env.unwrapped
    codec = MiniGridCodec.for_env(env)
    obs, _ = env.reset(seed=seed)
    agent = ExploreAgent(seed=seed)
    agent.reset(obs, u.agent_pos, (u.width, u.height))
    rng = np.random.default_rng(seed)
    frames, pos, dirs, actions, views = [], [], [], [], []

    def record(obs):
        frames.append(codec.encode(obs).numpy())
        pos.append(tuple(u.agent_pos))
        dirs.append(u.agent_dir)
        v = u.agent_view_size  # world cell shown at each view (x, y), by asking minigrid about every place
        view = {}
        for i in range(-v, u.width + v):
            for j in range(-v, u.height + v):
                vx, vy = u.get_view_coords(i, j)
                if 0 <= vx < v and 0 <= vy < v:
                    view[(vy, vx)] = (i, j)
        views.append(view)

    record(obs)
    for _ in range(steps):
        a = agent.act(obs, u.agent_pos) if policy == "explore" else int(rng.integers(3))
        obs, _, terminated, truncated, _ = env.step(a)
        actions.append(a)
        record(obs)
        if terminated or truncated:
            break
    return codec, env, np.array(frames), np.array(pos), np.array(dirs), actions, views


# ---------------------------------------------------------------------------------------- round trip


def test_round_trip_matches_a_direct_replay(tiny):
    ds = EpisodeDataset(tiny)
    assert (ds.num_episodes, ds.vocab_size, ds.frame_shape, ds.num_actions, ds.env_id) == (7, 138, (7, 7), 7, ENV)
    assert ds.manifest["totals"]["episodes"] == 7 and len(ds.manifest["shards"]) == 3
    seeds = []
    for i in range(ds.num_episodes):
        ep = ds.episode(i)
        T = len(ep)
        assert ep.frames.dtype == np.uint8 and ep.frames.shape == (T + 1, 7, 7)
        assert ep.actions.dtype == np.int64 and ep.rewards.dtype == np.float32
        assert ep.agent_pos.dtype == np.int16 and ep.agent_pos.shape == (T + 1, 2)
        assert ep.agent_dir.dtype == np.int8 and ep.env_id == ENV
        assert (ep.terminated | ep.truncated)[-1] and not (ep.terminated | ep.truncated)[:-1].any()
        # Replaying the stored actions from the stored seed gives the stored frames and poses.
        env = gym.make(ENV, max_steps=12)
        codec = MiniGridCodec.for_env(env)
        obs, _ = env.reset(seed=ep.seed)
        np.testing.assert_array_equal(codec.encode(obs).numpy(), ep.frames[0])
        assert tuple(env.unwrapped.agent_pos) == tuple(ep.agent_pos[0]) and env.unwrapped.agent_dir == ep.agent_dir[0]
        for t, a in enumerate(ep.actions):
            obs, r, term, trunc, _ = env.step(int(a))
            np.testing.assert_array_equal(codec.encode(obs).numpy(), ep.frames[t + 1])
            assert tuple(env.unwrapped.agent_pos) == tuple(ep.agent_pos[t + 1])
            assert env.unwrapped.agent_dir == ep.agent_dir[t + 1]
            assert (r, term, trunc) == (ep.rewards[t], ep.terminated[t], ep.truncated[t])
        seeds.append(ep.seed)
    assert sorted(seeds) == list(range(10, 17))
    with pytest.raises(IndexError):
        ds.episode(7)


def test_writer_round_trips_episodes_exactly(tmp_path):
    header = {"env_id": ENV, "codec": MiniGridCodec().config, "vocab_size": 138, "frame_shape": [7, 7],
              "num_actions": 7, "policy": "random", "max_steps": 50, "seed": 0}
    codec, env, frames, pos, dirs, actions, _ = rollout(ENV, 3, 9)
    ep = Episode(frames=frames.astype(np.uint8), actions=np.array(actions), rewards=np.arange(9, dtype=np.float32),
                 terminated=np.eye(9, dtype=bool)[-1], truncated=np.zeros(9, bool), agent_pos=pos.astype(np.int16),
                 agent_dir=dirs.astype(np.int8), env_id=ENV, seed=3)
    DatasetWriter(tmp_path, header).write_shard([ep])
    back = EpisodeDataset(tmp_path).episode(0)
    for key in ("frames", "actions", "rewards", "terminated", "truncated", "agent_pos", "agent_dir"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ep, key))
        assert getattr(back, key).dtype == getattr(ep, key).dtype
    assert (back.seed, back.env_id) == (3, ENV)
    with pytest.raises(DatasetError, match="policy"):
        DatasetWriter(tmp_path, dict(header, policy="explore"))


# ---------------------------------------------------------------------------------------- stream, split


def test_stream_layout(tiny):
    ds = EpisodeDataset(tiny)
    ids = [5, 0, 3]
    eps = [ds.episode(i) for i in ids]
    s = ds.stream(ids)
    n = sum(len(ep) + 1 for ep in eps)
    assert len(s) == n
    assert s.frames.shape == (n, 7, 7) and s.gap.shape == (n, 7, 7) and s.gap.dtype == np.int32
    assert s.actions.dtype == np.int64 and s.rewards.dtype == np.float32
    start = 0
    for ep in eps:
        T = len(ep)
        sl = slice(start, start + T + 1)
        np.testing.assert_array_equal(s.frames[sl], ep.frames)
        np.testing.assert_array_equal(s.actions[sl], np.append(ep.actions, 0))
        np.testing.assert_array_equal(s.rewards[sl], np.append(ep.rewards, 0))
        np.testing.assert_array_equal(s.terminated[sl], np.append(ep.terminated, False))
        np.testing.assert_array_equal(s.has_target[sl], np.arange(T + 1) < T)
        np.testing.assert_array_equal(s.episode_start[sl], np.arange(T + 1) == 0)
        # where has_target, frame p + 1 is what action p led to
        p = np.flatnonzero(s.has_target[sl]) + start
        np.testing.assert_array_equal(s.frames[p + 1], ep.frames[1:])
        start += T + 1


def test_split_is_deterministic_and_disjoint(tiny):
    ds = EpisodeDataset(tiny)
    train, test = ds.split(0.3, seed=1)
    assert set(train).isdisjoint(test) and sorted(train + test) == list(range(7))
    assert len(test) == 2 and (train, test) == ds.split(0.3, seed=1)
    assert len(ds.split(0.01)[1]) == 1                         # never an empty test set
    with pytest.raises(ValueError):
        ds.split(1.0)


# ---------------------------------------------------------------------------------------- geometry, gap


def brute_gap(frames, views, unseen=0):
    last = {}
    gap = np.full(frames.shape, -1, dtype=np.int32)
    for p, view in enumerate(views):
        for (row, col), place in view.items():
            if frames[p, row, col] == unseen:
                continue
            if place in last:
                gap[p, row, col] = p - last[place]
        for (row, col), place in view.items():
            if frames[p, row, col] != unseen:
                last[place] = p
    return gap


@pytest.mark.parametrize("env_id,policy,steps", [("MiniGrid-FourRooms-v0", "explore", 200),
                                                  ("MiniGrid-DoorKey-6x6-v0", "random", 150)])
def test_view_geometry_and_gap_against_brute_force(env_id, policy, steps):
    codec, env, frames, pos, dirs, _, views = rollout(env_id, 1, steps, policy, max_steps=steps)
    wx, wy = view_to_world(pos, dirs, codec.view_size)
    for p in range(0, len(frames), 7):                         # pose -> world agrees with minigrid's own map
        for (row, col), place in views[p].items():
            assert (wx[p, row, col], wy[p, row, col]) == place
    # ...and with what the observation shows there (only the final frame's grid is at hand: check it)
    u = env.unwrapped
    image, _ = codec.decode_batch(frames[-1])
    for (row, col), (x, y) in views[-1].items():
        shown = tuple(image[col, row])
        if shown[0] == 0 or (row, col) == codec.agent_cell:
            continue
        inside = 0 <= x < u.width and 0 <= y < u.height
        cell = u.grid.get(x, y) if inside else minigrid.core.world_object.Wall()
        assert shown == (tuple(cell.encode()) if cell is not None else (1, 0, 0))
    gap = episode_gap(frames, pos, dirs, codec)
    np.testing.assert_array_equal(gap, brute_gap(frames, views))
    assert (gap > 1).any() and (gap == 1).any() and (gap == -1).any()


def test_every_frame_agrees_with_the_world_grid():
    """At every step, each visible view cell shows what the grid holds at the world place we compute."""
    env = gym.make("MiniGrid-MultiRoom-N2-S4-v0")
    u = env.unwrapped
    codec = MiniGridCodec.for_env(env)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(120):
        wx, wy = view_to_world(u.agent_pos, u.agent_dir, codec.view_size)
        image = obs["image"]
        for row in range(7):
            for col in range(7):
                if image[col, row, 0] == 0 or (row, col) == codec.agent_cell:
                    continue
                x, y = wx[row, col], wy[row, col]
                inside = 0 <= x < u.width and 0 <= y < u.height
                cell = u.grid.get(x, y) if inside else minigrid.core.world_object.Wall()
                assert tuple(image[col, row]) == (tuple(cell.encode()) if cell is not None else (1, 0, 0))
                checked += 1
        obs, *_ = env.step(int(rng.choice([0, 1, 2, 2, 5])))
    assert checked > 1000


def test_gap_of_a_cell_seen_left_and_seen_again():
    """Spin on the spot in an empty room: the cell 5 ahead is seen at frames 0 and 4 only."""
    env = gym.make("MiniGrid-Empty-8x8-v0")
    codec = MiniGridCodec.for_env(env)
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    assert (tuple(u.agent_pos), u.agent_dir) == ((1, 1), 0)
    frames, pos, dirs = [codec.encode(obs).numpy()], [u.agent_pos], [u.agent_dir]
    for _ in range(4):
        obs, *_ = env.step(0)                                  # turn left
        frames.append(codec.encode(obs).numpy())
        pos.append(u.agent_pos)
        dirs.append(u.agent_dir)
    gap = episode_gap(np.array(frames), np.array(pos), np.array(dirs), codec)
    assert gap[0, 1, 3] == -1 and gap[4, 1, 3] == 4            # world (6, 1): row 1 (5 ahead), column 3
    assert (gap[4][frames[4] != 0] >= 1).all()                 # frame 4 repeats frame 0: all seen before
    assert gap[4, 6, 3] == 1                                   # the agent's own cell, seen every frame


def test_stream_gap_resets_at_episode_boundaries(tiny):
    ds = EpisodeDataset(tiny)
    s = ds.stream([1, 1])
    first = np.flatnonzero(s.episode_start)
    np.testing.assert_array_equal(s.gap[first[0]], -np.ones((7, 7)))
    np.testing.assert_array_equal(s.gap[first[1]], -np.ones((7, 7)))
    np.testing.assert_array_equal(s.gap[: first[1]], s.gap[first[1]:])


# ---------------------------------------------------------------------------------------- damaged files


@pytest.fixture
def copy(tiny, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(tiny, root)
    return root


def test_corrupt_shard_names_the_file(copy):
    path = copy / "shard-00001.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    ds = EpisodeDataset(copy)
    ds.episode(0)                                              # other shards still read
    with pytest.raises(DatasetError, match="shard-00001.npz.*checksum"):
        ds.episode(3)
    assert not verify_dataset(copy).ok


def test_truncated_shard_names_the_file(copy):
    path = copy / "shard-00002.npz"
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(DatasetError, match="shard-00002.npz"):
        EpisodeDataset(copy).stream(range(7))


def test_missing_shard_and_manifest_name_the_file(copy):
    (copy / "shard-00000.npz").unlink()
    with pytest.raises(DatasetError, match="shard-00000.npz.*missing"):
        EpisodeDataset(copy)
    report = verify_dataset(copy)
    assert not report.ok and "shard-00000.npz" in str(report)
    (copy / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="manifest.json"):
        EpisodeDataset(copy)


def test_shard_with_the_right_checksum_but_wrong_arrays(copy):
    """A shard replaced by another valid npz (manifest checksum updated) still fails on its shapes."""
    import hashlib

    path = copy / "shard-00000.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["frames"] = arrays["frames"][:-1]
    np.savez_compressed(path, **arrays)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="shard-00000.npz.*frames"):
        EpisodeDataset(copy).episode(0)


def test_verify_passes_a_good_dataset_and_catches_bad_tokens(copy):
    import hashlib

    report = verify_dataset(copy)
    assert report.ok, str(report)
    assert report.summary["episodes"] == 7
    path = copy / "shard-00000.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["frames"][0, 0, 0] = 137                            # an agent token away from the agent's cell
    np.savez_compressed(path, **arrays)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify_dataset(copy)
    assert not report.ok and "shard-00000.npz: frames do not decode" in str(report)


def test_verify_never_hangs_on_a_pipe_or_an_endless_file(copy):
    """A shard that is a FIFO (reading blocks for ever) or a link to /dev/zero (reading never ends) is
    refused from its file type, before anything is read."""
    import os

    fifo = copy / "shard-00000.npz"
    fifo.unlink()
    os.mkfifo(fifo)
    report = verify_dataset(copy)
    assert not report.ok and "shard-00000.npz: not a regular file" in str(report)
    fifo.unlink()
    fifo.symlink_to("/dev/zero")
    report = verify_dataset(copy)
    assert not report.ok and "shard-00000.npz: not a regular file" in str(report)
    fifo.unlink()
    with open(fifo, "wb") as f:                          # a regular file far larger than its entry allows
        f.truncate(1 << 30)
    with pytest.raises(DatasetError, match=r"shard-00000.npz: 1,073,741,824 bytes, more than a shard of \d+ steps"):
        EpisodeDataset(copy).episode(0)


def test_non_finite_rewards_are_refused(copy):
    import hashlib

    path = copy / "shard-00001.npz"
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["rewards"] = np.full_like(arrays["rewards"], np.nan)
    np.savez_compressed(path, **arrays)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["shards"][1]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    report = verify_dataset(copy)
    assert not report.ok and "rewards are not finite (NaN or infinite)" in str(report)
    with pytest.raises(DatasetError, match="rewards are not finite"):
        EpisodeDataset(copy).episode(3)
