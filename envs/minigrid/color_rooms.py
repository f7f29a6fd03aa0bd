"""ColorRooms: four rooms whose every floor tile is painted a random colour, fresh each episode.

The memory benchmark's env. In a stock MiniGrid layout almost every cell is plain floor or wall, so a
model with no memory at all predicts a cell it saw long ago nearly right from priors alone. Here a
tile's colour (one of minigrid's six) is drawn independently per tile and per episode: it cannot be
inferred from anything but having seen that tile, so accuracy on remembered cells measures memory.

    gym.make("MiniGrid-ColorRooms-v0")               # 19 x 19, walls and doorways as FourRooms
    gym.make("MiniGrid-ColorRooms-13x13-v0")         # 13 x 13: smaller rooms, cheaper map-view frames
    gym.make("MiniGrid-ColorRooms-v0", size=25)

The layout is FourRooms' (four rooms joined by one random doorway in each inner wall) at `size`,
with no goal: episodes last until `max_steps`, as the memory tasks' long walks need. Floor tiles are
walkable (``Floor``), so the exploration and memory-task policies move over them as over empty cells.
"""

from __future__ import annotations

from minigrid.core.constants import COLOR_NAMES
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Floor
from minigrid.envs.fourrooms import FourRoomsEnv
from minigrid.minigrid_env import MiniGridEnv

ENV_ID = "MiniGrid-ColorRooms-v0"
ENV_IDS = {ENV_ID: 19, "MiniGrid-ColorRooms-13x13-v0": 13}     # id -> size, registered by envs.minigrid


class ColorRoomsEnv(FourRoomsEnv):
    def __init__(self, size: int = 19, max_steps: int = 1000, **kwargs):
        if size < 7:
            raise ValueError(f"ColorRooms needs size >= 7 (four rooms with walls); got {size}")
        self._agent_default_pos = None
        self._goal_default_pos = None
        self.size = size
        # FourRoomsEnv.__init__ fixes the size at 19; MiniGridEnv's takes ours.
        MiniGridEnv.__init__(self, mission_space=MissionSpace(mission_func=self._gen_mission),
                             width=size, height=size, max_steps=max_steps, **kwargs)

    @staticmethod
    def _gen_mission():
        return "remember the floor"

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        for x in range(width):
            for y in range(height):
                obj = self.grid.get(x, y)
                if obj is None or obj.type == "goal":          # the goal, too, becomes floor
                    self.grid.set(x, y, Floor(COLOR_NAMES[self._rand_int(0, len(COLOR_NAMES))]))
