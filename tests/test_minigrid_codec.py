"""The MiniGrid frame codec round-trips every real observation exactly, batched or not."""

from functools import lru_cache

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid env ids)
import numpy as np
import pytest
import torch
from minigrid.core.constants import COLOR_NAMES, DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.world_object import Ball, Box, Door, Floor, Goal, Key, Lava, Wall, WorldObj
from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

from envs.minigrid import MiniGridCodec

ENV_IDS = [
    "MiniGrid-Empty-8x8-v0",
    "MiniGrid-DoorKey-8x8-v0",
    "MiniGrid-FourRooms-v0",
    "MiniGrid-MemoryS13Random-v0",
    "MiniGrid-KeyCorridorS3R1-v0",
    "MiniGrid-UnlockPickup-v0",
    "MiniGrid-LavaCrossingS9N1-v0",
]
TILE = 8
TOGGLE, PICKUP = 5, 3


@lru_cache(maxsize=None)
def random_rollout(env_id, steps=300, seed=0):
    """(images [N, view, view, 3], directions [N], pov renders of every 25th frame) under random actions."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    images, directions, renders = [], [], []
    for t in range(steps):
        images.append(obs["image"])
        directions.append(obs["direction"])
        if t % 25 == 0:
            renders.append((t, env.unwrapped.get_pov_render(TILE)))
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
    env.close()
    return np.stack(images), np.array(directions), renders


def _face(env, obj_type):
    """Teleport the agent onto an empty cell next to the first `obj_type`, facing it."""
    u = env.unwrapped
    target = next((x, y) for x in range(u.width) for y in range(u.height)
                  if u.grid.get(x, y) is not None and u.grid.get(x, y).type == obj_type)
    for direction, vec in enumerate(DIR_TO_VEC):
        stand = (target[0] - vec[0], target[1] - vec[1])
        if 0 <= stand[0] < u.width and 0 <= stand[1] < u.height and u.grid.get(*stand) is None:
            u.agent_pos, u.agent_dir = np.array(stand), direction
            return u.gen_obs()
    raise AssertionError(f"no free cell next to the {obj_type}")


@lru_cache(maxsize=None)
def doorkey_scripted(seed=3, steps=200):
    """DoorKey driven through pick-up-key, unlock, close, reopen, then random moves carrying the key."""
    env = gym.make("MiniGrid-DoorKey-8x8-v0")
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames = [(_face(env, "key"), None)]
    frames.append((env.step(PICKUP)[0], env.unwrapped.get_pov_render(TILE)))
    assert env.unwrapped.carrying is not None and env.unwrapped.carrying.type == "key"
    frames.append((_face(env, "door"), None))  # the door, still locked
    for _ in range(3):  # unlock (open), close, open again
        frames.append((env.step(TOGGLE)[0], env.unwrapped.get_pov_render(TILE)))
    for t in range(steps):  # turn, forward, toggle: never drop the key
        obs, _, terminated, truncated, _ = env.step(int(rng.choice([0, 1, 2, TOGGLE])))
        frames.append((obs, env.unwrapped.get_pov_render(TILE) if t % 40 == 0 else None))
        if terminated or truncated:
            break
    env.close()
    return frames


@pytest.fixture(scope="module")
def codec():
    return MiniGridCodec()


# ------------------------------------------------------------------ vocabulary


def test_vocabulary_layout(codec):
    # 62 cell tokens: unseen, empty, 8 objects x 6 colours, doors x 3 states (+12);
    # 76 agent tokens: 4 directions x (empty + key/ball/box x 6 colours).
    assert codec.vocab_size == 138 == 1 + 1 + 8 * 6 + 6 * 2 + 4 * (1 + 3 * 6)
    assert codec.agent_token_base == 62
    assert codec.frame_shape == (7, 7) and codec.agent_cell == (6, 3)
    assert codec.version == "minigrid-symbolic-v1"
    assert MiniGridCodec.from_config(codec.config).view_size == 7
    with pytest.raises(ValueError, match="version"):
        MiniGridCodec.from_config({"version": "other", "view_size": 7})


def test_every_token_decodes_and_reencodes(codec):
    """The table is a bijection: every id decodes to a distinct (image cell, direction) and back."""
    v, base, n = codec.view_size, codec.agent_token_base, codec.vocab_size
    row, col = codec.agent_cell
    cell_frames = torch.arange(base).view(-1, 1, 1).repeat(1, v, v)
    cell_frames[:, row, col] = base
    agent_frames = torch.ones(n - base, v, v, dtype=torch.long)
    agent_frames[:, row, col] = torch.arange(base, n)
    frames = torch.cat([cell_frames, agent_frames])
    images, directions = codec.decode_batch(frames)
    assert torch.equal(codec.encode_batch(images, directions), frames)
    assert len({tuple(images[i, 0, 0]) for i in range(base)}) == base
    assert len({(int(directions[i]), *images[i, col, row]) for i in range(base, n)}) == n - base
    assert sorted(set(directions[base:].tolist())) == [0, 1, 2, 3]


def test_vocabulary_covers_what_minigrid_objects_encode(codec):
    """Every triple a stock WorldObj can write is a cell token; carriable ones are agent contents."""
    objects = [Lava(), Box("red"), Key(), Ball()]
    for colour in COLOR_NAMES:
        objects += [Wall(colour), Floor(colour), Goal(colour), Key(colour), Ball(colour), Box(colour)]
        for is_open, is_locked in [(True, False), (False, False), (False, True)]:
            objects.append(Door(colour, is_open=is_open, is_locked=is_locked))
    env = gym.make("MiniGrid-Empty-8x8-v0")
    env.reset(seed=0)
    u = env.unwrapped
    for obj in objects:
        assert obj.can_pickup() == (obj.type in ("key", "ball", "box"))
        u.carrying = obj if obj.can_pickup() else None  # the view shows it in the agent's cell
        for direction in range(4):
            u.agent_dir = direction
            front = tuple(u.front_pos)
            u.grid.set(*front, obj)
            obs = u.gen_obs()
            assert tuple(obs["image"][3, 5]) == obj.encode()  # the cell ahead of the agent
            decoded = codec.decode(codec.encode(obs))
            assert np.array_equal(decoded["image"], obs["image"]) and decoded["direction"] == direction
            u.grid.set(*front, None)
    assert WorldObj.decode(OBJECT_TO_IDX["agent"], 0, 0) is None  # the view never holds an agent


# ------------------------------------------------------------------ round trips on real frames


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_round_trip_random_rollout(codec, env_id):
    images, directions, _ = random_rollout(env_id)
    tokens = codec.encode_batch(images, directions)
    assert tokens.dtype == torch.long and tokens.shape == (len(images), 7, 7)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < codec.vocab_size
    decoded, decoded_dirs = codec.decode_batch(tokens)
    assert decoded.dtype == np.uint8 and decoded_dirs.dtype == np.int64
    assert np.array_equal(decoded, images) and np.array_equal(decoded_dirs, directions)
    # A frame is the image transposed (row = y, column = x): unseen cells (token 0) line up, and
    # the agent's cell (image x=3, y=6) holds the agent tokens.
    assert torch.equal(tokens == 0, torch.from_numpy(images[..., 0] == 0).transpose(1, 2))
    assert bool((tokens[:, 6, 3] >= codec.agent_token_base).all())


@pytest.mark.parametrize("env_id", ["MiniGrid-DoorKey-8x8-v0", "MiniGrid-KeyCorridorS3R1-v0"])
def test_batched_encode_equals_per_frame(codec, env_id):
    images, directions, _ = random_rollout(env_id)
    batched = codec.encode_batch(images[:60].reshape(3, 20, 7, 7, 3), directions[:60].reshape(3, 20))
    assert batched.shape == (3, 20, 7, 7)
    for i in range(60):
        single = codec.encode({"image": images[i], "direction": directions[i], "mission": "m"})
        assert torch.equal(batched[i // 20, i % 20], single)
        decoded = codec.decode(single)
        assert np.array_equal(decoded["image"], images[i]) and decoded["direction"] == directions[i]
        assert isinstance(decoded["direction"], int)
    # torch inputs work too.
    assert torch.equal(codec.encode_batch(torch.from_numpy(images[:5]), torch.from_numpy(directions[:5])),
                       batched[0, :5])


def test_doorkey_carrying_and_door_states(codec):
    frames = doorkey_scripted()
    images = np.stack([obs["image"] for obs, _ in frames])
    directions = np.array([obs["direction"] for obs, _ in frames])
    decoded, decoded_dirs = codec.decode_batch(codec.encode_batch(images, directions))
    assert np.array_equal(decoded, images) and np.array_equal(decoded_dirs, directions)
    # The script did reach the states it is meant to cover.
    doors = images[images[..., 0] == OBJECT_TO_IDX["door"]]
    assert set(doors[:, 2].tolist()) == {0, 1, 2}
    assert (images[1:, 3, 6, 0] == OBJECT_TO_IDX["key"]).all()
    assert set(directions.tolist()) == {0, 1, 2, 3}


def test_direction_is_folded_into_the_frame(codec):
    images, directions, _ = random_rollout("MiniGrid-FourRooms-v0")
    image = images[0]
    frames = codec.encode_batch(np.stack([image] * 4), np.arange(4))
    assert len({tuple(f.flatten().tolist()) for f in frames}) == 4
    assert codec.decode_batch(frames)[1].tolist() == [0, 1, 2, 3]
    changed = (frames != frames[0]).any(dim=0).nonzero().tolist()
    assert changed == [[6, 3]]  # only the agent's cell tells the directions apart


# ------------------------------------------------------------------ rendering


@pytest.mark.parametrize("env_id", ["MiniGrid-FourRooms-v0", "MiniGrid-KeyCorridorS3R1-v0",
                                    "MiniGrid-LavaCrossingS9N1-v0"])
def test_render_matches_minigrid_pov_render(codec, env_id):
    images, directions, renders = random_rollout(env_id)
    for t, expected in renders:
        frame = codec.encode_batch(images[t], directions[t])
        assert np.array_equal(codec.render(frame, tile_size=TILE), expected)


def test_render_carrying_and_batched(codec):
    shown = [(obs, pov) for obs, pov in doorkey_scripted() if pov is not None]
    frames = torch.stack([codec.encode(obs) for obs, _ in shown])
    rendered = codec.render(frames, tile_size=TILE)
    assert rendered.shape == (len(shown), 7 * TILE, 7 * TILE, 3) and rendered.dtype == np.uint8
    for picture, (_, pov) in zip(rendered, shown):
        assert np.array_equal(picture, pov)


# ------------------------------------------------------------------ errors


def _obs(codec):
    images, directions, _ = random_rollout("MiniGrid-DoorKey-8x8-v0")
    return {"image": images[0].copy(), "direction": int(directions[0])}


def test_unknown_triples_are_refused(codec):
    obs = _obs(codec)
    obs["image"][1, 2] = (2, 5, 1)  # a wall with a door state
    with pytest.raises(ValueError, match=r"cell \(x=1, y=2\) holds .*\(2, 5, 1\) = \(wall, grey, closed\)"):
        codec.encode(obs)
    obs["image"][1, 2] = (11, 0, 0)  # no such object
    with pytest.raises(ValueError, match=r"\(11, 0, 0\) = \(\?, red, open\)"):
        codec.encode(obs)
    obs = _obs(codec)
    obs["image"][3, 6] = (2, 5, 0)  # a wall in the agent's own cell
    with pytest.raises(ValueError, match=r"agent's cell \(x=3, y=6\) shows .*wall.*key/ball/box"):
        codec.encode(obs)
    images = np.stack([_obs(codec)["image"]] * 3)
    images[2, 0, 0] = (4, 0, 3)  # door state 3 in the third image
    with pytest.raises(ValueError, match=r"cell \(x=0, y=0\) in batch element \(2,\).*\(4, 0, 3\)"):
        codec.encode_batch(images, np.zeros(3, dtype=np.int64))


def test_bad_shapes_and_directions_are_refused(codec):
    obs = _obs(codec)
    with pytest.raises(ValueError, match=r"shape \(7, 7, 3\).*got \(7, 7\)"):
        codec.encode({"image": obs["image"][..., 0], "direction": 0})
    with pytest.raises(ValueError, match=r"\[\.\.\., 7, 7, 3\].*got \(2, 5, 5, 3\)"):
        codec.encode_batch(np.zeros((2, 5, 5, 3), np.uint8), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"directions must have shape \(2,\).*got \(3,\)"):
        codec.encode_batch(np.stack([obs["image"]] * 2), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"integers; got dtype float"):
        codec.encode_batch(obs["image"].astype(np.float32), 0)
    with pytest.raises(ValueError, match="'image' and 'direction'"):
        codec.encode({"image": obs["image"]})
    for direction in (4, -1):
        with pytest.raises(ValueError, match=rf"direction must be in 0..3; got {direction}"):
            codec.encode({"image": obs["image"], "direction": direction})
    with pytest.raises(ValueError, match=r"got 7 in batch element \(1,\)"):
        codec.encode_batch(np.stack([obs["image"]] * 2), np.array([0, 7]))
    with pytest.raises(ValueError, match="odd integer"):
        MiniGridCodec(6)


def test_bad_tokens_are_refused(codec):
    frame = codec.encode(_obs(codec))
    for bad in (138, -1):
        broken = frame.clone()
        broken[2, 4] = bad
        with pytest.raises(ValueError, match=rf"token id {bad} at row 2, column 4 is out of range \[0, 138\)"):
            codec.decode(broken)
    broken = frame.clone()
    broken[0, 0] = 70
    with pytest.raises(ValueError, match=r"row 0, column 0 holds agent token 70"):
        codec.decode(broken)
    broken = frame.clone()
    broken[6, 3] = 1
    with pytest.raises(ValueError, match=r"agent's cell \(row 6, column 3\) holds cell token 1"):
        codec.decode(broken)
    with pytest.raises(ValueError, match=r"one frame of shape \(7, 7\); got \(1, 7, 7\)"):
        codec.decode(frame[None])
    with pytest.raises(ValueError, match=r"\[\.\.\., 7, 7\].*got \(7, 6\)"):
        codec.decode_batch(frame[:, :6])


def test_legal_mask_matches_decodable_tokens(codec):
    mask = codec.legal_mask()
    assert mask.shape == (7, 7, 138)
    assert mask[6, 3].sum() == 76 and mask[6, 3, 62:].all()
    assert mask[0, 0].sum() == 62 and mask[0, 0, :62].all()


# ------------------------------------------------------------------ for_env


def test_for_env():
    env = gym.make("MiniGrid-Empty-8x8-v0")
    assert MiniGridCodec.for_env(env).view_size == 7
    assert MiniGridCodec.for_env(gym.make("MiniGrid-MemoryS13Random-v0")).view_size == 7  # not 3
    small = gym.make("MiniGrid-Empty-8x8-v0", agent_view_size=3)
    codec = MiniGridCodec.for_env(small)
    assert codec.frame_shape == (3, 3)
    obs, _ = small.reset(seed=0)
    decoded = codec.decode(codec.encode(obs))
    assert np.array_equal(decoded["image"], obs["image"]) and decoded["direction"] == obs["direction"]
    vec = gym.make_vec("MiniGrid-Empty-8x8-v0", num_envs=2, vectorization_mode="sync")
    assert MiniGridCodec.for_env(vec).view_size == 7
    for wrapped in (ImgObsWrapper(gym.make("MiniGrid-Empty-8x8-v0")),
                    RGBImgPartialObsWrapper(gym.make("MiniGrid-Empty-8x8-v0"), tile_size=3),
                    gym.make("CartPole-v1")):
        with pytest.raises(ValueError, match="MiniGrid|symbolic"):
            MiniGridCodec.for_env(wrapped)
