"""DreamEnv: one imagined episode of a trained WorldModel behind the real env's Gymnasium API.

``reset`` starts from a real initial observation (a reset of the real env, or a start recorded in a
dataset) encoded by the checkpoint's codec (a world-view model starts from the real reset's whole
state, and shows the agent its view of the dreamed state); ``step(a)`` advances the model's state one frame on the
device and samples the next frame, reward and termination (``worldsim.simulator.Simulator``, which
also formats the observations):

- frame: every cell from softmax(logits / temperature) over the codec's legal tokens; temperature 0
  takes the argmax. The default is argmax for a world-view model, 1 for one of the agent's view
  (``worldsim.codecs.default_temperature``).
- reward: the predicted reward, as is (zero on steps that go on when the checkpoint records
  ``rewards_only_on_termination``).
- terminated: ``termination="threshold"`` (default): sigmoid(done_logit) > 0.5, deterministic like
  MiniGrid's own goal/lava termination; ``"sample"``: a Bernoulli draw with that probability.
- truncated: after ``max_episode_steps`` steps (default: the real env's limit, MiniGrid's
  ``max_steps``), unless the step terminated.

``checkpoint``: a folder written by ``WorldModel.save_pretrained``, a ``WorldModel``, or a shipped
model's id (its real env id or dream id, ``worldsim models``).

All randomness comes from a torch Generator seeded from ``self.np_random`` at every reset, so the
same seed and actions give the same episode. Observations are the real env's format: MiniGrid's
Dict(image, direction, mission) (mission from the real env's reset observation), or the image
alone (``image_only=True``, as ``ImgObsWrapper``); symbolic cells or RGB (``obs_mode="rgb"``,
as ``RGBImgPartialObsWrapper`` with ``tile_size`` 8). ``precision`` (``worldsim.runtime``): "auto"
runs the model step under bf16 autocast on CUDA and in float32 elsewhere; "float32" or "bfloat16"
force one. ``compile=True`` wraps the model step in ``torch.compile``.

``state_starts`` (world-view models; one dataset folder or a list): a share ``state_start_fraction``
(default 0.5) of episodes starts from a step of a recorded episode instead, counting its steps from
that step's (``worldsim.state_starts``), so that an agent meets the states sparse rewards hide behind.

worldsim imports no env package at module level: the codec class comes from the checkpoint's
``metadata["codec"]`` through ``worldsim.codecs``; importing it registers its envs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from .actions import ActionBox
from .checks import positive_int, registered_env_id
from .checkpoint import CheckpointError
from .codecs import PixelCodec, WorldStateCodec, is_dream_codec, real_frame
from .simulator import RGB_TILE_SIZE, Simulator
from .state_starts import RecordedStates, check_state_start_fraction

FRAME_TILE_SIZE = 32  # MiniGrid's get_frame default (TILE_PIXELS)


# ---------------------------------------------------------------------------------------- shared


def make_real_env(env_id: str, **kwargs) -> gym.Env:
    """gym.make(env_id); ids of the form 'module:EnvId' import their module first (Gymnasium's rule)."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"cannot make the real env {env_id!r} ({e}); pass real_env_id='module:EnvId' "
                         "if its package must be imported to register it") from None


def observed_real_env(codec: Any, env_id: str, **kwargs) -> gym.Env:
    """The real env `env_id` as a dream of `codec` observes it: as it is, or, for an image codec, showing the
    images its tokenizer reads (``PixelCodec.observation_env``)."""
    env = make_real_env(env_id, **kwargs)
    if not isinstance(codec, PixelCodec):
        return env
    try:
        return codec.observation_env(env)
    except ValueError:
        env.close()
        raise


def no_display_server() -> bool:
    """True on Linux without an X11 or Wayland display to open a window on."""
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def init_display() -> None:
    """Initialise pygame's display only: pygame.init() would also open audio, which prints ALSA errors
    on machines without a sound card. Without a display server SDL would probe Wayland first
    (printing XDG_RUNTIME_DIR errors) before falling back to its offscreen driver: go there directly,
    unless SDL_VIDEODRIVER says otherwise."""
    import pygame

    if "SDL_VIDEODRIVER" in os.environ or not no_display_server():
        pygame.display.init()
        return
    os.environ["SDL_VIDEODRIVER"] = "offscreen"
    try:
        pygame.display.init()
    finally:
        del os.environ["SDL_VIDEODRIVER"]


class DreamSetup:
    """The real env's side of a dream, shared by DreamEnv and DreamVectorEnv around one Simulator:
    the real env (checked against the checkpoint), its spaces and step limit, and where episodes
    start (real resets, cached per seed, or recorded starts) with their missions."""

    def __init__(self, simulator: Simulator, *, real_env_id: str | None = None, max_episode_steps: int | None = None,
                 starts=None, real_env_kwargs: dict | None = None, state_starts=None,
                 state_start_fraction: float = 0.5):
        self.simulator = simulator
        self.codec = codec = simulator.codec
        self.check_frames = simulator.check_frames
        if not is_dream_codec(codec):
            raise ValueError(f"the world model was trained on {codec!r} frames, from which the agent's observation "
                             "cannot be drawn (e.g. the memory benchmark's map view shows only what is in sight); a "
                             "dream env needs the egocentric view, the world view or an image codec")
        trained_on = (simulator.model.config.metadata or {}).get("env_id")
        if real_env_id is None:
            if trained_on is None:
                raise CheckpointError("the checkpoint's metadata names no 'env_id'; pass real_env_id")
            real_env_id = registered_env_id(trained_on, "the checkpoint's metadata")
        elif trained_on is not None and real_env_id.split(":")[-1] != trained_on.split(":")[-1]:
            raise ValueError(f"the checkpoint was trained on {trained_on!r}, not {real_env_id!r}; "
                             "its token frames and dynamics belong to that env")
        self.real_env_id = real_env_id
        self.real_env = observed_real_env(codec, real_env_id, **(real_env_kwargs or {}))
        space = self.real_env.observation_space
        if not isinstance(codec, PixelCodec) and not (isinstance(space, spaces.Dict) and "image" in space.spaces
                                                      and "direction" in space.spaces):
            raise ValueError(f"real env {real_env_id!r} has observation space {space}; the dream envs need "
                             "MiniGrid's Dict(image, direction, ...)")
        real_actions = self.real_env.action_space
        box = simulator.action_box
        if box is None and not (isinstance(real_actions, spaces.Discrete) and real_actions.n == simulator.num_actions):
            raise ValueError(f"real env {real_env_id!r} has actions {real_actions}, the model "
                             f"{simulator.num_actions}")
        if box is not None and (not isinstance(real_actions, spaces.Box)
                                or ActionBox.from_space(real_actions, f"real env {real_env_id!r}") != box):
            raise ValueError(f"real env {real_env_id!r} has actions {real_actions}, the model a Box of "
                             f"{box.to_json()}")
        self.action_space = real_actions
        self.has_mission = isinstance(space, spaces.Dict) and "mission" in space.spaces and not simulator.image_only
        self.single_observation_space = simulator.observation_space(space)
        if max_episode_steps is None:
            spec = self.real_env.spec
            max_episode_steps = (spec.max_episode_steps if spec is not None and spec.max_episode_steps
                                 else getattr(self.real_env.unwrapped, "max_steps", None))
        self.max_episode_steps = None if max_episode_steps is None else positive_int("max_episode_steps",
                                                                                    max_episode_steps)
        self.starts = self._load_starts(starts)
        # Recorded mid-episode states (world-view models) some episodes start from instead.
        self.state_starts = None if state_starts is None else RecordedStates(
            state_starts, codec, lambda d: self.checked_dataset(d, "state_starts"))
        self.state_start_fraction = check_state_start_fraction(state_start_fraction)
        self._real_cache: dict[int, tuple[np.ndarray, str]] = {}

    def observations(self, frames: torch.Tensor, missions: Sequence[str] | None = None, as_torch: bool = False):
        """Batched observations of frames [B, H, W] (``Simulator.observations``), with their B missions
        where the real env's observations have one (numpy only)."""
        return self.simulator.observations(frames, missions if self.has_mission else None, as_torch=as_torch)

    # -------------------------------------------------------------------------------- starts

    def _load_starts(self, starts) -> list[tuple[torch.Tensor, int | None]] | None:
        """None (reset the real env) or a list of (start frame [H, W], seed of its episode or None)."""
        if starts is None:
            return None
        if isinstance(starts, (str, os.PathLike)) or hasattr(starts, "manifest"):
            starts = self.checked_dataset(starts, "starts")
            out = []
            for i in range(len(starts)):
                ep = starts.episode(i)
                out.append((self.check_frames(ep.frames[0], f"dataset start {i}"), int(ep.seed)))
        else:
            if isinstance(starts, (np.ndarray, torch.Tensor)) and starts.ndim == 2:
                starts = [starts]
            out = [(self.check_frames(f, f"starts[{i}]"), None) for i, f in enumerate(starts)]
            for i, (f, _) in enumerate(out):
                if f.dim() != 2:
                    raise ValueError(f"starts[{i}] must be one frame {tuple(self.codec.frame_shape)}; got {tuple(f.shape)}")
        if not out:
            raise ValueError("starts is empty")
        return out

    def checked_dataset(self, dataset, what: str):
        """`dataset` (a folder or an EpisodeDataset) opened, once its codec and env are this dream's."""
        from .data.dataset import EpisodeDataset   # lazily: only dreams with recorded starts read datasets

        ds = dataset if isinstance(dataset, EpisodeDataset) else EpisodeDataset(dataset)
        if ds.manifest.get("codec") != self.codec.config:
            raise ValueError(f"{what}: the dataset {str(ds.root)!r} has codec {ds.manifest.get('codec')!r}, the "
                             f"model {self.codec.config!r}")
        if ds.env_id.split(":")[-1] != self.real_env_id.split(":")[-1]:
            raise ValueError(f"{what}: the dataset {str(ds.root)!r} holds {ds.env_id!r} episodes, not "
                             f"{self.real_env_id!r}")
        return ds

    def real_start(self, seed: int | None) -> tuple[torch.Tensor, str]:
        """(frame [H, W], mission) of the real env's reset with `seed`; cached per seed."""
        if seed is not None and seed in self._real_cache:
            frame, mission = self._real_cache[seed]
            return torch.from_numpy(frame.copy()), mission
        obs, _ = self.real_env.reset(seed=seed)
        frame = real_frame(self.codec, obs, self.real_env).long()
        mission = obs.get("mission", "") if isinstance(obs, Mapping) else ""
        if seed is not None and len(self._real_cache) < 65536:
            self._real_cache[seed] = (frame.numpy(), mission)
        return frame, mission

    def mission_for(self, seed: int | None) -> str:
        return self.real_start(seed)[1] if self.has_mission else ""

    def close(self) -> None:
        self.real_env.close()


# ---------------------------------------------------------------------------------------- DreamEnv


class DreamEnv(gym.Env):
    """One imagined episode; observation and action spaces are the real env's. See the module docstring.

    A dream knows what the model predicts. ``render()`` draws its frame: for an egocentric model the
    agent's view (MiniGrid: the 7x7 cells, by MiniGrid's tile renderer), for a world-view model the
    full map, as the real env renders it. ``get_frame(tile_size=..., agent_pov=True)`` draws the
    agent's view, so MiniGrid's ``RGBImgPartialObsWrapper`` works on a DreamEnv; the full map
    (``agent_pov=False``, which ``RGBImgObsWrapper`` asks for) exists only in a world-view dream.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(self, checkpoint, *, real_env_id: str | None = None, obs_mode: str = "symbolic",
                 image_only: bool = False, device: str | torch.device = "auto", temperature: float | None = None,
                 termination: str = "threshold", max_episode_steps: int | None = None, starts=None,
                 render_mode: str | None = None, tile_size: int = RGB_TILE_SIZE,
                 real_env_kwargs: dict | None = None, precision: str = "auto", compile: bool = False,
                 uncertainty_penalty: float = 0.0, uncertainty_limit: float | None = None, state_starts=None,
                 state_start_fraction: float = 0.5):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; choose one of "
                             f"{self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.simulator = Simulator.from_checkpoint(
            checkpoint, device=device, precision=precision, temperature=temperature, termination=termination,
            obs_mode=obs_mode, image_only=image_only, tile_size=tile_size, compile=compile,
            uncertainty_penalty=uncertainty_penalty, uncertainty_limit=uncertainty_limit)
        self.setup = DreamSetup(self.simulator, real_env_id=real_env_id, max_episode_steps=max_episode_steps,
                                starts=starts, real_env_kwargs=real_env_kwargs, state_starts=state_starts,
                                state_start_fraction=state_start_fraction)
        self.observation_space = self.setup.single_observation_space
        self.action_space = self.setup.action_space
        self.model, self.codec = self.simulator.model, self.simulator.codec
        self.real_env_id = self.setup.real_env_id
        self.max_episode_steps = self.setup.max_episode_steps
        self._state = None
        self._frame: torch.Tensor | None = None   # [1, H, W] on the device
        self._mission = ""
        self._steps = 0
        self._gen: torch.Generator | None = None
        self._window = None  # pygame window of render_mode="human"

    @property
    def frame(self) -> torch.Tensor:
        """The current dreamed frame of tokens [H, W] (on the device)."""
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() first")
        return self._frame[0]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options is not None and not isinstance(options, dict):
            raise ValueError(f"options must be a dict such as {{'start': frame}} or None; got {options!r}")
        options = options or {}
        s, sim = self.setup, self.simulator
        info: dict[str, Any] = {}
        first_step = 0
        if "start" in options:
            frame = sim.check_frames(options["start"], "options['start']")
            if frame.dim() != 2:
                raise ValueError(f"options['start'] must be one frame {sim.frame_shape}")
            mission = s.mission_for(seed)
            info["start"] = "options"
        elif s.state_starts is not None and self.np_random.random() < s.state_start_fraction:
            frames, steps, seeds = s.state_starts.sample(1, self.np_random, below=self.max_episode_steps)
            frame, first_step, mission = frames[0], int(steps[0]), s.mission_for(seeds[0])
            info["start"] = f"recorded state, step {first_step}"
        elif s.starts is not None:
            i = int(self.np_random.integers(len(s.starts)))
            frame, ep_seed = s.starts[i]
            mission = s.mission_for(ep_seed if ep_seed is not None else seed)
            info["start"] = f"dataset:{i}"
        else:
            real_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
            frame, mission = s.real_start(real_seed)
            info["start"] = "real"
        self._gen = sim.new_generator(self.np_random)
        self._state = sim.initial_state(1)
        self._frame = frame.to(sim.device)[None]
        self._mission = mission
        self._steps = first_step
        if self.render_mode == "human":
            self.render()
        return self._obs(), info

    def _obs(self):
        return Simulator.unbatch(self.setup.observations(self._frame, [self._mission]), 0)

    def step(self, action):
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        box = self.simulator.action_box
        if box is not None:
            a = torch.from_numpy(box.check(action, (), "action")[None]).to(self.simulator.device)
        elif not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        else:
            a = torch.tensor([int(action)], dtype=torch.long, device=self.simulator.device)
        self._frame, reward, terminated, step_info = self.simulator.step(self._state, self._frame, a, self._gen)
        self._steps += 1
        terminated = bool(terminated[0])
        halted = not terminated and bool(step_info["halted"][0])
        truncated = halted or (not terminated and self.max_episode_steps is not None
                               and self._steps >= self.max_episode_steps)
        info = {"done_prob": float(step_info["done_prob"][0]), "uncertainty": float(step_info["uncertainty"][0]),
                "halted": halted, "episode_step": self._steps}
        if self.render_mode == "human":
            self.render()
        return self._obs(), float(reward[0]), terminated, bool(truncated), info

    def render(self):
        if self.render_mode is None:
            return None
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        rgb = self.simulator.render(self._frame[0])
        if self.render_mode == "rgb_array":
            return rgb
        self._show(rgb)
        return None

    def get_frame(self, highlight: bool = True, tile_size: int = FRAME_TILE_SIZE, agent_pov: bool = True) -> np.ndarray:
        """RGB uint8 of the dreamed egocentric view, as MiniGrid's ``get_frame(agent_pov=True)`` draws
        it (what ``RGBImgPartialObsWrapper`` calls). `highlight` is accepted for MiniGrid's signature;
        like MiniGrid's agent view, the picture always highlights the seen cells. The full map
        (``agent_pov=False``) exists only in a world-view dream."""
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before get_frame()")
        codec = self.simulator.codec
        if isinstance(codec, WorldStateCodec):
            return codec.render_view(self._frame[0], tile_size) if agent_pov else codec.render(self._frame[0], tile_size)
        if not agent_pov:
            raise ValueError("this dream only knows the agent's egocentric view, not the full map: get_frame needs "
                             "agent_pov=True (RGBImgPartialObsWrapper works on a DreamEnv; RGBImgObsWrapper, the "
                             "full map, needs a world-view model)")
        return self.simulator.render(self._frame[0], tile_size=tile_size)

    def _show(self, rgb: np.ndarray) -> None:
        """render_mode="human": the dreamed frame in a pygame window (imported only here, as
        Gymnasium's own envs do)."""
        try:
            import pygame
        except ImportError as e:
            raise gym.error.DependencyNotInstalled("render_mode='human' needs pygame (pip install pygame-ce)") from e
        if self._window is None:
            init_display()
            self._window = pygame.display.set_mode((rgb.shape[1], rgb.shape[0]))
            pygame.display.set_caption(f"worldsim dream: {self.real_env_id}")
            self._clock = pygame.time.Clock()
        self._window.blit(pygame.surfarray.make_surface(np.ascontiguousarray(rgb.transpose(1, 0, 2))), (0, 0))
        pygame.event.pump()
        pygame.display.flip()
        self._clock.tick(self.metadata["render_fps"])

    def close(self):
        if self._window is not None:
            import pygame

            pygame.display.quit()
            self._window = None
        self.setup.close()
