"""The native PPO: GAE against a plain loop, a task it must learn, files, dream and real observations,
the command line, and bad input."""

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.cli import add_agent_parser
from agents.evaluation import evaluate_policy
from agents.ppo import ActorCritic, NativePolicy, PPOSettings, compute_gae, save_policy, train_ppo
from agents.torch_envs import RealTorchVecEnv, make_torch_env
from agents.training import load_policy, parse_hyperparams, train_agent
from train.collect_policies import make_policy

from conftest import MINIGRID_ENV_ID, tiny_minigrid_model

REAL_ID = "MiniGrid-Empty-5x5-v0"


def gae_plain(rewards, values, dones, last_value, gamma, lam):
    """One env, one step at a time, straight from the definition."""
    steps = len(rewards)
    adv = [0.0] * steps
    for t in range(steps):
        total, weight = 0.0, 1.0
        for k in range(t, steps):
            next_value = last_value if k + 1 == steps else values[k + 1]
            delta = rewards[k] + (0.0 if dones[k] else gamma * next_value) - values[k]
            total += weight * delta
            if dones[k]:
                break
            weight *= gamma * lam
        adv[t] = total
    return adv, [a + v for a, v in zip(adv, values)]


def test_gae_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    steps, n = 9, 5
    rewards, values = torch.randn(steps, n, generator=g), torch.randn(steps, n, generator=g)
    dones = torch.rand(steps, n, generator=g) < 0.3
    last = torch.randn(n, generator=g)
    adv, ret = compute_gae(rewards, values, dones, last, 0.97, 0.9)
    for j in range(n):
        want_adv, want_ret = gae_plain(rewards[:, j].tolist(), values[:, j].tolist(), dones[:, j].tolist(),
                                       float(last[j]), 0.97, 0.9)
        assert adv[:, j].tolist() == pytest.approx(want_adv, abs=1e-5)
        assert ret[:, j].tolist() == pytest.approx(want_ret, abs=1e-5)


class CueEnv:
    """A contextual bandit in MiniGrid's clothes: one cell of a 7x7x3 image shows a cue 0..2, and the
    action equal to the cue pays 1 and ends the episode; any other action ends it with 0. A uniform
    policy wins 1/7 of the time."""

    single_observation_space = spaces.Box(0, 255, (7, 7, 3), np.uint8)
    single_action_space = spaces.Discrete(7)

    def __init__(self, num_envs: int):
        self.num_envs, self.device = num_envs, torch.device("cpu")
        self.gen = torch.Generator()

    def _obs(self):
        self.cue = torch.randint(0, 3, (self.num_envs,), generator=self.gen)
        obs = torch.zeros(self.num_envs, 7, 7, 3, dtype=torch.uint8)
        obs[:, 3, 6, 0] = (self.cue * 3 + 2).to(torch.uint8)
        return obs

    def reset(self, *, seed=None):
        self.gen.manual_seed(seed or 0)
        return self._obs(), {}

    def step(self, actions):
        reward = (actions == self.cue).float()
        done = torch.ones(self.num_envs, dtype=torch.bool)
        final = torch.zeros(self.num_envs, 7, 7, 3, dtype=torch.uint8)
        return self._obs(), reward, done, torch.zeros_like(done), {"final_obs": final, "_final_obs": done}

    def close(self):
        pass


def test_ppo_learns_a_cue():
    settings = PPOSettings(num_steps=16, minibatch_size=64, epochs=4, learning_rate=3e-3)
    policy, history = train_ppo(CueEnv(16), total_steps=16 * 16 * 30, settings=settings, seed=0)
    assert history[0]["success_rate"] < 0.4
    assert history[-1]["success_rate"] > 0.9, [h["success_rate"] for h in history]
    # the learned policy, on fresh cues, greedily
    env = CueEnv(256)
    obs, _ = env.reset(seed=123)
    actions = NativePolicy(policy, torch.device("cpu")).act(obs, deterministic=True)
    assert (actions == env.cue).float().mean() > 0.95


class BoxCueEnv(CueEnv):
    """The cue task with a Box of actions in [-2, 2]^2: cue k asks for the point TARGETS[k], and an action
    pays 1 - its distance from it (at least 0), ending the episode."""

    single_action_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
    TARGETS = torch.tensor([[1.5, -1.0], [-1.0, 0.5], [0.0, 1.5]])

    def step(self, actions):
        assert actions.dtype == torch.float32 and (actions.abs() <= 2).all()      # in the env's box
        distance = (actions - self.TARGETS[self.cue]).norm(dim=-1)
        reward = (1 - distance).clamp(min=0)
        done = torch.ones(self.num_envs, dtype=torch.bool)
        final = torch.zeros(self.num_envs, 7, 7, 3, dtype=torch.uint8)
        return self._obs(), reward, done, torch.zeros_like(done), {"final_obs": final, "_final_obs": done}


def test_ppo_learns_a_cue_with_a_box_of_actions(tmp_path):
    settings = PPOSettings(num_steps=16, minibatch_size=64, epochs=4, learning_rate=3e-3, ent_coef=0.0)
    policy, history = train_ppo(BoxCueEnv(16), total_steps=16 * 16 * 60, settings=settings, seed=0)
    # Returns while training include the Gaussian's exploration; they rise from a random policy's.
    assert history[0]["mean_return"] < 0.1
    assert np.mean([h["mean_return"] for h in history[-5:]]) > 0.3, [h["mean_return"] for h in history]
    # Greedy actions on fresh cues land near their targets, in the env's units, after a save and load.
    (tmp_path / "agent.json").write_text(json.dumps({"network": policy.spec()}))
    save_policy(policy, tmp_path)
    loaded = NativePolicy.load(tmp_path, json.loads((tmp_path / "agent.json").read_text()))
    assert loaded.action_space == BoxCueEnv.single_action_space
    env = BoxCueEnv(256)
    obs, _ = env.reset(seed=123)
    actions = loaded.act(obs, deterministic=True)
    assert (actions - BoxCueEnv.TARGETS[env.cue]).norm(dim=-1).median() < 0.3


def test_real_env_gives_tensors_and_final_observations():
    env = RealTorchVecEnv(REAL_ID, 3, max_episode_steps=2)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == torch.uint8 and obs.shape == (3, 7, 7, 3)
    env.step(torch.zeros(3, dtype=torch.long))
    obs2, reward, terminated, truncated, infos = env.step(torch.zeros(3, dtype=torch.long))   # turning: truncated
    assert truncated.all() and not terminated.any() and reward.dtype == torch.float32
    assert infos["_final_obs"].all() and infos["final_obs"].shape == (3, 7, 7, 3)
    assert torch.equal(obs2, obs)            # autoreset in the same step, same seeds' layouts, initial view
    env.close()


def test_policy_round_trip_and_same_policy_on_dream_and_real(tmp_path):
    torch.manual_seed(0)
    network = ActorCritic((7, 7, 3), 7)
    save_policy(network, tmp_path)
    info = {"algo": "native-ppo", "network": network.spec()}
    (tmp_path / "agent.json").write_text(json.dumps(info))
    loaded = NativePolicy.load(tmp_path, info)
    real = RealTorchVecEnv(REAL_ID, 2)
    obs_real, _ = real.reset(seed=0)
    dream = make_torch_env(MINIGRID_ENV_ID, "dream", 2, checkpoint=tiny_minigrid_model(), device="cpu")
    obs_dream, _ = dream.reset(seed=0)
    for obs in (obs_real, obs_dream):
        assert obs.shape == (2, 7, 7, 3) and obs.dtype == torch.uint8
        want, _ = network(obs)
        got, _ = loaded.network(obs)
        assert torch.equal(want, got)
    actions, _ = loaded.predict(obs_real.numpy(), deterministic=True)
    assert actions.shape == (2,) and actions.dtype == np.int64
    single, _ = loaded.predict(obs_real[0].numpy(), deterministic=True)
    assert int(single) == int(actions[0])


def test_train_agent_native_in_dream_then_eval_and_collect(tmp_path):
    model = tmp_path / "model"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(model)
    out = tmp_path / "agent"
    info = train_agent(MINIGRID_ENV_ID, where="dream", algo="native-ppo", steps=64, out=out, checkpoint=model,
                       num_envs=4, seed=0, device="cpu", max_episode_steps=5,
                       hyperparams={"num_steps": 8, "minibatch_size": 16})
    saved = json.loads((out / "agent.json").read_text())
    assert saved["algo"] == "native-ppo" and saved["num_timesteps"] == 64 and saved["policy"] == "policy.safetensors"
    assert saved["hyperparams"]["num_steps"] == 8 and saved["network"]["num_actions"] == 7
    assert info["policy_path"] == str(out / "policy.safetensors") and not (out / "policy.zip").exists()
    assert len(saved["history"]) == 2 and any((out / "tb").rglob("events.out.tfevents.*"))
    assert saved["pessimism"] == {"uncertainty_penalty": 0.0, "uncertainty_limit": None}
    # A pessimistic dream reaches the agent: a limit near 0 truncates every episode at its first step.
    strict = train_agent(MINIGRID_ENV_ID, where="dream", algo="native-ppo", steps=64, out=tmp_path / "strict",
                         checkpoint=model, num_envs=4, seed=0, device="cpu", max_episode_steps=5,
                         hyperparams={"num_steps": 8, "minibatch_size": 16}, uncertainty_limit=1e-9)
    assert strict["pessimism"]["uncertainty_limit"] == 1e-9
    assert sum(h["episodes"] for h in strict["history"]) == 64 > sum(h["episodes"] for h in saved["history"])
    with pytest.raises(ValueError, match="act on the dream"):
        train_agent(MINIGRID_ENV_ID, where="real", algo="native-ppo", steps=64, out=tmp_path / "x",
                    uncertainty_penalty=1.0)
    # The dream's temperature reaches the env the agent trains in, and the scoring dream.
    argmax = train_agent(MINIGRID_ENV_ID, where="dream", algo="native-ppo", steps=64, out=tmp_path / "argmax",
                         checkpoint=model, num_envs=4, seed=0, device="cpu", max_episode_steps=5,
                         hyperparams={"num_steps": 8, "minibatch_size": 16}, temperature=0.0)
    assert argmax["dream_temperature"] == 0.0 and saved["dream_temperature"] is None
    # Same seed and settings, another dream: other frames, so other updates (equal if it were ignored).
    from safetensors.torch import load_file
    first, second = load_file(out / "policy.safetensors"), load_file(tmp_path / "argmax" / "policy.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)
    dream = make_torch_env(MINIGRID_ENV_ID, "dream", 2, checkpoint=model, device="cpu",
                           dream_settings={"temperature": 0.0})
    assert dream.setup.simulator.temperature == 0.0
    scored = evaluate_policy(tmp_path / "argmax", MINIGRID_ENV_ID, episodes=2, where="dream", checkpoint=model,
                             device="cpu", max_episode_steps=5, temperature=0.0)
    assert scored["dream_temperature"] == 0.0
    sampled = evaluate_policy(tmp_path / "argmax", MINIGRID_ENV_ID, episodes=2, where="dream", checkpoint=model,
                              device="cpu", max_episode_steps=5, temperature=1.0)
    assert sampled["returns"] != scored["returns"]          # the scoring dream decodes at the temperature given
    with pytest.raises(ValueError, match="temperature 0.0 is the dream's sampling temperature"):
        evaluate_policy(out, MINIGRID_ENV_ID, episodes=1, where="real", temperature=0.0)
    policy, _ = load_policy(out, device="cpu")
    assert isinstance(policy, NativePolicy)
    result = evaluate_policy(out, MINIGRID_ENV_ID, episodes=3, where="real", deterministic=False)
    assert result["episodes"] == 3 and result["algo"] == "native-ppo"
    pol = make_policy(str(out), num_envs=2, num_actions=7, view_size=7)
    assert pol.name.startswith("native-ppo:agent@")
    obs = {"image": np.zeros((2, 7, 7, 3), np.uint8), "direction": np.zeros(2, np.int64)}
    assert pol.act(obs, None, np.ones(2, bool)).shape == (2,)


def test_bad_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="'num_stepz'"):
        parse_hyperparams("num_stepz=3", "native-ppo")
    with pytest.raises(ValueError, match="minibatch_size must be a positive integer; got 0"):
        PPOSettings.from_overrides({"minibatch_size": 0})
    with pytest.raises(ValueError, match="gamma must be a finite number >= 0 and <= 1; got 1.5"):
        PPOSettings(gamma=1.5)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0; got nan"):
        PPOSettings(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="total_steps must be a positive integer; got 0"):
        train_ppo(CueEnv(2), total_steps=0)
    with pytest.raises(ValueError, match="num_envs must be a positive integer; got -1"):
        train_agent(REAL_ID, where="real", algo="native-ppo", steps=10, out=tmp_path / "x", num_envs=-1)
    # a policy file for another observation space, or weights that do not fit agent.json
    network = ActorCritic((7, 7, 3), 7)
    save_policy(network, tmp_path)
    with pytest.raises(ValueError, match="does not fit the network"):
        NativePolicy.load(tmp_path, {"network": {"observation_shape": [9, 9, 3], "num_actions": 7, "features": "cnn"}})
    with pytest.raises(ValueError, match="'network' must give"):
        NativePolicy.load(tmp_path, {"network": {"observation_shape": [7, 7, 3], "num_actions": 0, "features": "cnn"}})
    policy = NativePolicy(network, torch.device("cpu"))
    with pytest.raises(ValueError, match=r"observes \(7, 7, 3\) images; got an array of shape \(2, 9, 9, 3\)"):
        policy.predict(np.zeros((2, 9, 9, 3), np.uint8))
    dream = make_torch_env(MINIGRID_ENV_ID, "dream", 2, checkpoint=tiny_minigrid_model(), device="cpu")
    dream.setup.simulator.image_only = False
    dream.single_observation_space = dream.setup.simulator.observation_space(dream.setup.real_env.observation_space)
    with pytest.raises(ValueError, match=r"reads MiniGrid's symbolic image, a Box \(H, W, 3\); the env observes Dict"):
        train_ppo(dream, total_steps=8)
    with pytest.raises(ValueError, match="give the folder that holds it and its agent.json"):
        make_policy(str(tmp_path / "policy.safetensors"), num_envs=1, num_actions=7, view_size=7)
    (tmp_path / "agent.json").write_text(json.dumps({"algo": "native-ppo", "network": network.spec(),
                                                      "env_id": "MiniGrid-DoorKey-8x8-v0"}))
    with pytest.raises(ValueError, match="trained on 'MiniGrid-DoorKey-8x8-v0', not 'MiniGrid-Empty-5x5-v0'"):
        evaluate_policy(tmp_path, REAL_ID, episodes=1)


def agent_command_parser():
    import argparse

    parser = argparse.ArgumentParser()
    add_agent_parser(parser.add_subparsers(dest="command"))
    return parser


def test_cli_selects_native_ppo(tmp_path, capsys):
    parser = agent_command_parser()
    out = tmp_path / "a"
    args = parser.parse_args(["agent", "train", "--env", REAL_ID, "--algo", "native-ppo", "--steps", "32",
                              "--num-envs", "2", "--out", str(out), "--hyperparams", "num_steps=16,minibatch_size=8",
                              "--quiet"])
    assert args.run(args) == 0
    assert json.loads((out / "agent.json").read_text())["num_envs"] == 2
    args = parser.parse_args(["agent", "train", "--env", REAL_ID, "--algo", "native-ppo", "--steps", "32",
                              "--out", str(out), "--hyperparams", "n_steps=16"])
    assert args.run(args) == 1
    assert "hyperparameter 'n_steps': the native PPO takes no such argument" in capsys.readouterr().err


def test_training_starts_from_a_given_policy_and_refuses_one_that_does_not_fit(tmp_path):
    torch.manual_seed(5)
    start = ActorCritic((7, 7, 3), 7)
    still = PPOSettings(learning_rate=1e-12, num_steps=4, minibatch_size=8)      # updates that move nothing
    policy, _ = train_ppo(CueEnv(2), total_steps=8, settings=still, seed=0, initial=start)
    fresh, _ = train_ppo(CueEnv(2), total_steps=8, settings=still, seed=0)
    for (name, got), want in zip(policy.state_dict().items(), start.state_dict().values()):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0, msg=name)
    assert any(not torch.allclose(a, b) for a, b in zip(start.state_dict().values(), fresh.state_dict().values()))
    with pytest.raises(ValueError, match="the initial policy is"):
        train_ppo(CueEnv(2), total_steps=8, settings=still, initial=ActorCritic((7, 7, 3), 3))
    with pytest.raises(ValueError, match="init_from continues a native-ppo policy"):
        train_agent(REAL_ID, where="real", algo="ppo", steps=8, out=tmp_path / "x", init_from=tmp_path)
    with pytest.raises(ValueError, match="callbacks are Stable-Baselines3 callbacks; the native PPO takes none"):
        train_agent(REAL_ID, where="real", algo="native-ppo", steps=8, out=tmp_path / "y", callbacks=[object()])


def test_a_policy_trained_for_another_reward_keeps_its_actor_and_learns_its_values_first(tmp_path):
    torch.manual_seed(3)
    start = ActorCritic((7, 7, 3), 7)
    obs = torch.randint(0, 10, (32, 7, 7, 3), dtype=torch.uint8)
    warm = PPOSettings(num_steps=8, minibatch_size=16, learning_rate=1e-2, critic_warmup=3)
    policy, history = train_ppo(CueEnv(4), total_steps=4 * 8 * 3, settings=warm, seed=0, initial=start,
                                keep_critic=False)
    assert len(history) == 3
    # during the warm-up only the critic moves; it started from 0 everywhere and has learned the cue's values
    before, after = start.state_dict(), policy.state_dict()
    for name in before:
        moved = not torch.equal(before[name], after[name])
        assert moved == name.startswith("critic."), name
    fresh = ActorCritic((7, 7, 3), 7)
    fresh.load_state_dict(before)
    fresh.reset_critic()
    assert torch.equal(fresh.value(obs), torch.zeros(32))
    assert torch.equal(fresh(obs)[0], start(obs)[0])                      # the same actions as before
    # after the warm-up the policy learns too
    policy, _ = train_ppo(CueEnv(4), total_steps=4 * 8 * 4, settings=warm, seed=0, initial=start, keep_critic=False)
    assert not torch.equal(policy.state_dict()["actor.2.weight"], before["actor.2.weight"])
    with pytest.raises(ValueError, match="critic_warmup must be"):
        PPOSettings(critic_warmup=-1)
    with pytest.raises(ValueError, match="fresh_critic starts the value function of an init_from policy"):
        train_agent(REAL_ID, where="real", algo="native-ppo", steps=8, out=tmp_path / "x", fresh_critic=True)


def test_the_real_torch_env_registers_the_minigrid_ids_itself():
    """A fresh process that names a MiniGrid id first imports nothing of minigrid."""
    import subprocess
    import sys

    code = ("from agents.torch_envs import RealTorchVecEnv; "
            "assert RealTorchVecEnv('MiniGrid-Empty-5x5-v0', 2).single_observation_space.shape == (7, 7, 3)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_stop_signal_saves_the_policy_so_far_and_says_where_it_stopped(tmp_path, capsys, monkeypatch,
                                                                         ctrl_c_delivered):
    import os
    import signal

    import agents.ppo
    from agents.training import stopped_early

    update = agents.ppo._update
    calls = []

    def update_then_ctrl_c(*args, **kwargs):       # Ctrl-C while the second iteration updates
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return update(*args, **kwargs)

    monkeypatch.setattr(agents.ppo, "_update", update_then_ctrl_c)
    parser = agent_command_parser()
    out = tmp_path / "a"
    args = parser.parse_args(["agent", "train", "--env", REAL_ID, "--algo", "native-ppo", "--steps", "128",
                              "--num-envs", "2", "--out", str(out), "--hyperparams", "num_steps=16,minibatch_size=8",
                              "--quiet"])
    assert args.run(args) == 130
    assert len(calls) == 2                          # it left after that iteration, not at the end
    assert f"native-ppo training stopped by SIGINT at step 64; saved in {out}" in capsys.readouterr().err
    info = json.loads((out / "agent.json").read_text())
    assert info["stopped_early"]["steps"] == 64 and info["num_timesteps"] == 64 and stopped_early(out)
    policy, _ = load_policy(out, device="cpu")      # the policy so far is a usable one
    assert isinstance(policy, NativePolicy)
