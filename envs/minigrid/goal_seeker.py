"""A scripted expert for MiniGrid's goal tasks: explore, fetch a key, unlock its door, reach the goal.

World models of goal tasks need episodes that *reach* the goal (the reward and termination heads
learn from them) and the states on the way (carrying a key, an open door). PPO needs a million or
more steps to solve DoorKey-8x8; this agent solves it from its first episode, so data for a world
model costs only the collection. Mixed with random actions (``worldsim collect --epsilon``) it
gives everything from expert runs to random walks.

It reads what ``ExploreAgent`` reads (observation, the agent's world position, the grid's size),
never the grid itself, and builds on its map. Each step it takes the first errand it knows a way to,
in order of preference: walk onto a known goal; with a key in hand, open a known locked door;
without one, pick up a known key. Otherwise it explores. Its paths never cross lava.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX

from envs.minigrid.explore import _DIR_VEC, _DOOR, FORWARD, LEFT, RIGHT, TOGGLE, ExploreAgent

PICKUP = 3
_GOAL, _KEY = OBJECT_TO_IDX["goal"], OBJECT_TO_IDX["key"]
_EMPTY = OBJECT_TO_IDX["empty"]


class GoalSeeker(ExploreAgent):
    """``reset`` at each episode start, then ``act`` once per step (as ``ExploreAgent``)."""

    def __init__(self, view_size: int = 7, num_actions: int = 7, seed: int | None = None):
        super().__init__(view_size=view_size, num_actions=num_actions, noise=0.0, seed=seed)

    def reset(self, obs, agent_pos, grid_size, seed: int | None = None) -> None:
        self.carrying = False
        self.errand_to: tuple[tuple[int, int], int] | None = None   # (target cell, action) being walked to
        super().reset(obs, agent_pos, grid_size, seed=seed)

    def _observe(self, obs) -> bool:
        # The agent's own view cell shows what it carries (MiniGrid draws the carried object there).
        image = np.asarray(obs["image"])
        self.carrying = int(image[self.view_size // 2, self.view_size - 1, 0]) not in (_EMPTY,
                                                                                       OBJECT_TO_IDX["unseen"])
        return super()._observe(obs)

    def _errands(self) -> list[tuple[np.ndarray, int]]:
        """(cells to act on, the action that does it), most useful first, for what the map shows."""
        errands = [(self.obj == _GOAL, FORWARD)]
        if self.carrying:
            errands.append(((self.obj == _DOOR) & (self.state == STATE_TO_IDX["locked"]), TOGGLE))
        else:
            errands.append((self.obj == _KEY, PICKUP))
        return [(cells, action) for cells, action in errands if cells.any()]

    def _path_next_to(self, targets: np.ndarray) -> tuple[list[tuple[int, int]], tuple[int, int]] | None:
        """Shortest known path to a cell beside one of ``targets`` and that target; None if none is reachable."""
        passable = self._passable()
        passable[self.pos] = True
        parent = {self.pos: None}
        queue = deque([self.pos])
        while queue:
            cell = queue.popleft()
            for dx, dy in _DIR_VEC:
                nxt = (cell[0] + dx, cell[1] + dy)
                if not (0 <= nxt[0] < passable.shape[0] and 0 <= nxt[1] < passable.shape[1]):
                    continue
                if targets[nxt]:
                    path = []
                    while cell != self.pos:
                        path.append(cell)
                        cell = parent[cell]
                    return path[::-1], nxt
                if nxt not in parent and passable[nxt]:
                    parent[nxt] = cell
                    queue.append(nxt)
        return None

    def act(self, obs, agent_pos) -> int:
        self._track(obs, agent_pos)                            # pose, map and `carrying`; drops a stale path
        direction = int(obs["direction"])
        errands = self._errands()
        on_the_way = (self.path and self.errand_to is not None
                      and any(action == self.errand_to[1] and cells[self.errand_to[0]] for cells, action in errands))
        if not on_the_way:
            self.errand_to = None
            for cells, action in errands:              # the first errand with a known way there
                found = self._path_next_to(cells)
                if found is not None:
                    self.path, target = found
                    self.errand_to = (target, action)
                    break
        if self.errand_to is None:
            return self._explore(direction)                    # nothing to do yet: explore
        if self.path:
            return self._step_towards(direction)
        target, action = self.errand_to
        want = _DIR_VEC.index((target[0] - self.pos[0], target[1] - self.pos[1]))
        turn = (want - direction) % 4
        if turn == 0:
            self.errand_to = None                              # done; the next step looks afresh
            return action
        return LEFT if turn == 3 else RIGHT
