"""A tiny env of images with continuous actions, for the tests of Box actions: a white square pushed by a
2-D action across a 36 x 36 image towards a red target in its middle (36 pixels: the smallest image the
agents' pixel CNN reads)."""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "WorldsimTest/PushSquare-v0"
SIDE, SQUARE, SPEED = 36, 9, 4.5


class PushSquareEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, (SIDE, SIDE, 3), dtype=np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.limit = float(SIDE - SQUARE)
        self.target = np.array([self.limit / 2, self.limit / 2])
        self.pos = self.target.copy()

    def _image(self):
        image = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
        t = self.target.astype(int)
        image[t[1] + 3:t[1] + 6, t[0] + 3:t[0] + 6, 0] = 255
        x, y = np.rint(self.pos).astype(int)
        image[y:y + SQUARE, x:x + SQUARE] = 255
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(0, self.limit, size=2)
        return self._image(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + SPEED * np.asarray(action, dtype=np.float64), 0, self.limit)
        reached = bool(np.abs(self.pos - self.target).max() < 1.0)
        return self._image(), float(reached), reached, False, {}


def register() -> str:
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=PushSquareEnv, max_episode_steps=16)
    return ENV_ID
