"""`worldsim collect`: policies, vector envs, resuming after a crash, bad input, the command line."""

import argparse
import json
import os
from collections import deque

import gymnasium as gym
import minigrid  # noqa: F401
import numpy as np
import pytest

from envs.minigrid.explore import ExploreAgent
from train import collect_policies as collect_module
from train.collect import PoseView, collect
from train.collect_cli import add_collect_parser
from worldsim.data.dataset import DatasetError, DatasetWriter, EpisodeDataset

EMPTY = "MiniGrid-Empty-5x5-v0"


def run_cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="worldsim")
    add_collect_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["collect", *map(str, argv)])
    return args.run(args)


def seeds_of(root):
    return [s for entry in json.loads((root / "manifest.json").read_text())["shards"] for s in entry["seeds"]]


def test_manifest_and_max_steps(tmp_path):
    summary = collect("MiniGrid-FourRooms-v0", "random", episodes=3, out=tmp_path, max_steps=25, num_envs=2,
                      seed=5, shard_episodes=2, progress=False)
    assert summary["collected_episodes"] == 3
    m = EpisodeDataset(tmp_path).manifest
    assert m["env_id"] == "MiniGrid-FourRooms-v0" and m["max_steps"] == 25 and m["policy"] == "random"
    assert m["codec"] == {"version": "minigrid-world-v1", "width": 19, "height": 19, "view_size": 7,   # the default view
                          "see_through_walls": False} and m["frame_dtype"] == "uint8"
    assert m["totals"]["episodes"] == 3 and [e["file"] for e in m["shards"]] == ["shard-00000.npz", "shard-00001.npz"]
    assert sorted(seeds_of(tmp_path)) == [5, 6, 7]
    ds = EpisodeDataset(tmp_path)
    lengths = [len(ds.episode(i)) for i in range(3)]
    assert max(lengths) <= 25 and m["totals"]["steps"] == sum(lengths)
    assert all(ds.episode(i).truncated[-1] for i in range(3) if lengths[i] == 25)


def test_sync_and_async_give_the_same_episodes(tmp_path):
    for mode in ("sync", "async"):
        collect(EMPTY, "random", episodes=4, out=tmp_path / mode, max_steps=15, num_envs=2, seed=0,
                vectorization=mode, progress=False)
    a, b = EpisodeDataset(tmp_path / "sync"), EpisodeDataset(tmp_path / "async")
    by_seed = {a.episode(i).seed: a.episode(i) for i in range(4)}
    for i in range(4):
        ep = b.episode(i)
        np.testing.assert_array_equal(ep.frames, by_seed[ep.seed].frames)
        np.testing.assert_array_equal(ep.actions, by_seed[ep.seed].actions)


def test_interrupted_run_loses_at_most_the_shard_in_flight_and_resumes(tmp_path, monkeypatch):
    real = DatasetWriter.write_shard
    calls = []

    def crash_on_second(self, episodes):
        calls.append(len(episodes))
        if len(calls) == 2:
            raise RuntimeError("simulated crash while writing")
        return real(self, episodes)

    monkeypatch.setattr(DatasetWriter, "write_shard", crash_on_second)
    with pytest.raises(RuntimeError, match="simulated"):
        collect(EMPTY, "random", episodes=9, out=tmp_path, max_steps=10, num_envs=3, shard_episodes=2,
                progress=False)
    kept = seeds_of(tmp_path)
    assert len(kept) == 2 and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(DatasetWriter, "write_shard", real)
    summary = collect(EMPTY, "random", episodes=9, out=tmp_path, max_steps=10, num_envs=3, shard_episodes=2,
                      progress=False)
    assert summary["already_there"] == 2 and summary["collected_episodes"] == 7
    assert sorted(seeds_of(tmp_path)) == list(range(9))       # continued, no duplicates
    assert EpisodeDataset(tmp_path).num_episodes == 9
    assert collect(EMPTY, "random", episodes=9, out=tmp_path, max_steps=10, progress=False)["collected_episodes"] == 0
    assert run_cli("--verify", tmp_path) == 0


def test_crash_mid_shard_write_leaves_no_half_file(tmp_path, monkeypatch):
    """A crash inside the shard write (after bytes hit the temp file) leaves only complete shards."""
    collect(EMPTY, "random", episodes=2, out=tmp_path, max_steps=10, num_envs=1, shard_episodes=2, progress=False)
    real_replace = os.replace

    def boom(src, dst):
        if str(dst).endswith(".npz"):
            raise OSError("disk vanished")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        collect(EMPTY, "random", episodes=4, out=tmp_path, max_steps=10, num_envs=1, shard_episodes=2, progress=False)
    monkeypatch.undo()
    assert [p.name for p in sorted(tmp_path.glob("shard-*"))] == ["shard-00000.npz"]
    collect(EMPTY, "random", episodes=4, out=tmp_path, max_steps=10, num_envs=1, shard_episodes=2, progress=False)
    assert sorted(seeds_of(tmp_path)) == [0, 1, 2, 3] and not list(tmp_path.glob(".*.tmp"))


def test_ctrl_c_keeps_finished_episodes(tmp_path, monkeypatch):
    real, calls = collect_module.RandomPolicy.act, []

    def interrupt_later(self, *args):
        calls.append(1)
        if len(calls) == 40:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(collect_module.RandomPolicy, "act", interrupt_later)
    assert run_cli("--env", EMPTY, "--episodes", 20, "--out", tmp_path, "--max-steps", 6, "--num-envs", 2,
                   "--shard-episodes", 100) == 130
    kept = seeds_of(tmp_path)
    assert 10 <= len(kept) < 20                                # ~2 per 6 steps finished, none lost
    monkeypatch.undo()
    collect(EMPTY, "random", episodes=20, out=tmp_path, max_steps=6, num_envs=2, progress=False)
    assert sorted(seeds_of(tmp_path)) == list(range(20))


def test_refuses_to_mix_datasets(tmp_path):
    collect(EMPTY, "random", episodes=1, out=tmp_path, max_steps=5, progress=False)
    with pytest.raises(DatasetError, match="env_id.*MiniGrid-Empty-5x5-v0"):
        collect("MiniGrid-Empty-6x6-v0", "random", episodes=2, out=tmp_path, max_steps=5, progress=False)
    with pytest.raises(DatasetError, match="max_steps"):
        collect(EMPTY, "random", episodes=2, out=tmp_path, max_steps=6, progress=False)


def test_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown env id"):
        collect("MiniGrid-Nope-v0", episodes=1, out=tmp_path / "a")
    with pytest.raises(ValueError, match="needs uint8 image observations.*collect records MiniGrid envs, and other "
                       "envs of images"):
        collect("CartPole-v1", episodes=1, out=tmp_path / "b")
    with pytest.raises(ValueError, match="no such file"):
        collect(EMPTY, str(tmp_path / "missing.zip"), episodes=1, out=tmp_path / "c")
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(ValueError, match="not a Stable-Baselines3 model"):
        collect(EMPTY, str(tmp_path / "junk.zip"), episodes=1, out=tmp_path / "d")
    with pytest.raises(ValueError, match="episodes"):
        collect(EMPTY, episodes=0, out=tmp_path / "e")
    assert not (tmp_path / "c").exists()                       # nothing written before input is checked


# ---------------------------------------------------------------------------------------- explore


def reachable(u):
    start = tuple(int(v) for v in u.agent_pos)
    seen, queue = {start}, deque([start])
    while queue:
        x, y = queue.popleft()
        for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            cell = u.grid.get(*n)
            if n not in seen and (cell is None or cell.type not in ("wall", "lava")):
                seen.add(n)
                queue.append(n)
    return seen


def coverage(policy, seed, steps):
    """(fraction of reachable cells visited, returns to a cell last left >= 100 steps before)."""
    env = gym.make("MiniGrid-FourRooms-v0", max_steps=steps)
    u = env.unwrapped
    obs, _ = env.reset(seed=seed)
    cells = reachable(u)
    agent = ExploreAgent(seed=seed)
    agent.reset(obs, u.agent_pos, (u.width, u.height))
    rng = np.random.default_rng(seed)
    here = tuple(u.agent_pos)
    last_left, visited, returns = {}, {here}, 0
    for t in range(steps):
        action = agent.act(obs, u.agent_pos) if policy == "explore" else int(rng.integers(7))
        obs, _, terminated, truncated, _ = env.step(action)
        now = tuple(int(v) for v in u.agent_pos)
        if now != here:
            last_left[here] = t
            returns += now in last_left and t - last_left[now] >= 100
            here = now
            visited.add(now)
        if terminated or truncated:
            break
    return len(visited & cells) / len(cells), returns


def test_explore_covers_four_rooms_and_comes_back():
    explore = [coverage("explore", s, 1500) for s in range(3)]
    random = [coverage("random", s, 1500) for s in range(3)]
    assert min(c for c, _ in explore) > 0.8
    assert np.mean([c for c, _ in explore]) > 2 * np.mean([c for c, _ in random])
    assert min(r for _, r in explore) >= 20                    # long round trips back to old places


def test_explore_policy_collects_long_episodes(tmp_path):
    collect("MiniGrid-FourRooms-v0", "explore", episodes=2, out=tmp_path, max_steps=300, num_envs=2,
            progress=False)
    ds = EpisodeDataset(tmp_path)
    assert ds.manifest["policy"] == "explore"
    assert all(len(ds.episode(i)) == 300 for i in range(2))   # it keeps off the goal: episodes run full length


@pytest.mark.parametrize("env_id", ["MiniGrid-DoorKey-8x8-v0", "MiniGrid-Empty-8x8-v0"])
def test_expert_reaches_the_goal(env_id, tmp_path):
    collect(env_id, "expert", episodes=8, out=tmp_path, num_envs=4, progress=False, view="ego")
    ds = EpisodeDataset(tmp_path)
    assert ds.manifest["policy"] == "expert"
    for i in range(8):
        ep = ds.episode(i)
        assert ep.terminated[-1] and ep.rewards[-1] > 0 and not ep.truncated.any()
        assert len(ep) < 100                                  # well inside the limits (256, 640)
    if "DoorKey" in env_id:                                   # the key is picked up (then carried: shown in
        agent = ds.codec.agent_cell                           # the agent's cell) and the door opened (toggle)
        ep = ds.episode(0)
        assert 3 in ep.actions and 5 in ep.actions
        assert len({int(t) for t in ep.frames[:, agent[0], agent[1]]}) > 4   # 4 directions, empty-handed


# ---------------------------------------------------------------------------------------- SB3 models


@pytest.fixture(scope="module")
def sb3_models(tmp_path_factory):
    """Untrained PPO (image only), A2C (Dict image + direction) and DQN (CartPole: does not fit)."""
    import torch
    from minigrid.wrappers import ImgObsWrapper
    from stable_baselines3 import A2C, DQN, PPO

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sb3")
    PPO("MlpPolicy", ImgObsWrapper(gym.make(EMPTY)), n_steps=16, batch_size=16, device="cpu").save(root / "ppo.zip")
    dict_env = PoseView(gym.make(EMPTY))                      # image bounds 0..10, so SB3 uses an MLP, not a CNN
    dict_env.observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 10, (7, 7, 3), np.uint8),
                                                  "direction": gym.spaces.Discrete(4)})
    A2C("MultiInputPolicy", dict_env, device="cpu").save(root / "a2c.zip")
    DQN("MlpPolicy", gym.make("CartPole-v1"), buffer_size=100, device="cpu").save(root / "dqn.zip")
    return root


def test_sb3_policies_collect(sb3_models, tmp_path):
    for name in ("ppo", "a2c"):
        out = tmp_path / name
        summary = collect(EMPTY, str(sb3_models / f"{name}.zip"), episodes=3, out=out, max_steps=8, num_envs=2,
                          progress=False)
        assert summary["collected_episodes"] == 3
        ds = EpisodeDataset(out)
        assert ds.manifest["policy"].startswith(f"sb3-{name}:{name}.zip@")
        assert ds.num_episodes == 3 and run_cli("--verify", out) == 0


def test_epsilon_mixes_random_actions_per_episode(sb3_models, tmp_path):
    ppo = str(sb3_models / "ppo.zip")
    kw = dict(episodes=6, max_steps=40, num_envs=3, deterministic=True, progress=False)
    collect(EMPTY, ppo, out=tmp_path / "expert", **kw)
    collect(EMPTY, ppo, out=tmp_path / "mixed", epsilon="0:1", **kw)
    collect(EMPTY, ppo, out=tmp_path / "again", epsilon="0:1", **kw)
    expert, mixed, again = (EpisodeDataset(tmp_path / n) for n in ("expert", "mixed", "again"))
    assert mixed.manifest["policy"] == expert.manifest["policy"] + "+epsilon:0-1"
    # A deterministic untrained PPO repeats one action from the start frame; the random ones break that.
    first_actions = [set(expert.episode(i).actions[:1].tolist()) for i in range(6)]
    assert len(set().union(*first_actions)) == 1
    assert len(set(np.concatenate([mixed.episode(i).actions for i in range(6)]).tolist())) > 1
    for i in range(6):                                        # each episode's mix is reproducible from its seed
        np.testing.assert_array_equal(mixed.episode(i).actions, again.episode(i).actions)
    with pytest.raises(ValueError, match="LOW:HIGH"):
        collect(EMPTY, ppo, out=tmp_path / "bad", epsilon="0.5:0.2", episodes=1)
    assert not (tmp_path / "bad").exists()


def test_sb3_model_that_does_not_fit_is_refused(sb3_models, tmp_path):
    with pytest.raises(ValueError, match="observes .* does not fit"):
        collect(EMPTY, str(sb3_models / "dqn.zip"), episodes=1, out=tmp_path)


# ---------------------------------------------------------------------------------------- command line


def test_cli_collect_verify_and_errors(tmp_path, capsys):
    out = tmp_path / "ds"
    assert run_cli("--env", EMPTY, "--episodes", 3, "--out", out, "--max-steps", 6, "--num-envs", 2,
                   "--shard-episodes", 2, "--seed", 4) == 0
    assert "3 episodes" in capsys.readouterr().out
    assert run_cli("--verify", out) == 0
    assert "OK" in capsys.readouterr().out
    (out / "shard-00001.npz").write_bytes(b"broken")
    assert run_cli("--verify", out) == 1
    assert "shard-00001.npz" in capsys.readouterr().out
    assert run_cli("--env", "CartPole-v1", "--episodes", 1, "--out", tmp_path / "x") == 1
    assert "needs uint8 image observations" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli("--episodes", 1)                               # no --env, no --out
