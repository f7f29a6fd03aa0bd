"""DreamEnv: one imagined episode of a trained WorldModel behind the real env's Gymnasium API.

``reset`` starts from a real initial observation (a reset of the real env, or a start recorded in a
dataset) encoded by the checkpoint's codec; ``step(a)`` feeds the current frame and action through
``WorldModel.step`` (state carried on the device, in place) and samples the next frame:

- frame: every cell from softmax(logits / temperature) over the codec's *legal* tokens for that
  cell (``codec.legal_mask``), so every sampled frame decodes (Gumbel-max sampling); temperature 0
  takes the argmax.
- reward: the predicted reward, as is.
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
as ``RGBImgPartialObsWrapper`` with ``tile_size`` 8). ``precision``: "auto" runs the model step
under bf16 autocast on CUDA and in float32 elsewhere; "float32" or "bf16" force one. ``compile=True``
wraps the model step in ``torch.compile``.

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

from .checkpoint import CheckpointError
from .codecs import codec_for_model
from .model import WorldModel
from .sampling import TERMINATION_MODES, sample_step
from .zoo import resolve_checkpoint, shipped_models

OBS_MODES = ("symbolic", "rgb")
PRECISIONS = ("auto", "float32", "bf16")
RGB_TILE_SIZE = 8  # RGBImgPartialObsWrapper's default
FRAME_TILE_SIZE = 32  # MiniGrid's get_frame default (TILE_PIXELS)


# ---------------------------------------------------------------------------------------- shared


def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_world_model(checkpoint: Any, device: torch.device) -> WorldModel:
    """A WorldModel (used as is, moved to `device`), a checkpoint folder written by save_pretrained,
    or a shipped model's id (its real env id or its dream id, ``worldsim.zoo``)."""
    if isinstance(checkpoint, WorldModel):
        return checkpoint.to(device).eval()
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a WorldModel or a checkpoint folder path; got {type(checkpoint).__name__}")
    path = resolve_checkpoint(checkpoint)
    if not os.path.exists(path):
        shipped = ", ".join(m.env_id for m in shipped_models()) or "none"
        raise FileNotFoundError(f"checkpoint {os.fspath(checkpoint)!r} does not exist (expected a folder written by "
                                f"WorldModel.save_pretrained, or a shipped model's id: {shipped})")
    return WorldModel.from_pretrained(path, device=device).eval()


def make_real_env(env_id: str, **kwargs) -> gym.Env:
    """gym.make(env_id); ids of the form 'module:EnvId' import their module first (Gymnasium's rule)."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as e:
        raise ValueError(f"cannot make the real env {env_id!r} ({e}); pass real_env_id='module:EnvId' "
                         "if its package must be imported to register it") from None


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
    """Everything DreamEnv and DreamVectorEnv share: model, codec, real env, spaces, sampling, starts."""

    def __init__(self, checkpoint, real_env_id=None, obs_mode="symbolic", image_only=False, device="auto",
                 temperature=1.0, termination="threshold", max_episode_steps=None, starts=None,
                 tile_size=RGB_TILE_SIZE, real_env_kwargs=None, precision="auto", compile=False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}; got {obs_mode!r}")
        if termination not in TERMINATION_MODES:
            raise ValueError(f"termination must be one of {TERMINATION_MODES}; got {termination!r}")
        if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature < 0:
            raise ValueError(f"temperature must be a number >= 0; got {temperature!r}")
        self.device = resolve_device(device)
        self.model = load_world_model(checkpoint, self.device)
        config = self.model.config
        meta = config.metadata or {}
        self.codec = codec_for_model(config)   # imports the env package, registering its envs
        if getattr(self.codec, "agent_cell", None) is None:
            raise ValueError(f"{checkpoint} was trained on {self.codec!r} frames, which have no fixed agent cell "
                             "(e.g. the memory benchmark's map view); a dream env needs the egocentric view")
        self.rewards_only_on_termination = bool(meta.get("rewards_only_on_termination", False))
        trained_on = meta.get("env_id")
        if real_env_id is None:
            if trained_on is None:
                raise CheckpointError("the checkpoint's metadata names no 'env_id'; pass real_env_id")
            real_env_id = trained_on
        elif trained_on is not None and real_env_id.split(":")[-1] != trained_on.split(":")[-1]:
            raise ValueError(f"the checkpoint was trained on {trained_on!r}, not {real_env_id!r}; "
                             "its token frames and dynamics belong to that env")
        self.real_env_id = real_env_id
        self.real_env = make_real_env(real_env_id, **(real_env_kwargs or {}))
        space = self.real_env.observation_space
        if not (isinstance(space, spaces.Dict) and "image" in space.spaces and "direction" in space.spaces):
            raise ValueError(f"real env {real_env_id!r} has observation space {space}; the dream envs need "
                             "MiniGrid's Dict(image, direction, ...)")
        if not isinstance(self.real_env.action_space, spaces.Discrete) \
                or self.real_env.action_space.n != config.num_actions:
            raise ValueError(f"real env {real_env_id!r} has actions {self.real_env.action_space}, the model "
                             f"{config.num_actions}")
        self.action_space = self.real_env.action_space
        self.obs_mode, self.image_only, self.tile_size = obs_mode, bool(image_only), int(tile_size)
        self.has_mission = "mission" in space.spaces and not self.image_only
        self.single_observation_space = self._observation_space(space)
        self.temperature = float(temperature)
        # bf16 autocast for the model step: on CUDA by default (matrix units, half the bytes); the
        # attention cache is kept in bf16 too; the SSM state, sampling and outputs stay float32.
        self.bf16 = precision == "bf16" or (precision == "auto" and self.device.type == "cuda")
        # torch.compile fuses the step's many small elementwise kernels (opt-in: compiling takes a
        # while, and again for every new batch size).
        self.model_step = torch.compile(self.model.step, dynamic=False) if compile else self.model.step
        self.termination = termination
        if max_episode_steps is None:
            spec = self.real_env.spec
            max_episode_steps = (spec.max_episode_steps if spec is not None and spec.max_episode_steps
                                 else getattr(self.real_env.unwrapped, "max_steps", None))
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or int(max_episode_steps) < 1):
            raise ValueError(f"max_episode_steps must be a positive integer or None; got {max_episode_steps!r}")
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.legal = self.codec.legal_mask().to(self.device)                 # [H, W, V] bool
        self.starts = self._load_starts(starts)
        self._real_cache: dict[int, tuple[np.ndarray, str]] = {}

    def initial_state(self, batch_size: int):
        return self.model.initial_state(batch_size, self.device, torch.bfloat16 if self.bf16 else None)

    # -------------------------------------------------------------------------------- spaces

    def _observation_space(self, real: spaces.Dict) -> spaces.Space:
        image = real["image"]
        if self.obs_mode == "rgb":
            h, w = self.codec.frame_shape
            image = spaces.Box(0, 255, (h * self.tile_size, w * self.tile_size, 3), dtype=np.uint8)
        if self.image_only:
            return image
        return spaces.Dict({**real.spaces, "image": image})

    # -------------------------------------------------------------------------------- starts

    def check_frames(self, frames: Any, what: str) -> torch.Tensor:
        """Token frames [..., H, W] as a LongTensor, checked to decode."""
        t = frames.detach().cpu().clone() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.array(frames))
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() < 2 \
                or tuple(t.shape[-2:]) != tuple(self.codec.frame_shape):
            raise ValueError(f"{what} must be integer token frames [..., {self.codec.frame_shape[0]}, "
                             f"{self.codec.frame_shape[1]}]; got {t.dtype} {tuple(t.shape)}")
        t = t.long()
        try:
            self.codec.decode_batch(t.numpy())
        except ValueError as e:
            raise ValueError(f"{what} holds a frame the codec cannot decode: {e}") from None
        return t

    def _load_starts(self, starts) -> list[tuple[torch.Tensor, int | None]] | None:
        """None (reset the real env) or a list of (start frame [H, W], seed of its episode or None)."""
        if starts is None:
            return None
        if isinstance(starts, (str, os.PathLike)):
            from train.dataset import EpisodeDataset   # lazily: only for dataset starts
            starts = EpisodeDataset(starts)
        if hasattr(starts, "episode") and hasattr(starts, "manifest"):
            codec_cfg = starts.manifest.get("codec")
            if codec_cfg != self.codec.config:
                raise ValueError(f"the dataset's codec {codec_cfg!r} differs from the checkpoint's {self.codec.config!r}")
            if starts.env_id.split(":")[-1] != self.real_env_id.split(":")[-1]:
                raise ValueError(f"the dataset holds {starts.env_id!r} episodes, not {self.real_env_id!r}")
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

    def real_start(self, seed: int | None) -> tuple[torch.Tensor, str]:
        """(frame [H, W], mission) of the real env's reset with `seed`; cached per seed."""
        if seed is not None and seed in self._real_cache:
            frame, mission = self._real_cache[seed]
            return torch.from_numpy(frame.copy()), mission
        obs, _ = self.real_env.reset(seed=seed)
        frame = self.codec.encode(obs).long()
        mission = obs.get("mission", "") if isinstance(obs, Mapping) else ""
        if seed is not None and len(self._real_cache) < 65536:
            self._real_cache[seed] = (frame.numpy(), mission)
        return frame, mission

    def mission_for(self, seed: int | None) -> str:
        return self.real_start(seed)[1] if self.has_mission else ""

    # -------------------------------------------------------------------------------- dreaming

    @torch.no_grad()
    def dream_step(self, state, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator):
        """One batched WorldModel.step and sampling on the device (`worldsim.sampling.sample_step`)."""
        return sample_step(self.model_step, state, frames, actions, self.legal, self.temperature,
                           self.termination, generator, self.bf16, self.rewards_only_on_termination)

    def format_obs(self, frames: np.ndarray, missions: Sequence[str]) -> list:
        """Token frames [B, H, W] (numpy) -> B observations in the chosen format."""
        images, directions = self.codec.decode_batch(frames)
        if self.obs_mode == "rgb":
            images = self.codec.render(frames, tile_size=self.tile_size)
        if self.image_only:
            return list(images)
        return [self._obs_dict(img, d, m) for img, d, m in zip(images, directions, missions, strict=True)]

    def _obs_dict(self, image, direction, mission) -> dict:
        obs = {"image": image, "direction": int(direction)}
        if self.has_mission:
            obs["mission"] = mission
        return obs

    def render_rgb(self, frames: np.ndarray) -> np.ndarray:
        return self.codec.render(frames)

    def close(self) -> None:
        self.real_env.close()


def generator_for(device: torch.device, np_random: np.random.Generator) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(np_random.integers(0, 2**63 - 1)))
    return gen


# ---------------------------------------------------------------------------------------- DreamEnv


class DreamEnv(gym.Env):
    """One imagined episode; observation and action spaces are the real env's. See the module docstring.

    A dream knows only what the model predicts, the agent's egocentric view: ``render()`` draws that
    view (MiniGrid: the 7x7 cells, by MiniGrid's tile renderer), where the real env renders the full
    map. ``get_frame(tile_size=..., agent_pov=True)`` gives the same picture, so MiniGrid's
    ``RGBImgPartialObsWrapper`` works on a DreamEnv; the full map (``agent_pov=False``, which
    ``RGBImgObsWrapper`` asks for) does not exist in a dream.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 10}

    def __init__(self, checkpoint, real_env_id: str | None = None, obs_mode: str = "symbolic",
                 image_only: bool = False, device: str | torch.device = "auto", temperature: float = 1.0,
                 termination: str = "threshold", max_episode_steps: int | None = None, starts=None,
                 render_mode: str | None = None, tile_size: int = RGB_TILE_SIZE,
                 real_env_kwargs: dict | None = None, precision: str = "auto", compile: bool = False):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; choose one of "
                             f"{self.metadata['render_modes']}")
        self.render_mode = render_mode
        self.setup = DreamSetup(checkpoint, real_env_id, obs_mode, image_only, device, temperature, termination,
                                max_episode_steps, starts, tile_size, real_env_kwargs, precision, compile)
        self.observation_space = self.setup.single_observation_space
        self.action_space = self.setup.action_space
        self.model = self.setup.model
        self.codec = self.setup.codec
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
        options = options or {}
        s = self.setup
        info: dict[str, Any] = {}
        if "start" in options:
            frame = s.check_frames(options["start"], "options['start']")
            if frame.dim() != 2:
                raise ValueError(f"options['start'] must be one frame {tuple(s.codec.frame_shape)}")
            mission = s.mission_for(seed)
            info["start"] = "options"
        elif s.starts is not None:
            i = int(self.np_random.integers(len(s.starts)))
            frame, ep_seed = s.starts[i]
            mission = s.mission_for(ep_seed if ep_seed is not None else seed)
            info["start"] = f"dataset:{i}"
        else:
            real_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
            frame, mission = s.real_start(real_seed)
            info["start"] = "real"
        self._gen = generator_for(s.device, self.np_random)
        self._state = s.initial_state(1)
        self._frame = frame.to(s.device)[None]
        self._mission = mission
        self._steps = 0
        if self.render_mode == "human":
            self.render()
        return self._obs(), info

    def _obs(self):
        return self.setup.format_obs(self._frame.cpu().numpy(), [self._mission])[0]

    def step(self, action):
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in the action space {self.action_space}")
        a = torch.tensor([int(action)], dtype=torch.long, device=self.setup.device)
        nxt, reward, terminated, p_done = self.setup.dream_step(self._state, self._frame, a, self._gen)
        self._frame = nxt
        self._steps += 1
        terminated = bool(terminated[0])
        truncated = (not terminated and self.max_episode_steps is not None
                     and self._steps >= self.max_episode_steps)
        info = {"done_prob": float(p_done[0]), "episode_step": self._steps}
        if self.render_mode == "human":
            self.render()
        return self._obs(), float(reward[0]), terminated, bool(truncated), info

    def render(self):
        if self.render_mode is None:
            return None
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        rgb = self.setup.render_rgb(self._frame[0].cpu().numpy())
        if self.render_mode == "rgb_array":
            return rgb
        self._show(rgb)
        return None

    def get_frame(self, highlight: bool = True, tile_size: int = FRAME_TILE_SIZE, agent_pov: bool = True) -> np.ndarray:
        """RGB uint8 of the dreamed egocentric view, as MiniGrid's ``get_frame(agent_pov=True)`` draws
        it (what ``RGBImgPartialObsWrapper`` calls). `highlight` is accepted for MiniGrid's signature;
        like MiniGrid's agent view, the picture always highlights the seen cells."""
        if not agent_pov:
            raise ValueError("a dream only knows the agent's egocentric view, not the full map: get_frame needs "
                             "agent_pov=True (RGBImgPartialObsWrapper works on a DreamEnv; RGBImgObsWrapper, the "
                             "full map, does not)")
        if self._frame is None:
            raise gym.error.ResetNeeded("call reset() before get_frame()")
        return self.codec.render(self._frame[0].cpu().numpy(), tile_size=int(tile_size))

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
            pygame.display.set_caption(f"worldsim dream: {self.setup.real_env_id}")
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
