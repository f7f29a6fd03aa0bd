"""`worldsim learn`: the online loop learns from scratch, counts real steps once, resumes exactly, and
refuses bad settings and foreign run folders."""

import dataclasses
import json
import os
import re
import signal

import pytest
import torch

from train.learn import FROM_EXPLORER_CRITIC_WARMUP, LearnConfig, LearnError, Learner, learn
from worldsim.stop_signals import TrainingStopped

torch.set_num_threads(1)

TINY_MODEL = dict(d_model=32, n_layers=1, d_state=16, headdim=16, n_heads=2)
TINY_TRAIN = dict(batch_size=8, curriculum=[[0, 16]], lr=3e-3, warmup_steps=5, eval_every=0, eval_windows=4,
                  rollout_episodes=2, num_threads=1, save_every=20, aux_loss_weight=0.0)


def settings(**overrides):
    base = dict(env_id="MiniGrid-Empty-5x5-v0", real_steps=2000, initial_episodes=20, round_episodes=10,
                model_steps=80, finetune_steps=40, model=TINY_MODEL, train=TINY_TRAIN, dream_steps=8192,
                dream_envs=16, ppo=dict(num_steps=64), eval_episodes=20, device="cpu",
                # the plain loop: no explorer, every dream episode from a real reset (learn's defaults add both)
                explore_interactions=0.0, agent_from_explorer=False, dream_state_starts=0.0)
    base.update(overrides)
    return base


def lines(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_learns_from_random_data_and_counts_every_real_step_once(tmp_path):
    records = learn(settings(), tmp_path / "run", progress=None)
    start, last = records[0], records[-1]
    assert start["round"] == 0 and start["real_steps"] == 0
    # A real learning assertion: from uniform-random play to an agent that reaches the goal far more often.
    assert last["real_success"] >= start["real_success"] + 0.25, records
    assert last["real_success"] >= 0.8, records
    # Each round trained on the real steps of the datasets before it; evaluation steps are apart.
    learner = Learner(LearnConfig(**settings()), tmp_path / "run", progress=None)
    for r in records[1:]:
        assert r["real_steps"] == learner.real_steps_used(r["round"] - 1)
        assert r["eval_steps"] > 0
    assert records[-1]["real_steps"] >= 2000 > records[-2]["real_steps"]
    assert lines(tmp_path / "run") == json.loads(json.dumps(records))
    assert (tmp_path / "run" / "curve.svg").read_text().startswith("<svg")
    # Where the time went: every phase of a round, the collection that fed it included.
    assert set(start["phase_seconds"]) == {"evaluate"}
    for r in records[1:]:
        assert set(r["phase_seconds"]) == {"collect", "world_model", "agent", "evaluate", "replay"}, r
        assert all(t >= 0 for t in r["phase_seconds"].values())
    assert records[1]["phase_seconds"]["world_model"] > 0
    # Each round's agent is also scored in its own dream from the same held-out seeds: the optimism gap.
    assert start["dream_eval_success"] is None and start["optimism_gap"] is None
    for r in records[1:]:
        dream = json.loads((tmp_path / "run" / f"round-{r['round']:02d}" / "eval_dream.json").read_text())
        real = json.loads((tmp_path / "run" / f"round-{r['round']:02d}" / "eval_real.json").read_text())
        assert dream["where"] == "dream" and dream["seeds"] == real["seeds"]
        assert r["dream_eval_success"] == dream["success_rate"]
        assert r["optimism_gap"] == pytest.approx(dream["success_rate"] - r["real_success"])
    # ... and its world model open loop: real actions of the first held-out seeds replayed in its dream.
    assert start["replay"] is None
    for r in records[1:]:
        saved = json.loads((tmp_path / "run" / f"round-{r['round']:02d}" / "eval_replay.json").read_text())
        real = json.loads((tmp_path / "run" / f"round-{r['round']:02d}" / "eval_real.json").read_text())
        assert saved["seeds"] == [real["seeds"][0], real["seeds"][0] + 15] and saved["horizon"] == 128
        for name in ("random", "agent"):
            row = saved["policies"][name]
            assert r["replay"][name]["cell_accuracy"] == {s: v["cell_accuracy"] for s, v in row["by_step"].items()}
            assert 0 < row["steps_replayed"] <= 16 * 128
        # Random play on Empty-5x5 lasts up to 100 steps: replayed to step 64, not 128.
        assert set(r["replay"]["random"]["cell_accuracy"]) == {"1", "16", "64"}
    # A model trained on this data predicts the first replayed frame of random play almost exactly.
    assert records[-1]["replay"]["random"]["cell_accuracy"]["1"] >= 0.95, records[-1]["replay"]


class Killed(Exception):
    pass


@pytest.mark.parametrize("where", ["between_phases", "inside_model_training", "stop_signal",
                                   "stop_signal_in_agent_training"])
def test_a_killed_run_continues_exactly(tmp_path, monkeypatch, where):
    quick = settings(real_steps=1000, initial_episodes=10, dream_steps=2048, eval_episodes=6)
    straight = learn(quick, tmp_path / "straight", progress=None)

    if where == "between_phases":       # after round 1's collection, before round 2's model
        original = Learner.train_model

        def train_model(self, k):
            if k == 2:
                raise Killed
            return original(self, k)
        monkeypatch.setattr(Learner, "train_model", train_model)
    elif where == "inside_model_training":      # round 1's world model, after its step-40 checkpoint
        from train.trainer import Trainer
        original = Trainer.train_step

        def train_step(self, win):
            if self.step == 45:
                raise Killed
            return original(self, win)
        monkeypatch.setattr(Trainer, "train_step", train_step)
    elif where == "stop_signal_in_agent_training":    # SIGTERM after round 1's agent's first PPO update
        import agents.ppo
        update, calls = agents.ppo._update, []

        def _update(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                os.kill(os.getpid(), signal.SIGTERM)
            return update(*args, **kwargs)
        monkeypatch.setattr(agents.ppo, "_update", _update)
    else:                               # SIGTERM at step 43, between checkpoints (every 20)
        from train.trainer import Trainer
        original = Trainer.train_step

        def train_step(self, win):
            stats = original(self, win)
            if self.step == 43:
                os.kill(os.getpid(), signal.SIGTERM)
            return stats
        monkeypatch.setattr(Trainer, "train_step", train_step)
    with pytest.raises(TrainingStopped if where.startswith("stop_signal") else Killed):
        learn(quick, tmp_path / "split", progress=None)
    if where == "stop_signal_in_agent_training":     # the agent so far is kept, marked: learn trains it again
        assert json.loads((tmp_path / "split" / "round-01" / "agent" / "agent.json").read_text())["stopped_early"]
    if where == "stop_signal":
        assert (tmp_path / "split" / "round-01" / "model_run" / "checkpoints" / "checkpoint-00000043").is_dir()
    monkeypatch.undo()
    resumed = learn(quick, tmp_path / "split", progress=None)

    def comparable(records):
        return [{k: v for k, v in r.items() if k not in ("wall_seconds_this_process", "phase_seconds")} for r in records]

    assert comparable(resumed) == comparable(straight)


@pytest.mark.parametrize("field,value,message", [
    ("env_id", "MiniGrid-NoSuchEnv-v0", "env_id 'MiniGrid-NoSuchEnv-v0' is not a registered"),
    ("real_steps", 0, "real_steps"),
    ("dream_steps", -5, "dream_steps"),
    ("eval_episodes", 0, "eval_episodes"),
    ("epsilon", 1.5, "epsilon must be in"),
    ("real_steps", "many", "real_steps"),
    ("view", "map", r"view must be one of \['world', 'ego'\]"),
    ("initial_policy", "oracle", "initial_policy must be one of"),
    ("initial_epsilon", "0.5:0.2", "initial_epsilon: --epsilon '0.5:0.2'"),
    ("dream_state_starts", 1.5, r"dream_state_starts must be in \[0, 1\]"),
    ("explore_bonus", -0.5, "explore_bonus must be >= 0 .*got -0.5"),
    ("explore_share", 1.0, r"explore_share must be in \(0, 1\).*got 1.0"),
    ("explore_novelty", -1.0, "explore_novelty must be a finite number >= 0 .*got -1.0"),
    ("explore_novelty", float("nan"), "explore_novelty must be a finite number"),
    ("gpus", 0, "gpus"),
    ("replay_episodes", -1, "replay_episodes"),
    ("replay_horizon", 0, "replay_horizon"),
])
def test_bad_settings_are_refused_by_name(field, value, message):
    with pytest.raises(LearnError, match=message):
        LearnConfig(**settings(**{field: value}))


def test_an_env_that_is_not_minigrid_is_refused_with_the_commands_that_serve_it():
    import envs  # noqa: F401  (registers the Crafter ids)

    with pytest.raises(LearnError, match="'CrafterReward-v1' is not a MiniGrid env.*collect --tokenizer"):
        LearnConfig(**settings(env_id="CrafterReward-v1"))


def test_recorded_state_starts_need_the_world_view():
    with pytest.raises(LearnError, match="dream_state_starts needs view 'world'"):
        LearnConfig(**settings(view="ego", dream_state_starts=0.5))


def test_an_explorer_with_the_bonus_collects_its_share_and_the_scored_agent_never_sees_the_bonus(tmp_path):
    run = tmp_path / "run"
    config = LearnConfig(**settings(explore_bonus=1.5, explore_novelty=0.2, explore_share=0.4, real_steps=1800,
                                    model_steps=20, finetune_steps=10, dream_steps=2048, eval_episodes=4))
    records = learn(config, run, progress=None)
    assert len(records) >= 3                             # random play (1,701 steps), then rounds with explorers

    def penalty(folder):
        return json.loads((run / folder / "agent.json").read_text())["pessimism"]["uncertainty_penalty"]

    assert penalty("round-01/agent") == 0.0 and penalty("round-01/explorer") == -1.5     # a bonus, its alone

    def novelty(folder):
        return json.loads((run / folder / "agent.json").read_text())["novelty_bonus"]

    assert novelty("round-01/agent") == 0.0 and novelty("round-01/explorer") == 0.2
    last = records[-1]["round"]
    assert not (run / f"round-{last:02d}" / "explorer").exists()      # the budget was spent: nothing to collect
    from worldsim.data.dataset import EpisodeDataset
    assert EpisodeDataset(run / "round-01" / "data").num_episodes == 6
    assert EpisodeDataset(run / "round-01" / "explore_data").num_episodes == 4
    learner = Learner(config, run, progress=None)
    assert run / "round-01" / "explore_data" in learner.data_dirs(1)
    assert records[2]["real_steps"] == learner.real_steps_used(1) > learner.real_steps_used(0) + \
        EpisodeDataset(run / "round-01" / "data").manifest["totals"]["steps"]            # its steps are counted
    trained_on = json.loads((run / "round-02" / "model_run" / "train_config.json").read_text())["data"]
    assert trained_on["train_episodes"] + trained_on["eval_episodes"] == 20 + 6 + 4       # the explorer's too
    assert set(records[2]["phase_seconds"]) == {"explorer", "collect", "world_model", "agent", "evaluate", "replay"}


def test_either_bonus_alone_makes_an_explorer():
    def explores(**kw):
        return LearnConfig(**settings(**kw)).explores

    assert explores(explore_novelty=0.1) and explores(explore_bonus=1.0)
    assert not explores()


@pytest.mark.parametrize("once", [False, True])
def test_the_explorer_is_paid_the_uncertainty_bonus_on_every_step_or_on_new_frames_only(tmp_path, monkeypatch, once):
    import agents.training

    asked = {}
    monkeypatch.setattr(agents.training, "train_agent", lambda *a, **kw: asked.setdefault(kw["out"].name, kw))
    learner = Learner(LearnConfig(**settings(explore_bonus=2.0, explore_novelty=0.1, explore_bonus_once=once)),
                      tmp_path / "run", progress=None)
    for role in ("agent", "explorer"):
        learner.train_agent(1, tmp_path / "model", role)
    paid = {role: (kw["uncertainty_penalty"], kw["novelty_uncertainty"], kw["novelty_bonus"])
            for role, kw in asked.items()}
    assert paid["agent"] == (0.0, 0.0, 0.0)
    assert paid["explorer"] == ((0.0, 2.0, 0.1) if once else (-2.0, 0.0, 0.1))


def test_each_rounds_agent_can_start_from_that_rounds_explorer_trained_first(tmp_path):
    run = tmp_path / "run"
    config = LearnConfig(**settings(explore_interactions=1.0, agent_from_explorer=True, real_steps=1800,
                                    model_steps=20, finetune_steps=10, dream_steps=2048, eval_episodes=4))
    records = learn(config, run, progress=None)
    for k in range(1, len(records)):
        agent = json.loads((run / f"round-{k:02d}" / "agent" / "agent.json").read_text())
        assert agent["init_from"] == str((run / f"round-{k:02d}" / "explorer").resolve())
        assert agent["interaction_bonus"] == 0.0            # the agent trains on the task's reward alone
        # with values of its own: the explorer's price its bonuses
        assert agent["fresh_critic"] and agent["hyperparams"]["critic_warmup"] == FROM_EXPLORER_CRITIC_WARMUP
    explorer = json.loads((run / "round-01" / "explorer" / "agent.json").read_text())
    assert "init_from" not in explorer and explorer["interaction_bonus"] == 1.0
    # The last round trained its explorer too (for its agent), though it collects nothing after it.
    assert (run / f"round-{records[-1]['round']:02d}" / "explorer" / "agent.json").is_file()
    # A round's record holds its own explorer's seconds (it trained for that round's agent).
    explorer_seconds = json.loads((run / "round-01" / "phase_seconds.json").read_text())["explorer"]
    assert records[1]["phase_seconds"]["explorer"] == explorer_seconds
    with pytest.raises(LearnError, match="agent_from_explorer and warm_start_agent both"):
        LearnConfig(**settings(explore_interactions=1.0, agent_from_explorer=True, warm_start_agent=True))
    with pytest.raises(LearnError, match="agent_from_explorer starts each round's agent from the round's explorer: "
                                         "train one"):
        LearnConfig(**settings(agent_from_explorer=True))


def test_while_the_data_holds_no_reward_the_rounds_agent_is_its_explorer(tmp_path):
    from worldsim.data.dataset import EpisodeDataset

    run = tmp_path / "run"
    config = LearnConfig(**settings(env_id="MiniGrid-DoorKey-5x5-v0", initial_episodes=3, real_steps=500,
                                    explore_interactions=1.0, agent_from_explorer=True, model_steps=20,
                                    dream_steps=2048, eval_episodes=4))
    records = learn(config, run, progress=None)
    data = EpisodeDataset(run / "round-00" / "data")
    assert not any(data.episode(i).rewards.any() for i in range(data.num_episodes))   # random play never paid
    # Its dream cannot pay for the goal, so no agent is trained on that reward: the explorer is scored.
    assert [r["agent"] for r in records] == ["random", "explorer"]
    assert not (run / "round-01" / "agent").exists()
    assert "agent" not in records[1]["phase_seconds"]
    assert json.loads((run / "round-01" / "eval_real.json").read_text())["episodes"] == 4
    assert [r["agent"] for r in learn(config, run, progress=None)] == ["random", "explorer"]    # and on resume
    trained = learn(dataclasses.replace(config, explorer_until_reward=False), tmp_path / "trained", progress=None)
    assert [r["agent"] for r in trained] == ["random", "agent"]


def test_a_run_stops_at_the_first_round_that_reaches_stop_at_success(tmp_path):
    config = LearnConfig(**settings(real_steps=100_000, stop_at_success=0.3))
    said = []
    records = learn(config, tmp_path / "run", progress=said.append)
    assert records[-1]["real_steps"] < 100_000                         # it stopped long before the budget
    # Progress: a line as each phase starts, one per round with its score, and why the run stopped.
    assert re.fullmatch(r"\d\d:\d\d:\d\d round 1: training the world model", said[2]), said
    assert sum("round 1: real success" in line for line in said) == 1
    assert "reached stop_at_success 0.3; stopping" in said[-1]
    assert records[-1]["round"] >= 1 and records[-1]["real_success"] >= 0.3
    assert all(r["real_success"] < 0.3 for r in records[1:-1])

    def curve(rs):
        return [(r["round"], r["real_steps"], r["real_success"]) for r in rs]

    again = []
    assert curve(learn(config, tmp_path / "run", progress=again.append)) == curve(records)   # continuing adds nothing
    assert not any(re.search(r"round \d+: (training|collecting|scoring)", line) for line in again), again
    for bad in (1.5, -0.1, float("nan")):
        with pytest.raises(LearnError, match="stop_at_success must be (in \\[0, 1\\]|a finite number)"):
            LearnConfig(**settings(stop_at_success=bad))


@pytest.mark.parametrize("env_id", ["MiniGrid-KeyCorridorS3R1-v0", "MiniGrid-LavaGapS5-v0"])
def test_a_round_runs_on_envs_of_other_kinds(tmp_path, env_id):
    # A ball to pick up behind a locked door; lava that ends the episode without pay: a round of the
    # explorer-first loop trains and scores on each.
    config = LearnConfig(**settings(env_id=env_id, initial_episodes=6, round_episodes=2, real_steps=1,
                                    explore_interactions=1.0, agent_from_explorer=True, dream_state_starts=0.5,
                                    model_steps=10, dream_steps=1024, eval_episodes=2))
    records = learn(config, tmp_path / "run", progress=None)
    assert [r["round"] for r in records] == [0, 1]
    assert records[1]["eval_episodes"] == 2 and 0 <= records[1]["real_success"] <= 1
    assert records[1]["agent"] in ("agent", "explorer")


def test_the_world_model_trains_data_parallel_over_several_processes(tmp_path):
    # gpus=2 on a CPU: torchrun starts two gloo ranks of `worldsim train` for each round's world model.
    config = LearnConfig(**settings(initial_episodes=6, real_steps=1, model_steps=4, dream_steps=1024,
                                    eval_episodes=2, gpus=2))
    records = learn(config, tmp_path / "run", progress=None)
    assert [r["round"] for r in records] == [0, 1]
    run = tmp_path / "run" / "round-01" / "model_run"
    assert (run / "model" / "model.safetensors").is_file()
    trained = [r for r in lines(run) if "train/tokens_seen" in r]
    # Both ranks' windows count: 8 windows x 16 frames x 25 cells per step and rank.
    assert trained[-1]["step"] == 4 and trained[-1]["train/tokens_seen"] == 4 * 8 * 16 * 25 * 2
    logged = (run / "metrics.jsonl").read_text()
    again = learn(config, tmp_path / "run", progress=None)                     # done: nothing trains again
    assert [(r["real_steps"], r["real_success"], r["model_acc"]) for r in again] == \
        [(r["real_steps"], r["real_success"], r["model_acc"]) for r in records]
    assert (run / "metrics.jsonl").read_text() == logged


def test_a_run_folder_from_before_a_new_setting_continues_at_the_value_it_ran_with(tmp_path):
    Learner(LearnConfig(**settings(dream_state_starts=0.0)), tmp_path / "run", progress=None)
    saved = json.loads((tmp_path / "run" / "learn.json").read_text())
    del saved["dream_state_starts"], saved["explore_bonus"]            # a folder from before both existed
    (tmp_path / "run" / "learn.json").write_text(json.dumps(saved))
    Learner(LearnConfig(**settings(dream_state_starts=0.0)), tmp_path / "run", progress=None)
    with pytest.raises(LearnError, match="dream_state_starts: 0.0 there, 0.5 now"):
        Learner(LearnConfig(**settings(dream_state_starts=0.5)), tmp_path / "run", progress=None)
    with pytest.raises(LearnError, match="explore_bonus: 0.0 there, 1.0 now"):
        Learner(LearnConfig(**settings(dream_state_starts=0.0, explore_bonus=1.0)), tmp_path / "run", progress=None)


def test_settings_left_to_learn_are_filled_in_by_device_and_view_and_recorded(tmp_path, monkeypatch):
    env = "MiniGrid-Empty-5x5-v0"
    cpu = LearnConfig(env_id=env, device="cpu")
    assert (cpu.dream_steps, cpu.dream_envs, cpu.ppo) == (200_000, 64, {})
    assert cpu.explores and cpu.agent_from_explorer and cpu.dream_state_starts == 0.5
    assert cpu.train == {"lr": 1e-3, "curriculum": [[0, 64]], "aux_loss_weight": 0.1}
    assert LearnConfig(env_id=env, device="cpu", train={"lr": 3e-4}).train["lr"] == 3e-4       # the user's win
    assert LearnConfig(env_id=env, device="cpu", view="ego").dream_state_starts == 0.0
    assert not LearnConfig(env_id=env, device="cpu", explore_interactions=0.0).agent_from_explorer   # no explorer
    assert not LearnConfig(env_id=env, device="cpu", warm_start_agent=True).agent_from_explorer
    assert LearnConfig(env_id=env, device="cpu", dream_steps=4096).dream_steps == 4096
    # learn.json records the values filled in, so a run continued on another kind of device is held to them
    Learner(cpu, tmp_path / "run", progress=None)
    saved = json.loads((tmp_path / "run" / "learn.json").read_text())
    assert (saved["dream_steps"], saved["agent_from_explorer"], saved["dream_state_starts"]) == (200_000, True, 0.5)
    monkeypatch.setattr("train.learn.resolve_device", lambda device: torch.device("cuda"))
    gpu = LearnConfig(env_id=env, device="cuda", ppo={"epochs": 2})
    assert (gpu.dream_steps, gpu.dream_envs) == (4_000_000, 1024)
    assert gpu.ppo == {"num_steps": 64, "minibatch_size": 8192, "epochs": 2}
    with pytest.raises(LearnError, match="other settings.*dream_envs: 64 there, 1024 now"):
        Learner(LearnConfig(env_id=env, device="cpu"), tmp_path / "run", progress=None)
    with pytest.raises(LearnError, match="agent_from_explorer must be true or false; got 'yes'"):
        LearnConfig(env_id=env, device="cpu", agent_from_explorer="yes")


def test_a_run_folder_of_another_env_is_refused(tmp_path):
    Learner(LearnConfig(**settings()), tmp_path / "run", progress=None)
    with pytest.raises(LearnError, match="other settings.*env_id"):
        Learner(LearnConfig(**settings(env_id="MiniGrid-Empty-6x6-v0")), tmp_path / "run", progress=None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(LearnError, match="is a file"):
        Learner(LearnConfig(**settings()), tmp_path / "file", progress=None)


def test_round_zero_collects_with_the_initial_policy(tmp_path, monkeypatch):
    from worldsim.data.dataset import EpisodeDataset

    class Stop(Exception):
        pass

    def stop(self, k):
        raise Stop

    monkeypatch.setattr(Learner, "train_model", stop)           # round 0 only: collect and score random play
    with pytest.raises(Stop):
        learn(LearnConfig(**settings(initial_policy="expert", initial_epsilon="0:0.5", initial_episodes=6,
                                     eval_episodes=2)), tmp_path, progress=None)
    data = EpisodeDataset(tmp_path / "round-00" / "data")
    assert data.num_episodes == 6 and data.manifest["policy"].startswith("expert")
    assert data.manifest["codec"]["version"] == "minigrid-world-v1"
