"""DreamVectorEnv: shapes, one batched model step, same-step autoreset, seeding, torch mode, gym.make_vec."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.minigrid import MiniGridCodec
from worldsim import DreamEnv, DreamVectorEnv, WorldModel

from conftest import MINIGRID_ENV_ID as ENV_ID, tiny_minigrid_model

RANDOM_ENV_ID = "MiniGrid-Empty-Random-6x6-v0"   # starts differ per seed


def tiny_model(env_id=ENV_ID, done_bias=-20.0, seed=0) -> WorldModel:
    """Never terminates by default: episodes end by truncation, so slot bookkeeping is exact."""
    return tiny_minigrid_model(env_id, done_bias=done_bias, seed=seed)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("dreamvec") / "ckpt"
    tiny_model().save_pretrained(path)
    return path




def rollout(env, seed, actions):
    out = [env.reset(seed=seed)[0]]
    for a in actions:
        obs, r, te, tr, _ = env.step(a)
        out.append((obs["image"].copy(), obs["direction"].copy(), r, te, tr))
    return out


def test_spaces_and_shapes(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=4)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    single = DreamEnv(checkpoint, device="cpu")
    assert env.single_observation_space == single.observation_space
    assert env.single_action_space == single.action_space
    assert env.observation_space == batch_space(single.observation_space, 3)
    assert env.action_space == batch_space(single.action_space, 3)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["image"].shape == (3, 7, 7, 3)
    for _ in range(4):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        assert reward.shape == terminated.shape == truncated.shape == (3,)
        assert reward.dtype == np.float64 and terminated.dtype == truncated.dtype == np.bool_


def test_one_batched_model_step_per_step(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=5, device="cpu", start_pool=5)
    calls = []
    original = env.simulator.model_step

    def counting(state, frame, action):
        calls.append(frame.shape[0])
        return original(state, frame, action)

    env.simulator.model_step = counting
    env.reset(seed=0)
    for _ in range(3):
        env.step(np.arange(5) % 7)
    assert calls == [5, 5, 5]


def test_image_only_and_rgb(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=2, device="cpu", obs_mode="rgb", image_only=True, start_pool=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 56, 56, 3) and env.observation_space.contains(obs)
    obs, *_ = env.step([1, 2])
    assert env.observation_space.contains(obs)


def test_starts_come_from_real_resets_with_successive_seeds(tmp_path):
    tiny_model(env_id=RANDOM_ENV_ID).save_pretrained(tmp_path / "ckpt")
    env = DreamVectorEnv(tmp_path / "ckpt", num_envs=4, device="cpu", start_pool=6)
    obs, _ = env.reset(seed=100)
    real = gym.make(RANDOM_ENV_ID)
    for i in range(4):
        real_obs, _ = real.reset(seed=100 + i)
        assert np.array_equal(obs["image"][i], real_obs["image"]) and obs["direction"][i] == real_obs["direction"]


def test_same_seed_same_rollout_and_seeds_differ(checkpoint):
    actions = [np.array([i % 7, (i + 3) % 7, 2]) for i in range(5)]
    a = rollout(DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=3), 5, actions)
    b = rollout(DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=3), 5, actions)
    c = rollout(DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=3), 6, actions)
    eq = lambda x, y: all(np.array_equal(np.asarray(p), np.asarray(q)) for p, q in zip(x, y))
    assert all(eq(x, y) for x, y in zip(a[1:], b[1:]))
    assert not all(eq(x, y) for x, y in zip(a[1:], c[1:]))


def test_truncation_autoresets_in_the_same_step(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=2, device="cpu", max_episode_steps=3, start_pool=4)
    first, _ = env.reset(seed=0)
    for t in range(1, 4):
        obs, _, terminated, truncated, infos = env.step([2, 2])
        assert not terminated.any()
        if t < 3:
            assert not truncated.any() and "final_obs" not in infos
    assert truncated.all()
    assert infos["_final_obs"].tolist() == [True, True] and infos["final_info"]["episode_length"].tolist() == [3, 3]
    for i in range(2):
        assert env.single_observation_space.contains(infos["final_obs"][i])
    # The returned observation is the next episode's first: pool entries 2 and 3 (seeds 2 and 3).
    real = gym.make(ENV_ID)
    for i in range(2):
        assert np.array_equal(obs["image"][i], real.reset(seed=2 + i)[0]["image"])
    assert env._state.frame.tolist() == [0, 0]


def test_autoreset_touches_only_the_finished_slot(checkpoint):
    """Force slot 1 to terminate at step 2; slots 0 and 2 must go on exactly as without it."""
    actions = [np.array([1, 2, 3]), np.array([2, 2, 2]), np.array([0, 1, 2]), np.array([2, 5, 2])]
    plain = DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=8)
    forced = DreamVectorEnv(checkpoint, num_envs=3, device="cpu", start_pool=8)
    original = forced.simulator.step
    step_no = [0]

    def dream_step(state, frames, a, gen=None, *, uniforms=None):
        nxt, reward, terminated, info = original(state, frames, a, gen, uniforms=uniforms)
        step_no[0] += 1
        if step_no[0] == 2:
            terminated = torch.tensor([False, True, False])
        return nxt, reward, terminated, info

    forced.simulator.step = dream_step
    plain.reset(seed=3)
    forced.reset(seed=3)
    for t, a in enumerate(actions, start=1):
        p_obs, _, _, _, p_info = plain.step(a)
        f_obs, _, f_term, _, f_info = forced.step(a)
        if t == 2:
            assert f_term.tolist() == [False, True, False]
            assert f_info["_final_obs"].tolist() == [False, True, False]
            assert f_info["final_obs"][0] is None and f_info["final_obs"][2] is None
            assert np.array_equal(f_info["final_obs"][1]["image"], p_obs["image"][1])   # the dreamed last frame
            assert forced._state.frame.tolist() == [2, 0, 2]
            assert np.array_equal(f_obs["image"][1], gym.make(ENV_ID).reset(seed=3 + 3)[0]["image"])
        else:
            assert "final_obs" not in f_info
        # Each row's random numbers are its own slice of one draw, so untouched slots agree exactly.
        for i in (0, 2):
            assert np.array_equal(f_obs["image"][i], p_obs["image"][i])
            assert f_obs["direction"][i] == p_obs["direction"][i]


def test_torch_mode_stays_on_the_device(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=4, device="cpu", return_torch=True, max_episode_steps=2, start_pool=4)
    numpy_env = DreamVectorEnv(checkpoint, num_envs=4, device="cpu", max_episode_steps=2, start_pool=4)
    obs, _ = env.reset(seed=0)
    n_obs, _ = numpy_env.reset(seed=0)
    for t in range(3):
        assert isinstance(obs["image"], torch.Tensor) and obs["image"].device == env.device
        assert obs["image"].dtype == torch.uint8 and obs["direction"].dtype == torch.int64
        assert np.array_equal(obs["image"].numpy(), n_obs["image"])
        assert np.array_equal(obs["direction"].numpy(), n_obs["direction"])
        a = torch.tensor([0, 1, 2, 3])
        obs, reward, terminated, truncated, infos = env.step(a)
        n_obs, n_reward, *_ = numpy_env.step(a.numpy())
        assert isinstance(reward, torch.Tensor) and reward.device == env.device
        assert torch.allclose(reward.double(), torch.from_numpy(n_reward))
        assert infos["_final_obs"].dtype == torch.bool and isinstance(infos["final_obs"]["image"], torch.Tensor)
    # Device decode equals the codec's decode for any legal frame.
    codec = MiniGridCodec(7)
    legal = codec.legal_mask()
    frames = torch.distributions.Categorical(probs=legal.float()).sample((16,))
    images, directions = codec.decode_batch(frames.numpy())
    t_images, t_directions = env.decode_torch(frames)
    assert np.array_equal(t_images.numpy(), images) and np.array_equal(t_directions.numpy(), directions)


def test_bad_actions(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=2, device="cpu", start_pool=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step([0, 0])
    env.reset(seed=0)
    for bad in ([0, 7], [0], [0.5, 1.0], [[0, 1]]):
        with pytest.raises(ValueError):
            env.step(bad)


def test_gym_make_and_make_vec(checkpoint):
    env = gym.make("worldsim/Dream-v0", checkpoint=checkpoint, device="cpu", image_only=True)
    obs, _ = env.reset(seed=0)
    assert isinstance(env.unwrapped, DreamEnv) and obs.shape == (7, 7, 3)
    env.step(2)
    venv = gym.make_vec("worldsim/Dream-v0", num_envs=3, checkpoint=checkpoint, device="cpu", start_pool=3)
    assert isinstance(venv, DreamVectorEnv) and venv.num_envs == 3
    obs, _ = venv.reset(seed=0)
    assert obs["image"].shape == (3, 7, 7, 3)
    venv.step(np.array([0, 1, 2]))


def test_bf16_precision_runs_with_a_half_size_attention_cache(checkpoint):
    env = DreamVectorEnv(checkpoint, num_envs=2, device="cpu", precision="bf16")
    env.reset(seed=0)
    for _ in range(3):
        obs, *_ = env.step(np.zeros(2, dtype=np.int64))
    assert env._state.layers[0].keys.dtype == torch.bfloat16
    assert env._state.layers[0].ssm.dtype == torch.float32
    assert env.observation_space.contains(obs)
    with pytest.raises(ValueError, match="precision must be one of"):
        DreamVectorEnv(checkpoint, num_envs=2, device="cpu", precision="fp8")


def _trajectory(env, actions, seed):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, reward, terminated, truncated, infos = env.step(a)
        out.append((obs, reward, terminated, truncated, infos.get("final_obs")))
    return out


def _same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray) and a.dtype == object:
        return all(_same(x, y) for x, y in zip(a, b))
    return np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


def test_reset_reuses_buffers_and_replays_exactly(checkpoint):
    """A reset writes the env's buffers in place (a captured step keeps reading them), and a used env
    reset with a seed dreams exactly what a new env does with that seed, autoresets included."""
    actions = [np.array([i % 3, (i + 1) % 7, 2]) for i in range(7)]
    used = DreamVectorEnv(checkpoint, num_envs=3, device="cpu", max_episode_steps=3, start_pool=4)
    _trajectory(used, actions, seed=11)
    buffers = [t.data_ptr() for t in used._step_buffers()]
    again = _trajectory(used, actions, seed=5)
    assert [t.data_ptr() for t in used._step_buffers()] == buffers
    fresh = _trajectory(DreamVectorEnv(checkpoint, num_envs=3, device="cpu", max_episode_steps=3, start_pool=4),
                        actions, seed=5)
    assert _same(again, fresh)


def test_cuda_graphs_need_cuda(checkpoint):
    with pytest.raises(ValueError, match="cuda_graphs=True needs a CUDA device; this env runs on cpu"):
        DreamVectorEnv(checkpoint, num_envs=2, device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="cuda_graphs must be None"):
        DreamVectorEnv(checkpoint, num_envs=2, device="cpu", cuda_graphs="yes")


@pytest.mark.gpu
@pytest.mark.parametrize("return_torch", [True, False])
@pytest.mark.parametrize("temperature,termination", [(1.0, "threshold"), (0.0, "sample")])
def test_cuda_graph_step_equals_eager_step(checkpoint, return_torch, temperature, termination):
    """The captured step replays the eager step's numbers: same seed, same frames, rewards, flags and
    autoresets, over two resets (the capture survives a reset)."""
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, 7, 5) for _ in range(12)]
    if return_torch:
        actions = [torch.from_numpy(a).cuda() for a in actions]
    envs = [DreamVectorEnv(checkpoint, num_envs=5, device="cuda", max_episode_steps=4, start_pool=6,
                           return_torch=return_torch, temperature=temperature, termination=termination,
                           precision="float32", cuda_graphs=graphs) for graphs in (False, True)]
    for seed in (0, 1):
        eager, graphed = (_trajectory(env, actions, seed) for env in envs)
        assert _same(eager, graphed)
    assert envs[1]._captured is not None and envs[0]._captured is None


@pytest.mark.gpu
def test_cuda_graph_step_equals_eager_step_on_a_world_view_model(tmp_path):
    """A world-view model's step places the agent and cuts the agent's view out of the dreamed grid
    inside the captured graph: the replay gives the eager step's numbers."""
    from envs.minigrid import MiniGridWorldCodec

    env = gym.make(ENV_ID)
    tiny_minigrid_model(ENV_ID, codec=MiniGridWorldCodec.for_env(env), done_bias=-20.0).save_pretrained(tmp_path / "m")
    rng = np.random.default_rng(0)
    actions = [torch.from_numpy(rng.integers(0, 7, 5)).cuda() for _ in range(12)]
    from worldsim.interactions import N_CELLS, InteractionCounts

    counts = InteractionCounts(torch.randint(0, 9, (N_CELLS * N_CELLS * 7,)), num_actions=7)
    envs = [DreamVectorEnv(str(tmp_path / "m"), num_envs=5, device="cuda", max_episode_steps=4, start_pool=6,
                           return_torch=True, precision="float32", cuda_graphs=graphs, novelty_bonus=0.3,
                           interaction_bonus=0.2, interaction_counts=counts)
            for graphs in (False, True)]     # the novelty and interaction memories are graph buffers too
    for seed in (0, 1):
        eager, graphed = (_trajectory(e, actions, seed) for e in envs)
        assert _same(eager, graphed)
    assert envs[1]._captured is not None


def test_novelty_bonus_pays_for_frames_new_to_the_episode(checkpoint):
    """The bonus (and the uncertainty paid with it) is paid exactly on steps whose frame the episode
    has not shown yet (its start included), and an autoreset forgets the finished episode's frames."""
    kw = dict(num_envs=3, device="cpu", max_episode_steps=5, temperature=0.0, start_pool=3)
    plain, novel = DreamVectorEnv(checkpoint, **kw), DreamVectorEnv(checkpoint, novelty_bonus=0.5, **kw)
    unsure = DreamVectorEnv(checkpoint, novelty_uncertainty=2.0, **kw)
    shown = []                                   # every step's frames before autoreset

    def some_frames_stay(env):                   # the tiny model dreams a new frame each step: keep some
        step, stay = env.simulator.step, np.random.default_rng(1)

        def spy(state, frames, *args, **kwargs):
            nxt, *rest = step(state, frames, *args, **kwargs)
            nxt = torch.where(torch.from_numpy(stay.random(len(nxt)) < 0.5)[:, None, None], frames, nxt)
            if env is novel:
                shown.append(nxt.clone())
            return (nxt, *rest)
        env.simulator.step = spy

    for env in (plain, novel, unsure):
        some_frames_stay(env)
        env.reset(seed=4)
    seen = [{novel.frames[i].numpy().tobytes()} for i in range(3)]
    rng = np.random.default_rng(0)
    paid = []
    for _ in range(16):
        a = rng.integers(0, 3, size=3)           # turns and forward: frames come back
        _, r0, _, _, _ = plain.step(a)
        _, r1, _, truncated, _ = novel.step(a)
        _, r2, _, _, info = unsure.step(a)
        for i in range(3):
            frame = shown[-1][i].numpy().tobytes()
            new = frame not in seen[i]
            assert r1[i] - r0[i] == pytest.approx(0.5 if new else 0.0, abs=1e-6)
            assert r2[i] - r0[i] == pytest.approx(2.0 * info["uncertainty"][i] if new else 0.0, abs=1e-6)
            paid.append(new)
            seen[i].add(frame)
            if truncated[i]:
                seen[i] = {novel.frames[i].numpy().tobytes()}
    assert any(paid) and not all(paid)           # both cases happened
    for name in ("novelty_bonus", "novelty_uncertainty"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            DreamVectorEnv(checkpoint, num_envs=1, device="cpu", **{name: -1.0})
