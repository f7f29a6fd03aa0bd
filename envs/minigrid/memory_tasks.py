"""Memory tasks for the long-context benchmark: a long context walk, then a test phase.

Both tasks start with ``context`` steps of ``ExploreAgent`` (it covers the layout and comes back).
Then:

- **retrace** (retrieval): the agent turns around and walks its context path back, pose by pose, to
  where it started. Every context action is undone in reverse order: a forward that moved becomes a
  forward, a left becomes a right and a right a left; forwards that bumped into something and other
  actions (toggle) are dropped. It stands on every context position again, facing the other way,
  looking down the path it came along: nearly every cell in view was seen during the context, some
  of them thousands of steps earlier.
- **reasoning**: the agent keeps moving with new actions. It walks shortest paths, through places it
  stood on during the context, to ones far away and rarely visited. It never heads for unexplored
  cells, so it reaches seen places from new angles and by new routes.

``RetraceAgent`` and ``RevisitAgent`` have ``ExploreAgent``'s interface, so ``worldsim collect
--policy retrace:C`` and ``--policy reasoning:C`` record these episodes (give ``--max-steps`` room for the
test phase). Like ``ExploreAgent``, they read only the observation, the agent's pose and the grid's size.
"""

from __future__ import annotations

import numpy as np

from envs.minigrid.explore import FORWARD, LEFT, RIGHT, ExploreAgent

_UNDO = {LEFT: RIGHT, RIGHT: LEFT, FORWARD: FORWARD}


def parse_task(spec: str) -> tuple[str, int] | None:
    """'retrace:C' / 'reasoning:C' -> (task, C); None for a spec that names no memory task;
    ValueError for a memory task without a valid C."""
    name, _, context = spec.partition(":")
    if name not in TASKS:
        return None
    if not context.isdigit() or int(context) < 1:
        raise ValueError(f"policy {spec!r}: expected {name}:C with C the context walk's length in steps")
    return name, int(context)


def retrace_actions(actions, moved) -> list[int]:
    """The actions that walk a path back: turn around, then undo `actions` in reverse order.
    `moved[i]`: whether forward action i changed the agent's position (blocked ones are dropped)."""
    back = [LEFT, LEFT]
    for a, m in zip(reversed(list(actions)), reversed(list(moved))):
        if a in (LEFT, RIGHT) or (a == FORWARD and m):
            back.append(_UNDO[int(a)])
    return back


class _ContextThenTest(ExploreAgent):
    """Explore for `context` steps (no random noise bursts: every context action is on record), then
    hand over to `_test_action`."""

    def __init__(self, context: int, view_size: int = 7, num_actions: int = 7, seed: int | None = None):
        if context < 1:
            raise ValueError(f"context must be a positive number of steps; got {context}")
        super().__init__(view_size=view_size, num_actions=num_actions, noise=0.0, seed=seed)
        self.context = context

    def reset(self, obs, agent_pos, grid_size, seed: int | None = None) -> None:
        super().reset(obs, agent_pos, grid_size, seed=seed)
        self.steps = 0
        self.actions: list[int] = []          # the context's actions
        self.positions = [self.pos]           # positions[i]: before context action i (context + 1 of them)

    def act(self, obs, agent_pos) -> int:
        self._track(obs, agent_pos)
        if 0 < self.steps <= self.context:
            self.positions.append(self.pos)
        if self.steps < self.context:
            action = self._explore(int(obs["direction"]))
            self.actions.append(action)
        else:
            action = self._test_action(obs)
        self.steps += 1
        return action

    def _test_action(self, obs) -> int:
        raise NotImplementedError


class RetraceAgent(_ContextThenTest):
    """Context walk, then back along it to the start (see the module docstring); then it turns in place."""

    def _test_action(self, obs) -> int:
        if self.steps == self.context:
            moved = [a == FORWARD and self.positions[i + 1] != self.positions[i] for i, a in enumerate(self.actions)]
            self.plan_back = retrace_actions(self.actions, moved)
        k = self.steps - self.context
        return self.plan_back[k] if k < len(self.plan_back) else LEFT


class RevisitAgent(_ContextThenTest):
    """Context walk, then shortest known paths to far, rarely visited places of the context."""

    def _frontier(self, passable: np.ndarray) -> np.ndarray:
        if self.steps < self.context:
            return super()._frontier(passable)
        return np.zeros_like(passable)          # no new ground: ExploreAgent then picks far, rare cells

    def _passable(self) -> np.ndarray:
        passable = super()._passable()
        if self.steps >= self.context:
            passable &= self.visited            # paths only through places stood on in the context
        return passable

    def _test_action(self, obs) -> int:
        if self.steps == self.context:
            self.visited = np.zeros_like(self.visits, dtype=bool)
            self.visited[tuple(np.array(self.positions).T)] = True
        return self._explore(int(obs["direction"]))


TASKS = {"retrace": RetraceAgent, "reasoning": RevisitAgent}
