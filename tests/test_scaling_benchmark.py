"""`worldsim benchmark scaling` end to end on CPU with tiny sizes (the numbers mean nothing here)."""

import json

import pytest

from train.cli import main
from benchmarks.scaling import build_model, state_bytes_in_use



def test_times_training_and_steps_for_each_model(tmp_path, capsys):
    out = tmp_path / "scaling"
    assert main(["benchmark", "scaling", "--models", "ours,causal", "--lengths", "4,8", "--frames", "2,12,20",
                 "--window", "3", "--seconds", "0.01", "--d-model", "32", "--n-layers", "2", "--device", "cpu",
                 "--out", str(out)]) == 0
    assert "ms at t=20 / t=2" in capsys.readouterr().out
    result = json.loads((out / "scaling.json").read_text())
    assert set(result["models"]) == {"ours", "causal"}
    for name, r in result["models"].items():
        assert [row["seq_len"] for row in r["train"]] == [4, 8] and all(row["status"] == "ok" for row in r["train"])
        assert [p["frame"] for p in r["inference"]] == [2, 12, 20] and all(p["n"] == 3 for p in r["inference"])
    causal = result["models"]["causal"]
    assert causal["config"]["attn_window"] >= 23 and not causal["config"]["ssm"]    # sees every frame stepped
    # The causal cache in use grows with the frames seen; ours stops growing once its short ring is full.
    at = {name: [p["state_bytes_in_use"] for p in r["inference"]] for name, r in result["models"].items()}
    assert at["causal"][0] < at["causal"][1] < at["causal"][2]
    assert at["ours"][1] == at["ours"][2]
    assert (out / "scaling.svg").read_text().startswith("<svg")


def test_state_in_use_counts_only_written_ring_slots():
    import torch

    model = build_model("causal", 32, 1, span=99, device=torch.device("cpu"))
    state = model.initial_state(1)
    ring = state.layers[0].keys.nbytes + state.layers[0].values.nbytes
    assert state_bytes_in_use(state, 100) == state.nbytes
    assert state_bytes_in_use(state, 0) == state.nbytes - ring
    assert state_bytes_in_use(state, 50) == state.nbytes - ring + ring * 50 // 100


def test_unknown_models_are_refused(tmp_path, capsys):
    assert main(["benchmark", "scaling", "--models", "ours,transformer", "--device", "cpu", "--out", str(tmp_path)]) == 1
    assert "unknown model 'transformer'" in capsys.readouterr().err
