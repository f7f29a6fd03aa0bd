"""`worldsim collect`: run a policy in many copies of a real env and write episodes to disk.

MiniGrid envs are recorded in one of their views (``VIEWS``); any other Gymnasium env with image
observations and Discrete actions (Crafter, an Atari game, your own) is recorded as its images, made into
tokens by a frame tokenizer (``worldsim tokenizer``). Such an env has no pose: its episodes record the pose
as zeros.

Episode k of a dataset resets its env with seed ``seed + k`` (and seeds its policy's randomness with
it), so a dataset is a seed range. Copies of the env step together in a gymnasium vector env with
autoreset off: when one finishes, the collector stores it and resets just that copy with the next
unused seed. Finished episodes are written in shards (``worldsim.data.dataset.DatasetWriter``); a
re-run with the same ``--out`` and settings collects only the seeds still missing, so an interrupted
run loses at most the episodes that had not reached disk.

Policies (``train.collect_policies``): ``random`` (uniform over the action space), ``explore``
(``envs.minigrid.explore``: covers the layout and comes back), ``expert`` (``envs.minigrid.goal_seeker``: fetches keys, opens doors,
walks to the goal), or the path of a Stable-Baselines3 model ``.zip`` (PPO, A2C or DQN) that
acts on MiniGrid's image (as with ``ImgObsWrapper``) or on a Dict of image and direction. ``epsilon``
mixes any of them with random actions, so one dataset can hold an expert's goal-reaching episodes
and everything between them and a random walk. The command line: ``train.collect_cli``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from minigrid.minigrid_env import MiniGridEnv
from tqdm import tqdm

from envs.images.codec import ImageCodec
from envs.images.sources import as_image_env
from envs.memory_maze import MemoryMazeEnv
from envs.minigrid import MiniGridCodec, MiniGridMapCodec, MiniGridWorldCodec
from envs.minigrid.world_view import world_grid
from worldsim.actions import ActionBox
from worldsim.checks import positive_int
from worldsim.data.dataset import DatasetWriter, Episode, frame_dtype

from .collect_policies import make_policy


class _CollectorView(gym.Wrapper):
    """What the collector reads of an env copy: ``_view(obs, info)`` turns each reset's and step's
    observation and info into {"image", "direction"} and info with the pose (and the frame to record)."""

    def _view(self, obs, info):
        raise NotImplementedError

    def reset(self, **kwargs):
        return self._view(*self.env.reset(**kwargs))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._view(obs, info)
        return obs, reward, terminated, truncated, info


class PoseView(_CollectorView):
    """Observation reduced to what the codec reads (image, direction); the world pose and grid size in
    info, with ``world=True`` the whole state's grid (``world_grid``, what the world view records), and
    with ``rgb_size`` the agent's view drawn in pixels, `rgb_size` on a side (what the RGB view records).

    The pose is what memory metrics and the explore policy need; the mission string is dropped (no
    frame carries it, and it is costly to pass between processes).
    """

    def __init__(self, env: gym.Env, world: bool = False, rgb_size: int | None = None):
        super().__init__(env)
        space = env.observation_space
        self.observation_space = spaces.Dict({"image": space["image"], "direction": space["direction"]})
        self.world = world
        self.rgb_tile = rgb_size // env.unwrapped.agent_view_size if rgb_size else None

    def _view(self, obs, info):
        u = self.env.unwrapped
        info = dict(info, agent_pos=np.array(u.agent_pos, dtype=np.int64), agent_dir=int(u.agent_dir),
                    grid_size=np.array((u.width, u.height), dtype=np.int64))
        if self.world:
            info["world"] = world_grid(self.env)[0]
        if self.rgb_tile:
            info["rgb"] = u.get_frame(tile_size=self.rgb_tile, agent_pov=True)   # as RGBImgPartialObsWrapper draws it
        return {"image": obs["image"], "direction": obs["direction"]}, info


class ImageView(_CollectorView):
    """An env of images (not MiniGrid) seen the way the collector reads MiniGrid's ``PoseView``: the
    observation as {"image", "direction"}, info with the frame to record as "rgb" and the pose to record:
    the agent's ``cell`` and ``direction`` (0-3) where the env's info gives them (Memory Maze does), else
    zeros. The env's own info stays, for scripted policies that steer by it."""

    def __init__(self, env: gym.Env, image_shape: tuple[int, int, int]):
        super().__init__(as_image_env(env, image_shape))
        self.observation_space = spaces.Dict({"image": self.env.observation_space, "direction": spaces.Discrete(4)})

    def _view(self, obs, info):
        cell = np.asarray(info.get("cell", np.zeros(2)), dtype=np.int64)
        direction = int(info.get("direction", 0))
        info = dict(info, rgb=obs, agent_pos=cell, agent_dir=direction, grid_size=np.zeros(2, dtype=np.int64))
        return {"image": obs, "direction": direction}, info


def _env_kwargs(max_steps: int | None, is_minigrid: bool = True) -> dict:
    """gym.make's kwargs for a step limit: MiniGrid's own `max_steps`, else gymnasium's TimeLimit."""
    if max_steps is None:
        return {}
    return {"max_steps": int(max_steps)} if is_minigrid else {"max_episode_steps": int(max_steps)}


# --view: what a recorded frame shows ("rgb": the agent's view in pixels, through a tokenizer)
VIEWS = {"ego": MiniGridCodec, "map": MiniGridMapCodec, "world": MiniGridWorldCodec, "rgb": ImageCodec}


Codec = MiniGridCodec | MiniGridMapCodec | MiniGridWorldCodec | ImageCodec


def _rgb_codec(env, tokenizer: str | Path | None) -> ImageCodec:
    """The image codec of the tokenizer in folder `tokenizer`, checked against the env's images (a MiniGrid
    env's RGB partial view)."""
    if tokenizer is None:
        raise ValueError("view 'rgb' records frames through a frame tokenizer: pass tokenizer, a folder written by "
                         "`worldsim tokenizer` for this env")
    codec = ImageCodec.from_tokenizer_folder(tokenizer)
    if not isinstance(env.unwrapped, MiniGridEnv):
        as_image_env(env, codec.image_shape)             # ValueError naming the env and both shapes
        return codec
    side = env.unwrapped.agent_view_size
    h, w, c = codec.image_shape
    if h != w or h % side or c != 3:
        raise ValueError(f"tokenizer {str(tokenizer)!r} reads images of {codec.image_shape}; the RGB view of "
                         f"{env.spec.id} is {side} x {side} cells of square tiles, 3 channels")
    return codec


@dataclass(frozen=True)
class EnvFacts:
    """What the collector needs to know of an env before it runs copies of it."""

    codec: Codec
    num_actions: int
    max_steps: int                  # the episode step limit
    view_size: int                  # cells on a side of a MiniGrid agent's view (0 for other envs)
    is_minigrid: bool
    view: str                       # the view recorded (an env of images: "rgb", its images)
    walkable: bool = False          # Memory Maze: its info gives the maze and the ball's pose, the walks steer by them
    action_box: ActionBox | None = None   # an env of Box actions (num_actions 0): their bounds


def inspect_env(env_id: str, max_steps: int | None = None, view: str | None = None,
                tokenizer: str | Path | None = None) -> EnvFacts:
    """What to know of env `env_id` to collect from it, or a ValueError that says what is wrong.

    A MiniGrid env records one of its views: "ego" the agent's egocentric view, "map" the same cells on the
    world grid, "world" (its default) the whole grid, "rgb" the agent's view in pixels through the tokenizer
    saved in folder `tokenizer`. Any other env must observe images (uint8 H x W x C) and act in Discrete
    actions or a Box of floats of shape (N,); it records its images, "rgb", through the tokenizer."""
    if view is not None and view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}; got {view!r}")
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown env id {env_id!r} ({e}); give a registered gymnasium id (for an env of your "
                         "own, register it and call train.collect.collect from Python)") from None
    if max_steps is not None and (isinstance(max_steps, bool) or int(max_steps) < 1):
        raise ValueError(f"max_steps must be a positive integer; got {max_steps!r}")
    env = gym.make(env_id)
    try:
        is_minigrid = isinstance(env.unwrapped, MiniGridEnv)
        action_box = None
        if not isinstance(env.action_space, spaces.Discrete):
            if is_minigrid:
                raise ValueError(f"{env_id} has action space {env.action_space}; collect needs Discrete actions")
            action_box = ActionBox.from_space(env.action_space, env_id)   # a ValueError unless a Box (N,)
        if not is_minigrid:
            try:
                as_image_env(env)
            except ValueError as e:
                raise ValueError(f"{e}; collect records MiniGrid envs, and other envs of images") from None
            if view not in (None, "rgb"):
                raise ValueError(f"view {view!r} is MiniGrid's; {env_id} is not a MiniGrid env "
                                 f"({type(env.unwrapped).__name__}): its frames are its images, view 'rgb'")
            codec = _rgb_codec(env, tokenizer)
            limit = max_steps if max_steps is not None else env.spec.max_episode_steps
            if limit is None:
                raise ValueError(f"{env_id} registers no episode step limit (max_episode_steps): pass max_steps")
            return EnvFacts(codec, 0 if action_box else int(env.action_space.n), int(limit), 0, False, "rgb",
                            walkable=isinstance(env.unwrapped, MemoryMazeEnv), action_box=action_box)
        view = view or "world"
        if max_steps is not None:
            env.close()
            env = gym.make(env_id, **_env_kwargs(max_steps))
        codec = _rgb_codec(env, tokenizer) if view == "rgb" else VIEWS[view].for_env(env)
        return EnvFacts(codec, int(env.action_space.n), int(env.unwrapped.max_steps),
                        int(env.unwrapped.agent_view_size), True, view)
    finally:
        env.close()


# ---------------------------------------------------------------------------------------- collect


def _one_info(info: dict, i: int) -> dict:
    """Copy i's entries of a vector env's info."""
    return {k: v[i] for k, v in info.items() if not k.startswith("_")}


def _recorded(obs, info, view: str) -> np.ndarray:
    """What the codec encodes for each env copy: the whole grid (world view), the view in pixels (RGB
    view) or the observed image."""
    return info["world"] if view == "world" else info["rgb"] if view == "rgb" else obs["image"]


class _Recorder:
    """The growing record of one env copy's current episode."""

    def __init__(self, seed: int, obs_image, obs_dir, pos):
        self.seed = seed
        self.images, self.dirs, self.pos = [obs_image], [obs_dir], [pos]
        self.actions, self.rewards, self.terminated, self.truncated = [], [], [], []

    def add(self, action, reward, terminated, truncated, obs_image, obs_dir, pos) -> None:
        self.actions.append(action)
        self.rewards.append(reward)
        self.terminated.append(terminated)
        self.truncated.append(truncated)
        self.images.append(obs_image)
        self.dirs.append(obs_dir)
        self.pos.append(pos)

    def episode(self, env_id: str, codec: Codec) -> Episode:
        directions = np.array(self.dirs, dtype=np.int64)
        frames = codec.encode_episode(np.stack(self.images), directions, np.stack(self.pos)).numpy()
        actions = np.array(self.actions)         # [T] Discrete, or [T, A] a Box's vectors
        return Episode(frames=frames.astype(frame_dtype(codec.vocab_size)),
                       actions=actions.astype(np.float32 if actions.ndim == 2 else np.int64),
                       rewards=np.array(self.rewards, dtype=np.float32),
                       terminated=np.array(self.terminated, dtype=bool),
                       truncated=np.array(self.truncated, dtype=bool),
                       agent_pos=np.array(self.pos, dtype=np.int16),
                       agent_dir=directions.astype(np.int8), env_id=env_id, seed=self.seed)


def collect(env_id: str, policy: str = "random", episodes: int = 100, out: str | Path = "data",
            max_steps: int | None = None, num_envs: int = 4, seed: int = 0, shard_episodes: int = 64,
            vectorization: str = "sync", deterministic: bool = False, progress: bool | None = None,
            epsilon: str | float | None = None, view: str | None = None, tokenizer: str | Path | None = None) -> dict:
    """Collect until ``out`` holds episodes with seeds ``seed .. seed + episodes - 1``; returns a summary.

    ``max_steps`` replaces the env's own episode limit (None keeps it). ``vectorization`` is
    gymnasium's "sync" (one process) or "async" (one process per env copy). ``epsilon`` mixes
    the policy with random actions (``EpsilonMix``): a probability, or a range "LOW:HIGH" drawn per episode.
    ``view`` picks what a frame of a MiniGrid env shows: "ego" the agent's view, "map" the same cells on
    the world grid (``envs.minigrid.map_view``), "world" (the default) the whole state
    (``envs.minigrid.world_view``), "rgb" the agent's view in pixels as tokens of the frame tokenizer in
    folder ``tokenizer``, which is copied into ``out``. Any other env of images is recorded as its images
    through ``tokenizer`` ("rgb"), with the policy 'random', an agent trained on its images, or an SB3 model
    of them. Policies act on the env's own observation either way.
    """
    for name, value in (("episodes", episodes), ("num_envs", num_envs), ("shard_episodes", shard_episodes)):
        positive_int(name, value)
    positive_int("seed", seed, allow_zero=True)         # gymnasium refuses negative reset seeds
    if vectorization not in ("sync", "async"):
        raise ValueError(f"vectorization must be 'sync' or 'async'; got {vectorization!r}")
    facts = inspect_env(env_id, max_steps, view, tokenizer)
    codec, num_actions, env_max_steps, view = facts.codec, facts.num_actions, facts.max_steps, facts.view
    num_envs = min(num_envs, episodes)
    pol = make_policy(policy, num_envs, num_actions, facts.view_size, deterministic, epsilon,
                      image_shape=None if facts.is_minigrid else codec.image_shape, walkable=facts.walkable,
                      action_box=facts.action_box)
    writer = DatasetWriter(out, {"env_id": env_id, "codec": codec.config, "vocab_size": codec.vocab_size,
                                 "frame_shape": list(codec.frame_shape), "num_actions": num_actions,
                                 "policy": pol.name, "max_steps": env_max_steps, "seed": int(seed),
                                 "action_box": facts.action_box and facts.action_box.to_json()})
    if isinstance(codec, ImageCodec):
        codec.save_files(out)                     # the tokenizer travels with the frames it made
    done_seeds = writer.seeds_done
    todo = deque(s for s in range(seed, seed + episodes) if s not in done_seeds)
    summary = {"out": str(out), "already_there": len(done_seeds & set(range(seed, seed + episodes))),
               "collected_episodes": 0, "collected_steps": 0, "seconds": 0.0, "steps_per_s": 0.0}
    if not todo:
        summary["dataset"] = writer.manifest["totals"]
        return summary

    start = time.perf_counter()
    n = min(num_envs, len(todo))
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode=vectorization,
                        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED},
                        wrappers=[partial(PoseView, world=view == "world",
                                          rgb_size=codec.image_shape[0] if view == "rgb" else None)
                                  if facts.is_minigrid else partial(ImageView, image_shape=codec.image_shape)],
                        **_env_kwargs(max_steps, facts.is_minigrid))
    bar = tqdm(total=len(todo), unit="ep", desc=f"collect {env_id}", disable=None if progress is None else not progress,
               dynamic_ncols=True)
    pending: list[Episode] = []
    steps = collected = 0
    try:
        seeds = [todo.popleft() for _ in range(n)]
        obs, info = envs.reset(seed=seeds)
        pos = np.array(info["agent_pos"], dtype=np.int64)
        shown = _recorded(obs, info, view)
        # each copy's latest info, for the policies that steer by it (a reset's info holds only the copies reset)
        infos = [_one_info(info, i) for i in range(n)] if pol.reads_info else [None] * n
        recs = [_Recorder(s, shown[i], obs["direction"][i], pos[i]) for i, s in enumerate(seeds)]
        for i, s in enumerate(seeds):
            pol.start(i, s, {"image": obs["image"][i], "direction": obs["direction"][i]}, pos[i], info["grid_size"][i],
                      infos[i])
        active = np.ones(n, dtype=bool)
        while active.any():
            actions = pol.act(obs, pos, active, infos)
            obs, rewards, terminated, truncated, info = envs.step(actions)
            pos = np.array(info["agent_pos"], dtype=np.int64)
            if pol.reads_info:
                infos = [_one_info(info, i) for i in range(n)]
            shown = _recorded(obs, info, view)
            for i in np.flatnonzero(active):
                action = np.array(actions[i]) if facts.action_box else int(actions[i])
                recs[i].add(action, float(rewards[i]), bool(terminated[i]), bool(truncated[i]),
                            shown[i], obs["direction"][i], pos[i])
            steps += int(active.sum())
            ended = np.asarray(terminated | truncated)
            finished = np.flatnonzero(active & ended)
            if not ended.any():
                continue
            for i in finished:
                pending.append(recs[i].episode(env_id, codec))
                collected += 1
                bar.update(1)
            bar.set_postfix(steps=steps, steps_per_s=f"{steps / (time.perf_counter() - start):.0f}", refresh=False)
            while len(pending) >= shard_episodes:
                shard, pending = pending[:shard_episodes], pending[shard_episodes:]
                writer.write_shard(sorted(shard, key=lambda ep: ep.seed))
            restart = np.zeros(n, dtype=bool)
            new_seeds: list[int | None] = [None] * n
            for i in finished:
                if todo:
                    restart[i], new_seeds[i] = True, todo.popleft()
                else:
                    active[i] = False
            if active.any():
                # Autoreset is off: every copy that steps on must be reset when it ends, idle ones too
                # (they keep acting, unrecorded, until the last episode finishes, and may end again).
                obs, info = envs.reset(seed=new_seeds, options={"reset_mask": ended})
                pos = pos.copy()                               # the recorded row stays as it was
                shown = _recorded(obs, info, view)
                if pol.reads_info:
                    for i in np.flatnonzero(ended):
                        infos[i] = _one_info(info, i)
                for i in np.flatnonzero(restart):
                    pos[i] = info["agent_pos"][i]
                    recs[i] = _Recorder(new_seeds[i], shown[i], obs["direction"][i], pos[i])
                    pol.start(i, new_seeds[i], {"image": obs["image"][i], "direction": obs["direction"][i]},
                              pos[i], info["grid_size"][i], infos[i])
        if pending:
            shard, pending = pending, []
            writer.write_shard(sorted(shard, key=lambda ep: ep.seed))
    except KeyboardInterrupt:
        if pending:                                            # finished episodes are worth keeping
            writer.write_shard(sorted(pending, key=lambda ep: ep.seed))
        raise
    finally:
        bar.close()
        envs.close()
    seconds = time.perf_counter() - start
    summary.update(collected_episodes=collected, collected_steps=steps,
                   seconds=seconds, steps_per_s=steps / seconds, dataset=writer.manifest["totals"])
    return summary
