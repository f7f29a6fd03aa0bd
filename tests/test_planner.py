"""agents.planner: valid and seeded actions, batched branch rollouts, state tracking, scoring."""

from types import SimpleNamespace

import gymnasium as gym
import pytest
import torch

from agents.planner import Planner, PlannerConfig, run_episode
from worldsim.model import WorldModelOutput
from worldsim.state import ModelState

from conftest import MINIGRID_ENV_ID as ENV_ID, tiny_minigrid_model


SMALL = dict(horizon=3, population=8, iterations=2)


# ------------------------------------------------------------------------------- a scripted model

REAL, DREAMED = 0, 1   # the real frame holds token 0 everywhere; every frame the model dreams, token 1


class FakeModel:
    """A stand-in world model whose step rewards depend on the action and on whether the input
    frame is the real one (the first step of every branch) or a dreamed one (later steps).

    rewards: {action: reward} on the real frame; dreamed_reward: any action on dreamed frames.
    dones: actions that terminate (done logit +30) when taken on the real frame."""

    def __init__(self, rewards, dreamed_reward=0.0, dones=(), num_actions=4, shape=(2, 3), vocab=3):
        self.config = SimpleNamespace(num_actions=num_actions, vocab_size=vocab, frame_shape=shape, metadata={})
        self.rewards, self.dreamed_reward, self.dones = rewards, dreamed_reward, set(dones)
        self.calls = []

    def initial_state(self, batch_size, device=None, dtype=None):
        return ModelState(frame=torch.zeros(batch_size, dtype=torch.long, device=device),
                          slot_frame=torch.zeros(batch_size, 1, dtype=torch.long, device=device), layers=[])

    def step(self, state, frame, action):
        self.calls.append(frame.shape[0])
        real = (frame == REAL).flatten(1).all(1)
        reward = torch.full(action.shape, float(self.dreamed_reward))
        done = torch.full(action.shape, -30.0)
        for a, r in self.rewards.items():
            reward[real & (action == a)] = float(r)
        for a in self.dones:
            done[real & (action == a)] = 30.0
        logits = torch.zeros(*frame.shape, self.config.vocab_size)
        logits[..., DREAMED] = 30.0
        state.frame += 1
        return WorldModelOutput(logits, reward, done, None), state


class FakeCodec:
    vocab_size, frame_shape = 3, (2, 3)

    def legal_mask(self):
        return torch.ones(*self.frame_shape, self.vocab_size, dtype=torch.bool)


REAL_FRAME = torch.full((2, 3), REAL)


def fake_planner(model, **overrides):
    settings = dict(horizon=4, population=32, iterations=3, gamma=1.0, temperature=0.0, seed=0)
    settings.update(overrides)
    planner = Planner(model, codec=FakeCodec(), config=PlannerConfig(**settings), device="cpu")
    planner.reset(REAL_FRAME)
    return planner


@pytest.mark.parametrize("optimizer", ["random", "cem"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_picks_the_rewarded_first_action(optimizer, temperature):
    planner = fake_planner(FakeModel({2: 1.0}), optimizer=optimizer, temperature=temperature)
    for _ in range(3):
        assert planner.act(REAL_FRAME) == 2
        assert planner.last_plan["return"] == pytest.approx(1.0)


@pytest.mark.parametrize("optimizer", ["random", "cem"])
@pytest.mark.parametrize("termination", ["expected", "threshold", "sample"])
def test_termination_scoring(optimizer, termination):
    # Alive: 0.1 per step (0.4 over the horizon). Action 2 ends the episode with nothing (lava);
    # action 1 ends it with 1.0 (the goal): the goal beats surviving, surviving beats lava.
    model = FakeModel({1: 1.0, 2: 0.0, 0: 0.1, 3: 0.1}, dreamed_reward=0.1, dones=(1, 2))
    planner = fake_planner(model, optimizer=optimizer, termination=termination)
    assert planner.act(REAL_FRAME) == 1
    assert planner.last_plan["return"] == pytest.approx(1.0, abs=1e-6)
    returns = planner.rollout(REAL_FRAME, torch.tensor([[2, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]))
    assert returns.tolist() == pytest.approx([0.0, 0.4, 1.0], abs=1e-6)

    no_goal = FakeModel({2: 0.0, 0: 0.1, 1: 0.1, 3: 0.1}, dreamed_reward=0.1, dones=(2,))
    assert fake_planner(no_goal, optimizer=optimizer, termination=termination).act(REAL_FRAME) != 2


@pytest.mark.parametrize("optimizer", ["random", "cem"])
def test_rollouts_are_batched(optimizer):
    model = FakeModel({2: 1.0})
    planner = fake_planner(model, optimizer=optimizer, horizon=5, population=16, iterations=3)
    model.calls.clear()
    planner.act(REAL_FRAME)
    # one call per horizon step per iteration, each over the whole population; one to track reality
    assert model.calls == [16] * (5 * 3) + [1]


def counted_steps(model, monkeypatch) -> list[int]:
    """The batch size of every model.step call from now on."""
    calls = []
    step = model.step

    def counting_step(state, frame, action):
        calls.append(frame.shape[0])
        return step(state, frame, action)

    monkeypatch.setattr(model, "step", counting_step)
    return calls


def test_rollouts_are_batched_with_a_world_model(monkeypatch):
    model = tiny_minigrid_model()
    calls = counted_steps(model, monkeypatch)
    planner = Planner(model, config=PlannerConfig(optimizer="cem", horizon=3, population=8, iterations=2),
                      device="cpu")
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    planner.reset(obs)
    planner.act(obs)
    assert calls == [8] * 6 + [1]


def test_tracking_state_follows_reality():
    model = tiny_minigrid_model()
    planner = Planner(model, config=PlannerConfig(**SMALL), device="cpu")
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=1)
    planner.reset(obs)
    assert int(planner.state.frame[0]) == 0
    for t in range(1, 4):
        obs, *_ = env.step(planner.act(obs))
        assert int(planner.state.frame[0]) == t and planner.steps == t
    # the tracking state holds exactly the real frames and the actions taken: replaying them gives it
    planner2 = Planner(model, config=PlannerConfig(**SMALL), device="cpu")
    env2 = gym.make(ENV_ID)
    obs2, _ = env2.reset(seed=1)
    planner2.reset(obs2)
    state = model.initial_state(1)
    for _ in range(3):
        frame = planner2.codec.encode(obs2).long()
        a = planner2.act(obs2)
        model.step(state, frame[None], torch.tensor([a]))
        obs2, *_ = env2.step(a)
    for mine, theirs in zip(planner2.state.tensors(), state.tensors()):
        torch.testing.assert_close(mine, theirs)
    planner.reset(obs)
    assert int(planner.state.frame[0]) == 0 and planner.steps == 0


@pytest.mark.parametrize("optimizer", ["random", "cem"])
def test_valid_and_seeded_actions(optimizer):
    model = tiny_minigrid_model()

    def actions(seed):
        planner = Planner(model, config=PlannerConfig(optimizer=optimizer, seed=seed, **SMALL), device="cpu")
        env = gym.make(ENV_ID)
        obs, _ = env.reset(seed=3)
        planner.reset(obs)
        out = []
        for _ in range(6):
            a = planner.act(obs)
            assert isinstance(a, int) and env.action_space.contains(a)
            out.append(a)
            obs, *_ = env.step(a)
        return out

    assert actions(0) == actions(0)
    assert any(actions(0) != actions(s) for s in (1, 2, 3))


def test_run_episode_on_minigrid(tmp_path):
    path = tmp_path / "ckpt"
    tiny_minigrid_model().save_pretrained(path)
    planner = Planner(str(path), config=PlannerConfig(optimizer="random", **SMALL), device="auto")
    env = gym.make(ENV_ID, max_steps=10)
    result = run_episode(planner, env, seed=0)
    assert set(result) >= {"return", "success", "steps"}
    assert 1 <= result["steps"] <= 10 and (result["terminated"] or result["truncated"])
    assert isinstance(result["return"], float) and isinstance(result["success"], bool)
    assert result["success"] == (result["return"] > 0)
    assert int(planner.state.frame[0]) == result["steps"]
    capped = run_episode(planner, ENV_ID, seed=0, max_steps=4)
    assert capped["steps"] <= 4


def test_bad_config():
    with pytest.raises(ValueError, match="optimizer"):
        PlannerConfig(optimizer="ppo").validate()
    with pytest.raises(ValueError, match="horizon"):
        Planner(FakeModel({}), codec=FakeCodec(), config=PlannerConfig(horizon=0), device="cpu")
    planner = Planner(tiny_minigrid_model(), config=PlannerConfig(**SMALL), device="cpu")
    with pytest.raises(ValueError, match="observation"):
        planner.act("not an observation")


# ------------------------------------------------------------------------------- guided by an agent

def write_agent(folder, action: int, value: float, shape=(7, 7, 3), num_actions=7):
    """A native-PPO folder whose policy always takes `action` and whose critic says `value` everywhere."""
    import json

    from safetensors.torch import save_file

    from agents.ppo import ActorCritic

    net = ActorCritic(shape, num_actions)
    with torch.no_grad():
        for head in (net.actor, net.critic):
            head[-1].weight.zero_()
        net.actor[-1].bias.fill_(-30.0)
        net.actor[-1].bias[action] = 30.0
        net.critic[-1].bias.fill_(value)
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, folder / "policy.safetensors")
    (folder / "agent.json").write_text(json.dumps({"algo": "native-ppo", "policy": "policy.safetensors",
                                                   "network": net.spec()}))
    return folder


def test_an_agent_proposes_branches_and_its_critic_values_the_horizon(tmp_path):
    model = tiny_minigrid_model(done_bias=-20.0)                 # never terminates: every branch alive
    agent = write_agent(tmp_path / "agent", action=2, value=5.0)
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    plain = Planner(model, config=PlannerConfig(temperature=0.0, **SMALL), device="cpu")
    guided = Planner(model, config=PlannerConfig(temperature=0.0, agent=str(agent), **SMALL), device="cpu")
    for p in (plain, guided):
        p.reset(obs)
    frame = plain._encode(obs)
    seqs = torch.randint(7, (5, SMALL["horizon"]), generator=torch.Generator().manual_seed(0))
    horizon_value = 0.99 ** SMALL["horizon"] * 5.0
    torch.testing.assert_close(guided.rollout(frame, seqs), plain.rollout(frame, seqs) + horizon_value)
    taken, _ = guided.rollout_agent(frame, 4)
    assert taken.eq(2).all()                                     # the agent's own choices, step by step
    # Half of each round follows the agent: its sequence is among those scored, so it can win.
    guided.plan(frame)
    assert guided.last_plan["return"] >= float(guided.rollout(frame, torch.full((1, SMALL["horizon"]), 2)))
    env.close()


def test_an_agent_that_does_not_fit_is_refused_by_name(tmp_path):
    model = tiny_minigrid_model()
    other = write_agent(tmp_path / "other", action=0, value=0.0, num_actions=4)
    with pytest.raises(ValueError, match=r"observes \(7, 7, 3\) and has 4 actions; this model gives \(7, 7, 3\) and 7"):
        Planner(model, config=PlannerConfig(agent=str(other)), device="cpu")
    with pytest.raises(ValueError, match="agent must be a folder written by `worldsim agent train"):
        Planner(model, config=PlannerConfig(agent=str(tmp_path / "nowhere")), device="cpu")
    with pytest.raises(ValueError, match="agent_share must lie in"):
        Planner(model, config=PlannerConfig(agent_share=1.5), device="cpu")


# ------------------------------------------------------------------------------- many episodes at once

class ScriptedPlanner:
    """run_episodes' view of a planner, acting by a fixed rule of the real frame (so any episode's
    actions are known without planning) and recording which rows it was asked about."""

    def __init__(self, codec):
        self.codec, self.calls, self.restarts = codec, [], []

    @staticmethod
    def rule(frame: torch.Tensor) -> int:
        return 2 if int((frame.flatten() * torch.arange(1, frame.numel() + 1)).sum()) % 4 else 1   # forward, or right

    def track(self, episodes):
        self.rows = episodes

    def restart(self, rows):
        self.restarts.extend(rows)

    def _encode(self, frame):
        return torch.as_tensor(frame).long()

    def act_rows(self, frames, rows):
        self.calls.append(rows.tolist())
        return torch.tensor([self.rule(f) for f in frames])


def test_run_episodes_plans_many_episodes_at_once_and_returns_them_in_seed_order():
    from envs.minigrid import MiniGridCodec
    from worldsim.codecs import real_frame

    from agents.planner import run_episodes

    env_id = "MiniGrid-LavaCrossingS9N1-v0"          # the rule's episodes end after 2, 4, 1... steps: lava
    env = gym.make(env_id)
    codec = MiniGridCodec.for_env(env)
    seeds, max_steps = [10, 11, 12, 13, 14, 15, 16], 9
    scripted = ScriptedPlanner(codec)
    results = run_episodes(scripted, env_id, seeds, batch=3, max_steps=max_steps)
    expected = []
    for s in seeds:                                       # the same rule, one episode after another
        obs, _ = env.reset(seed=s)
        steps, total = 0, 0.0
        while True:
            obs, reward, terminated, truncated, _ = env.step(ScriptedPlanner.rule(real_frame(codec, obs, env)))
            steps, total = steps + 1, total + reward
            if terminated or truncated or steps >= max_steps:
                break
        expected.append((steps, total))
    assert len(set(expected)) >= 3, expected              # episodes that differ, so the order is checked
    assert [(r["steps"], r["return"]) for r in results] == expected
    assert scripted.calls[0] == [0, 1, 2] and max(len(c) for c in scripted.calls) == 3
    assert scripted.restarts[:3] == [0, 1, 2] and len(scripted.restarts) == len(seeds)
    assert sum(len(c) for c in scripted.calls) == sum(steps for steps, _ in expected)


def test_act_rows_advances_only_the_rows_it_plans_for_and_batches_their_branches(monkeypatch):
    model = tiny_minigrid_model()
    calls = counted_steps(model, monkeypatch)
    planner = Planner(model, config=PlannerConfig(optimizer="cem", horizon=3, population=8, iterations=2),
                      device="cpu")
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    frame = planner._encode(obs)
    planner.track(3)
    planner.act_rows(torch.stack([frame, frame]), torch.tensor([0, 2]))
    assert calls == [2 * 8] * 6 + [2]                   # both episodes' branches in every model step
    assert planner.state.frame.tolist() == [1, 0, 1]
    planner.restart([2])
    assert planner.state.frame.tolist() == [1, 0, 0]
    # a row tracks exactly what a single-episode planner tracks from the same frame and action
    single = Planner(model, config=PlannerConfig(optimizer="cem", horizon=3, population=8, iterations=2),
                     device="cpu")
    single.reset(obs)
    action = planner.last_plan["sequence"][0, 0]
    single.simulator.advance(single.state, frame[None], action[None])
    for mine, theirs in zip(planner.state[[0]].tensors(), single.state.tensors()):
        torch.testing.assert_close(mine, theirs)


def test_run_episodes_with_a_world_model(tmp_path):
    from agents.planner import run_episodes

    planner = Planner(tiny_minigrid_model(), config=PlannerConfig(optimizer="random", **SMALL), device="cpu")
    results = run_episodes(planner, ENV_ID, [0, 1, 2], batch=2, max_steps=5)
    assert len(results) == 3
    for r in results:
        assert 1 <= r["steps"] <= 5 and (r["terminated"] or r["truncated"])
        assert r["success"] == (r["return"] > 0)


def _agent_command(argv):
    import argparse

    from agents.cli import add_agent_parser

    parser = argparse.ArgumentParser(prog="worldsim")
    add_agent_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["agent", *argv])
    return args.run(args)


def test_the_plan_command_scores_the_planner_and_writes_its_report(tmp_path, capsys):
    import json

    checkpoint = tmp_path / "ckpt"
    tiny_minigrid_model().save_pretrained(checkpoint)
    out = tmp_path / "plan.json"
    code = _agent_command(["plan", "--env", ENV_ID, "--checkpoint", str(checkpoint), "--optimizer", "random",
                           "--horizon", "2", "--population", "4", "--iterations", "1", "--episodes", "3",
                           "--batch", "2", "--seed", "5", "--max-episode-steps", "4", "--device", "cpu",
                           "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads(out.read_text())
    assert result["episodes"] == 3 and result["seeds"] == [5, 6, 7] and result["batch"] == 2
    assert result["planner"]["horizon"] == 2 and result["planner"]["optimizer"] == "random"
    assert all(1 <= n <= 4 for n in result["lengths"]) and 0 <= result["success_rate"] <= 1
    assert "3 episodes, seeds 5..7, the planner's actions" in printed and "s per episode" in printed


@pytest.mark.parametrize("argv,message", [
    (["--env", "MiniGrid-LavaGapS7-v0"], "none is shipped for MiniGrid-LavaGapS7-v0"),
    (["--env", ENV_ID, "--checkpoint", "no/such/folder"], "--checkpoint 'no/such/folder' is neither a folder"),
    (["--env", ENV_ID, "--horizon", "0"], "horizon"),
    (["--env", ENV_ID, "--episodes", "0"], "episodes"),
    (["--env", ENV_ID, "--optimizer", "cem", "--agent", "nowhere"], "agent must be a folder written by"),
])
def test_the_plan_command_refuses_bad_input_by_name(argv, message, capsys):
    assert _agent_command(["plan", *argv, "--device", "cpu"]) == 1
    assert message in capsys.readouterr().err


def test_the_single_episode_methods_refuse_a_planner_that_tracks_several():
    planner = Planner(tiny_minigrid_model(), config=PlannerConfig(**SMALL), device="cpu")
    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    with pytest.raises(RuntimeError, match=r"call reset\(\) before plan\(\)"):
        planner.plan(planner._encode(obs))
    planner.track(2)
    with pytest.raises(RuntimeError, match=r"act\(\) serves a single tracked episode; this planner tracks 2"):
        planner.act(obs)
