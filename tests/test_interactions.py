"""The interaction bonus: counts of (held, ahead, action) over real data are the real env's own, and a
dream pays bonus / sqrt(1 + count) for an interaction the first time in an episode, never again in it."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import MINIGRID_ENV_ID, tiny_minigrid_model
from train.collect import collect
from worldsim import DreamVectorEnv
from worldsim.interactions import N_CELLS, InteractionCounts, interaction_keys


@pytest.mark.parametrize("view", ["world", "ego"])
def test_counts_are_those_of_the_real_envs_own_observations(tmp_path, view):
    env_id = "MiniGrid-DoorKey-5x5-v0"
    collect(env_id, "random", episodes=3, out=tmp_path / "data", max_steps=40, num_envs=1, view=view, progress=False)
    counts = InteractionCounts.from_datasets([tmp_path / "data"], num_actions=7)
    expected = torch.zeros_like(counts.counts)
    from worldsim.data.dataset import EpisodeDataset

    data = EpisodeDataset(tmp_path / "data")
    for i in range(data.num_episodes):          # replay each episode's actions in the real env
        episode = data.episode(i)
        real = gym.make(env_id, max_steps=40)
        obs, _ = real.reset(seed=int(episode.seed))
        for a in episode.actions:
            key = interaction_keys(torch.from_numpy(obs["image"][None]), torch.tensor([int(a)]), 7)
            expected[key] += 1
            obs, *_ = real.step(int(a))
    assert torch.equal(counts.counts, expected) and counts.steps == sum(len(data.episode(i).actions)
                                                                         for i in range(data.num_episodes))


def test_the_dream_pays_an_interaction_once_per_episode_by_its_count(tmp_path):
    tiny_minigrid_model(MINIGRID_ENV_ID, done_bias=-20.0).save_pretrained(tmp_path / "m")
    counts = InteractionCounts(torch.randint(0, 9, (N_CELLS * N_CELLS * 7,), generator=torch.Generator().manual_seed(0)),
                               num_actions=7)
    kw = dict(num_envs=3, device="cpu", max_episode_steps=6, temperature=0.0, start_pool=3)
    plain = DreamVectorEnv(tmp_path / "m", **kw)
    paying = DreamVectorEnv(tmp_path / "m", interaction_bonus=0.5, interaction_counts=counts, **kw)
    for env in (plain, paying):
        step, stay = env.simulator.step, np.random.default_rng(1)

        def frames_often_stay(state, frames, *args, _step=step, _stay=stay, **kwargs):
            # the tiny model dreams a new frame every step: keep half, so interactions come back
            nxt, *rest = _step(state, frames, *args, **kwargs)
            return (torch.where(torch.from_numpy(_stay.random(len(nxt)) < 0.5)[:, None, None], frames, nxt), *rest)

        env.simulator.step = frames_often_stay
        env.reset(seed=2)
    tried = [set() for _ in range(3)]
    rng = np.random.default_rng(0)
    paid = []
    for _ in range(20):
        a = rng.integers(0, 2, size=3)             # two actions, so that interactions come back
        images, _ = paying.codec.decode_batch(paying.frames.numpy())
        keys = interaction_keys(torch.from_numpy(images), torch.from_numpy(a), 7)
        _, r0, _, _, _ = plain.step(a)
        _, r1, _, truncated, _ = paying.step(a)
        for i in range(3):
            k = int(keys[i])
            first = k not in tried[i]
            want = 0.5 / np.sqrt(1 + int(counts.counts[k])) if first else 0.0
            assert r1[i] - r0[i] == pytest.approx(want, abs=1e-6)
            paid.append(first)
            tried[i].add(k)
            if truncated[i]:
                tried[i] = set()                   # a new episode may try everything again
    assert any(paid) and not all(paid)
    with pytest.raises(ValueError, match="pass interaction_counts"):
        DreamVectorEnv(tmp_path / "m", interaction_bonus=1.0, **kw)
    with pytest.raises(ValueError, match="interaction_bonus must be a finite number >= 0"):
        DreamVectorEnv(tmp_path / "m", interaction_bonus=-1.0, interaction_counts=counts, **kw)
