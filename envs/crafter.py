"""Crafter (Hafner, 2021) as a Gymnasium env: 64 x 64 RGB frames, 17 actions, 22 achievements.

The `crafter` package speaks the old Gym API (``reset() -> obs``, ``step() -> (obs, reward, done,
info)``) and seeds a world once, at construction. This adapter gives Gymnasium's API: ``reset(seed=)``
makes the world of that seed (the same seed, the same world), an episode ends ``terminated`` when the
player dies and ``truncated`` at the time limit (``TimeLimit``, 10,000 steps as in the paper), and
``info["achievements"]`` counts each achievement unlocked so far in the episode, which the Crafter
score is computed from (``crafter_score``).

The ids ``CrafterReward-v1`` (reward: +1 per new achievement, +-0.1 per health point) and
``CrafterNoReward-v1`` (reward 0) are registered when ``envs`` is imported; the package is needed
only to make one.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

EPISODE_STEPS = 10_000          # the benchmark's time limit


def _crafter():
    try:
        import crafter
    except ImportError:
        raise ImportError("the Crafter envs need the `crafter` package: pip install crafter") from None
    return crafter


class CrafterEnv(gym.Env):
    """One Crafter world per reset, seeded by the reset's seed (or drawn from the env's generator)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, reward: bool = True, size: int = 64, area: int = 64, render_mode: str | None = None):
        """`size`: pixels on a side of a frame; `area`: cells on a side of the world (smaller worlds are made
        faster: a 64 x 64 world takes about a second of pure-Python noise to generate)."""
        crafter = _crafter()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array'; got {render_mode!r}")
        if isinstance(area, bool) or not isinstance(area, int) or area < 9:
            raise ValueError(f"area must be an int of at least 9 (the player's view is 9 x 9 cells); got {area!r}")
        self.render_mode = render_mode
        # length=None: the TimeLimit of the registration ends episodes, as truncations.
        self._env = crafter.Env(area=(area, area), size=(size, size), reward=reward, length=None, seed=0)
        self.observation_space = spaces.Box(0, 255, (size, size, 3), dtype=np.uint8)
        self.action_space = spaces.Discrete(len(crafter.constants.actions))
        self.achievement_names = tuple(sorted(crafter.constants.achievements))
        self._last_obs: np.ndarray | None = None

    def _info(self, achievements: dict | None = None) -> dict:
        counts = achievements or {}
        return {"achievements": np.array([counts.get(name, 0) for name in self.achievement_names], dtype=np.int64)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # crafter makes episode k's world from hash((its seed, k)): fix both so a seed names one world
        self._env._seed = int(self.np_random.integers(2 ** 31 - 1)) if seed is None else int(seed)
        self._env._episode = 0
        self._last_obs = self._env.reset()
        return self._last_obs, self._info()

    def step(self, action):
        if self._last_obs is None:
            raise RuntimeError("step() before reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}); got {action!r}")
        obs, reward, done, info = self._env.step(int(action))
        self._last_obs = obs
        died = done and info["discount"] == 0.0
        return obs, float(reward), bool(died), False, self._info(info["achievements"])

    def render(self):
        return None if self._last_obs is None else self._last_obs.copy()


def crafter_score(achievements: np.ndarray, resamples: int = 1000, confidence: float = 0.95) -> dict:
    """The Crafter score of episodes: ``achievements`` [episodes, 22] counts (``info["achievements"]`` at
    each episode's end). Each achievement's success rate s_i is the share of episodes that unlocked it at
    least once, in percent; the score is exp(mean(ln(1 + s_i))) - 1 (Hafner, 2021). ``score_ci`` is a
    percentile bootstrap over episodes (`resamples` draws, a fixed generator, so it is reproducible)."""
    achievements = np.asarray(achievements)
    if achievements.ndim != 2 or len(achievements) == 0:
        raise ValueError(f"achievements must be [episodes, achievements] with at least one episode; got shape "
                         f"{achievements.shape}")
    unlocked = achievements > 0

    def score(rows: np.ndarray) -> np.ndarray:                 # rows [..., episodes, achievements] -> [...]
        return np.exp(np.log1p(100.0 * rows.mean(axis=-2)).mean(axis=-1)) - 1.0

    draws = np.random.default_rng(0).integers(len(unlocked), size=(resamples, len(unlocked)))
    lo, hi = np.quantile(score(unlocked[draws]), [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"score": float(score(unlocked)), "score_ci": [float(lo), float(hi)],
            "success_rates": (100.0 * unlocked.mean(axis=0)).tolist()}


def register() -> None:
    """Register the Crafter ids with gymnasium (idempotent; crafter itself is imported only by gym.make)."""
    for name, reward in (("CrafterReward-v1", True), ("CrafterNoReward-v1", False)):
        if name not in gym.registry:
            gym.register(name, entry_point="envs.crafter:CrafterEnv", kwargs={"reward": reward},
                         max_episode_steps=EPISODE_STEPS)
