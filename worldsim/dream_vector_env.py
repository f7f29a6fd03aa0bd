"""DreamVectorEnv: N imagined episodes stepped together on one device.

Every ``step`` is ONE batched ``WorldModel.step`` over all N envs, sampling on the device (one
torch Generator seeded from the env's ``np_random`` at ``reset``). Frames, state, step counters and
the start pool stay on the device; with ``return_torch=True`` observations, rewards and flags are
returned as device tensors and a step never synchronises with the host (for GPU-native agents);
otherwise they are converted to numpy at the boundary.

Autoreset is same-step (``AutoresetMode.SAME_STEP``, as gymnasium 1.x ``SyncVectorEnv``): when a
sub-env terminates or truncates, the returned observation is already the first one of its next
episode, the last observation of the finished episode is in ``infos["final_obs"]`` (with the mask
``infos["_final_obs"]``) and ``infos["final_info"]`` holds ``episode_length``; only that slot's model
state is reset (``state.reset(mask)``). In numpy mode these keys appear only on steps where some
env finished, ``final_obs`` being an object array with None for the others (as SyncVectorEnv);
in torch mode they are always present as batched tensors, valid where the mask is True.
``infos["uncertainty"]`` holds every env's uncertainty about its next frame (``Simulator``); with
``uncertainty_limit`` an env past it is truncated.

Novelty (``novelty_bonus``): a step also pays that bonus when its frame is new to the episode, a
count-based exploration bonus kept per episode, as layouts of procedurally generated envs never
repeat across episodes. For an explorer: it learns to cover what it can reach, the door behind the
key and the room behind the door, where a sparse reward waits. ``novelty_uncertainty`` pays that
many times the model's uncertainty on such steps alone: an explorer sent where the model is unsure
that cannot earn it again and again by repeating one unsure step. Frames are told apart by a 64-bit
hash of their tokens; an episode remembers its last ``NOVELTY_MEMORY`` frames (all of them when
its step limit is below that).

Interactions (``interaction_bonus``, with ``interaction_counts`` of the real data): a step also pays
bonus / sqrt(1 + count) the first time in its episode that the agent tries an interaction (what it
holds, what is ahead of it, the action), counted over real datasets (``worldsim.interactions``): an
explorer sent to try what the data lacks, whatever the model predicts will follow.

Speed: on CUDA the whole step (model, sampling, autoreset) is captured once as a CUDA graph and
replayed (``cuda_graphs``, default on for CUDA): at small batch a step is hundreds of tiny kernels
whose launches cost more than their work. Capture takes a few steps' time on the env's first
``step`` and holds across resets; the numbers are those of the eager step. The captured step bakes
in the settings of that moment (temperature, termination, step limit, the start pool's size):
change them on a new env, not on a running one. ``compile=True`` also fuses the step's
elementwise work with ``torch.compile`` (about a minute per batch size), which pays at large batch.

Starts: a pool of ``start_pool`` real initial observations, from resetting the real env with
successive seeds ``seed, seed + 1, ...`` (cached per seed); sub-env i starts from pool entry i and
each restart takes the next entry, round robin. With ``starts=`` (a dataset folder or token frames)
the pool is those starts, shuffled by the reset seed. With ``state_starts=`` (world-view models) a
share ``state_start_fraction`` of the pool is recorded mid-episode states, drawn anew at each reset
(``worldsim.state_starts``); an episode started there counts its steps from that state's step.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .checks import positive_int
from .codecs import PixelCodec
from .cuda_graph import CapturedStep
from .dream_env import DreamSetup
from .interactions import counts_for, interaction_keys
from .sampling import Uniforms
from .runtime import free_memory_bytes
from .simulator import RGB_TILE_SIZE, Simulator

STATE_POOL = 4096       # fewest recorded states a pool with state_starts holds, when that many are recorded
NOVELTY_MEMORY = 4096   # most frames an episode remembers for novelty_bonus
UNSEEN = -1             # the hash of an empty slot of that memory (token hashes are >= 0)


class DreamVectorEnv(VectorEnv):
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, checkpoint, *, num_envs: int = 1, real_env_id: str | None = None, obs_mode: str = "symbolic",
                 image_only: bool = False, device: str | torch.device = "auto", temperature: float | None = None,
                 termination: str = "threshold", max_episode_steps: int | None = None, starts=None,
                 return_torch: bool = False, start_pool: int = 256, render_mode: str | None = None,
                 tile_size: int = RGB_TILE_SIZE, real_env_kwargs: dict | None = None, precision: str = "auto",
                 compile: bool = False, cuda_graphs: bool | None = None, uncertainty_penalty: float = 0.0,
                 uncertainty_limit: float | None = None, state_starts=None, state_start_fraction: float = 0.5,
                 novelty_bonus: float = 0.0, novelty_uncertainty: float = 0.0, interaction_bonus: float = 0.0,
                 interaction_counts=None):
        num_envs, start_pool = positive_int("num_envs", num_envs), positive_int("start_pool", start_pool)
        for name, value, what in (("novelty_bonus", novelty_bonus, "reward for a frame new to its episode"),
                                  ("novelty_uncertainty", novelty_uncertainty,
                                   "reward per nat of uncertainty on a frame new to its episode"),
                                  ("interaction_bonus", interaction_bonus,
                                   "reward for an interaction the real data lacks, once per episode")):
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 ({what}); got {value!r}")
        if cuda_graphs not in (None, True, False):
            raise ValueError(f"cuda_graphs must be None (on for CUDA), True or False; got {cuda_graphs!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; DreamVectorEnv renders 'rgb_array'")
        self.render_mode = render_mode
        self.simulator = sim = Simulator.from_checkpoint(
            checkpoint, device=device, precision=precision, temperature=temperature, termination=termination,
            obs_mode=obs_mode, image_only=image_only, tile_size=tile_size, compile=compile,
            uncertainty_penalty=uncertainty_penalty, uncertainty_limit=uncertainty_limit)
        self.setup = s = DreamSetup(sim, real_env_id=real_env_id, max_episode_steps=max_episode_steps,
                                    starts=starts, real_env_kwargs=real_env_kwargs, state_starts=state_starts,
                                    state_start_fraction=state_start_fraction)
        self.num_envs = int(num_envs)
        self.model, self.codec, self.device = sim.model, sim.codec, sim.device
        self._check_memory()
        self.real_env_id = s.real_env_id
        self.max_episode_steps = s.max_episode_steps
        self.return_torch = bool(return_torch)
        self.start_pool = int(start_pool)
        self.single_observation_space = s.single_observation_space
        self.single_action_space = s.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._num_actions = self.simulator.num_actions          # 0: a Box of actions
        self._action_box = self.simulator.action_box
        h, w = sim.frame_shape
        self._state = None
        self._frames = torch.zeros(self.num_envs, h, w, dtype=torch.long, device=self.device)
        self._steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._start_idx = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._cursor = torch.zeros((), dtype=torch.long, device=self.device)
        self._pool: torch.Tensor | None = None
        self._pool_steps: torch.Tensor | None = None   # step count each pool entry starts at (0 but for recorded states)
        self._pool_missions: np.ndarray | None = None
        self._gen: torch.Generator | None = None
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device; this env runs on {self.device}")
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else bool(cuda_graphs)
        self._graphs_requested = cuda_graphs is True
        self._captured: CapturedStep | None = None
        self.novelty_bonus, self.novelty_uncertainty = float(novelty_bonus), float(novelty_uncertainty)
        self.interaction_bonus = float(interaction_bonus)
        self._interactions = None
        if self.interaction_bonus:
            if interaction_counts is None:
                raise ValueError("interaction_bonus pays for interactions the real data lacks: pass interaction_counts "
                                 "(dataset folders, or worldsim.interactions.InteractionCounts)")
            if isinstance(self.codec, PixelCodec):
                raise ValueError("interaction_bonus reads MiniGrid's symbolic cells; this model's frames are images")
            self._interactions = counts_for(interaction_counts, self._num_actions).to(self.device)
        self._tracks_novelty = bool(self.novelty_bonus or self.novelty_uncertainty or self.interaction_bonus)
        limit = self.max_episode_steps
        memory = NOVELTY_MEMORY if limit is None else min(NOVELTY_MEMORY, limit + 1)
        # Below 2**31 each, so a frame's hash, a sum of token x weight, never overflows int64.
        weights = torch.randint(0, 2**31, (h * w,), generator=torch.Generator().manual_seed(0), dtype=torch.long)
        self._hash_weights = weights.to(self.device)
        self._visited = torch.full((self.num_envs, memory if self._tracks_novelty else 1), UNSEEN, dtype=torch.long,
                                   device=self.device)
        self._visits = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        # The interactions each episode has tried, written at the same slots as its frames.
        self._tried = torch.full((self.num_envs, memory if self.interaction_bonus else 1), UNSEEN, dtype=torch.long,
                                 device=self.device)

    def _check_memory(self) -> None:
        """Refuse at once a batch whose recurrent state alone cannot fit in the device's free memory
        (rather than allocating for minutes and failing), saying how many envs would."""
        free = free_memory_bytes(self.device)
        per_env = self.simulator.initial_state(1).nbytes
        if free is not None and per_env * self.num_envs > free:
            raise ValueError(f"num_envs={self.num_envs:,} needs {per_env * self.num_envs / 2**30:,.1f} GiB for the "
                             f"model state alone ({per_env:,} bytes per env); {self.device} has "
                             f"{free / 2**30:,.1f} GiB free: at most {free // per_env:,} envs fit, fewer with "
                             "the step's working memory")

    # -------------------------------------------------------------------------------- starts

    def _build_pool(self, seed: int | None) -> None:
        s = self.setup
        if s.starts is not None:
            order = self.np_random.permutation(len(s.starts))
            frames = [s.starts[i][0] for i in order]
            missions = [s.mission_for(s.starts[i][1] if s.starts[i][1] is not None else seed) for i in order] \
                if s.has_mission else [""] * len(order)
        else:
            size = max(self.start_pool, self.num_envs)
            base = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1 - size))
            frames, missions = zip(*(s.real_start(base + i) for i in range(size)))
        frames, missions = torch.stack(list(frames)), list(missions)
        steps = torch.zeros(len(frames), dtype=torch.long)
        if s.state_starts is not None:
            frames, steps, missions = self._with_recorded_states(frames, missions)
        pool, steps = frames.to(self.device), steps.to(self.device)
        if self._pool is not None and self._pool.shape == pool.shape:
            self._pool.copy_(pool)                 # in place: a captured step reads these buffers
            self._pool_steps.copy_(steps)
        else:
            self._pool, self._pool_steps, self._captured = pool, steps, None
        self._pool_missions = np.array(missions, dtype=object)

    def _with_recorded_states(self, frames: torch.Tensor, missions: list[str]):
        """The pool with recorded states mixed in: a share state_start_fraction of its entries (all of
        them at 1), drawn anew at each reset, shuffled among the others so that restarts take both.
        It holds at least STATE_POOL states (or as many as are recorded), the real starts repeated
        to keep the share: an agent trained from one reset should still meet many recorded states."""
        s = self.setup
        f, real = s.state_start_fraction, len(frames)
        count = max(real if f == 1 else max(1, round(real * f / (1 - f))), min(len(s.state_starts), STATE_POOL))
        state_frames, state_steps, seeds = s.state_starts.sample(count, self.np_random, below=self.max_episode_steps)
        state_missions = [s.mission_for(seed) for seed in seeds] if s.has_mission else [""] * count
        if f == 1:
            frames, steps, missions = state_frames, state_steps, state_missions
        else:
            repeat = torch.arange(max(real, round(count * (1 - f) / f))) % real
            frames = torch.cat([frames[repeat], state_frames])
            steps = torch.cat([torch.zeros(len(repeat), dtype=torch.long), state_steps])
            missions = [missions[i] for i in repeat.tolist()] + state_missions
        order = torch.from_numpy(self.np_random.permutation(len(frames)))
        return frames[order], steps[order], [missions[i] for i in order.tolist()]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"DreamVectorEnv.reset takes one int seed (sub-env i starts from seed + i); got {seed!r}")
        super().reset(seed=None if seed is None else int(seed))
        self._build_pool(None if seed is None else int(seed))
        self._gen = self.simulator.new_generator(self.np_random)
        n, p = self.num_envs, len(self._pool)
        # Every buffer is written in place, so that a captured step stays valid across resets.
        if self._state is None:
            self._state = self.simulator.initial_state(n)
        self._state.reset()
        self._start_idx.copy_(torch.arange(n, device=self.device) % p)
        self._cursor.fill_(n % p)
        self._frames.copy_(self._pool[self._start_idx])
        self._steps.copy_(self._pool_steps[self._start_idx])
        self._forget_visits(torch.ones(n, dtype=torch.bool, device=self.device))
        return self._observations(self._frames), {}

    # -------------------------------------------------------------------------------- step

    def _actions(self, actions) -> torch.Tensor:
        if self._action_box is not None:
            if isinstance(actions, torch.Tensor) and (self.return_torch and actions.device.type != "cpu"):
                if not actions.dtype.is_floating_point or actions.shape != (self.num_envs, self._action_box.dim):
                    raise ValueError(f"actions must be floats of shape {(self.num_envs, self._action_box.dim)}; "
                                     f"got {actions.dtype} {tuple(actions.shape)}")
                return actions.float()            # on the device: checked by shape only (no host sync)
            if isinstance(actions, torch.Tensor):
                actions = actions.numpy()
            return torch.from_numpy(self._action_box.check(actions, (self.num_envs,))).to(self.device)
        if isinstance(actions, torch.Tensor):
            a = actions.to(self.device)
        else:
            a = np.asarray(actions)
            if a.dtype.kind not in "iu":
                raise ValueError(f"actions must be integers; got dtype {a.dtype}")
            a = torch.from_numpy(a.astype(np.int64)).to(self.device)
        if a.dtype.is_floating_point or a.dtype == torch.bool or a.shape != (self.num_envs,):
            raise ValueError(f"actions must be {self.num_envs} integers (shape ({self.num_envs},)); "
                             f"got {a.dtype} {tuple(a.shape)}")
        if not self.return_torch or a.device.type == "cpu":
            bad = (a < 0) | (a >= self._num_actions)
            if bool(bad.any()):
                i = int(bad.nonzero()[0, 0])
                raise ValueError(f"action {int(a[i])} of env {i} is not in {self.single_action_space}")
        return a.long()

    def _advance(self, actions: torch.Tensor, u_frames: torch.Tensor | None, u_done: torch.Tensor | None):
        """The step's device work, in place on the env's buffers and with no host sync (what a CUDA
        graph captures): the model step, truncation, and restarting finished slots from the next
        pool entries. Returns (last frames, reward, terminated, truncated, done, pool entry and
        length of the episodes in their slots before the restart)."""
        if self._interactions is not None:          # what is tried here, from the frame it is tried in
            images, _ = self.simulator.decode_torch(self._frames)
            tried = interaction_keys(images, actions, self._num_actions)
        nxt, reward, terminated, info = self.simulator.step(self._state, self._frames, actions,
                                                            uniforms=Uniforms(u_frames, u_done))
        self._steps += 1
        truncated = info["halted"] & ~terminated                  # past the uncertainty limit, if set
        if self.max_episode_steps is not None:
            truncated = truncated | ((self._steps >= self.max_episode_steps) & ~terminated)
        done = terminated | truncated
        final_idx, lengths = self._start_idx.clone(), self._steps.clone()
        p = len(self._pool)
        offset = torch.cumsum(done.long(), 0) - 1
        self._start_idx.copy_(torch.where(done, (self._cursor + offset) % p, self._start_idx))
        self._cursor.copy_((self._cursor + done.long().sum()) % p)
        self._frames.copy_(torch.where(done[:, None, None], self._pool[self._start_idx], nxt))
        self._state.reset(done)
        self._steps.copy_(torch.where(done, self._pool_steps[self._start_idx], self._steps))
        if self._tracks_novelty:
            if self._interactions is not None:        # before _visit moves the slot both memories write
                first_try = self._remember(self._tried, tried).to(reward.dtype)
                reward = reward + first_try * self.interaction_bonus * self._interactions.bonus_scale(tried)
            new = self._visit(nxt).to(reward.dtype)
            reward = reward + new * (self.novelty_bonus + self.novelty_uncertainty * info["uncertainty"])
            self._forget_visits(done)
        return nxt, reward, terminated, truncated, done, final_idx, lengths, info["uncertainty"]

    # -------------------------------------------------------------------------------- novelty

    def _frame_hash(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, H, W] -> [B] int64 >= 0, equal for equal frames (and, but for ~2**-31 chance, only for them)."""
        return (frames.flatten(1).long() * self._hash_weights).sum(1)

    def _remember(self, memory: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Write each env's key [B] (>= 0) into its episode's `memory` at this step's slot; [B] bool: the key
        was not there yet."""
        new = ~(memory == keys[:, None]).any(1)
        memory.scatter_(1, (self._visits % memory.shape[1])[:, None], keys[:, None])
        return new

    def _visit(self, frames: torch.Tensor) -> torch.Tensor:
        """Record each env's frame in its episode's memory; [B] bool: the frame was not there yet."""
        new = self._remember(self._visited, self._frame_hash(frames))
        self._visits += 1
        return new

    def _forget_visits(self, mask: torch.Tensor) -> None:
        """Envs in `mask` start an episode: their memory holds only its first frame (in place: graph-safe)."""
        if not self._tracks_novelty:
            return
        self._visited.masked_fill_(mask[:, None], UNSEEN)
        self._tried.masked_fill_(mask[:, None], UNSEEN)
        self._visited[:, 0] = torch.where(mask, self._frame_hash(self._frames), self._visited[:, 0])
        self._visits.copy_(torch.where(mask, torch.ones_like(self._visits), self._visits))

    def _step_buffers(self) -> list[torch.Tensor]:
        return [*self._state.tensors(), self._frames, self._steps, self._start_idx, self._cursor, self._visited,
                self._visits, self._tried]

    def _capture(self, actions: torch.Tensor, uniforms: Uniforms) -> None:
        try:
            self._captured = CapturedStep(self._advance, (actions, *uniforms), restore=self._step_buffers())
        except Exception as e:  # noqa: BLE001 - whatever stops the capture, the eager step still works
            if self._graphs_requested:
                raise
            warnings.warn(f"DreamVectorEnv: CUDA graph capture failed ({type(e).__name__}: {e}); stepping eagerly "
                          "(pass cuda_graphs=False to skip the attempt)", RuntimeWarning, stacklevel=3)
            self.cuda_graphs = False

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        a = self._actions(actions)
        uniforms = self.simulator.draw_uniforms(self.num_envs, self._gen)
        if self.cuda_graphs and self._captured is None:
            self._capture(a, uniforms)
        if self.cuda_graphs:
            # The captured outputs are overwritten by the next replay: hand out copies.
            outputs = tuple(t.clone() for t in self._captured(a, *uniforms))
        else:
            outputs = self._advance(a, *uniforms)
        final_frames, reward, terminated, truncated, done, final_idx, lengths, uncertainty = outputs
        obs = self._observations(self._frames)
        if self.return_torch:
            infos = {"final_obs": self._observations(final_frames, final_idx), "_final_obs": done,
                     "final_info": {"episode_length": lengths, "_episode_length": done}, "_final_info": done,
                     "uncertainty": uncertainty, "_uncertainty": torch.ones_like(done)}
            return obs, reward, terminated, truncated, infos
        done_np = done.cpu().numpy()
        infos: dict[str, Any] = {"uncertainty": uncertainty.cpu().numpy(),
                                 "_uncertainty": np.ones(self.num_envs, dtype=bool)}
        if done_np.any():
            finals = self._observations(final_frames[done], final_idx[done])
            final_obs = np.full(self.num_envs, None, dtype=object)
            for j, r in enumerate(np.flatnonzero(done_np)):
                final_obs[r] = Simulator.unbatch(finals, j)
            length_np = np.where(done_np, lengths.cpu().numpy(), 0)
            infos.update({"final_obs": final_obs, "_final_obs": done_np.copy(),
                          "final_info": {"episode_length": length_np, "_episode_length": done_np.copy()},
                          "_final_info": done_np.copy()})
        return (obs, reward.cpu().numpy().astype(np.float64), terminated.cpu().numpy(),
                truncated.cpu().numpy(), infos)

    # -------------------------------------------------------------------------------- observations

    def _observations(self, frames: torch.Tensor, start_idx: torch.Tensor | None = None):
        """Batched observations of frames [B, H, W] (B = num_envs unless start_idx says otherwise), with
        the missions of the pool entries `start_idx` (default: the current ones)."""
        if self.return_torch:
            return self.setup.observations(frames, as_torch=True)
        start_idx = self._start_idx if start_idx is None else start_idx
        return self.setup.observations(frames, self._pool_missions[start_idx.cpu().numpy()])

    def decode_torch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, H, W] on the device -> (images uint8 [B, x, y, 3], directions int64 [B]) on the device."""
        return self.simulator.decode_torch(frames)

    # -------------------------------------------------------------------------------- misc

    @property
    def frames(self) -> torch.Tensor:
        """The current token frames [N, H, W] on the device (a buffer that the next step overwrites)."""
        return self._frames

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        return self.simulator.render(self._frames)

    def close_extras(self, **kwargs):
        self.setup.close()
