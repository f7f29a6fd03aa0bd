"""`worldsim benchmark memory` end to end on tiny models and a short retrace dataset (CPU)."""

import json

import pytest

from train.cli import main
from train.collect import collect

from conftest import tiny_minigrid_model



@pytest.fixture(scope="module")
def retrace_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory")
    collect("MiniGrid-FourRooms-v0", "retrace:30", episodes=3, out=root / "retrace", max_steps=60, num_envs=3,
            progress=False, view="ego")
    for seed in (0, 1):
        tiny_minigrid_model(env_id="MiniGrid-FourRooms-v0", seed=seed).save_pretrained(root / f"model{seed}")
    return root


def test_scores_every_model_by_gap(retrace_data, capsys):
    out = retrace_data / "out"
    assert main(["benchmark", "memory", "--data", str(retrace_data / "retrace"), "--model",
                 f"a={retrace_data / 'model0'}", "--model", f"b={retrace_data / 'model1'}", "--out", str(out),
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "retrace:30" in printed and "gap 2-4" in printed
    result = json.loads((out / "memory.json").read_text())
    assert (result["context_steps"], result["test_steps"]) == (30, 30)   # 61 frames: 31 given, 30 generated
    a, b = result["models"]["a"], result["models"]["b"]
    assert a["episodes"] == b["episodes"] == 3
    assert a["copy_acc"] == b["copy_acc"]                          # the same real frames for both
    for r in (a, b):
        assert 0 <= r["acc"] <= 1 and 0 <= r["exact_frame"] <= 1
        assert sum(r[k] for k in r if k.startswith("acc_gap_count_")) > 0
    assert a["acc"] != b["acc"]                                     # two different models, two scores
    for r in (a, b):                                                # the same frames, teacher-forced
        assert r["teacher_forced"]["episodes"] == 3 and 0 <= r["teacher_forced"]["acc"] <= 1
    assert "a (teacher-forced)" in printed
    assert (out / "memory.svg").read_text().startswith("<svg")


def test_errors_are_clear(retrace_data, tmp_path, capsys):
    collect("MiniGrid-Empty-5x5-v0", "random", episodes=1, out=tmp_path / "random", max_steps=5, progress=False)
    assert main(["benchmark", "memory", "--data", str(tmp_path / "random"), "--model", "a=x"]) == 1
    assert "not a memory task" in capsys.readouterr().err
    assert main(["benchmark", "memory", "--data", str(retrace_data / "retrace"), "--model", "nameless"]) == 1
    assert "expected NAME=CHECKPOINT" in capsys.readouterr().err


def test_teacher_forced_recall_is_one_pass_over_the_real_frames_whatever_the_chunks(retrace_data):
    """recall_metrics scores frame t's prediction from the real frames before it: in chunks with the
    state carried it must match one forward pass over the whole episode, scored by hand."""
    import numpy as np
    import torch

    from train.evaluation import recall_metrics
    from worldsim import WorldModel
    from worldsim.data.dataset import EpisodeDataset
    from worldsim.data.stream import episode_bounds

    model = WorldModel.from_pretrained(retrace_data / "model0")
    dataset = EpisodeDataset(retrace_data / "retrace")
    stream = dataset.stream(range(dataset.num_episodes))
    starts, lengths = episode_bounds(stream)
    context, horizon = 31, 30
    chunked = recall_metrics(model, stream, context=context, horizon=horizon, count=3, batch_size=2, chunk=7)
    whole = recall_metrics(model, stream, context=context, horizon=horizon, count=3, batch_size=3, chunk=1000)
    for key in ("acc", "exact_frame", "acc_gap_1"):
        assert abs(chunked[key] - whole[key]) < 1e-6, key
    hits = cells = 0
    for s, n in zip(starts, lengths):
        frames = torch.from_numpy(np.asarray(stream.frames)[s:s + n].astype(np.int64))[None]
        actions = torch.from_numpy(np.asarray(stream.actions)[s:s + n].astype(np.int64))[None]
        with torch.no_grad():
            pred = model(frames[:, :-1], actions[:, :-1]).frame_logits.argmax(-1)
        hits += int((pred[:, context - 1:] == frames[:, context:]).sum())
        cells += frames[:, context:].numel()
    assert abs(whole["acc"] - hits / cells) < 1e-9


def test_data_of_another_view_than_the_models_is_refused_by_name(retrace_data, tmp_path, capsys):
    collect("MiniGrid-FourRooms-v0", "retrace:4", episodes=1, out=tmp_path / "world", max_steps=10, num_envs=1,
            progress=False, view="world")
    assert main(["benchmark", "memory", "--data", str(tmp_path / "world"), "--model",
                 f"a={retrace_data / 'model0'}", "--device", "cpu"]) != 0
    err = capsys.readouterr().err
    assert "trained on 'minigrid-symbolic-v1' frames" in err and "'minigrid-world-v1' frames" in err and "--view ego" in err
