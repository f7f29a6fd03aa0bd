"""A cheap exploration policy for MiniGrid: frontier seeking on its own map, then long round trips.

A world model with long memory needs episodes that cover a whole layout and *come back* to places
seen long ago; a uniformly random policy dithers near its start (and ends at the goal early). This
agent builds a map from its own observations (each visible view cell placed in the world with the
agent's pose, through ``view_to_world``) and counts its visits per cell. It walks the shortest known
path to the nearest frontier: a reachable cell it has never stood on, or one next to a cell never
seen. Once none is left it picks far, rarely visited cells and walks there, so it crosses the layout
again and again. Now and then it takes a short burst of one random action (action persistence), so
the data also holds every action in every situation. It never steps onto lava or the goal (episodes
stay long; collect random episodes for goal-reaching data), opens closed doors on its way, and
treats locked doors and objects as walls.

It reads only the observation and the agent's world position and the grid's size (the collector
puts them in ``info``), never the grid itself.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX, STATE_TO_IDX

from envs.minigrid.visibility import view_to_world

LEFT, RIGHT, FORWARD, TOGGLE = 0, 1, 2, 5
_UNKNOWN = -1
_WALKABLE = (OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["floor"])
_DOOR, _LOCKED = OBJECT_TO_IDX["door"], STATE_TO_IDX["locked"]
_CLOSED = STATE_TO_IDX["closed"]
_ENDS_EPISODE = (OBJECT_TO_IDX["goal"], OBJECT_TO_IDX["lava"])
_DIR_VEC = [tuple(int(v) for v in vec) for vec in DIR_TO_VEC]


class ExploreAgent:
    """One env's explorer. ``reset`` at each episode start, then ``act`` once per step."""

    def __init__(self, view_size: int = 7, num_actions: int = 7, noise: float = 0.1,
                 max_burst: int = 3, seed: int | None = None):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be a probability in [0, 1]; got {noise}")
        if num_actions <= TOGGLE:
            raise ValueError(f"ExploreAgent needs MiniGrid's actions (left, right, forward, ..., toggle = {TOGGLE}); "
                             f"the env has only {num_actions}")
        self.view_size, self.num_actions = view_size, num_actions
        self.noise, self.max_burst = noise, max_burst
        self.rng = np.random.default_rng(seed)

    def reset(self, obs, agent_pos, grid_size, seed: int | None = None) -> None:
        """Forget the last episode; ``grid_size`` is (width, height) of the env's grid."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        width, height = (int(v) for v in grid_size)
        self.obj = np.full((width, height), _UNKNOWN, dtype=np.int16)
        self.state = np.zeros((width, height), dtype=np.int16)
        self.blocked = np.zeros((width, height), dtype=bool)
        self.visits = np.zeros((width, height), dtype=np.int64)
        self.path: list[tuple[int, int]] = []
        self.burst: list[int] = []
        self.pos = (int(agent_pos[0]), int(agent_pos[1]))
        self.last_forward_to: tuple[int, int] | None = None
        self.visits[self.pos] += 1
        self._observe(obs)

    # ---------------------------------------------------------------- map

    def _observe(self, obs) -> bool:
        """Write what the agent sees into the map; True if it saw a cell it had never seen."""
        image = np.asarray(obs["image"])
        wx, wy = view_to_world(self.pos, int(obs["direction"]), self.view_size)
        tokens = np.swapaxes(image, 0, 1)                      # [y, x, 3]: frame layout
        seen = tokens[..., 0] != OBJECT_TO_IDX["unseen"]
        seen[self.view_size - 1, self.view_size // 2] = False  # the agent's cell shows what it carries
        width, height = self.obj.shape
        seen &= (wx >= 0) & (wx < width) & (wy >= 0) & (wy < height)
        x, y = wx[seen], wy[seen]
        new = bool((self.obj[x, y] == _UNKNOWN).any())
        self.obj[x, y] = tokens[..., 0][seen]
        self.state[x, y] = tokens[..., 2][seen]
        if self.obj[self.pos] == _UNKNOWN:
            self.obj[self.pos] = OBJECT_TO_IDX["empty"]
        return new

    def _passable(self) -> np.ndarray:
        walk = np.isin(self.obj, _WALKABLE) | ((self.obj == _DOOR) & (self.state != _LOCKED))
        return walk & ~self.blocked

    def _frontier(self, passable: np.ndarray) -> np.ndarray:
        """Cells worth going to first: never stood on, or next to a cell never seen."""
        unknown = np.pad(self.obj == _UNKNOWN, 1)
        near_unknown = unknown[:-2, 1:-1] | unknown[2:, 1:-1] | unknown[1:-1, :-2] | unknown[1:-1, 2:]
        return passable & (near_unknown | (self.visits == 0))

    # ---------------------------------------------------------------- planning

    def _plan(self) -> None:
        """Shortest path to the nearest frontier, or else to a far, rarely visited cell."""
        passable = self._passable()
        passable[self.pos] = True
        frontier = self._frontier(passable)
        order = self.rng.permutation(4)                        # random tie-breaks between equal paths
        parent = {self.pos: None}
        dist = {self.pos: 0}
        queue = deque([self.pos])
        target = None
        while queue:
            cell = queue.popleft()
            if frontier[cell] and cell != self.pos:
                target = cell
                break
            for k in order:
                dx, dy = _DIR_VEC[k]
                nxt = (cell[0] + dx, cell[1] + dy)
                if nxt not in parent and 0 <= nxt[0] < passable.shape[0] and 0 <= nxt[1] < passable.shape[1] \
                        and passable[nxt]:
                    parent[nxt] = cell
                    dist[nxt] = dist[cell] + 1
                    queue.append(nxt)
        if target is None:
            cells = [c for c in dist if c != self.pos]
            if not cells:
                self.path = []
                return
            far = np.array([dist[c] for c in cells], dtype=np.float64)
            rare = 1.0 / (1.0 + self.visits[tuple(np.array(cells).T)]) ** 2
            weight = far * rare
            target = cells[self.rng.choice(len(cells), p=weight / weight.sum())]
        path = []
        while target != self.pos:
            path.append(target)
            target = parent[target]
        self.path = path[::-1]

    def _step_towards(self, direction: int) -> int:
        nxt = self.path[0]
        want = _DIR_VEC.index((nxt[0] - self.pos[0], nxt[1] - self.pos[1]))
        turn = (want - direction) % 4
        if turn == 1:
            return RIGHT
        if turn == 3:
            return LEFT
        if turn == 2:
            return int(self.rng.choice([LEFT, RIGHT]))
        if self.obj[nxt] == _DOOR and self.state[nxt] == _CLOSED:
            return TOGGLE
        self.last_forward_to = nxt
        return FORWARD

    # ---------------------------------------------------------------- acting

    def act(self, obs, agent_pos) -> int:
        """The action for this observation; ``agent_pos`` is the agent's world (x, y) now."""
        self._track(obs, agent_pos)
        return self._explore(int(obs["direction"]))

    def _track(self, obs, agent_pos) -> None:
        """Update pose, visits, path progress and the map from this step's observation."""
        pos = (int(agent_pos[0]), int(agent_pos[1]))
        if self.last_forward_to is not None and pos != self.last_forward_to and pos == self.pos:
            self.blocked[self.last_forward_to] = True          # the map said free, the world said no
            self.path = []
        self.last_forward_to = None
        if pos != self.pos:
            self.visits[pos] += 1
            if self.path and self.path[0] == pos:
                self.path.pop(0)
            else:
                self.path = []                                 # pushed off the plan (a random burst)
        self.pos = pos
        if self._observe(obs):
            self.path = []                                     # new cells: the nearest frontier may have moved

    def _explore(self, direction: int) -> int:
        """The exploring action: a random burst, or the next step towards a frontier or far cell."""
        if self.burst:
            return self._safe(self.burst.pop(), direction)
        if self.rng.random() < self.noise:
            action = int(self.rng.integers(self.num_actions))
            self.burst = [action] * int(self.rng.integers(self.max_burst))
            return self._safe(action, direction)
        if not self.path:
            self._plan()
        if not self.path:
            return self._safe(int(self.rng.choice([LEFT, RIGHT, FORWARD])), direction)
        return self._step_towards(direction)

    def _safe(self, action: int, direction: int) -> int:
        """A random action, but never a step onto lava or the goal (it would end the episode)."""
        dx, dy = _DIR_VEC[direction]
        ahead = (self.pos[0] + dx, self.pos[1] + dy)
        inside = 0 <= ahead[0] < self.obj.shape[0] and 0 <= ahead[1] < self.obj.shape[1]
        if action == FORWARD and inside and self.obj[ahead] in _ENDS_EPISODE:
            self.burst = []
            return int(self.rng.choice([LEFT, RIGHT]))
        return action
