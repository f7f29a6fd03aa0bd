"""The fidelity benchmark: replay of real actions in the dream, closed loop dream vs real, and dream
successes replayed in the real env."""

import json

import numpy as np
import pytest
import torch

from benchmarks.cli import add_benchmark_parser
from benchmarks.fidelity import fidelity_benchmark, format_fidelity_table, real_episodes, replay_in_real
from envs.minigrid import MiniGridCodec

from conftest import tiny_minigrid_model

ENV_ID = "MiniGrid-Empty-8x8-v0"


@pytest.fixture(scope="module")
def shipped_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("fidelity")
    return fidelity_benchmark(ENV_ID, ["random", "expert"], episodes=3, horizon=24, device="cpu", out=out,
                              progress=None), out


def test_the_shipped_dream_replays_real_actions_and_the_report_adds_up(shipped_result):
    result, out = shipped_result
    random, expert = result["policies"]["random"], result["policies"]["expert"]
    for row in (random, expert):
        first = row["replay"]["by_step"][1]
        assert first["knowable_cell_accuracy"] > 0.98                      # the shipped model is accurate
        assert 0 < row["replay"]["mean_knowable_cell_accuracy"] <= 1
        assert 0 <= row["replay"]["termination_agreement"] <= 1
    assert expert["closed_loop"] is None and "pose" in expert["closed_loop_note"]
    assert expert["real"]["success"]["rate"] == 1.0                   # the scripted expert reaches the goal
    gap = random["dream"]["success"]["rate"] - random["real"]["success"]["rate"]
    assert random["optimism_gap"] == pytest.approx(gap)
    wins = random["dream_successes_real"]
    assert wins is None or wins["of"] == random["dream"]["success"]["count"]
    saved = json.loads((out / "fidelity.json").read_text())
    assert saved["policies"].keys() == {"random", "expert"}
    assert (out / "fidelity.svg").read_text().startswith("<svg")
    table = format_fidelity_table(result)
    assert "random" in table and "expert" in table and "n/a" in table
    for row in (random, expert):                   # every replayed step is one teacher-forced step
        one = row["one_step"]
        assert one["steps"] == row["replay"]["steps_replayed"] == sum(k["steps"] for k in one["by_transition"])
        assert one["wrong"] == sum(k["wrong"] for k in one["by_transition"])
        assert one["wrong"] <= 0.05 * one["steps"]                     # the shipped model is accurate
        assert all(0 <= k["mean_uncertainty"] < 0.05 for k in one["by_transition"])     # ... and sure of it
    assert "One-step transitions" in table


def test_one_step_errors_name_the_transitions_an_untrained_model_gets_wrong(tmp_path):
    untrained = tmp_path / "untrained"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(untrained)
    one = fidelity_benchmark(untrained, ["random"], env_id=ENV_ID, episodes=2, horizon=12, device="cpu",
                             progress=None)["policies"]["random"]["one_step"]
    assert one["steps"] == 24 and one["wrong"] > 12
    worst = one["by_transition"]
    assert [k["wrong"] for k in worst] == sorted((k["wrong"] for k in worst), reverse=True)
    assert all(" facing " in k["transition"] and ", carrying " in k["transition"] for k in worst)
    assert all(k["mean_uncertainty"] > 0.1 for k in worst)            # untrained: unsure everywhere


def test_transition_kinds_say_what_the_agent_faces_and_carries():
    import gymnasium as gym
    import minigrid  # noqa: F401

    from train.replay import transition_kind
    env = gym.make("MiniGrid-Unlock-v0")
    env.reset(seed=0)
    u = env.unwrapped
    key = next(o for o in u.grid.grid if o is not None and o.type == "key")
    door = next(o for o in u.grid.grid if o is not None and o.type == "door")
    u.grid.set(*key.cur_pos, None)
    u.carrying = key
    u.agent_pos = np.array(door.cur_pos) - np.array([1, 0])      # west of the door, facing east
    u.agent_dir = 0
    assert transition_kind(env, 5) == "toggle facing locked door, carrying key"
    u.agent_dir = 2
    assert transition_kind(env, 3).startswith("pickup facing ")
    u.carrying = None
    assert transition_kind(env, 3).endswith(", carrying nothing")


def test_an_untrained_model_scores_below_the_shipped_one(shipped_result, tmp_path):
    result, _ = shipped_result
    untrained = tmp_path / "untrained"
    tiny_minigrid_model(done_bias=-20.0).save_pretrained(untrained)
    bad = fidelity_benchmark(untrained, ["expert"], episodes=3, horizon=24, device="cpu", progress=None)
    assert bad["policies"]["expert"]["replay"]["mean_cell_accuracy"] < \
        result["policies"]["expert"]["replay"]["mean_cell_accuracy"] - 0.2


def test_real_actions_replayed_in_the_real_env_succeed_again():
    episodes = real_episodes(ENV_ID, "expert", [3, 4], MiniGridCodec(7), 7, None)
    assert all(e["success"] for e in episodes)
    assert replay_in_real(ENV_ID, episodes, None) == [True, True]
    cut = [dict(e, actions=e["actions"][:-1]) for e in episodes]        # one step short of the goal
    assert replay_in_real(ENV_ID, cut, None) == [False, False]
    assert episodes[0]["frames"].shape == (len(episodes[0]["actions"]) + 1, 7, 7)
    assert episodes[0]["frames"].dtype == torch.long
    # The first frame shows nothing seen before: only occluded cells count as knowable there; later
    # frames show places seen before.
    assert torch.equal(episodes[0]["knowable"][0], episodes[0]["frames"][0] == MiniGridCodec(7).unseen_token)
    assert episodes[0]["knowable"][1:].float().mean() > 0.5


def test_bad_input_is_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="episodes must be a positive integer; got 0"):
        fidelity_benchmark(ENV_ID, ["random"], episodes=0, device="cpu")
    with pytest.raises(ValueError, match="policies: give at least one"):
        fidelity_benchmark(ENV_ID, [], device="cpu")
    with pytest.raises(ValueError, match="trained on 'MiniGrid-Empty-8x8-v0', not 'MiniGrid-DoorKey-8x8-v0'"):
        fidelity_benchmark(ENV_ID, ["random"], env_id="MiniGrid-DoorKey-8x8-v0", device="cpu")
    import argparse

    parser = argparse.ArgumentParser()
    add_benchmark_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["benchmark", "fidelity", "--env", ENV_ID, "--policies", "no-such-policy",
                              "--episodes", "1", "--device", "cpu", "--out", str(tmp_path / "x")])
    assert args.run(args) == 1
    assert "--policy 'no-such-policy': no such file or folder" in capsys.readouterr().err
