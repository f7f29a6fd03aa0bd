"""The allocentric map view: the agent's visible cells on the world grid, north up, the rest unseen."""

import gymnasium as gym
import numpy as np
import pytest

import envs.minigrid  # noqa: F401  (registers MiniGrid-ColorRooms-*)
from envs.minigrid import MiniGridCodec, MiniGridMapCodec
from envs.minigrid.memory_tasks import RetraceAgent
from train.collect import collect
from worldsim.codecs import codec_from_config
from worldsim.data.dataset import EpisodeDataset, verify_dataset
from worldsim.data.gap import episode_gap

from conftest import tiny_minigrid_model


def walk(env_id="MiniGrid-ColorRooms-13x13-v0", steps=80, seed=5):
    """(egocentric images, directions, positions, the env) of a retrace walk."""
    env = gym.make(env_id, max_steps=steps + 1)
    obs, _ = env.reset(seed=seed)
    u = env.unwrapped
    agent = RetraceAgent(context=steps // 2, seed=seed)
    agent.reset(obs, u.agent_pos, (u.width, u.height), seed=seed)
    images, dirs, pos = [obs["image"]], [obs["direction"]], [tuple(u.agent_pos)]
    for _ in range(steps):
        obs, *_ = env.step(agent.act(obs, u.agent_pos))
        images.append(obs["image"]), dirs.append(obs["direction"]), pos.append(tuple(u.agent_pos))
    return np.stack(images), np.array(dirs), np.array(pos), env


def test_a_map_frame_shows_exactly_the_visible_cells_at_their_world_places():
    images, dirs, pos, env = walk()
    u = env.unwrapped
    codec = MiniGridMapCodec.for_env(env)
    assert codec.frame_shape == (13, 13)
    frames = codec.encode_episode(images, dirs, pos).numpy()
    world, directions = codec.decode_batch(frames)
    np.testing.assert_array_equal(directions, dirs)
    truth = u.grid.encode()                                              # [W, H, 3], the final painting
    seen = (world[..., 0] != 0)                                          # [T, W, H]
    for t in range(len(frames)):
        # The agent's token sits at its position; every other seen cell is the world's own cell.
        row, col = np.argwhere(frames[t] >= codec.agent_token_base)[0]
        assert (col, row) == tuple(pos[t])
        others = seen[t].copy()
        others[pos[t][0], pos[t][1]] = False
        np.testing.assert_array_equal(world[t][others], truth[others])
        # As many cells as the egocentric view shows inside the grid.
        wx, wy = MiniGridCodec(7).world_cells(pos[t], dirs[t])
        ego = MiniGridCodec(7).encode_batch(images[t], dirs[t]).numpy()
        inside = (ego != codec.unseen_token) & (wx >= 0) & (wx < 13) & (wy >= 0) & (wy < 13)
        assert seen[t].sum() == inside.sum()
    assert 0 < seen.sum(axis=(1, 2)).min() < 13 * 13 / 2                 # partial views, never empty


def test_the_map_and_the_egocentric_view_give_the_same_gaps_per_world_cell():
    images, dirs, pos, env = walk(steps=120)
    ego_codec, map_codec = MiniGridCodec(7), MiniGridMapCodec.for_env(env)
    ego, mapped = ego_codec.encode_batch(images, dirs).numpy(), map_codec.encode_episode(images, dirs, pos).numpy()
    ego_gap, map_gap = episode_gap(ego, pos, dirs, ego_codec), episode_gap(mapped, pos, dirs, map_codec)
    wx, wy = ego_codec.world_cells(pos, dirs)
    t = np.broadcast_to(np.arange(len(ego))[:, None, None], ego.shape)
    inside = (ego != ego_codec.unseen_token) & (wx >= 0) & (wx < 13) & (wy >= 0) & (wy < 13)
    np.testing.assert_array_equal(map_gap[t[inside], wy[inside], wx[inside]], ego_gap[inside])
    assert (map_gap > 16).any()                                           # the walk comes back to old places
    assert (map_gap[mapped == map_codec.unseen_token] == -1).all()


def test_collect_records_the_map_view_and_the_dataset_reads_it(tmp_path):
    collect("MiniGrid-ColorRooms-13x13-v0", policy="retrace:30", episodes=2, max_steps=61, out=tmp_path / "map",
            view="map", num_envs=2, progress=False)
    data = EpisodeDataset(tmp_path / "map")
    assert isinstance(data.codec, MiniGridMapCodec) and data.frame_shape == (13, 13)
    assert codec_from_config(data.manifest["codec"]).config == data.codec.config
    assert verify_dataset(tmp_path / "map").ok
    episode = data.episode(0)
    rows, cols = np.nonzero(episode.frames >= data.codec.agent_token_base)[1:]
    np.testing.assert_array_equal(np.stack([cols, rows], 1), episode.agent_pos)
    with pytest.raises(ValueError, match="view must be one of"):
        collect("MiniGrid-ColorRooms-13x13-v0", episodes=1, out=tmp_path / "bad", view="top")


def test_bad_map_input_gets_clear_errors():
    codec = MiniGridMapCodec(13, 13)
    images, dirs = np.zeros((2, 7, 7, 3), np.uint8), np.zeros(2, np.int64)
    images[:, 3, 6] = (1, 0, 0)
    with pytest.raises(ValueError, match="agent_pos must have shape"):
        codec.encode_episode(images, dirs, np.zeros((2, 3), np.int64))
    with pytest.raises(ValueError, match="outside the 13 x 13 grid"):
        codec.encode_episode(images, dirs, np.array([[1, 1], [13, 2]]))
    frames = codec.encode_episode(images, dirs, np.array([[1, 1], [5, 2]])).numpy()
    frames[1, 0, 0] = frames[1, 2, 5]                                     # a second agent
    with pytest.raises(ValueError, match="holds 2 agent tokens"):
        codec.decode_batch(frames)
    with pytest.raises(ValueError, match="width must be an integer >= 3"):
        MiniGridMapCodec(2, 13)
    with pytest.raises(ValueError, match="not this codec's"):
        MiniGridMapCodec.from_config({"version": "minigrid-symbolic-v1", "view_size": 7})
    assert codec.render(frames[0], tile_size=4).shape == (52, 52, 3)


def test_a_dream_env_refuses_a_map_view_model(tmp_path):
    from worldsim import DreamEnv

    model = tiny_minigrid_model("MiniGrid-ColorRooms-13x13-v0", codec=MiniGridMapCodec(13, 13))
    model.save_pretrained(tmp_path / "model")
    with pytest.raises(ValueError, match="cannot be drawn .* the egocentric view, the world view or an image codec"):
        DreamEnv(checkpoint=str(tmp_path / "model"), device="cpu")
