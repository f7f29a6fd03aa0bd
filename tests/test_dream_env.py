"""DreamEnv: Gymnasium/SB3 env checks, spaces, seeding, decodable observations, limits, errors."""

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

from envs.minigrid import MiniGridCodec
from worldsim import CheckpointError, DreamEnv

from conftest import MINIGRID_ENV_ID as ENV_ID, tiny_minigrid_model



tiny_model = tiny_minigrid_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("dream") / "ckpt"
    tiny_model().save_pretrained(path)
    return path




def run(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        out.append(env.step(a))
    return out


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return np.array_equal(np.asarray(a), np.asarray(b))


# ------------------------------------------------------------------------------------ env checkers


@pytest.mark.parametrize("kwargs", [{}, {"image_only": True}, {"obs_mode": "rgb"},
                                    {"obs_mode": "rgb", "image_only": True}, {"termination": "sample"}])
def test_gymnasium_check_env(checkpoint, kwargs):
    env = DreamEnv(checkpoint, device="cpu", render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)


def test_gymnasium_check_env_prints_no_audio_or_display_noise(checkpoint, monkeypatch, capfd):
    """check_env on an env with a spec makes one per declared render mode, "human" included: that
    window must not start pygame's audio (ALSA errors without a sound card) nor probe Wayland on a
    machine without a display (XDG_RUNTIME_DIR errors)."""
    pygame = pytest.importorskip("pygame")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):
        monkeypatch.delenv(name, raising=False)

    def init():
        raise AssertionError("pygame.init() also opens audio")

    monkeypatch.setattr(pygame, "init", init)
    env = gym.make("worldsim/Dream-v0", checkpoint=str(checkpoint), device="cpu")
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    printed = "".join(capfd.readouterr())
    assert "ALSA" not in printed and "XDG_RUNTIME_DIR" not in printed
    assert not pygame.display.get_init()
    env.close()


def test_sb3_check_env(checkpoint):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb3_check_env(DreamEnv(checkpoint, device="cpu", image_only=True))


# ------------------------------------------------------------------------------------ spaces and obs


def test_spaces_equal_the_real_envs(checkpoint):
    real = gym.make(ENV_ID)
    assert DreamEnv(checkpoint, device="cpu").observation_space == real.observation_space
    assert DreamEnv(checkpoint, device="cpu").action_space == real.action_space
    assert DreamEnv(checkpoint, device="cpu", image_only=True).observation_space == ImgObsWrapper(real).observation_space
    rgb = RGBImgPartialObsWrapper(real)
    assert DreamEnv(checkpoint, device="cpu", obs_mode="rgb").observation_space == rgb.observation_space
    assert DreamEnv(checkpoint, device="cpu", obs_mode="rgb", image_only=True).observation_space \
        == ImgObsWrapper(rgb).observation_space


def test_reset_observation_is_the_real_one(checkpoint):
    real_obs, _ = gym.make(ENV_ID).reset(seed=3)
    obs, info = DreamEnv(checkpoint, device="cpu").reset(seed=3)
    assert info["start"] == "real"
    assert np.array_equal(obs["image"], real_obs["image"]) and obs["direction"] == real_obs["direction"]
    assert obs["mission"] == real_obs["mission"]
    rgb_real, _ = RGBImgPartialObsWrapper(gym.make(ENV_ID)).reset(seed=3)
    rgb, _ = DreamEnv(checkpoint, device="cpu", obs_mode="rgb").reset(seed=3)
    assert np.array_equal(rgb["image"], rgb_real["image"])


def test_observations_are_valid_minigrid_observations(checkpoint):
    env = DreamEnv(checkpoint, device="cpu", temperature=2.0)   # hot sampling: many different tokens
    codec = MiniGridCodec(7)
    obs, _ = env.reset(seed=0)
    for t in range(15):
        obs, reward, terminated, truncated, info = env.step(t % 7)
        assert env.observation_space.contains(obs)
        assert torch.equal(codec.encode(obs), env.frame.cpu())     # exact round trip through the codec
        assert isinstance(reward, float) and isinstance(terminated, bool) and isinstance(truncated, bool)
        assert 0.0 <= info["done_prob"] <= 1.0


def test_render_rgb_array(checkpoint):
    env = DreamEnv(checkpoint, device="cpu", render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (7 * 32, 7 * 32, 3) and frame.dtype == np.uint8
    assert DreamEnv(checkpoint, device="cpu").render() is None
    with pytest.raises(ValueError, match="render_mode 'ansi' is not supported"):
        DreamEnv(checkpoint, device="cpu", render_mode="ansi")


def test_get_frame_is_the_real_envs_agent_view(checkpoint):
    """MiniGrid's get_frame(agent_pov=True) from the same symbolic view: the same pixels."""
    real = gym.make(ENV_ID)
    real.reset(seed=3)
    env = DreamEnv(checkpoint, device="cpu")
    env.reset(seed=3)                                    # the dream starts from the real start
    for tile in (8, 32):
        assert np.array_equal(env.get_frame(tile_size=tile), real.unwrapped.get_frame(tile_size=tile, agent_pov=True))
    assert np.array_equal(env.get_frame(), real.unwrapped.get_frame(agent_pov=True))
    with pytest.raises(ValueError, match="egocentric view.*RGBImgObsWrapper"):
        env.get_frame(agent_pov=False)
    with pytest.raises(gym.error.ResetNeeded):
        DreamEnv(checkpoint, device="cpu").get_frame()


def test_rgb_partial_obs_wrapper_on_a_dream(checkpoint):
    real = RGBImgPartialObsWrapper(gym.make(ENV_ID))
    dream = RGBImgPartialObsWrapper(DreamEnv(checkpoint, device="cpu"))
    assert dream.observation_space == real.observation_space
    real_obs, _ = real.reset(seed=3)
    obs, _ = dream.reset(seed=3)
    assert np.array_equal(obs["image"], real_obs["image"])
    for a in (2, 1, 2, 0):
        real_obs = real.step(a)[0]
        obs = dream.step(a)[0]
        assert obs["image"].shape == real_obs["image"].shape and obs["image"].dtype == real_obs["image"].dtype
        assert dream.observation_space.contains(obs)
        assert np.array_equal(obs["image"], dream.unwrapped.codec.render(dream.unwrapped.frame.numpy(), 8))


def test_render_human_draws_into_a_window(checkpoint, monkeypatch):
    pygame = pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a real window, no screen needed
    env = DreamEnv(checkpoint, device="cpu", render_mode="human")
    env.reset(seed=0)
    env.step(2)
    shown = pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)
    assert np.array_equal(shown, env.simulator.render(env.frame.cpu().numpy()))
    env.close()
    assert not pygame.display.get_init()


# ------------------------------------------------------------------------------------ seeding


def test_same_seed_and_actions_same_episode(checkpoint):
    actions = [2, 0, 1, 2, 2, 5, 6, 3]
    a = run(DreamEnv(checkpoint, device="cpu"), 7, actions)
    b = run(DreamEnv(checkpoint, device="cpu"), 7, actions)
    assert same(a, b)
    env = DreamEnv(checkpoint, device="cpu")
    assert same(run(env, 7, actions), run(env, 7, actions))      # reseeding the same env repeats it too


def test_different_seeds_differ(checkpoint):
    actions = [2] * 6
    env = DreamEnv(checkpoint, device="cpu")
    a, b = run(env, 1, actions), run(env, 2, actions)
    assert same(a[0], b[0])          # Empty-8x8 starts the same way for every seed ...
    assert not same(a[1:], b[1:])    # ... but the dream samples differently


def test_temperature_zero_is_argmax(checkpoint):
    env = DreamEnv(checkpoint, device="cpu", temperature=0)
    assert same(run(env, 1, [2, 1, 0]), run(env, 2, [2, 1, 0]))


# ------------------------------------------------------------------------------------ limits


def test_truncation_at_the_step_limit(tmp_path):
    tiny_model(done_bias=-20.0).save_pretrained(tmp_path / "never")
    env = DreamEnv(tmp_path / "never", device="cpu", max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(2)[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    assert DreamEnv(tmp_path / "never", device="cpu").max_episode_steps == gym.make(ENV_ID).unwrapped.max_steps


@pytest.mark.parametrize("termination", ["threshold", "sample"])
def test_termination_from_the_done_head(tmp_path, termination):
    tiny_model(done_bias=20.0).save_pretrained(tmp_path / "always")
    env = DreamEnv(tmp_path / "always", device="cpu", termination=termination)
    env.reset(seed=0)
    assert env.step(0)[2:4] == (True, False)


# ------------------------------------------------------------------------------------ starts


def test_start_from_options_and_from_frames(checkpoint):
    codec = MiniGridCodec(7)
    start_obs, _ = gym.make("MiniGrid-Empty-Random-6x6-v0").reset(seed=4)
    frame = codec.encode(start_obs)
    env = DreamEnv(checkpoint, device="cpu")
    obs, info = env.reset(seed=0, options={"start": frame})
    assert info["start"] == "options" and np.array_equal(obs["image"], start_obs["image"])
    env = DreamEnv(checkpoint, device="cpu", starts=[frame, frame.numpy()])
    obs, info = env.reset(seed=0)
    assert info["start"].startswith("dataset:") and np.array_equal(obs["image"], start_obs["image"])
    bad = frame.clone()
    bad[0, 0] = codec.agent_token_base          # an agent token off the agent's cell: not decodable
    with pytest.raises(ValueError, match="cannot decode"):
        env.reset(options={"start": bad})
    with pytest.raises(ValueError, match="token frames"):
        DreamEnv(checkpoint, device="cpu", starts=[np.zeros((5, 5), dtype=np.int64)])


def test_starts_from_a_dataset_folder(tmp_path, checkpoint):
    from train.collect import collect
    from worldsim.data.dataset import EpisodeDataset

    collect(ENV_ID, episodes=3, out=tmp_path / "data", max_steps=4, num_envs=1, seed=10, progress=False, view="ego")
    data = EpisodeDataset(tmp_path / "data")
    env = DreamEnv(checkpoint, device="cpu", starts=tmp_path / "data")
    for seed in range(3):
        env.reset(seed=seed)
        assert any(torch.equal(env.frame.cpu(), torch.as_tensor(np.array(data.episode(i).frames[0])).long()) for i in range(3))


# ------------------------------------------------------------------------------------ errors


def test_bad_actions(checkpoint):
    env = DreamEnv(checkpoint, device="cpu")
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    for bad in (7, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="action space"):
            env.step(bad)
    env.step(np.int64(3))


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DreamEnv(tmp_path / "missing", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        DreamEnv(tmp_path / "empty", device="cpu")
    with pytest.raises(ValueError, match="trained on"):
        DreamEnv(tiny_model(), real_env_id="MiniGrid-DoorKey-5x5-v0", device="cpu")
    with pytest.raises(ValueError, match="unknown codec"):
        DreamEnv(tiny_model(codec_config={"version": "atari-v9"}), device="cpu")
    with pytest.raises(CheckpointError, match="model was built for"):
        DreamEnv(tiny_model(codec_config={"version": "minigrid-symbolic-v1", "view_size": 5}), device="cpu")
    model = tiny_model()
    model.config.metadata = {"env_id": ENV_ID}
    with pytest.raises(CheckpointError, match="codec"):
        DreamEnv(model, device="cpu")
    with pytest.raises(ValueError, match="obs_mode"):
        DreamEnv(tiny_model(), obs_mode="pixels", device="cpu")


def test_real_env_ids_with_module_prefix(checkpoint):
    env = DreamEnv(checkpoint, real_env_id=f"minigrid:{ENV_ID}", device="cpu")
    assert env.observation_space == gym.make(ENV_ID).observation_space


def test_worldsim_imports_no_env_package():
    code = ("import sys, worldsim; bad = [m for m in ('minigrid', 'stable_baselines3', 'train', 'envs') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rewards_only_on_termination_when_the_checkpoint_says_so(tmp_path):
    # A model that never terminates: with the rule (recorded by the trainer for MiniGrid-style
    # sparse rewards) it earns nothing; without it, the reward head's raw output.
    rewards = {}
    for rule in (False, True):
        model = tiny_model(done_bias=-20.0)
        model.config.metadata["rewards_only_on_termination"] = rule
        env = DreamEnv(model, device="cpu")
        env.reset(seed=0)
        rewards[rule] = [env.step(2)[1] for _ in range(5)]
    assert all(r == 0.0 for r in rewards[True])
    assert any(r != 0.0 for r in rewards[False])
