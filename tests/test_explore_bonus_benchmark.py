"""The exploration-bonus benchmark compares agents on one shared world model and one shared dataset."""

import json

import pytest
import torch

from benchmarks.explore_bonus import main

torch.set_num_threads(1)


def test_every_bonus_trains_its_agent_on_the_same_model_and_data(tmp_path):
    out = tmp_path / "result.json"
    main(["--env", "MiniGrid-Empty-5x5-v0", "--episodes", "4", "--model-steps", "10", "--dream-steps", "2048",
          "--dream-envs", "16", "--eval-episodes", "4", "--explorers", "agent,o2,n0.1,i0.5",
          "--out", str(out),
          "--model", '{"d_model": 32, "n_layers": 1, "d_state": 16, "headdim": 16, "n_heads": 2}',
          "--work", str(tmp_path / "work")])
    runs = json.loads(out.read_text())["runs"]
    assert [(r["bonus"], r["novelty"], r["interactions"]) for r in runs] == [(0.0, 0.0, 0.0), (2.0, 0.0, 0.0),
                                                                             (0.0, 0.1, 0.0), (0.0, 0.0, 0.5)]
    assert runs[0]["random_play"] == runs[1]["random_play"] == runs[2]["random_play"] == runs[3]["random_play"]
    assert runs[0]["random_play"]["episodes"] == 4
    folders = ("seed0-bonus0", "seed0-bonus2-once", "seed0-bonus0-novelty0.1", "seed0-bonus0-interactions0.5")
    models = [(tmp_path / "work" / f / "round-01" / "model_run" / "model") for f in folders]
    weights = [sorted(p.name for p in m.iterdir()) for m in models]
    assert weights[0] == weights[1] and all((m / w).read_bytes() == (models[0] / w).read_bytes()
                                            for m in models for w in weights[0])
    for r in runs:
        assert r["collected"]["episodes"] == 4 and 0 <= r["collected"]["paying"] <= 4
        assert 0 <= r["real_success"] <= 1
    agents = [json.loads((tmp_path / "work" / f / "round-01" / role / "agent.json").read_text())
              for f, role in zip(folders, ("agent", "explorer", "explorer", "explorer"))]
    # the bonuses reached the dream: the uncertainty on new frames only (o2), the novelty, the interactions
    # counted over the data the round's model was trained on
    assert [a["pessimism"]["uncertainty_penalty"] for a in agents] == [0.0, 0.0, 0.0, 0.0]
    assert [a["novelty_uncertainty"] for a in agents] == [0.0, 2.0, 0.0, 0.0]
    assert [a["novelty_bonus"] for a in agents] == [0.0, 0.0, 0.1, 0.0]
    assert [a["interaction_bonus"] for a in agents] == [0.0, 0.0, 0.0, 0.5]
    assert agents[3]["interaction_counts"] == [str(tmp_path / "work" / folders[3] / "round-00" / "data")]


def test_an_explorer_is_named_by_its_bonuses():
    from benchmarks.explore_bonus import parse_explorer

    assert parse_explorer("agent") == (0.0, False, 0.0, 0.0)
    assert parse_explorer("u2") == (2.0, False, 0.0, 0.0) and parse_explorer("o2+n0.01") == (2.0, True, 0.01, 0.0)
    assert parse_explorer("i0.5+n0.01") == (0.0, False, 0.01, 0.5)
    for bad in ("x2", "u", "n-1", "u2+o2", "nfoo", "i0", "i1+i2"):
        with pytest.raises(SystemExit, match="--explorers"):
            parse_explorer(bad)
