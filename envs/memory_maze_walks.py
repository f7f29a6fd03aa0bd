"""Scripted walks through a Memory Maze, steered by the ball's pose in ``info`` (``envs.memory_maze``).

``MazeWalker`` goes from cell to cell along shortest paths on the maze layout, to floor cells drawn at
random: it covers the maze the way an exploring agent would, where random actions mostly spin in
place. ``RetraceWalk`` is the memory task of the long-context benchmarks: a context walk of C steps,
then back along the cells it went through, in reverse order, and along them again, so the test phase
shows places seen before, last seen longer and longer ago.

Steering: turn towards the next cell's centre when it is far off the heading, curve towards it when it
is a little off, go straight when it is ahead. The ball rolls on after a forward push, so a cell counts as
reached within ``REACHED`` of its centre.
"""

from __future__ import annotations

from collections import deque

import numpy as np

NOOP, FORWARD, LEFT, RIGHT, FORWARD_LEFT, FORWARD_RIGHT = range(6)    # envs.memory_maze.ACTIONS
REACHED = 0.35          # cells from a cell's centre that count as being there
TURN_IN_PLACE = np.radians(50)
CURVE = np.radians(12)
STUCK_STEPS = 40        # steps without reaching the next cell before the walker plans again


def shortest_path(layout: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells (x, y) from the one after `start` to `goal` over floor cells (layout[y, x] == 1), by breadth-first
    search; [] when `goal` is `start` or out of reach."""
    came_from = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        x, y = cell
        for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if (0 <= nxt[1] < layout.shape[0] and 0 <= nxt[0] < layout.shape[1] and layout[nxt[1], nxt[0]] == 1
                    and nxt not in came_from):
                came_from[nxt] = cell
                queue.append(nxt)
    if goal not in came_from or goal == start:
        return []
    path = [goal]
    while came_from[path[-1]] != start:
        path.append(came_from[path[-1]])
    return path[::-1]


def steer(position, heading, target) -> int:
    """The action that takes the ball from its pose towards the point `target` (x, y in cells)."""
    want = np.arctan2(target[1] - position[1], target[0] - position[0])
    have = np.arctan2(heading[1], heading[0])
    error = (want - have + np.pi) % (2 * np.pi) - np.pi          # > 0: the target is to the left (LEFT turns that way)
    if abs(error) > TURN_IN_PLACE:
        return LEFT if error > 0 else RIGHT
    if abs(error) > CURVE:
        return FORWARD_LEFT if error > 0 else FORWARD_RIGHT
    return FORWARD


class MazeWalker:
    """Walks to floor cells drawn at random, one after another, along shortest paths."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        self.route: deque[tuple[int, int]] = deque()
        self.since_progress = 0

    def reset(self, info: dict, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.route.clear()
        self.since_progress = 0      # steps since the ball last reached a cell of its route

    def next_goal(self, layout: np.ndarray, here: tuple[int, int]) -> list[tuple[int, int]]:
        """The cells to the next goal: a floor cell other than `here`, drawn uniformly."""
        ys, xs = np.nonzero(layout == 1)
        for _ in range(16):
            i = int(self.rng.integers(len(xs)))
            path = shortest_path(layout, here, (int(xs[i]), int(ys[i])))
            if path:
                return path
        return []

    def plan(self, info: dict) -> None:
        """A new route, to a random floor cell: the cells to walk through, in order."""
        self.route = deque(self.next_goal(info["maze_layout"], tuple(int(v) for v in info["cell"])))

    def act(self, info: dict) -> int:
        pos, here = info["position"], tuple(int(v) for v in info["cell"])
        while self.route and (np.hypot(*(pos - np.add(self.route[0], 0.5))) < REACHED or
                              (len(self.route) > 1 and self.route[1] == here)):
            self.route.popleft()                 # reached (or passed through to the one after)
            self.since_progress = 0
        self.since_progress += 1
        if self.since_progress > STUCK_STEPS:
            self.since_progress = 0
            self.route.appendleft(here)          # a corner caught the ball: back to the centre of its cell first
        if not self.route:
            self.plan(info)
            if not self.route:
                return int(self.rng.integers(6))
        return steer(pos, info["heading"], np.add(self.route[0], 0.5))


class RetraceWalk(MazeWalker):
    """A context walk of `context` steps (``MazeWalker``), then back through the cells it went through, in
    reverse order, to where it started, then along the walk's cells once more; then on to random cells. The
    way back shows the walk's places from the other side (a first-person view); the second walk shows them
    as the first did, long after."""

    def __init__(self, context: int, seed: int | None = None):
        super().__init__(seed)
        self.context = context

    def reset(self, info: dict, seed: int | None = None) -> None:
        super().reset(info, seed)
        self.steps = 0
        self.visited = [tuple(int(v) for v in info["cell"])]
        self.again: deque[tuple[int, int]] = deque()     # the walk's cells, for a second time

    def act(self, info: dict) -> int:
        if self.steps < self.context:
            here = tuple(int(v) for v in info["cell"])
            if here != self.visited[-1]:
                self.visited.append(here)
        elif self.steps == self.context:                 # the context walk is over: the way back
            self.route = deque(self.visited[-2::-1])
            self.since_progress = 0
            self.again = deque(self.visited[1:])
        self.steps += 1
        return super().act(info)

    def plan(self, info: dict) -> None:
        if self.again:                                   # back at the start: the walk once more
            self.route, self.again = self.again, deque()
        else:
            super().plan(info)
