"""Simulator: the one core behind DreamEnv, DreamVectorEnv and the planner.

It holds a world model and everything needed to dream a batch of B frames forward: the codec and
its legal-token mask, the device and precision (``worldsim.runtime``), the sampling settings
(temperature, termination mode), the reward rule, and ONE observation formatter.

    sim = Simulator.from_checkpoint("MiniGrid-Empty-8x8-v0", device="cpu")   # folder, shipped id or WorldModel
    state = sim.initial_state(B)
    frames, reward, terminated, info = sim.step(state, frames, actions, generator=gen)
    obs = sim.observations(frames)                  # batched, in the real env's format

One step (``step``): ``WorldModel.step(state, frames, actions)`` (the state is updated in place),
then on the device

- frame: every cell from softmax(logits / temperature) over the codec's *legal* tokens for that
  cell (``codec.legal_mask``), so every sampled frame decodes (Gumbel-max); temperature 0: argmax;
  a world-state codec's agent is placed first, in its most likely cell (``one_agent_logits``).
  The default (``temperature=None``) depends on the kind of frame (``codecs.default_temperature``):
  argmax for a world-state frame, 1.0 for the agent's own view;
- terminated: ``termination="threshold"``: sigmoid(done_logit) > 0.5; ``"sample"``: a Bernoulli draw;
- reward: the predicted reward; with ``rewards_only_on_termination`` (an env that pays only on the
  terminating step, as the trainer records in the checkpoint's metadata) zero on steps that go on;
- uncertainty: the mean per-cell entropy of the next frame (``info["uncertainty"]``). Pessimism, as
  in model-based offline RL (MOPO, MOReL): ``uncertainty_penalty`` subtracts that many times it from
  the reward, and past ``uncertainty_limit`` the envs end the episode (truncated; ``info["halted"]``),
  so an agent cannot profit from states the model does not know. A negative penalty is a bonus
  instead: optimism, which sends an exploring agent to what the model does not know yet (the states
  whose real outcome is worth collecting).

Observations (``observations``): symbolic cells as the real env gives them (MiniGrid: image and
direction, plus the mission when the caller passes missions), RGB with ``obs_mode="rgb"`` (as
``RGBImgPartialObsWrapper``, ``tile_size`` 8), the image alone with ``image_only=True`` (as
``ImgObsWrapper``); as numpy, or as device tensors (``as_torch=True``, decoded through lookup tables).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from .actions import action_box_of
from .checks import positive_int
from .codecs import PixelCodec, WorldStateCodec, codec_for_model, default_temperature, one_agent_token_base
from .model import WorldModel
from .runtime import autocast, check_precision, resolve_device, resolve_precision, state_dtype
from .sampling import (TERMINATION_MODES, Uniforms, draw_uniforms, frame_entropy, legal_logits, one_agent_logits,
                       sample_frames, sample_termination)
from .zoo import resolve_checkpoint, shipped_models

OBS_MODES = ("symbolic", "rgb")
RGB_TILE_SIZE = 8  # RGBImgPartialObsWrapper's default


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


def _check_pessimism(penalty: float, limit: float | None) -> None:
    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not number(penalty):
        raise ValueError(f"uncertainty_penalty must be a finite number (> 0: pessimism, < 0: a bonus for "
                         f"exploring); got {penalty!r}")
    if limit is not None and (not number(limit) or limit <= 0):
        raise ValueError(f"uncertainty_limit must be None or a finite number > 0 (nats per cell); got {limit!r}")


def _check_settings(precision: str, obs_mode: str, termination: str, temperature: float | None) -> None:
    check_precision(precision)
    if obs_mode not in OBS_MODES:
        raise ValueError(f"obs_mode must be one of {OBS_MODES}; got {obs_mode!r}")
    if termination not in TERMINATION_MODES:
        raise ValueError(f"termination must be one of {TERMINATION_MODES}; got {termination!r}")
    if temperature is not None and (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                                    or not math.isfinite(temperature) or temperature < 0):
        raise ValueError(f"temperature must be None (the default for the model's frames) or a finite number >= 0; "
                         f"got {temperature!r}")


class Simulator:
    """A world model that dreams batches of frames. See the module docstring.

    model: a WorldModel (moved to `device`), or any object with ``config`` (``num_actions``, and
    ``metadata`` naming the codec unless `codec` is given), ``initial_state(batch, device, dtype)``
    and ``step(state, frames, actions) -> (WorldModelOutput, state)``, already on `device`.
    codec: None takes the one the model's ``config.metadata["codec"]`` names.
    rewards_only_on_termination: None takes the model's ``config.metadata`` (default False).
    compile: wrap the model step in ``torch.compile`` (fuses the step's many small elementwise
    kernels; opt-in, as compiling takes a while, and again for every new batch size).
    """

    def __init__(self, *, model: Any, codec: Any = None, device: str | torch.device = "auto",
                 precision: str = "auto", temperature: float | None = None, termination: str = "threshold",
                 rewards_only_on_termination: bool | None = None, obs_mode: str = "symbolic",
                 image_only: bool = False, tile_size: int = RGB_TILE_SIZE, compile: bool = False,
                 uncertainty_penalty: float = 0.0, uncertainty_limit: float | None = None):
        _check_settings(precision, obs_mode, termination, temperature)
        _check_pessimism(uncertainty_penalty, uncertainty_limit)
        self.uncertainty_penalty, self.uncertainty_limit = float(uncertainty_penalty), uncertainty_limit
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)   # "float32" or "bfloat16"
        self.model = model.to(self.device).eval() if isinstance(model, WorldModel) else model
        self.codec = codec_for_model(model.config, codec)   # imports the env package, registering its envs
        self.num_actions = int(model.config.num_actions)      # 0: a Box of actions, action_box
        self.action_box = action_box_of(model.config)
        self.temperature = default_temperature(self.codec) if temperature is None else float(temperature)
        self.termination = termination
        if rewards_only_on_termination is None:
            meta = getattr(model.config, "metadata", None) or {}
            rewards_only_on_termination = meta.get("rewards_only_on_termination", False)
        self.rewards_only_on_termination = bool(rewards_only_on_termination)
        self.obs_mode, self.image_only = obs_mode, bool(image_only)
        self.tile_size = positive_int("tile_size", tile_size)
        if obs_mode == "rgb" and isinstance(self.codec, PixelCodec):
            raise ValueError("obs_mode='rgb' draws symbolic frames in pixels; this model's frames are images "
                             f"already ({self.codec.config['version']}): use obs_mode='symbolic'")
        if obs_mode == "rgb" and isinstance(self.codec, WorldStateCodec):
            raise ValueError(f"obs_mode='rgb' needs a model of the agent's own view; this model's frames are the "
                             f"whole env state ({self.codec.config['version']}): use obs_mode='symbolic'")
        self.legal = self.codec.legal_mask().to(self.device)                  # [H, W, V] bool
        self.agent_token_base = one_agent_token_base(self.codec)              # None: the agent's cell is fixed
        self.model_step = torch.compile(self.model.step, dynamic=False) if compile else self.model.step
        self._luts: tuple[torch.Tensor, torch.Tensor, tuple[int, int]] | None = None   # built on first use

    @classmethod
    def from_checkpoint(cls, checkpoint: Any, *, device: str | torch.device = "auto", **settings) -> Simulator:
        """A Simulator over a checkpoint folder (``WorldModel.save_pretrained``), a shipped model's id
        (``worldsim models``) or a WorldModel; `settings` are the constructor's keywords. The settings
        are checked before the model is loaded, so a typo fails fast."""
        _check_settings(settings.get("precision", "auto"), settings.get("obs_mode", "symbolic"),
                        settings.get("termination", "threshold"), settings.get("temperature"))
        _check_pessimism(settings.get("uncertainty_penalty", 0.0), settings.get("uncertainty_limit"))
        device = resolve_device(device)
        return cls(model=load_world_model(checkpoint, device), device=device, **settings)

    @property
    def bf16(self) -> bool:
        """True when the model step runs under bf16 autocast."""
        return self.precision == "bfloat16"

    @property
    def frame_shape(self) -> tuple[int, int]:
        return tuple(self.codec.frame_shape)

    # -------------------------------------------------------------------------------- stepping

    def initial_state(self, batch_size: int):
        """A fresh model state for `batch_size` frames on the device (attention cache in bf16 under bf16)."""
        return self.model.initial_state(batch_size, self.device, state_dtype(self.precision))

    def new_generator(self, np_random: np.random.Generator) -> torch.Generator:
        """A torch Generator on the device seeded from `np_random` (an env's, at reset), so the same seed
        gives the same episode."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(np_random.integers(0, 2**63 - 1)))
        return gen

    @torch.no_grad()
    def advance(self, state, frames: torch.Tensor, actions: torch.Tensor):
        """Feed frames [B, H, W] and actions [B] without sampling (a planner tracking reality); the
        state is updated in place. Returns the WorldModelOutput."""
        # No weight-cast cache: each weight is used once per step, and a captured step must not keep one.
        with autocast(self.device, self.precision, cache_enabled=False):
            out, _ = self.model_step(state, frames, actions)
        return out

    def draw_uniforms(self, batch: int, generator: torch.Generator | None) -> Uniforms:
        """The random numbers one step of `batch` frames uses, drawn from `generator`."""
        h, w = self.frame_shape
        return draw_uniforms(batch, (h, w, self.codec.vocab_size), temperature=self.temperature,
                             termination=self.termination, generator=generator, device=self.device)

    @torch.no_grad()
    def step(self, state, frames: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None,
             *, uniforms: Uniforms | None = None):
        """One batched dream step on the device.

        state: the model state of B frames (updated in place); frames [B, H, W] long (current
        frames); actions [B] long; the step's random numbers are drawn from `generator`, or given as
        `uniforms` (``draw_uniforms``; same numbers, same step). Returns (next frames [B, H, W]
        long, reward [B] float32, terminated [B] bool, info) with info["done_prob"] [B] float32, the
        predicted probability that the step ends the episode, info["uncertainty"] [B] float32 (see
        the module docstring) and info["halted"] [B] bool, where it passed ``uncertainty_limit``."""
        if uniforms is None:
            uniforms = self.draw_uniforms(frames.shape[0], generator)
        out = self.advance(state, frames, actions)
        # Masked once, for sampling and uncertainty.
        logits = one_agent_logits(legal_logits(out.frame_logits, self.legal), self.agent_token_base)
        nxt = sample_frames(logits, legal=None, temperature=self.temperature, uniform=uniforms.frames)
        p_done, terminated = sample_termination(out.done_logits, mode=self.termination, uniform=uniforms.done)
        reward = out.reward.float()
        if self.rewards_only_on_termination:
            reward = reward * terminated
        uncertainty = frame_entropy(logits, legal=None)
        if self.uncertainty_penalty:
            reward = reward - self.uncertainty_penalty * uncertainty
        halted = uncertainty > self.uncertainty_limit if self.uncertainty_limit is not None \
            else torch.zeros_like(terminated)
        return nxt, reward, terminated, {"done_prob": p_done, "uncertainty": uncertainty, "halted": halted}

    # -------------------------------------------------------------------------------- frames

    def check_frames(self, frames: Any, what: str) -> torch.Tensor:
        """Token frames [..., H, W] (tensor or array) as a CPU LongTensor, checked to decode;
        ValueError naming `what` otherwise."""
        t = frames.detach().cpu().clone() if isinstance(frames, torch.Tensor) else torch.as_tensor(np.array(frames))
        if t.dtype.is_floating_point or t.dtype == torch.bool or t.dim() < 2 or tuple(t.shape[-2:]) != self.frame_shape:
            raise ValueError(f"{what} must be integer token frames [..., {self.frame_shape[0]}, "
                             f"{self.frame_shape[1]}]; got {t.dtype} {tuple(t.shape)}")
        t = t.long()
        try:
            self.codec.decode_batch(t.numpy())
        except ValueError as e:
            raise ValueError(f"{what} holds a frame the codec cannot decode: {e}") from None
        return t

    def render(self, frames: np.ndarray | torch.Tensor, tile_size: int | None = None) -> np.ndarray:
        """RGB uint8 [..., H * tile, W * tile, 3] of token frames [..., H, W] (the codec's tile size by default)."""
        tokens = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else frames
        return self.codec.render(tokens) if tile_size is None else self.codec.render(tokens, tile_size=int(tile_size))

    # -------------------------------------------------------------------------------- observations

    def observation_space(self, real: spaces.Space) -> spaces.Space:
        """The space of one formatted observation, given the real env's Dict(image, direction, ...) (or its
        image Box, for an image codec)."""
        if isinstance(self.codec, PixelCodec):
            return real
        image = real["image"]
        if self.obs_mode == "rgb":
            h, w = self.frame_shape
            image = spaces.Box(0, 255, (h * self.tile_size, w * self.tile_size, 3), dtype=np.uint8)
        if self.image_only:
            return image
        return spaces.Dict({**real.spaces, "image": image})

    def observations(self, frames: torch.Tensor | np.ndarray, missions: Sequence[str] | None = None, *,
                     as_torch: bool = False):
        """Token frames [B, H, W] -> B observations, batched.

        image_only: images [B, ...] (symbolic [B, x, y, 3] or RGB [B, H*tile, W*tile, 3], uint8);
        otherwise {"image": images, "direction": int64 [B]} plus "mission": tuple of B strings when
        `missions` is given. as_torch: device tensors decoded through lookup tables, no host sync
        (except for RGB, drawn on the host); missions are not returned then. An image codec's frames
        decode to the images themselves, uint8 [B, H, W, C]."""
        if isinstance(self.codec, PixelCodec):          # a frame is the whole observation, an image
            frames = torch.as_tensor(frames, device=self.device)
            images = self.codec.decode_torch(frames)
            return images if as_torch else images.cpu().numpy()
        if as_torch:
            images, directions = self.decode_torch(frames)
            if self.obs_mode == "rgb":
                images = torch.from_numpy(self.render(frames, self.tile_size)).to(self.device)
            return images if self.image_only else {"image": images, "direction": directions}
        tokens = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
        images, directions = self.codec.decode_batch(tokens)
        if self.obs_mode == "rgb":
            images = self.render(tokens, self.tile_size)
        if self.image_only:
            return images
        obs = {"image": images, "direction": directions.astype(np.int64)}
        if missions is not None:
            obs["mission"] = tuple(missions)
        return obs

    @staticmethod
    def unbatch(obs: Any, i: int) -> Any:
        """Observation i of batched numpy observations (the direction as a Python int, as MiniGrid's)."""
        if not isinstance(obs, dict):
            return obs[i]
        return {k: int(v[i]) if k == "direction" else v[i] for k, v in obs.items()}

    def decode_torch(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, H, W] on the device -> (images uint8 [B, x, y, 3], directions int64 [B]) on the device."""
        if isinstance(self.codec, WorldStateCodec):
            return self.codec.observe_torch(frames)
        if self._luts is None:
            self._luts = self._build_luts()
        img_lut, dir_lut, agent_cell = self._luts
        b, h, w = frames.shape
        idx = torch.arange(h * w, device=frames.device) * self.codec.vocab_size + frames.reshape(b, -1)
        images = img_lut[idx].view(b, h, w, 3).transpose(1, 2)
        return images, dir_lut[frames[:, agent_cell[0], agent_cell[1]]]

    def _build_luts(self) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """Per-cell lookup tables token -> (object, colour, state) and agent token -> direction, probed
        through the codec's own decode_batch, so decoding on the device gives the same numbers."""
        legal = self.codec.legal_mask()                               # [H, W, V]
        h, w, v = legal.shape
        first = legal.float().argmax(-1)                              # a legal filler per cell
        k = torch.arange(v)[:, None, None]
        probes = torch.where(legal.permute(2, 0, 1), k, first)        # [V, H, W]
        images, directions = self.codec.decode_batch(probes.numpy())  # [V, x, y, 3], [V]
        lut = torch.from_numpy(np.ascontiguousarray(np.swapaxes(images, 1, 2)))   # [V, H(y), W(x), 3]
        img_lut = lut.permute(1, 2, 0, 3).reshape(h * w * v, 3).to(self.device)
        dir_lut = torch.from_numpy(directions.astype(np.int64)).to(self.device)
        return img_lut, dir_lut, tuple(self.codec.agent_cell)
