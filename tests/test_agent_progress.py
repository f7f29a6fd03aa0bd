"""What a user sees while an agent trains (progress lines), the 'lin_X' schedules, and the
learned-vs-real options the demo relies on (first seed, sampled evaluation)."""

import json

import pytest
from stable_baselines3.common.utils import LinearSchedule

from agents.training import ProgressLines, train_agent, with_schedules
from benchmarks.learned_vs_real import learned_vs_real
from benchmarks.learned_vs_real_report import format_benchmark_table

from conftest import tiny_minigrid_model

ENV_ID = "MiniGrid-Empty-5x5-v0"


def test_progress_lines_report_steps_and_the_end(tmp_path):
    lines = []
    train_agent(ENV_ID, where="real", steps=256, out=tmp_path, num_envs=2, seed=0, device="cpu",
                progress=lines.append)
    assert lines, "no progress line at all"
    assert lines[0] == "PPO in the real env: starting, 256 steps"
    assert lines[-1].startswith("PPO in the real env: 256/256 steps") and lines[-1].endswith("(done)")
    assert "steps/s" in lines[-1]


def test_progress_lines_come_while_the_policy_updates(tmp_path, monkeypatch):
    """SB3 calls callbacks only while collecting steps; the lines must keep coming during an update.
    The update here waits until a line arrives (a line never coming fails the wait)."""
    import threading

    from stable_baselines3 import PPO

    from agents.training import make_env, policy_kwargs_for

    updating, line_during_update, lines = threading.Event(), threading.Event(), []

    def say(line):
        lines.append(line)
        if updating.is_set():
            line_during_update.set()

    original_train = PPO.train

    def slow_train(self):
        updating.set()
        arrived = line_during_update.wait(timeout=60)
        updating.clear()
        assert arrived, "no progress line while the policy was updating"
        original_train(self)

    monkeypatch.setattr(PPO, "train", slow_train)
    callback = ProgressLines("PPO in the real env", 128, say, every_s=0.05)
    venv = make_env(ENV_ID, "real", num_envs=2, seed=0)
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu",
        policy_kwargs=policy_kwargs_for("cnn")).learn(128, callback=callback)
    assert line_during_update.is_set()
    assert lines[0].endswith("starting, 128 steps")
    counts = [int(line.split(": ")[1].split("/")[0].replace(",", "")) for line in lines[1:]]
    assert counts == sorted(counts) and counts[-1] == 128 and lines[-1].endswith("(done)")
    assert not callback._thread.is_alive()


def test_lin_schedules_decay_to_zero_and_bad_ones_are_refused():
    params = with_schedules({"learning_rate": "lin_2.5e-4", "clip_range": 0.2, "n_steps": 128})
    lr = params["learning_rate"]
    assert isinstance(lr, LinearSchedule) and lr(1.0) == pytest.approx(2.5e-4) and lr(0.0) == 0.0
    assert lr(0.5) == pytest.approx(1.25e-4) and params["clip_range"] == 0.2 and params["n_steps"] == 128
    with pytest.raises(ValueError, match="learning_rate='cosine_1e-3'"):
        with_schedules({"learning_rate": "cosine_1e-3"})
    with pytest.raises(ValueError, match="clip_range='lin_x'.*number"):
        with_schedules({"clip_range": "lin_x"})


def test_first_seed_and_sampled_evaluation(tmp_path):
    checkpoint = tmp_path / "model"
    tiny_minigrid_model(env_id=ENV_ID, done_bias=20.0).save_pretrained(checkpoint)
    result = learned_vs_real(ENV_ID, checkpoint, steps=64, seeds=1, first_seed=3, eval_episodes=2,
                             planner_episodes=0, out=tmp_path / "out", num_envs=2, device="cpu",
                             hyperparams={"n_steps": 32, "batch_size": 32, "learning_rate": "lin_1e-3"},
                             deterministic_eval=False, max_episode_steps=8)
    assert [row["seed"] for row in result["per_seed"]] == [3]
    assert result["first_seed"] == 3 and result["deterministic_eval"] is False
    assert (tmp_path / "out" / "seed_3" / "dream" / "policy.zip").is_file()
    saved = json.loads((tmp_path / "out" / "seed_3" / "real" / "agent.json").read_text())
    assert saved["hyperparams"]["learning_rate"] == "lin_1e-3"          # as given, not a pickled function
    table = format_benchmark_table(result)
    assert "samples each policy's actions" in table and "at least 90%" in table
