"""ColorRooms: the memory benchmark's env paints every floor tile at random, so only memory predicts it."""

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

import envs.minigrid  # noqa: F401  (registers MiniGrid-ColorRooms-v0)
from envs.minigrid import MiniGridCodec
from envs.minigrid.memory_tasks import RetraceAgent


def floor_colours(env) -> np.ndarray:
    grid = env.unwrapped.grid.encode().astype(int)
    return np.where(grid[..., 0] == OBJECT_TO_IDX["floor"], grid[..., 1], -1)


def test_every_open_cell_is_floor_of_a_random_colour_drawn_per_episode():
    env = gym.make("MiniGrid-ColorRooms-v0")
    env.reset(seed=0)
    first = floor_colours(env)
    kinds = set(np.unique(env.unwrapped.grid.encode()[..., 0]))
    assert kinds == {OBJECT_TO_IDX["wall"], OBJECT_TO_IDX["floor"]}            # no goal, no empty cell
    assert env.unwrapped.grid.width == 19
    colours = first[first >= 0]
    assert set(np.unique(colours)) == set(COLOR_TO_IDX.values())
    assert np.bincount(colours).min() > len(colours) / 12                        # about uniform over six
    env.reset(seed=1)
    second = floor_colours(env)
    both = (first >= 0) & (second >= 0)
    assert (first[both] == second[both]).mean() < 0.4                            # a new painting
    env.reset(seed=0)
    np.testing.assert_array_equal(floor_colours(env), first)                     # seeded


def test_the_retrace_agent_walks_it_and_the_codec_round_trips_the_floor():
    env = gym.make("MiniGrid-ColorRooms-v0", max_steps=120)
    codec = MiniGridCodec.for_env(env)
    obs, _ = env.reset(seed=3)
    agent = RetraceAgent(context=60, seed=3)
    u = env.unwrapped
    agent.reset(obs, u.agent_pos, (u.width, u.height), seed=3)
    start, moved = tuple(u.agent_pos), 0
    for _ in range(120):
        tokens = codec.encode(obs)
        image, direction = codec.decode_batch(tokens[None])
        np.testing.assert_array_equal(image[0], obs["image"])
        before = tuple(u.agent_pos)
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, u.agent_pos))
        moved += tuple(u.agent_pos) != before
        assert not terminated
    assert moved > 20 and tuple(u.agent_pos) == start                             # out and back again


def test_too_small_a_layout_is_refused():
    with pytest.raises(ValueError, match="size >= 7"):
        gym.make("MiniGrid-ColorRooms-v0", size=5)
