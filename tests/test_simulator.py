"""Simulator, the one core of the dream envs and the planner: its batched step is the envs' step, its
formatter gives the envs' observations; worldsim.runtime resolves device and precision."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils import seeding

from agents.planner import Planner, PlannerConfig
from envs.minigrid import MiniGridCodec
from worldsim import DreamEnv, DreamVectorEnv
from worldsim.runtime import autocast, check_precision, resolve_device, resolve_precision, state_dtype
from worldsim.simulator import Simulator

from conftest import MINIGRID_ENV_ID as ENV_ID, tiny_minigrid_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "ckpt"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(path)   # never terminates: no autoreset in the way
    return path


def real_frames(seeds) -> torch.Tensor:
    real, codec = gym.make(ENV_ID), MiniGridCodec(7)
    return torch.stack([codec.encode(real.reset(seed=s)[0]).long() for s in seeds])


def test_one_batched_step_is_the_vector_envs_step(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=3, temperature=1.5)
    sim = Simulator.from_checkpoint(checkpoint, device="cpu", temperature=1.5)
    obs, _ = env.reset(seed=4)
    frames = real_frames([4, 5, 6])
    missions = tuple(obs["mission"])
    assert torch.equal(env.frames, frames)
    state, gen = sim.initial_state(3), sim.new_generator(seeding.np_random(4)[0])   # the env's seeding rule
    for t in range(5):
        actions = torch.tensor([t % 3, 2, (t + 1) % 7])
        obs, reward, terminated, truncated, _ = env.step(actions.numpy())
        frames, r, term, info = sim.step(state, frames, actions, gen)
        assert frames.shape == (3, 7, 7) and frames.dtype == torch.long
        assert r.dtype == torch.float32 and term.dtype == torch.bool and info["done_prob"].shape == (3,)
        assert torch.equal(env.frames, frames)
        assert np.array_equal(reward, r.double().numpy()) and np.array_equal(terminated, term.numpy())
        mine = sim.observations(frames, missions)
        assert mine.keys() == obs.keys()
        assert all(np.array_equal(np.asarray(mine[k]), np.asarray(obs[k])) for k in obs)
    for mine, theirs in zip(state.tensors(), env._state.tensors()):
        assert torch.equal(mine, theirs)


def test_a_batch_of_one_is_the_dream_envs_step(checkpoint):
    env = DreamEnv(checkpoint, device="cpu", termination="sample")
    sim = env.simulator
    obs, _ = env.reset(seed=9)
    frames, state, gen = real_frames([9]), sim.initial_state(1), sim.new_generator(seeding.np_random(9)[0])
    for a in (2, 1, 2, 0, 2):
        obs, reward, terminated, _, info = env.step(a)
        frames, r, term, step_info = sim.step(state, frames, torch.tensor([a]), gen)
        assert torch.equal(env.frame, frames[0])
        assert reward == float(r[0]) and terminated == bool(term[0])
        assert info["done_prob"] == float(step_info["done_prob"][0])
        mine = Simulator.unbatch(sim.observations(frames, [obs["mission"]]), 0)
        assert mine.keys() == obs.keys() and np.array_equal(mine["image"], obs["image"])
        assert mine["direction"] == obs["direction"] and type(mine["direction"]) is int


@pytest.mark.parametrize("obs_mode", ["symbolic", "rgb"])
@pytest.mark.parametrize("image_only", [False, True])
def test_one_formatter_for_numpy_torch_and_single_observations(checkpoint, obs_mode, image_only):
    sim = Simulator.from_checkpoint(checkpoint, device="cpu", obs_mode=obs_mode, image_only=image_only)
    codec = sim.codec
    frames = torch.distributions.Categorical(probs=codec.legal_mask().float()).sample((6,))   # any legal frames
    images, directions = codec.decode_batch(frames.numpy())
    if obs_mode == "rgb":
        images = codec.render(frames.numpy(), tile_size=8)
    mission = gym.make(ENV_ID).reset(seed=0)[0]["mission"]
    obs = sim.observations(frames, [mission] * 6)
    on_device = sim.observations(frames, as_torch=True)
    space = sim.observation_space(gym.make(ENV_ID).observation_space)
    if image_only:
        assert np.array_equal(obs, images) and np.array_equal(on_device.numpy(), images)
    else:
        assert np.array_equal(obs["image"], images) and np.array_equal(obs["direction"], directions)
        assert obs["direction"].dtype == np.int64 and obs["mission"] == (mission,) * 6
        assert "mission" not in sim.observations(frames)
        assert np.array_equal(on_device["image"].numpy(), images)
        assert np.array_equal(on_device["direction"].numpy(), directions)
    for i in range(6):
        assert space.contains(Simulator.unbatch(obs, i))
    dream = DreamEnv(checkpoint, device="cpu", obs_mode=obs_mode, image_only=image_only)
    assert dream.observation_space == space
    single, _ = dream.reset(seed=0)
    again = Simulator.unbatch(dream.setup.observations(dream.frame[None], [mission]), 0)
    if image_only:
        assert np.array_equal(again, single)
    else:
        assert again.keys() == single.keys() and np.array_equal(again["image"], single["image"])
        assert again["direction"] == single["direction"] and again["mission"] == single["mission"]


def test_temperature_zero_takes_the_legal_argmax_and_the_reward_rule(checkpoint):
    sim = Simulator.from_checkpoint(checkpoint, device="cpu", temperature=0, rewards_only_on_termination=False)
    state, frames = sim.initial_state(2), real_frames([0, 1])
    out = sim.model.step(sim.initial_state(2), frames, torch.tensor([2, 1]))[0]
    nxt, reward, terminated, _ = sim.step(state, frames, torch.tensor([2, 1]), generator=None)  # argmax draws nothing
    assert torch.equal(nxt, out.frame_logits.float().masked_fill(~sim.legal, float("-inf")).argmax(-1))
    assert torch.equal(reward, out.reward.float()) and not terminated.any()
    only = Simulator.from_checkpoint(checkpoint, device="cpu", temperature=0, rewards_only_on_termination=True)
    assert (only.step(only.initial_state(2), frames, torch.tensor([2, 1]), None)[1] == 0).all()


def test_settings_fail_before_the_model_is_loaded(tmp_path):
    missing = tmp_path / "missing"
    for bad, match in ((dict(temperature=-1), "temperature"), (dict(termination="maybe"), "termination"),
                       (dict(obs_mode="pixels"), "obs_mode"), (dict(precision="fp8"), "precision must be one of"),
                       (dict(device="gpu"), "'gpu'")):
        with pytest.raises(ValueError, match=match):
            Simulator.from_checkpoint(missing, **bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Simulator.from_checkpoint(missing, device="cpu")


def test_the_planner_steps_the_same_simulator(checkpoint):
    planner = Planner(checkpoint, config=PlannerConfig(termination="expected", temperature=0.5, precision="bf16"),
                      device="cpu")
    sim = planner.simulator
    assert isinstance(sim, Simulator) and sim.termination == "threshold" and sim.temperature == 0.5
    assert sim.precision == "bfloat16" and sim.bf16


# ------------------------------------------------------------------------------------ runtime


def test_resolve_device():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("gpu", "cpu:x", 3, None):
        with pytest.raises(ValueError, match=repr(bad)):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:1'.*CUDA is not available"):
            resolve_device("cuda:1")


def test_one_precision_vocabulary():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")   # naming a device needs no GPU
    assert resolve_precision("auto", cpu) == "float32" and resolve_precision("auto", cuda) == "bfloat16"
    assert resolve_precision("float32", cuda) == "float32" and resolve_precision("bfloat16", cpu) == "bfloat16"
    assert check_precision("bf16") == "bfloat16"   # the envs' older spelling still works
    for bad in ("fp8", "half", "off", None):
        with pytest.raises(ValueError, match="precision must be one of"):
            check_precision(bad)
    assert state_dtype("bfloat16") == torch.bfloat16 and state_dtype("float32") is None
    with autocast(cpu, "bfloat16"):
        assert torch.is_autocast_enabled("cpu")
    with autocast(cpu, "float32"):
        assert not torch.is_autocast_enabled("cpu")
