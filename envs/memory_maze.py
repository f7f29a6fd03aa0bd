"""Memory Maze (Pasukonis et al., 2022) as a Gymnasium env: 64 x 64 RGB frames seen from a ball that rolls
through a 3D maze, 6 actions. Long-context video world models are scored on it (Po et al., 2025).

The `memory-maze` package builds each maze as a dm_env environment (MuJoCo, drawn off screen through EGL:
``MUJOCO_GL=egl`` unless set otherwise), seeded once, at construction. This adapter gives Gymnasium's API:
``reset(seed=s)`` builds the maze of seed s (the same seed, the same maze, start and targets), ``reset()``
without one goes on to the env's next maze. The reward is +1 each time the ball reaches the target whose
colour the frame's border shows. An episode never terminates: it is truncated at the package's time limit
(``EPISODE_STEPS``: 1,000 steps for 9x9 at its 4 steps a second).

``info`` says where the ball is, which the frames show only from the inside: ``position`` (x, y in cells,
floats), ``heading`` (the unit vector it faces), ``cell`` (the x, y of its cell) and ``direction`` (its
heading rounded to one of 0: +x, 1: +y, 2: -x, 3: -y, as MiniGrid counts them), ``target_pos`` (the
current target's cell centre) and ``maze_layout`` (1 where there is floor, indexed [y, x]). `collect`
records the cell and direction as each frame's pose, and the scripted walks (``envs.memory_maze_walks``)
steer by them; a policy trained on frames never sees them.

The ids ``MemoryMaze-9x9-v0`` ... ``MemoryMaze-15x15-v0`` are registered when ``envs`` is imported; the
package is needed only to make one.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import types

import gymnasium as gym
import numpy as np
from gymnasium import spaces

# maze size -> (the package's builder, episode steps: its time limit in seconds x 4 control steps a second)
SIZES = {"9x9": ("memory_maze_9x9", 1000), "11x11": ("memory_maze_11x11", 2000),
         "13x13": ("memory_maze_13x13", 3000), "15x15": ("memory_maze_15x15", 4000)}
ACTIONS = ("noop", "forward", "left", "right", "forward_left", "forward_right")   # the package's discrete set


def _tasks() -> types.ModuleType:
    """memory_maze.tasks. The package's own __init__ registers ids with the retired `gym` package and fails
    when it is missing, so the package is entered without running that file (the ids are registered with
    gymnasium here instead)."""
    if "memory_maze" not in sys.modules:
        spec = importlib.util.find_spec("memory_maze")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the Memory Maze envs need the `memory-maze` package: pip install memory-maze")
        os.environ.setdefault("MUJOCO_GL", "egl")          # headless drawing; must be set before MuJoCo loads
        package = types.ModuleType("memory_maze")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["memory_maze"] = package
        # dm_control says this at every reset of the package's rolling ball, which has no free joint by design
        logging.getLogger("absl").addFilter(lambda record: "Cannot set velocity on Entity" not in record.getMessage())
    return importlib.import_module("memory_maze.tasks")


class MemoryMazeEnv(gym.Env):
    """One maze per reset, built from the reset's seed (or the next of the env's own sequence)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: str = "9x9", render_mode: str | None = None):
        if size not in SIZES:
            raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        self._build = getattr(_tasks(), SIZES[size][0])
        self.size = size
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0, 255, (64, 64, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self._env = None
        self._last_image: np.ndarray | None = None

    def _view(self, timestep):
        obs = timestep.observation
        self._last_image = np.asarray(obs["image"], dtype=np.uint8)
        position = np.asarray(obs["agent_pos"], dtype=np.float64)
        heading = np.asarray(obs["agent_dir"], dtype=np.float64)
        angle = np.arctan2(heading[1], heading[0])
        info = {"position": position, "heading": heading,
                "cell": np.floor(position).astype(np.int64),
                "direction": int(np.round(angle / (np.pi / 2))) % 4,
                "target_pos": np.asarray(obs["target_pos"], dtype=np.float64),
                "maze_layout": np.asarray(obs["maze_layout"], dtype=np.int64)}
        return self._last_image.copy(), info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._env is None:
            self.close()
            maze_seed = int(seed) if seed is not None else int(self.np_random.integers(2 ** 31 - 1))
            self._env = self._build(seed=maze_seed, global_observables=True)
        return self._view(self._env.reset())

    def step(self, action):
        if self._last_image is None:
            raise RuntimeError("step() before reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}) ({', '.join(ACTIONS)}); "
                             f"got {action!r}")
        timestep = self._env.step(int(action))
        obs, info = self._view(timestep)
        # the package's time limit ends every episode (LAST); nothing in the maze ends one earlier
        return obs, float(timestep.reward or 0.0), False, bool(timestep.last()), info

    def render(self):
        return None if self._last_image is None else self._last_image.copy()

    def close(self):
        if self._env is not None:
            self._env.close()          # frees the maze's physics and its drawing context
            self._env = None


def register() -> None:
    """Register MemoryMaze-9x9-v0 ... MemoryMaze-15x15-v0 with gymnasium (idempotent; memory_maze is imported
    only by gym.make)."""
    for size, (_, steps) in SIZES.items():
        name = f"MemoryMaze-{size}-v0"
        if name not in gym.registry:
            gym.register(name, entry_point="envs.memory_maze:MemoryMazeEnv", kwargs={"size": size},
                         max_episode_steps=steps)
