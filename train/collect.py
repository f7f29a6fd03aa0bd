"""`worldsim collect`: run a policy in many copies of a real MiniGrid env and write episodes to disk.

Episode k of a dataset resets its env with seed ``seed + k`` (and seeds its policy's randomness with
it), so a dataset is a seed range. Copies of the env step together in a gymnasium vector env with
autoreset off: when one finishes, the collector stores it and resets just that copy with the next
unused seed. Finished episodes are written in shards (``worldsim.data.dataset.DatasetWriter``); a
re-run with the same ``--out`` and settings collects only the seeds still missing, so an interrupted
run loses at most the episodes that had not reached disk.

Policies: ``random`` (uniform over the action space), ``explore`` (``envs.minigrid.explore``: covers
the layout and comes back), ``expert`` (``envs.minigrid.goal_seeker``: fetches keys, opens doors,
walks to the goal), or the path of a Stable-Baselines3 model ``.zip`` (PPO, A2C or DQN) that
acts on MiniGrid's image (as with ``ImgObsWrapper``) or on a Dict of image and direction. ``epsilon``
mixes any of them with random actions, so one dataset can hold an expert's goal-reaching episodes
and everything between them and a random walk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import zipfile
from collections import deque
from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from minigrid.minigrid_env import MiniGridEnv
from tqdm import tqdm

from envs.minigrid import MiniGridCodec, MiniGridMapCodec
from envs.minigrid.explore import ExploreAgent
from envs.minigrid.goal_seeker import GoalSeeker
from envs.minigrid.memory_tasks import TASKS, parse_task
from worldsim.data.dataset import DatasetWriter, Episode, frame_dtype, verify_dataset


class PoseView(gym.Wrapper):
    """Observation reduced to what the codec reads (image, direction); the world pose and grid size in info.

    The pose is what memory metrics and the explore policy need; the mission string is dropped (no
    frame carries it, and it is costly to pass between processes).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.observation_space = spaces.Dict({"image": space["image"], "direction": space["direction"]})

    def _view(self, obs, info):
        u = self.env.unwrapped
        info = dict(info, agent_pos=np.array(u.agent_pos, dtype=np.int64), agent_dir=int(u.agent_dir),
                    grid_size=np.array((u.width, u.height), dtype=np.int64))
        return {"image": obs["image"], "direction": obs["direction"]}, info

    def reset(self, **kwargs):
        return self._view(*self.env.reset(**kwargs))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs, info = self._view(obs, info)
        return obs, reward, terminated, truncated, info


def _env_kwargs(max_steps: int | None) -> dict:
    return {} if max_steps is None else {"max_steps": int(max_steps)}


VIEWS = {"ego": MiniGridCodec, "map": MiniGridMapCodec}   # --view: what a recorded frame shows


def inspect_env(env_id: str, max_steps: int | None = None, view: str = "ego") -> tuple[MiniGridCodec, int, int]:
    """(codec, num_actions, max_steps) for a MiniGrid env id, or a ValueError that says what is wrong.
    view: "ego" records the agent's egocentric view, "map" the same cells on the world grid."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {sorted(VIEWS)}; got {view!r}")
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown env id {env_id!r} ({e}); collect supports MiniGrid-* ids") from None
    if max_steps is not None and (isinstance(max_steps, bool) or int(max_steps) < 1):
        raise ValueError(f"max_steps must be a positive integer; got {max_steps!r}")
    try:
        env = gym.make(env_id, **_env_kwargs(max_steps))
    except TypeError as e:
        raise ValueError(f"{env_id} does not take max_steps ({e}): not a MiniGrid env?") from None
    try:
        if not isinstance(env.unwrapped, MiniGridEnv):
            raise ValueError(f"{env_id} is not a MiniGrid env ({type(env.unwrapped).__name__}); "
                             "collect supports MiniGrid-* ids")
        codec = VIEWS[view].for_env(env)
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"{env_id} has action space {env.action_space}; collect needs Discrete")
        return codec, int(env.action_space.n), int(env.unwrapped.max_steps)
    finally:
        env.close()


# ---------------------------------------------------------------------------------------- policies


class RandomPolicy:
    """Uniform over the actions; each episode's choices come from its own seed."""

    name = "random"

    def __init__(self, num_envs: int, num_actions: int):
        self.num_actions = num_actions
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size) -> None:
        self.rngs[slot] = np.random.default_rng(seed)

    def act(self, obs, agent_pos, active) -> np.ndarray:
        return np.array([rng.integers(self.num_actions) if a else 0 for rng, a in zip(self.rngs, active)],
                        dtype=np.int64)


class ScriptedPolicy:
    """One scripted agent per env copy: ``ExploreAgent`` ("explore"), ``GoalSeeker`` ("expert"), or a
    memory task after a context walk of C steps (``envs.minigrid.memory_tasks``: "retrace:C", "reasoning:C")."""

    AGENTS = {"explore": ExploreAgent, "expert": GoalSeeker}

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

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size) -> None:
        self.agents[slot].reset(obs, agent_pos, grid_size, seed=seed)

    def act(self, obs, agent_pos, active) -> np.ndarray:
        return np.array([agent.act({"image": obs["image"][i], "direction": obs["direction"][i]}, agent_pos[i])
                         if active[i] else 0 for i, agent in enumerate(self.agents)], dtype=np.int64)


def _sb3_algorithm(path: Path):
    """The SB3 class that saved ``path``, told by the hyperparameters in its JSON ``data`` (no unpickling)."""
    from stable_baselines3 import A2C, DQN, PPO

    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read("data"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"--policy {path}: not a Stable-Baselines3 model zip ({e})") from None
    if "clip_range" in data:
        return PPO
    if "target_update_interval" in data:
        return DQN
    if "rollout_buffer_class" in data or "rms_prop_eps" in data or "n_steps" in data:
        return A2C
    raise ValueError(f"--policy {path}: an SB3 zip, but not of PPO, A2C or DQN (the algorithms collect loads)")


class SB3Policy:
    """A saved Stable-Baselines3 model, fed the observation it was trained on (checked at load)."""

    def __init__(self, path: str | Path, num_actions: int, view_size: int, deterministic: bool = False):
        path = Path(path)
        if not path.is_file() and Path(f"{path}.zip").is_file():
            path = Path(f"{path}.zip")
        if not path.is_file():
            raise ValueError(f"--policy {str(path)!r}: no such file; give 'random', 'explore', 'expert' or the "
                             "path of a Stable-Baselines3 model .zip")
        algo = _sb3_algorithm(path)
        self.model = algo.load(path, device="cpu")
        self.deterministic = deterministic
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.name = f"sb3-{algo.__name__.lower()}:{path.name}@{digest}" + (":deterministic" if deterministic else "")
        self._keys = self._fit(self.model.observation_space, view_size, path)
        space = self.model.action_space
        if not isinstance(space, spaces.Discrete) or int(space.n) != num_actions:
            raise ValueError(f"--policy {path}: the model acts in {space}, the env in Discrete({num_actions})")

    @staticmethod
    def _fit(model_space, v: int, path: Path):
        """None if the model reads the image alone, else the Dict keys it reads; ValueError if neither."""

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

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size) -> None:
        pass

    def act(self, obs, agent_pos, active) -> np.ndarray:
        model_obs = obs["image"] if self._keys is None else {k: obs[k] for k in self._keys}
        actions, _ = self.model.predict(model_obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(-1)


class EpsilonMix:
    """Another policy whose every action is replaced, with probability epsilon, by a uniform random one.

    Each episode draws its own epsilon uniformly from [low, high] (from its seed), so one dataset can
    span everything from the expert (epsilon 0) to a random walk (epsilon 1): a world model trained on
    it sees both the goal-reaching states an agent ends in and the wandering it starts from.
    """

    def __init__(self, base, num_envs: int, num_actions: int, low: float, high: float):
        self.base, self.num_actions, self.low, self.high = base, num_actions, low, high
        self.name = f"{base.name}+epsilon:{low:g}-{high:g}"
        self.rngs = [np.random.default_rng() for _ in range(num_envs)]
        self.epsilon = np.zeros(num_envs)

    def start(self, slot: int, seed: int, obs, agent_pos, grid_size) -> None:
        self.base.start(slot, seed, obs, agent_pos, grid_size)
        # A stream apart from the base policy's (which may seed its own generator with `seed`).
        self.rngs[slot] = np.random.default_rng([seed, 0x5EED])
        self.epsilon[slot] = self.rngs[slot].uniform(self.low, self.high)

    def act(self, obs, agent_pos, active) -> np.ndarray:
        actions = self.base.act(obs, agent_pos, active)
        for i in np.flatnonzero(active):
            if self.rngs[i].random() < self.epsilon[i]:
                actions[i] = self.rngs[i].integers(self.num_actions)
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


def make_policy(spec: str, num_envs: int, num_actions: int, codec: MiniGridCodec, deterministic: bool = False,
                epsilon: str | float | None = None):
    """'random', 'explore', 'expert', or the path of an SB3 model zip -> a policy over ``num_envs`` env copies,
    mixed with random actions when ``epsilon`` (see ``parse_epsilon``) is given."""
    eps = parse_epsilon(epsilon)
    if spec == "random":
        pol = RandomPolicy(num_envs, num_actions)
    elif ScriptedPolicy.parse(spec) is not None:
        pol = ScriptedPolicy(spec, num_envs, num_actions, codec.view_size)
    else:
        pol = SB3Policy(spec, num_actions, codec.view_size, deterministic=deterministic)
    if eps is None or eps == (0.0, 0.0):
        return pol
    return EpsilonMix(pol, num_envs, num_actions, *eps)


# ---------------------------------------------------------------------------------------- collect


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

    def episode(self, env_id: str, codec: MiniGridCodec | MiniGridMapCodec) -> Episode:
        directions = np.array(self.dirs, dtype=np.int64)
        frames = codec.encode_episode(np.stack(self.images), directions, np.stack(self.pos)).numpy()
        return Episode(frames=frames.astype(frame_dtype(codec.vocab_size)),
                       actions=np.array(self.actions, dtype=np.int64),
                       rewards=np.array(self.rewards, dtype=np.float32),
                       terminated=np.array(self.terminated, dtype=bool),
                       truncated=np.array(self.truncated, dtype=bool),
                       agent_pos=np.array(self.pos, dtype=np.int16),
                       agent_dir=directions.astype(np.int8), env_id=env_id, seed=self.seed)


def collect(env_id: str, policy: str = "random", episodes: int = 100, out: str | Path = "data",
            max_steps: int | None = None, num_envs: int = 4, seed: int = 0, shard_episodes: int = 64,
            vectorization: str = "sync", deterministic: bool = False, progress: bool | None = None,
            epsilon: str | float | None = None, view: str = "ego") -> dict:
    """Collect until ``out`` holds episodes with seeds ``seed .. seed + episodes - 1``; returns a summary.

    ``max_steps`` replaces the env's own episode limit (None keeps it). ``vectorization`` is
    gymnasium's "sync" (one process) or "async" (one process per env copy). ``epsilon`` mixes
    the policy with random actions (``EpsilonMix``): a probability, or a range "LOW:HIGH" drawn per episode.
    ``view`` picks what a frame shows: "ego" the agent's view, "map" the same cells on the world grid
    (``envs.minigrid.map_view``). Policies act on the env's own observation either way.
    """
    for name, value in (("episodes", episodes), ("num_envs", num_envs), ("shard_episodes", shard_episodes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"vectorization must be 'sync' or 'async'; got {vectorization!r}")
    codec, num_actions, env_max_steps = inspect_env(env_id, max_steps, view)
    num_envs = min(num_envs, episodes)
    pol = make_policy(policy, num_envs, num_actions, codec, deterministic, epsilon)
    writer = DatasetWriter(out, {"env_id": env_id, "codec": codec.config, "vocab_size": codec.vocab_size,
                                 "frame_shape": list(codec.frame_shape), "num_actions": num_actions,
                                 "policy": pol.name, "max_steps": env_max_steps, "seed": int(seed)})
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
                        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED}, wrappers=[PoseView],
                        **_env_kwargs(max_steps))
    bar = tqdm(total=len(todo), unit="ep", desc=f"collect {env_id}", disable=None if progress is None else not progress,
               dynamic_ncols=True)
    pending: list[Episode] = []
    steps = collected = 0
    try:
        seeds = [todo.popleft() for _ in range(n)]
        obs, info = envs.reset(seed=seeds)
        pos = np.array(info["agent_pos"], dtype=np.int64)
        recs = [_Recorder(s, obs["image"][i], obs["direction"][i], pos[i]) for i, s in enumerate(seeds)]
        for i, s in enumerate(seeds):
            pol.start(i, s, {"image": obs["image"][i], "direction": obs["direction"][i]}, pos[i], info["grid_size"][i])
        active = np.ones(n, dtype=bool)
        while active.any():
            actions = pol.act(obs, pos, active)
            obs, rewards, terminated, truncated, info = envs.step(actions)
            pos = np.array(info["agent_pos"], dtype=np.int64)
            for i in np.flatnonzero(active):
                recs[i].add(int(actions[i]), float(rewards[i]), bool(terminated[i]), bool(truncated[i]),
                            obs["image"][i], obs["direction"][i], pos[i])
            steps += int(active.sum())
            finished = np.flatnonzero(active & (terminated | truncated))
            if len(finished) == 0:
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
            if active.any():                                   # autoreset is off: every copy that steps on
                reset_mask = np.zeros(n, dtype=bool)           # must be reset, idle ones too (ignored)
                reset_mask[finished] = True
                obs, info = envs.reset(seed=new_seeds, options={"reset_mask": reset_mask})
                pos = pos.copy()                               # the recorded row stays as it was
                for i in np.flatnonzero(restart):
                    pos[i] = info["agent_pos"][i]
                    recs[i] = _Recorder(new_seeds[i], obs["image"][i], obs["direction"][i], pos[i])
                    pol.start(i, new_seeds[i], {"image": obs["image"][i], "direction": obs["direction"][i]},
                              pos[i], info["grid_size"][i])
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


# ---------------------------------------------------------------------------------------- command line


def _run(args: argparse.Namespace) -> int:
    if args.verify is not None:
        report = verify_dataset(args.verify)
        print(report)
        return 0 if report.ok else 1
    missing = [flag for flag, value in (("--env", args.env), ("--episodes", args.episodes), ("--out", args.out))
               if value is None]
    if missing:
        args.collect_parser.error(f"the following arguments are required (unless --verify): {', '.join(missing)}")
    try:
        summary = collect(args.env, policy=args.policy, episodes=args.episodes, out=args.out,
                          max_steps=args.max_steps, num_envs=args.num_envs, seed=args.seed,
                          shard_episodes=args.shard_episodes, vectorization=args.vector,
                          deterministic=args.deterministic, epsilon=args.epsilon, view=args.view)
    except KeyboardInterrupt:
        print(f"interrupted: finished shards are in {args.out}; run the same command again to continue",
              file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:                          # DatasetError is a ValueError
        print(f"worldsim collect: error: {e}", file=sys.stderr)
        return 1
    total = summary["dataset"]
    print(f"{args.out}: {total['episodes']} episodes, {total['steps']} steps "
          f"(this run: {summary['collected_episodes']} episodes, {summary['collected_steps']} steps, "
          f"{summary['steps_per_s']:.0f} steps/s)")
    return 0


def add_collect_parser(subparsers) -> argparse.ArgumentParser:
    """Register `collect` on the `worldsim` command's subparsers."""
    p = subparsers.add_parser(
        "collect",
        help="run a policy in a MiniGrid env (many copies in parallel) and write episodes to a dataset folder",
        description="Run a policy in copies of a MiniGrid env and write episodes (token frames, actions, "
        "rewards, terminations, agent poses) as checksummed .npz shards plus manifest.json. Episode k is "
        "reset with seed SEED + k; re-running with the same --out continues an interrupted run. "
        "With --verify DIR, check a dataset instead and exit 1 on problems.",
    )
    p.add_argument("--env", help="gymnasium id of a MiniGrid env, e.g. MiniGrid-FourRooms-v0")
    p.add_argument("--policy", default="random",
                   help="'random', 'explore' (covers the layout and comes back), 'expert' (scripted: explores, "
                   "fetches keys, unlocks doors, walks to the goal), 'retrace:C' / 'reasoning:C' (memory tasks: "
                   "C steps of explore, then back along the path / on to seen places by new routes), or the path of a "
                   "Stable-Baselines3 PPO/A2C/DQN model .zip trained on the image (ImgObsWrapper) or "
                   "Dict(image, direction) observation (default: random)")
    p.add_argument("--episodes", type=int, help="episodes the dataset should hold (seeds SEED .. SEED+N-1)")
    p.add_argument("--out", help="dataset folder (created, or continued if it holds the same kind of dataset)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="episode step limit, replacing the env's own (default: the env's)")
    p.add_argument("--num-envs", type=int, default=4, help="env copies stepped together (default: 4)")
    p.add_argument("--vector", choices=("sync", "async"), default="sync",
                   help="gymnasium vector env: 'sync' steps copies in this process, 'async' one process per "
                   "copy (default: sync, faster for MiniGrid on few cores)")
    p.add_argument("--seed", type=int, default=0, help="first episode's reset seed (default: 0)")
    p.add_argument("--shard-episodes", type=int, default=64, help="episodes per shard file (default: 64)")
    p.add_argument("--deterministic", action="store_true",
                   help="with a Stable-Baselines3 policy: take its most likely action instead of sampling")
    p.add_argument("--epsilon", metavar="E|LOW:HIGH", default=None,
                   help="replace each action by a random one with probability E, or with a probability drawn "
                   "per episode from [LOW, HIGH]: e.g. an expert with 0:1 gives data from expert to random "
                   "walk (default: none)")
    p.add_argument("--view", choices=sorted(VIEWS), default="ego",
                   help="what a frame records: 'ego', the agent's egocentric view (what the dream envs use), or "
                   "'map', the cells it sees now placed on the world grid, north up, the rest unseen (the memory "
                   "benchmark's allocentric variant) (default: ego)")
    p.add_argument("--verify", metavar="DIR", help="check the dataset in DIR, print a summary, exit 1 on problems")
    p.set_defaults(run=_run, collect_parser=p)
    return p
