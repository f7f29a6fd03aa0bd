"""Pessimistic dreams: the model's uncertainty about each next frame in `info`, a reward penalty by it,
and episodes cut where it passes a limit (MOPO / MOReL style)."""

import math
import re

import numpy as np
import pytest
import torch
from gymnasium.utils import seeding

from worldsim import DreamEnv, DreamVectorEnv
from worldsim.sampling import frame_entropy
from worldsim.simulator import Simulator

from conftest import tiny_minigrid_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("pessimism") / "ckpt"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(path)
    return path


def test_frame_entropy_is_the_mean_cell_entropy_over_legal_tokens():
    legal = torch.zeros(2, 3, 5, dtype=torch.bool)
    legal[..., :4] = True                                   # four legal tokens per cell
    legal[0, 0, :] = False
    legal[0, 0, 1] = True                                   # one cell with a single legal token
    flat = torch.zeros(1, 2, 3, 5)                          # uniform logits
    sure = torch.full((1, 2, 3, 5), -50.0)
    sure[..., 1] = 50.0                                     # all mass on token 1
    want = 5 * math.log(4) / 6                              # five cells of log 4, one of 0
    assert frame_entropy(flat, legal=legal).item() == pytest.approx(want, rel=1e-6)
    assert frame_entropy(sure, legal=legal).item() == pytest.approx(0.0, abs=1e-6)


def test_the_penalty_takes_uncertainty_off_the_reward_and_a_negative_one_adds_it(checkpoint):
    plain = Simulator.from_checkpoint(checkpoint, device="cpu")
    pessimist = Simulator.from_checkpoint(checkpoint, device="cpu", uncertainty_penalty=0.5)
    explorer = Simulator.from_checkpoint(checkpoint, device="cpu", uncertainty_penalty=-2.0)   # a bonus
    frames = torch.zeros(2, 7, 7, dtype=torch.long)
    frames[:] = plain.codec.unseen_token
    actions = torch.tensor([2, 1])
    out = []
    for sim in (plain, pessimist, explorer):
        gen = sim.new_generator(seeding.np_random(3)[0])
        out.append(sim.step(sim.initial_state(2), frames, actions, gen))
    (f0, r0, _, i0), (f1, r1, _, i1), (f2, r2, _, i2) = out
    assert torch.equal(f0, f1) and torch.equal(i0["uncertainty"], i1["uncertainty"])
    assert torch.equal(f0, f2) and torch.equal(i0["uncertainty"], i2["uncertainty"])
    assert (i0["uncertainty"] > 0).all()
    torch.testing.assert_close(r1, r0 - 0.5 * i0["uncertainty"])
    torch.testing.assert_close(r2, r0 + 2.0 * i0["uncertainty"])


def test_past_the_limit_an_episode_is_cut(checkpoint):
    single = DreamEnv(checkpoint, device="cpu", uncertainty_limit=1e-6)      # the untrained model is unsure
    single.reset(seed=0)
    _, _, terminated, truncated, info = single.step(2)
    assert truncated and not terminated and info["halted"] and info["uncertainty"] > 1e-6
    calm = DreamEnv(checkpoint, device="cpu", uncertainty_limit=1e6)
    calm.reset(seed=0)
    _, _, _, truncated, info = calm.step(2)
    assert not truncated and not info["halted"]
    batch = DreamVectorEnv(checkpoint, num_envs=3, device="cpu", uncertainty_limit=1e-6, start_pool=3)
    batch.reset(seed=0)
    _, _, terminated, truncated, infos = batch.step(np.array([2, 1, 0]))
    assert truncated.all() and not terminated.any() and infos["_final_obs"].all()
    assert infos["uncertainty"].shape == (3,) and (infos["uncertainty"] > 0).all()


@pytest.mark.parametrize("settings,message", [
    (dict(uncertainty_penalty="1"), "uncertainty_penalty must be a finite number (> 0: pessimism, < 0: a bonus "
     "for exploring); got '1'"),
    (dict(uncertainty_penalty=float("nan")), "uncertainty_penalty must be a finite number"),
    (dict(uncertainty_limit=0), "uncertainty_limit must be None or a finite number > 0"),
])
def test_bad_pessimism_settings_are_named(checkpoint, settings, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DreamVectorEnv(checkpoint, num_envs=1, device="cpu", **settings)
