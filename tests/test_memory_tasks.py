"""The memory tasks' trajectories: retrace really walks back through seen places; reasoning revisits them."""

import gymnasium as gym
import minigrid  # noqa: F401
import numpy as np
import pytest

from envs.minigrid.explore import FORWARD, LEFT, RIGHT, TOGGLE
from envs.minigrid.memory_tasks import RetraceAgent, retrace_actions
from train.collect import collect
from worldsim.data.dataset import EpisodeDataset

CONTEXT = 250


def test_retrace_actions_undo_the_path():
    actions = [FORWARD, LEFT, FORWARD, TOGGLE, FORWARD, RIGHT]
    moved = [True, False, False, False, True, False]            # the second forward bumped into a wall
    assert retrace_actions(actions, moved) == [LEFT, LEFT, LEFT, FORWARD, RIGHT, FORWARD]


def _dedupe(xs):
    return [x for i, x in enumerate(xs) if i == 0 or xs[i - 1] != x]


@pytest.mark.parametrize("seed", [0, 1])
def test_retrace_walks_the_context_path_back_to_the_start(seed):
    env = gym.make("MiniGrid-FourRooms-v0", max_steps=10_000)
    obs, _ = env.reset(seed=seed)
    u = env.unwrapped
    agent = RetraceAgent(CONTEXT, seed=seed)
    agent.reset(obs, u.agent_pos, (u.width, u.height))
    start_dir = int(u.agent_dir)
    poses = [(tuple(int(v) for v in u.agent_pos), int(u.agent_dir))]
    for _ in range(2 * CONTEXT + 2):
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, u.agent_pos))
        poses.append((tuple(int(v) for v in u.agent_pos), int(u.agent_dir)))
        assert not (terminated or truncated)
    back = len(agent.plan_back)
    context_cells = _dedupe([p for p, _ in poses[: CONTEXT + 1]])
    assert len(set(context_cells)) > 20                         # the context walk went places
    assert _dedupe([p for p, _ in poses[CONTEXT: CONTEXT + back + 1]]) == context_cells[::-1]
    assert poses[CONTEXT + back] == (poses[0][0], (start_dir + 2) % 4)   # home, facing the other way


def _test_phase(task: str, tmp_path):
    collect("MiniGrid-FourRooms-v0", f"{task}:{CONTEXT}", episodes=2, out=tmp_path / task,
            max_steps=2 * CONTEXT, num_envs=2, progress=False, view="ego")
    ds = EpisodeDataset(tmp_path / task)
    assert ds.manifest["policy"] == f"{task}:{CONTEXT}"
    for i in range(ds.num_episodes):
        ep, stream = ds.episode(i), ds.stream([i])
        images, _ = ds.codec.decode_batch(stream.frames)
        visible = np.swapaxes(images[..., 0], 1, 2) != 0        # frame layout; 0 = MiniGrid's "unseen"
        yield ep, stream.gap[CONTEXT + 1:], visible[CONTEXT + 1:]


@pytest.mark.parametrize("task", ["retrace", "reasoning"])
def test_the_test_phase_looks_at_places_seen_before(task, tmp_path):
    for ep, gap, visible in _test_phase(task, tmp_path):
        assert len(ep) == 2 * CONTEXT                             # context, then as long a test phase
        assert (gap[visible] >= 0).mean() > 0.98                  # (nearly) every visible cell seen before
        assert gap.max() > CONTEXT // 2                           # some of them long ago
        test_cells = {tuple(p) for p in ep.agent_pos[CONTEXT + 1:]}
        context_cells = {tuple(p) for p in ep.agent_pos[: CONTEXT + 1]}
        assert len(test_cells - context_cells) <= 0.05 * len(test_cells)


def test_reasoning_moves_by_new_routes_not_a_replay(tmp_path):
    for ep, _, _ in _test_phase("reasoning", tmp_path):
        path_back = _dedupe([tuple(p) for p in ep.agent_pos[: CONTEXT + 1]])[::-1]
        route = _dedupe([tuple(p) for p in ep.agent_pos[CONTEXT:]])
        assert len(set(route)) > 10                               # it travels
        assert route != path_back[: len(route)]                   # and not back along the context path


def test_bad_task_specs_are_refused(tmp_path):
    for spec in ("retrace", "retrace:", "retrace:ten", "reasoning:0"):
        with pytest.raises(ValueError, match="expected (retrace|reasoning):C"):
            collect("MiniGrid-FourRooms-v0", spec, episodes=1, out=tmp_path / "x")
