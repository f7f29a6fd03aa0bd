"""SB3 VecEnv adapter over DreamVectorEnv: SB3's info layout, and a short PPO run on the dream."""

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv

from agents.sb3_vec_env import DreamSB3VecEnv
from worldsim import DreamVectorEnv

from conftest import tiny_minigrid_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("sb3") / "ckpt"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(path)  # never terminates: episodes end by truncation
    return path




def test_adapter_info_layout(checkpoint):
    venv = DreamSB3VecEnv(checkpoint=checkpoint, num_envs=3, device="cpu", image_only=True,
                          max_episode_steps=2, start_pool=3)
    assert isinstance(venv, VecEnv) and venv.num_envs == 3
    assert venv.observation_space.shape == (7, 7, 3) and venv.action_space.n == 7
    venv.seed(0)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (3, 7, 7, 3)
    obs, rewards, dones, infos = venv.step(np.array([0, 1, 2]))
    assert not dones.any() and [set(info) for info in infos] == [{"uncertainty"}] * 3
    assert all(info["uncertainty"] > 0 for info in infos)         # the model's, per env
    obs, rewards, dones, infos = venv.step(np.array([2, 2, 2]))
    assert dones.all() and rewards.dtype == np.float32
    for info in infos:
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (7, 7, 3)
        assert info["episode"]["l"] == 2
    assert venv.get_attr("render_mode") == [None] * 3


def test_adapter_drops_the_mission_from_dict_observations(checkpoint):
    venv = DreamSB3VecEnv(DreamVectorEnv(checkpoint, num_envs=2, device="cpu", start_pool=2))
    assert set(venv.observation_space.spaces) == {"image", "direction"}
    obs = venv.reset()
    assert obs["image"].shape == (2, 7, 7, 3) and obs["direction"].shape == (2,)
    with pytest.raises(ValueError, match="return_torch"):
        DreamSB3VecEnv(DreamVectorEnv(checkpoint, num_envs=2, device="cpu", start_pool=2, return_torch=True))


def test_ppo_trains_on_the_dream(checkpoint):
    venv = DreamSB3VecEnv(checkpoint=checkpoint, num_envs=4, device="cpu", image_only=True,
                          max_episode_steps=16, start_pool=16)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=2, seed=0, device="cpu",
                policy_kwargs={"net_arch": [32]}, verbose=0)
    model.learn(total_timesteps=2048)
    assert model.num_timesteps >= 2048
    assert model.rollout_buffer.full and np.isfinite(model.rollout_buffer.rewards).all()
    assert len(model.ep_info_buffer) > 0 and all(ep["l"] == 16 for ep in model.ep_info_buffer)
    assert all(np.isfinite(ep["r"]) for ep in model.ep_info_buffer)
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    action, _ = model.predict(venv.reset(), deterministic=True)
    assert action.shape == (4,) and ((0 <= action) & (action < 7)).all()
