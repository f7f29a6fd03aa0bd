"""The policies of `worldsim collect`: ``random``, the scripted ones (MiniGrid's ``explore``, ``expert`` and
the memory tasks ``retrace:C`` / ``reasoning:C``; Memory Maze's ``walk`` and ``retrace:C``), a policy
trained by ``worldsim agent train`` (a folder) or a Stable-Baselines3 model ``.zip``, and ``EpsilonMix``,
which mixes any of them with random actions. Each acts for all of the collector's env copies at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from gymnasium import spaces

from envs.minigrid.explore import ExploreAgent
from envs.minigrid.goal_seeker import GoalSeeker
from envs.memory_maze_walks import MazeWalker, RetraceWalk
from envs.minigrid.memory_tasks import TASKS, parse_task
from worldsim.actions import ActionBox


def random_action(rng: np.random.Generator, num_actions: int, box: ActionBox | None):
    """One uniformly random action: an integer below num_actions, or a vector uniform in the box (standard
    normal in a component the box leaves unbounded)."""
    if box is None:
        return rng.integers(num_actions)
    low, high = np.array(box.low), np.array(box.high)
    bounded = np.isfinite(low) & np.isfinite(high)
    return np.where(bounded, rng.uniform(np.where(bounded, low, 0), np.where(bounded, high, 1)),
                    rng.standard_normal(box.dim)).astype(np.float32)


def _no_actions(num_envs: int, num_actions: int, box: ActionBox | None) -> np.ndarray:
    """Room for one action per env copy: integers, or a Box's vectors."""
    return np.zeros(num_envs, dtype=np.int64) if box is None else np.zeros((num_envs, box.dim), dtype=np.float32)


class RandomPolicy:
    """Uniform over the actions (Discrete, or a Box: ``random_action``); each episode's choices come from its
    own seed."""

    name = "random"
    reads_info = False          # True: start() and act() need each copy's info (the collector builds it then)

    def __init__(self, num_envs: int, num_actions: int, action_box: ActionBox | None = None):
        self.num_actions, self.action_box = num_actions, action_box
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size, info=None) -> None:
        self.rngs[slot] = np.random.default_rng(seed)

    def act(self, obs, agent_pos, active, infos=None) -> np.ndarray:
        actions = _no_actions(len(self.rngs), self.num_actions, self.action_box)
        for i in np.flatnonzero(active):
            actions[i] = random_action(self.rngs[i], self.num_actions, self.action_box)
        return actions


class ScriptedPolicy:
    """One scripted agent per env copy: ``ExploreAgent`` ("explore"), ``GoalSeeker`` ("expert"), or a
    memory task after a context walk of C steps (``envs.minigrid.memory_tasks``: "retrace:C", "reasoning:C")."""

    AGENTS = {"explore": ExploreAgent, "expert": GoalSeeker}
    reads_info = False

    @classmethod
    def parse(cls, spec: str):
        """A factory (view_size, num_actions) -> agent for a spec this class knows, else None."""
        if spec in cls.AGENTS:
            return cls.AGENTS[spec]
        task = parse_task(spec)
        if task is None:
            return None
        name, context = task
        return lambda **kw: TASKS[name](context, **kw)

    def __init__(self, name: str, num_envs: int, num_actions: int, view_size: int):
        self.name = name
        factory = self.parse(name)
        self.agents = [factory(view_size=view_size, num_actions=num_actions) for _ in range(num_envs)]

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size, info=None) -> None:
        self.agents[slot].reset(obs, agent_pos, grid_size, seed=seed)

    def act(self, obs, agent_pos, active, infos=None) -> np.ndarray:
        return np.array([agent.act({"image": obs["image"][i], "direction": obs["direction"][i]}, agent_pos[i])
                         if active[i] else 0 for i, agent in enumerate(self.agents)], dtype=np.int64)


class TrainedPolicy:
    """A policy written by ``worldsim agent train`` (a folder: native PPO or Stable-Baselines3) or a
    Stable-Baselines3 model zip, fed the observation it was trained on (checked at load). An SB3 zip
    holds pickles, which run code as they load: collect only with zips you trust."""

    reads_info = False

    def __init__(self, path: str | Path, num_actions: int, view_size: int, deterministic: bool = False,
                 image_shape: tuple[int, int, int] | None = None, action_box: ActionBox | None = None):
        from agents.training import load_policy, sb3_algorithm

        path = Path(path)
        if not path.exists() and Path(f"{path}.zip").is_file():
            path = Path(f"{path}.zip")
        if not path.exists():
            raise ValueError(f"--policy {str(path)!r}: no such file or folder; give 'random', 'explore', 'expert', "
                             "a folder written by `worldsim agent train` or a Stable-Baselines3 model .zip")
        if path.is_file() and path.suffix == ".safetensors":
            raise ValueError(f"--policy {path}: give the folder that holds it and its agent.json ({path.parent})")
        try:
            if path.is_file():
                sb3_algorithm(path)                    # refuse a non-SB3 file before anything is unpickled
            self.model, info = load_policy(path, device="cpu")
        except (ValueError, OSError) as e:
            raise ValueError(f"--policy {path}: {e}") from None
        self.deterministic = deterministic
        weights = path if path.is_file() else path / info.get("policy", "policy.zip")
        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        kind = info.get("algo") or type(self.model).__name__.lower()
        kind = kind if kind == "native-ppo" else f"sb3-{kind}"
        self.name = f"{kind}:{path.name}@{digest}" + (":deterministic" if deterministic else "")
        self._keys = self._fit(self.model.observation_space, view_size, path, image_shape)
        space, self.action_box = self.model.action_space, action_box
        if action_box is not None:
            if not isinstance(space, spaces.Box) or ActionBox.from_space(space, f"--policy {path}") != action_box:
                raise ValueError(f"--policy {path}: the model acts in {space}, the env in {action_box.space()}")
        elif not isinstance(space, spaces.Discrete) or int(space.n) != num_actions:
            raise ValueError(f"--policy {path}: the model acts in {space}, the env in Discrete({num_actions})")

    @staticmethod
    def _fit(model_space, v: int, path: Path, image_shape: tuple[int, int, int] | None = None):
        """None if the model reads the image alone, else the Dict keys it reads; ValueError if neither.
        With `image_shape` (an env of images, not MiniGrid) the model must read those images."""
        if image_shape is not None:
            h, w, c = image_shape
            if isinstance(model_space, spaces.Box) and model_space.shape in {(h, w, c), (c, h, w)}:
                return None
            raise ValueError(f"--policy {path}: the model observes {model_space}; this env shows images of "
                             f"{tuple(image_shape)}")

        def image_like(space):  # SB3 stores image spaces channel-first and transposes our [v, v, 3] itself
            return isinstance(space, spaces.Box) and space.shape in {(v, v, 3), (3, v, v)}

        if image_like(model_space):
            return None
        if isinstance(model_space, spaces.Dict) and "image" in model_space.spaces \
                and set(model_space.spaces) <= {"image", "direction"} and image_like(model_space["image"]) \
                and model_space.spaces.get("direction", spaces.Discrete(4)) == spaces.Discrete(4):
            return list(model_space.spaces)
        raise ValueError(
            f"--policy {path}: the model observes {model_space}, which does not fit this env. Supported: "
            f"the image alone, Box[{v}, {v}, 3] (as ImgObsWrapper gives), or Dict(image, direction); "
            "wrappers such as FlatObsWrapper or RGB images are not.")

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size, info=None) -> None:
        pass

    def act(self, obs, agent_pos, active, infos=None) -> np.ndarray:
        model_obs = obs["image"] if self._keys is None else {k: obs[k] for k in self._keys}
        actions, _ = self.model.predict(model_obs, deterministic=self.deterministic)
        if self.action_box is not None:              # SB3's predict clips them to the box
            return np.asarray(actions, dtype=np.float32).reshape(-1, self.action_box.dim)
        return np.asarray(actions, dtype=np.int64).reshape(-1)


class MazeWalkPolicy:
    """Memory Maze's scripted walks (``envs.memory_maze_walks``), steered by the ball's pose and the maze layout
    in the env's info: "walk" (to random cells along shortest paths, one after another) or the memory task
    "retrace:C" (a walk of C steps, then back through the same cells)."""

    reads_info = True

    @staticmethod
    def parse(spec: str):
        """A factory () -> walker for 'walk' or 'retrace:C', else None (ValueError for 'retrace' without a C)."""
        if spec == "walk":
            return MazeWalker
        task = parse_task(spec)
        if task is None or task[0] != "retrace":
            return None
        return lambda: RetraceWalk(task[1])

    def __init__(self, spec: str, num_envs: int):
        self.name = spec
        factory = self.parse(spec)
        self.walkers = [factory() for _ in range(num_envs)]

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size, info=None) -> None:
        if info is None or not {"maze_layout", "position", "heading", "cell"} <= set(info):
            raise ValueError(f"--policy {self.name!r} steers by the maze layout and the agent's pose in the env's "
                             f"info, as Memory Maze gives them; this env's info has {sorted(info or {})}")
        self.walkers[slot].reset(info, seed=seed)

    def act(self, obs, agent_pos, active, infos=None) -> np.ndarray:
        return np.array([walker.act(infos[i]) if active[i] else 0 for i, walker in enumerate(self.walkers)],
                        dtype=np.int64)


class EpsilonMix:
    """Another policy whose every action is replaced, with probability epsilon, by a uniform random one.

    Each episode draws its own epsilon uniformly from [low, high] (from its seed), so one dataset can
    span everything from the expert (epsilon 0) to a random walk (epsilon 1): a world model trained on
    it sees both the goal-reaching states an agent ends in and the wandering it starts from.
    """

    def __init__(self, base, num_envs: int, num_actions: int, low: float, high: float,
                 action_box: ActionBox | None = None):
        self.base, self.num_actions, self.low, self.high = base, num_actions, low, high
        self.action_box = action_box
        self.name = f"{base.name}+epsilon:{low:g}-{high:g}"
        self.reads_info = base.reads_info
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]
        self.epsilon = np.zeros(num_envs)

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size, info=None) -> None:
        self.base.start(slot, seed, obs, agent_pos, grid_size, info)
        # A stream apart from the base policy's (which may seed its own generator with `seed`).
        self.rngs[slot] = np.random.default_rng([seed, 0x5EED])
        self.epsilon[slot] = self.rngs[slot].uniform(self.low, self.high)

    def act(self, obs, agent_pos, active, infos=None) -> np.ndarray:
        actions = self.base.act(obs, agent_pos, active, infos)
        for i in np.flatnonzero(active):
            if self.rngs[i].random() < self.epsilon[i]:
                actions[i] = random_action(self.rngs[i], self.num_actions, self.action_box)
        return actions


def parse_epsilon(spec: str | float | None) -> tuple[float, float] | None:
    """'0.2' -> (0.2, 0.2); '0:1' -> (0.0, 1.0); None -> None. ValueError names the bad part."""
    if spec is None:
        return None
    try:
        parts = [float(v) for v in str(spec).split(":")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or not 0.0 <= parts[0] <= parts[1] <= 1.0:
        raise ValueError(f"--epsilon {spec!r}: expected a probability E or a range LOW:HIGH with "
                         "0 <= LOW <= HIGH <= 1")
    return parts[0], parts[1]


def make_policy(spec: str, num_envs: int, num_actions: int, view_size: int, deterministic: bool = False,
                epsilon: str | float | None = None, image_shape: tuple[int, int, int] | None = None,
                walkable: bool = False, action_box: ActionBox | None = None):
    """'random', 'explore', 'expert', a folder from `worldsim agent train` or an SB3 model zip -> a policy over
    ``num_envs`` env copies that see `view_size` x `view_size` cells, mixed with random actions when ``epsilon``
    (see ``parse_epsilon``) is given. `image_shape` is given for an env of images that is not MiniGrid: its
    policies are 'random' and trained ones that read those images, and when it is `walkable` (Memory Maze: its
    info gives the maze and the ball's pose) the walks 'walk' and 'retrace:C'. `action_box` is given for an env
    of Box actions (num_actions 0): random actions are drawn from it."""
    eps = parse_epsilon(epsilon)
    if spec == "random":
        pol = RandomPolicy(num_envs, num_actions, action_box)
    elif image_shape is not None and MazeWalkPolicy.parse(spec) is not None:
        if not walkable:
            raise ValueError(f"--policy {spec!r} steers by the maze and the agent's pose that Memory Maze gives in "
                             "its info; for this env give 'random', a folder written by `worldsim agent train` or "
                             "an SB3 model .zip")
        pol = MazeWalkPolicy(spec, num_envs)
    elif ScriptedPolicy.parse(spec) is not None:
        if image_shape is not None:
            raise ValueError(f"--policy {spec!r} is scripted for MiniGrid; for this env give 'random', 'walk' or "
                             "'retrace:C' (Memory Maze), a folder written by `worldsim agent train` or an SB3 "
                             "model .zip")
        pol = ScriptedPolicy(spec, num_envs, num_actions, view_size)
    elif spec == "walk":
        raise ValueError("--policy 'walk' is scripted for Memory Maze; a MiniGrid env walks with 'explore'")
    else:
        pol = TrainedPolicy(spec, num_actions, view_size, deterministic=deterministic, image_shape=image_shape,
                            action_box=action_box)
    if eps is None or eps == (0.0, 0.0):
        return pol
    return EpsilonMix(pol, num_envs, num_actions, *eps, action_box=action_box)
