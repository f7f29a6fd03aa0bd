"""Recorded states as dream starts: a world-view dream starts the asked share of its episodes from steps
of recorded episodes, counts their steps from there, and refuses what cannot be a state."""

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid ids)
import numpy as np
import pytest
import torch

from conftest import tiny_minigrid_model
from envs.minigrid import MiniGridWorldCodec
from worldsim.dream_env import DreamEnv
from worldsim.dream_vector_env import DreamVectorEnv

ENV = "MiniGrid-DoorKey-8x8-v0"     # layouts vary enough that a real reset rarely equals a recorded step
LIMIT = 40


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A world-view dataset of the expert with random actions (the key picked up, the door opened)."""
    from train.collect import collect

    out = tmp_path_factory.mktemp("recorded")
    collect(ENV, "expert", episodes=4, out=out, num_envs=2, epsilon=0.3, progress=False, view="world")
    from worldsim.data.dataset import EpisodeDataset
    ds = EpisodeDataset(out)
    # Each recorded frame (as bytes) -> the steps it was recorded at, the episodes' final frames left out.
    steps: dict[bytes, set[int]] = {}
    for i in range(len(ds)):
        for t, frame in enumerate(ds.episode(i).frames[:-1]):
            steps.setdefault(frame.astype(np.int64).tobytes(), set()).add(t)
    return out, steps


def world_model():
    env = gym.make(ENV)
    codec = MiniGridWorldCodec.for_env(env)
    env.close()
    return tiny_minigrid_model(ENV, codec=codec, done_bias=-20.0)      # never terminates: episodes truncate


def key(frame: torch.Tensor) -> bytes:
    return frame.cpu().long().numpy().tobytes()


def test_recorded_starts_count_their_steps_from_the_recorded_step(recorded):
    data, steps = recorded
    venv = DreamVectorEnv(world_model(), num_envs=12, max_episode_steps=LIMIT, state_starts=data,
                          state_start_fraction=1.0, return_torch=True)
    venv.reset(seed=5)
    starts = [key(f) for f in venv.frames]
    assert all(s in steps for s in starts)                    # every episode starts at a recorded state
    assert len({min(steps[s]) for s in starts}) > 1           # ... from several steps, not only resets
    ended_after = [None] * 12
    for t in range(1, LIMIT + 1):
        _, _, terminated, truncated, info = venv.step(torch.zeros(12, dtype=torch.long))
        assert not terminated.any()
        for i in truncated.nonzero().flatten().tolist():
            if ended_after[i] is None:
                ended_after[i] = t
                assert int(info["final_info"]["episode_length"][i]) == LIMIT
    # The real env's step limit stays where it was: an episode from step k has LIMIT - k steps left
    # (steps recorded at or past the limit are no starts).
    for s, t in zip(starts, ended_after):
        assert t is not None and t in {LIMIT - k for k in steps[s] if k < LIMIT}, (t, steps[s])
    venv.close()


def test_the_share_of_recorded_starts_is_the_one_asked_for(recorded):
    data, steps = recorded
    for fraction, low, high in ((0.25, 0.15, 0.35), (0.5, 0.4, 0.6)):
        venv = DreamVectorEnv(world_model(), num_envs=256, start_pool=256, state_starts=data,
                              state_start_fraction=fraction, return_torch=True)
        venv.reset(seed=1000)       # real resets of seeds 1000, 1001, ...: layouts the dataset does not hold
        share = np.mean([key(f) in steps for f in venv.frames])
        assert low <= share <= high, (fraction, share)
        venv.close()
    plain = DreamVectorEnv(world_model(), num_envs=64, return_torch=True)
    plain.reset(seed=1000)
    assert not any(key(f) in steps for f in plain.frames)
    plain.close()


def test_restarts_meet_many_recorded_states_however_few_envs(recorded):
    data, steps = recorded
    env = gym.make(ENV)
    model = tiny_minigrid_model(ENV, codec=MiniGridWorldCodec.for_env(env), done_bias=20.0)   # one-step episodes
    venv = DreamVectorEnv(model, num_envs=4, start_pool=4, state_starts=data, state_start_fraction=1.0,
                          max_episode_steps=LIMIT, return_torch=True)
    venv.reset(seed=0)
    seen = set()
    for _ in range(60):
        venv.step(torch.zeros(4, dtype=torch.long))
        seen |= {key(f) for f in venv.frames}
    recorded_early = {k for k, ts in steps.items() if min(ts) < LIMIT}
    assert seen <= recorded_early and len(seen) >= min(len(recorded_early), 60) // 2, (len(seen), len(recorded_early))
    venv.close()


def test_a_single_dream_starts_from_recorded_states_too(recorded):
    data, steps = recorded
    dream = DreamEnv(world_model(), max_episode_steps=LIMIT, state_starts=data, state_start_fraction=1.0)
    for seed in range(4):
        _, info = dream.reset(seed=seed)
        assert info["start"].startswith("recorded state, step ")
        k = int(info["start"].rsplit(" ", 1)[1])
        assert k in steps[key(dream.frame)] and k < LIMIT
        for t in range(1, LIMIT + 1):
            _, _, _, truncated, _ = dream.step(0)
            if truncated:
                break
        assert t == LIMIT - k
    dream.close()


def test_what_cannot_be_a_start_is_refused_by_name(recorded, tmp_path):
    data, _ = recorded
    with pytest.raises(ValueError, match="state_starts needs a world-view model"):
        DreamVectorEnv(tiny_minigrid_model(ENV), state_starts=data)          # a model of the agent's view
    for bad in (0, 1.5, "half", True):
        with pytest.raises(ValueError, match=f"state_start_fraction must be a number in \\(0, 1\\].*{bad!r}"):
            DreamVectorEnv(world_model(), state_starts=data, state_start_fraction=bad)
    from train.collect import collect
    collect("MiniGrid-DoorKey-6x6-v0", "random", episodes=1, out=tmp_path / "other", num_envs=1, progress=False,
            view="world")
    with pytest.raises(ValueError, match="state_starts: the dataset .* has codec"):    # another grid, another codec
        DreamVectorEnv(world_model(), state_starts=[data, tmp_path / "other"])


def test_an_agent_trains_with_recorded_starts_and_its_record_says_so(recorded, tmp_path):
    import json

    from agents.training import train_agent

    data, _ = recorded
    model = tmp_path / "model"
    world_model().save_pretrained(model)
    common = dict(where="dream", algo="native-ppo", steps=64, checkpoint=model, num_envs=4, seed=0, device="cpu",
                  max_episode_steps=LIMIT, hyperparams={"num_steps": 8, "minibatch_size": 16})
    plain = train_agent(ENV, out=tmp_path / "plain", **common)
    started = train_agent(ENV, out=tmp_path / "started", state_starts=data, state_start_fraction=1.0, **common)
    assert plain["state_starts"] is None
    assert started["state_starts"] == {"datasets": [str(data)], "fraction": 1.0}
    assert json.loads((tmp_path / "started" / "agent.json").read_text())["state_starts"] == started["state_starts"]
    # Same seed, other starts: other frames, so other updates (equal if the starts were ignored).
    from safetensors.torch import load_file
    a, b = load_file(tmp_path / "plain" / "policy.safetensors"), load_file(tmp_path / "started" / "policy.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="act on the dream"):
        train_agent(ENV, where="real", algo="native-ppo", steps=64, out=tmp_path / "x", state_starts=data)
