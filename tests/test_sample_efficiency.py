"""`worldsim benchmark sample-efficiency`: the curve arithmetic, and a tiny run of both methods."""

import json

import pytest
import torch

from benchmarks import sample_efficiency
from benchmarks.sample_efficiency import area_under, format_table, sample_efficiency_benchmark, steps_to
from test_learn import TINY_MODEL, TINY_TRAIN

torch.set_num_threads(1)


def test_steps_to_a_threshold_and_the_area_under_a_step_curve():
    curve = [(0, 0.1), (400, 0.6), (800, 0.95)]
    assert steps_to(curve, 0.5) == 400 and steps_to(curve, 0.9) == 800 and steps_to(curve, 0.99) is None
    # 0.1 over [0, 400), 0.6 over [400, 800), 0.95 over [800, 1000]
    assert area_under(curve, 1000) == pytest.approx((0.1 * 400 + 0.6 * 400 + 0.95 * 200) / 1000)
    assert area_under([(500, 1.0)], 1000) == pytest.approx(0.5)      # nothing before the first point
    assert area_under([(0, 1.0), (2000, 0.0)], 1000) == pytest.approx(1.0)   # points past the budget are cut


def test_a_tiny_run_scores_both_methods_at_equal_real_steps(tmp_path, monkeypatch):
    learn_settings = dict(initial_episodes=10, round_episodes=10, model_steps=40, finetune_steps=20, model=TINY_MODEL,
                          train=TINY_TRAIN, dream_steps=2048, dream_envs=16, ppo=dict(num_steps=64),
                          explore_interactions=0.0, dream_state_starts=0.0)          # the plain loop, quick
    # The PPO baseline alone first (as on a machine without a GPU), then the full run, which reuses it.
    alone = sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1000, seeds=1, out=tmp_path, marks=2,
                                        ppo_envs=4, ppo=dict(num_steps=64), eval_episodes=5, device="cpu",
                                        ppo_only=True, baselines=("ppo_real",), progress=None)
    assert list(alone["methods"]) == ["ppo_real"] and not (tmp_path / "learn-seed0").exists()
    assert "native PPO" in format_table(alone) and "worldsim learn" not in format_table(alone)

    def no_training(*args, **kwargs):
        raise AssertionError("the saved PPO curve should have been reused")

    monkeypatch.setattr(sample_efficiency, "real_ppo_curve", no_training)
    result = sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1000, seeds=1, out=tmp_path, marks=2,
                                         learn_settings=learn_settings, ppo_envs=4, ppo=dict(num_steps=64),
                                         eval_episodes=5, device="cpu", baselines=("ppo_real",), progress=None)
    assert result["methods"]["ppo_real"]["curves"][0][1:] == alone["methods"]["ppo_real"]["curves"][0]
    for name in ("learn", "ppo_real"):
        (curve,) = result["methods"][name]["curves"]
        assert curve and all(0 <= s <= 1 for _, s in curve)
        assert 0 <= result["methods"][name]["auc"]["mean"] <= 1
    learn_steps = [steps for steps, _ in result["methods"]["learn"]["curves"][0]]
    assert learn_steps[0] == 0 and learn_steps[-1] >= 1000 > learn_steps[-2]     # the budget, then one more round
    ppo_curve = result["methods"]["ppo_real"]["curves"][0]
    assert [steps for steps, _ in ppo_curve] == [0, 512, 1024]
    assert ppo_curve[0] == result["methods"]["learn"]["curves"][0][0]           # the same random start
    saved = json.loads((tmp_path / "sample_efficiency.json").read_text())
    assert saved["methods"]["ppo_real"]["curves"] == [[list(p) for p in result["methods"]["ppo_real"]["curves"][0]]]
    assert (tmp_path / "sample_efficiency.svg").read_text().startswith("<svg")
    assert "worldsim learn" in format_table(result)

    # Run again: learn continues its finished folder and the PPO curve is read back again.
    again = sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1000, seeds=1, out=tmp_path, marks=2,
                                        learn_settings=learn_settings, ppo_envs=4, ppo=dict(num_steps=64),
                                        eval_episodes=5, device="cpu", baselines=("ppo_real",), progress=None)
    assert again["methods"] == result["methods"]
    with pytest.raises(ValueError, match=r"ppo-seed0.json holds a PPO curve of other settings \(num_envs\)"):
        sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1000, seeds=1, out=tmp_path, marks=2,
                                    learn_settings=learn_settings, ppo_envs=8, ppo=dict(num_steps=64),
                                    eval_episodes=5, device="cpu", baselines=("ppo_real",), progress=None)


def test_the_sb3_baselines_are_scored_after_their_updates_and_kept(tmp_path, monkeypatch):
    """Stable-Baselines3's PPO with rl-zoo's settings (8 envs x 128 steps a rollout) and with the
    DoorKey-tuned ones (64 x 128): each mark is scored once the update of the steps before it is done,
    so a budget within one rollout is scored once, at the rollout's end."""
    run = dict(seeds=1, out=tmp_path, marks=2, eval_episodes=5, device="cpu", ppo_only=True,
               baselines=("sb3_zoo", "sb3_doorkey_tuned"), progress=None)
    result = sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1500, **run)
    assert list(result["methods"]) == ["sb3_zoo", "sb3_doorkey_tuned"]
    (zoo,) = result["methods"]["sb3_zoo"]["curves"]
    (tuned,) = result["methods"]["sb3_doorkey_tuned"]["curves"]
    assert [steps for steps, _ in zoo] == [1024, 2048]         # marks 750 and 1500, after rollouts 1 and 2
    assert [steps for steps, _ in tuned] == [8192]             # both marks within the first rollout
    assert all(0 <= s <= 1 for _, s in zoo + tuned)
    assert result["baseline_settings"]["sb3_doorkey_tuned"]["num_envs"] == 64
    assert "rl-zoo settings" in format_table(result) and "DoorKey-tuned" in format_table(result)
    saved = json.loads((tmp_path / "sb3-doorkey-tuned-seed0.json").read_text())
    assert saved["settings"]["hyperparams"]["ent_coef"] == 0.01 and saved["curve"] == [list(p) for p in tuned]

    def no_training(*args, **kwargs):
        raise AssertionError("the saved curves should have been reused")

    monkeypatch.setattr(sample_efficiency, "sb3_ppo_curve", no_training)
    assert sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1500, **run)["methods"] == result["methods"]
    with pytest.raises(ValueError, match="baselines: .*'sb3_rlzoo'.* choose one or more of ppo_real, sb3_zoo"):
        sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1500, **{**run, "baselines": ("sb3_rlzoo",)})
    with pytest.raises(ValueError, match="baselines: none given"):
        sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 1500, **{**run, "baselines": ()})


def test_bad_budgets_are_refused(tmp_path):
    with pytest.raises(ValueError, match="real_steps"):
        sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 0, out=tmp_path, progress=None)
    with pytest.raises(ValueError, match="seeds"):
        sample_efficiency_benchmark("MiniGrid-Empty-5x5-v0", 100, seeds=0, out=tmp_path, progress=None)
