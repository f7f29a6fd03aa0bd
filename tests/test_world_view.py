"""The world view: frames hold the whole MiniGrid state, and the agent's observation is cut out of them
exactly as MiniGrid builds it; a dream on it starts from the real layout and always shows one agent."""

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid ids)
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from conftest import tiny_minigrid_model
from envs.minigrid import MiniGridWorldCodec
from envs.minigrid.codec import AGENT_TOKEN_BASE, UNSEEN_TOKEN, VOCAB_SIZE
from envs.minigrid.goal_seeker import GoalSeeker
from envs.minigrid.world_view import world_grid
from worldsim.codecs import codec_from_config, one_agent_token_base
from worldsim.dream_env import DreamEnv
from worldsim.sampling import one_agent_logits, sample_frames
from worldsim.simulator import Simulator

# Walls and closed doors occlude (see_through_walls False) in all but Empty; Unlock and DoorKey have
# keys to carry and doors to open; MultiRoom is large (25 x 25) and KeyCorridorS3R1 narrow (7 x 3).
ENVS = ["MiniGrid-DoorKey-5x5-v0", "MiniGrid-LavaGapS5-v0", "MiniGrid-Unlock-v0", "MiniGrid-KeyCorridorS3R1-v0",
        "MiniGrid-MultiRoom-N2-S4-v0", "MiniGrid-Empty-5x5-v0"]


def walk(env_id: str, seed: int, steps: int, expert: bool):
    """(codec frame, real observation) along an episode of the goal seeker (which picks up keys and opens
    doors) or of random actions."""
    env = gym.make(env_id)
    codec = MiniGridWorldCodec.for_env(env)
    obs, _ = env.reset(seed=seed)
    u = env.unwrapped
    agent = GoalSeeker(seed=seed) if expert else None
    if agent:
        agent.reset(obs, np.array(u.agent_pos), (u.width, u.height), seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        out.append((codec.encode_env(env), obs))
        action = agent.act(obs, np.array(u.agent_pos)) if agent else int(rng.integers(env.action_space.n))
        obs, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break
    out.append((codec.encode_env(env), obs))
    env.close()
    return codec, out


@pytest.mark.parametrize("env_id", ENVS)
def test_the_agent_sees_what_minigrid_shows_it(env_id):
    seen_carrying = seen_open_door = False
    for seed, expert in ((0, True), (1, True), (2, False)):
        codec, steps = walk(env_id, seed, 80, expert)
        frames = torch.stack([f for f, _ in steps])
        images, directions = codec.decode_batch(frames.numpy())
        for i, (_, obs) in enumerate(steps):
            np.testing.assert_array_equal(images[i], obs["image"], err_msg=f"{env_id} seed {seed} step {i}")
            assert directions[i] == obs["direction"]
        seen_carrying |= bool((images[:, 3, 6, 0] == 5).any())          # a key in the agent's cell
        seen_open_door |= bool(((images[..., 0] == 4) & (images[..., 2] == 0)).any())
        assert (frames >= AGENT_TOKEN_BASE).flatten(1).sum(1).eq(1).all()
        assert not (frames == UNSEEN_TOKEN).any()
    if env_id in ("MiniGrid-DoorKey-5x5-v0", "MiniGrid-Unlock-v0"):
        assert seen_carrying and seen_open_door                         # the test reached those cases


def test_observing_on_the_device_path_equals_decode_batch():
    codec, steps = walk("MiniGrid-DoorKey-5x5-v0", 0, 40, True)
    frames = torch.stack([f for f, _ in steps])
    images, directions = codec.observe_torch(frames)
    ref_images, ref_dirs = codec.decode_batch(frames.numpy())
    np.testing.assert_array_equal(images.numpy(), ref_images)
    np.testing.assert_array_equal(directions.numpy(), ref_dirs)
    assert images.dtype == torch.uint8


def test_config_round_trips_through_the_registry():
    codec = MiniGridWorldCodec(7, 5, 7, see_through_walls=True)
    again = codec_from_config(codec.config)
    assert isinstance(again, MiniGridWorldCodec) and again.config == codec.config
    assert one_agent_token_base(again) == AGENT_TOKEN_BASE


@pytest.mark.parametrize("bad, message", [
    (dict(width=2), "width must be an integer >= 3"),
    (dict(see_through_walls="no"), "see_through_walls must be true or false"),
    (dict(view_size=4), "view_size must be an odd integer"),
])
def test_bad_settings_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        MiniGridWorldCodec(**{"width": 5, "height": 5, **bad})


def test_bad_frames_and_grids_are_refused_by_name():
    env = gym.make("MiniGrid-Empty-5x5-v0")
    env.reset(seed=0)
    codec = MiniGridWorldCodec.for_env(env)
    grid, direction, pos = world_grid(env)
    frame = codec.encode_env(env)
    with pytest.raises(ValueError, match="agent_pos must lie inside"):
        codec.encode_episode(grid, direction, np.array([5, 1]))
    unseen = grid.copy()
    unseen[2, 2] = 0
    with pytest.raises(ValueError, match=r"cell \(x=2, y=2\) holds .*unseen"):
        codec.encode_episode(unseen, direction, pos)
    two_agents = frame.clone()
    two_agents[2, 2] = AGENT_TOKEN_BASE
    with pytest.raises(ValueError, match="holds 2 agent tokens"):
        codec.decode_batch(two_agents.numpy())
    with pytest.raises(ValueError, match="not a world cell"):
        codec.decode_batch(torch.where(frame == 1, UNSEEN_TOKEN, frame).numpy())
    env.close()


def test_sampling_places_exactly_one_agent_in_its_most_likely_cell():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 5, 6, VOCAB_SIZE, generator=gen) * 3
    logits[:, :, :, AGENT_TOKEN_BASE:] += 2.0          # agents look likely everywhere: sampling alone would put many
    logits[torch.arange(64), 2, torch.arange(64) % 6, AGENT_TOKEN_BASE + 5] += 20.0
    constrained = one_agent_logits(logits, AGENT_TOKEN_BASE)
    uniform = torch.rand(logits.shape, generator=gen)
    free = sample_frames(logits, legal=None, temperature=1.0, uniform=uniform)
    frames = sample_frames(constrained, legal=None, temperature=1.0, uniform=uniform)
    assert (free >= AGENT_TOKEN_BASE).flatten(1).sum(1).gt(1).any()
    agents = frames >= AGENT_TOKEN_BASE
    assert agents.flatten(1).sum(1).eq(1).all()
    assert agents[torch.arange(64), 2, torch.arange(64) % 6].all()
    assert one_agent_logits(logits, None) is logits


def world_dream(env_id="MiniGrid-DoorKey-5x5-v0", **kwargs) -> DreamEnv:
    env = gym.make(env_id)
    codec = MiniGridWorldCodec.for_env(env)
    env.close()
    return DreamEnv(tiny_minigrid_model(env_id, codec=codec, done_bias=-20.0), **kwargs)


def test_a_world_dream_starts_from_the_real_state_and_shows_the_agent_its_view():
    dream = world_dream(max_episode_steps=20)
    real = gym.make("MiniGrid-DoorKey-5x5-v0")
    obs, _ = dream.reset(seed=3)
    real_obs, _ = real.reset(seed=3)
    np.testing.assert_array_equal(obs["image"], real_obs["image"])
    assert obs["direction"] == real_obs["direction"] and obs["mission"] == real_obs["mission"]
    np.testing.assert_array_equal(dream.frame.cpu(), MiniGridWorldCodec.for_env(real).encode_env(real))
    for t in range(20):
        obs, _, term, trunc, _ = dream.step(t % 3)
        assert dream.observation_space.contains(obs)
        assert (dream.frame >= AGENT_TOKEN_BASE).sum() == 1   # an untrained model, one agent all the same
        if term or trunc:
            break
    assert dream.get_frame(tile_size=8).shape == (7 * 8, 7 * 8, 3)               # the agent's view
    assert dream.get_frame(tile_size=8, agent_pov=False).shape == (5 * 8, 5 * 8, 3)   # the whole map
    real.close()
    dream.close()


def test_a_world_dream_decodes_by_argmax_unless_told_otherwise():
    """Its frame is the env's whole state: sampling it would make every wrong transition a lottery."""
    assert world_dream().simulator.temperature == 0.0
    assert world_dream(temperature=0.7).simulator.temperature == 0.7
    assert DreamEnv(tiny_minigrid_model("MiniGrid-DoorKey-5x5-v0")).simulator.temperature == 1.0   # the agent's view
    with pytest.raises(ValueError, match="temperature must be None .* or a finite number >= 0; got nan"):
        world_dream(temperature=float("nan"))


def test_a_world_dream_passes_gymnasiums_checker():
    check_env(world_dream(max_episode_steps=10), skip_render_check=True)


def test_rgb_observations_of_a_world_model_are_refused_by_name():
    env = gym.make("MiniGrid-Empty-5x5-v0")
    model = tiny_minigrid_model("MiniGrid-Empty-5x5-v0", codec=MiniGridWorldCodec.for_env(env))
    with pytest.raises(ValueError, match="obs_mode='rgb' needs a model of the agent's own view"):
        Simulator(model=model, obs_mode="rgb")


def test_collect_records_the_env_state_step_by_step(tmp_path):
    from train.collect import collect
    from worldsim.data.dataset import EpisodeDataset

    collect("MiniGrid-DoorKey-5x5-v0", "expert", episodes=3, out=tmp_path, num_envs=2, epsilon=0.3, progress=False)
    ds = EpisodeDataset(tmp_path)
    assert ds.manifest["codec"]["version"] == "minigrid-world-v1"        # the default view
    for i in range(3):
        ep = ds.episode(i)
        env = gym.make("MiniGrid-DoorKey-5x5-v0")
        env.reset(seed=int(ep.seed))
        codec = MiniGridWorldCodec.for_env(env)
        replayed = [codec.encode_env(env)]
        for a in ep.actions:
            env.step(int(a))
            replayed.append(codec.encode_env(env))
        np.testing.assert_array_equal(ep.frames, torch.stack(replayed).numpy())
        env.close()


def test_the_planner_and_the_fidelity_benchmark_run_on_a_world_model(tmp_path):
    from agents.planner import Planner, PlannerConfig, run_episode
    from benchmarks.fidelity import fidelity_benchmark

    env = gym.make("MiniGrid-DoorKey-5x5-v0")
    model = tiny_minigrid_model("MiniGrid-DoorKey-5x5-v0", codec=MiniGridWorldCodec.for_env(env))
    model.save_pretrained(tmp_path / "model")
    planner = Planner(model, config=PlannerConfig(horizon=2, population=4, iterations=1), device="cpu")
    result = run_episode(planner, "MiniGrid-DoorKey-5x5-v0", seed=0, max_steps=4)
    assert result["steps"] == 4 and planner.steps == 4
    report = fidelity_benchmark(str(tmp_path / "model"), ["random"], episodes=2, horizon=6, device="cpu",
                                progress=None)
    replay = report["policies"]["random"]["replay"]
    assert replay["steps_replayed"] > 0 and 0 <= replay["mean_cell_accuracy"] <= 1


def test_the_vector_dream_gives_the_same_observations_as_tensors_and_as_arrays(tmp_path):
    from worldsim.dream_vector_env import DreamVectorEnv

    env = gym.make("MiniGrid-DoorKey-5x5-v0")
    tiny_minigrid_model("MiniGrid-DoorKey-5x5-v0", codec=MiniGridWorldCodec.for_env(env),
                        done_bias=-20.0).save_pretrained(tmp_path / "m")
    runs = []
    for as_torch in (True, False):
        vec = DreamVectorEnv(str(tmp_path / "m"), num_envs=3, device="cpu", return_torch=as_torch)
        obs, _ = vec.reset(seed=0)
        seen = [obs["image"]]
        for t in range(6):
            obs, *_ = vec.step(np.array([t % 3, 2, 1]))
            seen.append(obs["image"])
        runs.append([np.asarray(o.cpu() if isinstance(o, torch.Tensor) else o) for o in seen])
        vec.close()
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)
    assert runs[0][0].shape == (3, 7, 7, 3)
    env.close()
