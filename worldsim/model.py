"""WorldModel: action-conditioned next-frame prediction over token grids.

Each layer, pre-norm with adaLN-Zero conditioning on the action taken at the frame:
block-wise Mamba2 scan (mixer.py), frame-local attention (attention.py), MLP. Heads on the last
layer give, at frame t, logits for every cell of frame t+1, the reward and the termination of
the step (frame t, action t).

Two ways to run the same network:
- `forward(frames, actions)`: parallel over T frames, for training; optionally continuing from a
  carried state and returning the state after the last frame (truncated backprop).
- `step(state, frame, action)`: one frame for a batch of envs, updating the state in place. Its
  cost and the state's size do not depend on how many frames came before.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .actions import action_box_of
from .attention import FrameLocalAttention, StepInputs
from .checkpoint import CheckpointError, load_config, load_weights, save_checkpoint
from .codecs import load_codec_files, save_codec_files
from .config import WorldModelConfig
from .mixer import BlockwiseMamba2
from .state import LayerState, ModelState


@dataclass
class WorldModelOutput:
    frame_logits: torch.Tensor   # [B, T, H, W, V] (step: [B, H, W, V]): the next frame's tokens
    reward: torch.Tensor         # [B, T] (step: [B]): reward of the step (frame t, action t)
    done_logits: torch.Tensor    # [B, T] (step: [B]): termination logit of that step
    features: torch.Tensor       # [B, T, H, W, D] (step: [B, H, W, D]): last layer's tokens
    state: ModelState | None = None  # forward(..., return_state=True): the state after frame T-1


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def _carried(t: torch.Tensor, carried: torch.Tensor | None) -> torch.Tensor:
    """A state tensor [B, ...] with the rows of fresh episodes (carried [B] False) read as zeros:
    `ModelState.reset` leaves those rows' contents in place and sets only their frame counter."""
    if carried is None:
        return t
    # where, not a product: whatever a finished episode left there (even NaN) must not leak through.
    return torch.where(carried.view(-1, *([1] * (t.dim() - 1))), t, 0)


class WorldModelLayer(nn.Module):
    def __init__(self, config: WorldModelConfig, block_shape: tuple[int, int]):
        super().__init__()
        d = config.d_model
        self.norms = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False) for _ in range(3))
        # adaLN-Zero: (shift, scale, gate) for each of the three sublayers from the action;
        # zero-initialised, so every layer starts as the identity.
        self.modulation = nn.Linear(d, 9 * d)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)
        self.mixer = BlockwiseMamba2(config, block_shape) if config.ssm else None
        self.attn = FrameLocalAttention(config)
        hidden = int(config.mlp_ratio * d)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.neighbours = nn.Conv2d(d, d, 3, padding=1, groups=d) if config.neighbour_mixing else None

    def _mlp(self, h: torch.Tensor) -> torch.Tensor:
        """The MLP of h [B, T, H, W, D], each cell first given its 3x3 neighbourhood (neighbour_mixing)."""
        if self.neighbours is not None:
            b, t, hh, ww, d = h.shape
            grid = h.reshape(b * t, hh, ww, d).permute(0, 3, 1, 2)
            h = h + self.neighbours(grid).permute(0, 2, 3, 1).reshape(b, t, hh, ww, d)
        return self.mlp(h)

    def _sublayer_inputs(self, cond: torch.Tensor):
        """cond [B, T, D] -> 3 (shift, scale, gate) triples shaped [B, T, 1, 1, D]."""
        mods = self.modulation(cond)[:, :, None, None].chunk(9, dim=-1)
        return [mods[i : i + 3] for i in (0, 3, 6)]

    def forward(self, x, cond, frame, episode, state: LayerState | None, slot_frame: torch.Tensor | None,
                carried: torch.Tensor | None = None):
        """Parallel: x [B, T, H, W, D]; frame, episode [B, T] (see WorldModel.forward); carried [B]:
        the rows whose state belongs to an episode under way. Returns (x, LayerState after the last
        frame, the ring's slot frames)."""
        (s1, c1, g1), (s2, c2, g2), (s3, c3, g3) = self._sublayer_inputs(cond)
        if self.mixer is not None:
            y, ssm, conv = self.mixer(
                _modulate(self.norms[0](x), s1, c1),
                None if state is None else _carried(state.ssm, carried),
                None if state is None else _carried(state.conv, carried),
                episode,
            )
            x = x + g1 * y
        else:                                          # attention only: an empty SSM state
            ssm = conv = x.new_zeros(x.shape[0], 0)
        h = _modulate(self.norms[1](x), s2, c2).flatten(2, 3)
        cache = None if state is None else (state.keys, state.values, slot_frame)
        y, (keys, values, new_slot_frame) = self.attn(h, frame, episode, cache)
        x = x + g2 * y.unflatten(2, x.shape[2:4])
        x = x + g3 * self._mlp(_modulate(self.norms[2](x), s3, c3))
        return x, LayerState(ssm=ssm, conv=conv, keys=keys, values=values), new_slot_frame

    def step(self, x, cond, frame, state: LayerState, slot_frame: torch.Tensor, carried: torch.Tensor,
             shared: StepInputs):
        """Recurrent: x [B, 1, H, W, D]; updates `state` in place. carried [B]: rows not at an
        episode's first frame; shared: the attention's per-step inputs (`FrameLocalAttention.step_inputs`)."""
        (s1, c1, g1), (s2, c2, g2), (s3, c3, g3) = self._sublayer_inputs(cond)
        if self.mixer is not None:
            y = self.mixer.step(_modulate(self.norms[0](x), s1, c1), state.ssm, state.conv, carried)
            x = x + g1 * y
        h = _modulate(self.norms[1](x), s2, c2).flatten(1, 3)                  # [B, N, D]
        y = self.attn.step(h, frame, state.keys, state.values, slot_frame, shared)
        x = x + g2 * y.view_as(x)
        return x + g3 * self._mlp(_modulate(self.norms[2](x), s3, c3))


class WorldModel(nn.Module):
    def __init__(self, config: WorldModelConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.token_embed = nn.Embedding(config.vocab_size, d)
        self.position_embed = nn.Parameter(torch.randn(*config.frame_shape, d) * 0.02)
        self.action_box = action_box_of(config)
        if self.action_box is None:
            self.action_embed = nn.Embedding(config.num_actions, d)
        else:                        # a Box of floats, scaled to [-1, 1] by its bounds, then an MLP
            self.action_embed = nn.Sequential(nn.Linear(self.action_box.dim, d), nn.SiLU(), nn.Linear(d, d))
            middle, half = self.action_box.scaling()
            self.register_buffer("action_middle", middle, persistent=False)
            self.register_buffer("action_half", half, persistent=False)
        if config.noise_conditioning:
            # The input frame's corruption level in [0, 1]; zero-initialised (no effect until trained).
            self.noise_embed = nn.Linear(1, d)
            nn.init.zeros_(self.noise_embed.weight)
            nn.init.zeros_(self.noise_embed.bias)
        self.layers = nn.ModuleList(WorldModelLayer(config, b) for b in config.block_sizes)
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_modulation = nn.Linear(d, 2 * d)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)
        self.frame_head = nn.Linear(d, config.vocab_size)
        # Reward and termination of the step, from the frame's pooled tokens.
        self.step_head = nn.Sequential(nn.Linear(d, d), nn.GELU(approximate="tanh"), nn.Linear(d, 2))
        # Recompute each layer's activations in the backward pass instead of storing them
        # (a run-time switch for long training windows, not part of the saved config).
        self.activation_checkpointing = False

    @property
    def attention_frame_dropout(self) -> float:
        """Training switch (not saved with the model): the probability that each earlier frame of a
        frame's attention window is hidden from it in training, so the model learns to carry what it
        needs from the past in its SSM state rather than read it off the last frames."""
        return self.layers[0].attn.frame_dropout

    @attention_frame_dropout.setter
    def attention_frame_dropout(self, probability: float) -> None:
        if probability and any(layer.attn.attends_timeline for layer in self.layers):
            raise ValueError(f"attention_frame_dropout {probability} applies to the frame-local attention window; "
                             f"this model attends over {self.config.attn_window} frames (a causal baseline)")
        for layer in self.layers:
            layer.attn.frame_dropout = float(probability)

    # ---- shared pieces -------------------------------------------------------------------------

    def _check(self, frames: torch.Tensor, actions: torch.Tensor, time_dim: bool) -> None:
        h, w = self.config.frame_shape
        want_f = "[B, T, H, W]" if time_dim else "[B, H, W]"
        box = self.action_box
        want_a = ("[B, T]" if time_dim else "[B]") if box is None else ("[B, T, A]" if time_dim else "[B, A]")
        if frames.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"frames must be an integer tensor, got {frames.dtype}")
        if box is None and actions.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"actions must be an integer tensor (Discrete actions), got {actions.dtype}")
        if box is not None and not actions.dtype.is_floating_point:
            raise TypeError(f"actions must be a float tensor (a Box of {box.dim} floats), got {actions.dtype}")
        nd = 4 if time_dim else 3
        if frames.dim() != nd or tuple(frames.shape[-2:]) != (h, w):
            raise ValueError(f"frames must be {want_f} with H, W = {(h, w)}, got {tuple(frames.shape)}")
        expected = tuple(frames.shape[: nd - 2]) + (() if box is None else (box.dim,))
        if tuple(actions.shape) != expected:
            raise ValueError(f"actions must be {want_a} = {expected}, got {tuple(actions.shape)}")

    def _check_values(self, frames: torch.Tensor, actions: torch.Tensor) -> None:
        # Costs a device sync: done in forward (training), not in step (the env checks its actions).
        c = self.config
        if frames.numel() and (frames.min() < 0 or frames.max() >= c.vocab_size):
            raise ValueError(f"frame tokens must lie in [0, {c.vocab_size}), got [{frames.min()}, {frames.max()}]")
        if self.action_box is not None:
            if not bool(torch.isfinite(actions).all()):
                raise ValueError("actions hold values that are not finite (NaN or infinite)")
        elif actions.numel() and (actions.min() < 0 or actions.max() >= c.num_actions):
            raise ValueError(f"actions must lie in [0, {c.num_actions}), got [{actions.min()}, {actions.max()}]")

    def _embed(self, frames: torch.Tensor, actions: torch.Tensor, noise_level: torch.Tensor | None = None):
        """Token embeddings and the conditioning vector of each frame: its action and, for a model
        with noise_conditioning, its corruption level ([B, T] in [0, 1]; None: 0, clean frames)."""
        x = self.token_embed(frames) + self.position_embed
        if self.action_box is None:
            cond = self.action_embed(actions)
        else:
            cond = self.action_embed(((actions - self.action_middle) / self.action_half).to(x.dtype))
        if self.config.noise_conditioning:
            if noise_level is None:
                noise_level = torch.zeros(frames.shape[:2], device=frames.device)
            cond = cond + self.noise_embed(noise_level[..., None].to(cond.dtype))
        elif noise_level is not None:
            raise ValueError("noise_level is given but this model has no noise_conditioning")
        return x, F.silu(cond)

    def _heads(self, x: torch.Tensor, cond: torch.Tensor):
        """x [B, T, H, W, D], cond [B, T, D] -> logits, reward, done logits, features."""
        shift, scale = self.final_modulation(cond)[:, :, None, None].chunk(2, dim=-1)
        x = _modulate(self.final_norm(x), shift, scale)
        reward, done = self.step_head(x.mean(dim=(2, 3))).unbind(-1)
        return self.frame_head(x), reward, done, x

    # ---- public API ----------------------------------------------------------------------------

    def initial_state(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> ModelState:
        """The state before the first frame of an episode, for `batch_size` envs. `dtype` is that of
        the conv history and attention keys/values (default: the weights'; bf16 halves the state for
        bf16 inference); the SSM state is always float32."""
        c = self.config
        device = torch.device(device) if device is not None else self.position_embed.device
        dtype = dtype or self.position_embed.dtype
        layers = []
        for layer in self.layers:
            shapes = layer.mixer.state_shapes() if layer.mixer is not None else {"ssm": (0,), "conv": (0,)}
            kv = layer.attn.state_shapes(c.tokens_per_frame, c.d_model)
            layers.append(LayerState(
                ssm=torch.zeros(batch_size, *shapes["ssm"], device=device, dtype=torch.float32),
                conv=torch.zeros(batch_size, *shapes["conv"], device=device, dtype=dtype),
                keys=torch.zeros(batch_size, *kv["keys"], device=device, dtype=dtype),
                values=torch.zeros(batch_size, *kv["values"], device=device, dtype=dtype),
            ))
        return ModelState(
            frame=torch.zeros(batch_size, dtype=torch.long, device=device),
            slot_frame=torch.full((batch_size, c.attn_window + 1), -1, dtype=torch.long, device=device),
            layers=layers,
        )

    def forward(
        self,
        frames: torch.Tensor,
        actions: torch.Tensor,
        state: ModelState | None = None,
        return_state: bool = False,
        resets: torch.Tensor | None = None,
        noise_level: torch.Tensor | None = None,
    ) -> WorldModelOutput:
        """frames [B, T, H, W] tokens, actions [B, T]. Output at t predicts frame t+1 from frames
        ≤ t and actions ≤ t of the same episode.

        state: continue from it (None: fresh episodes); it is not modified.
        resets [B, T] bool: True where frame t starts a new episode. From just before it the state is
        read as zeros, exactly as after `state.reset(mask)` between two `step` calls, so training
        windows may cross episode boundaries.
        noise_level [B, T] float: the corruption level of each input frame (models with
        noise_conditioning only; None: clean frames, as the dream steps).
        """
        self._check(frames, actions, time_dim=True)
        self._check_values(frames, actions)
        batch, length = frames.shape[:2]
        if state is not None and state.batch_size != batch:
            raise ValueError(f"state holds {state.batch_size} envs but frames hold {batch}")
        if resets is not None and (resets.shape != (batch, length) or resets.dtype != torch.bool):
            raise ValueError(f"resets must be a bool tensor of shape {(batch, length)}, got "
                             f"{resets.dtype} {tuple(resets.shape)}")
        frame, episode = self._frame_and_episode(state, resets, batch, length, frames.device)
        carried = None if state is None else state.frame > 0
        if noise_level is not None and noise_level.shape != (batch, length):
            raise ValueError(f"noise_level must have shape {(batch, length)}, got {tuple(noise_level.shape)}")
        x, cond = self._embed(frames, actions, noise_level)
        new_layers = []
        for i, layer in enumerate(self.layers):
            args = (x, cond, frame, episode,
                    None if state is None else state.layers[i],
                    None if state is None else state.slot_frame, carried)
            if self.activation_checkpointing and torch.is_grad_enabled():
                x, new_state, slot_frame = checkpoint(layer, *args, use_reentrant=False)
            else:
                x, new_state, slot_frame = layer(*args)
            new_layers.append(new_state)
        logits, reward, done, features = self._heads(x, cond)
        out = WorldModelOutput(logits, reward, done, features)
        if return_state:
            out.state = ModelState(frame=frame[:, -1] + 1, slot_frame=slot_frame, layers=new_layers)
        return out

    @staticmethod
    def _frame_and_episode(state, resets, batch, length, device):
        """Each frame's index within its episode, and a per-row episode number that starts at 0
        (the episode of the carried state) and steps up at every reset. Both [B, T] int64; the
        episode number is None without resets (nothing to mask)."""
        position = torch.arange(length, device=device).expand(batch, -1)
        first = state.frame[:, None] if state is not None else torch.zeros(batch, 1, dtype=torch.long, device=device)
        if resets is None:
            return first + position, None
        last_reset = torch.where(resets, position, -1).cummax(dim=1).values
        frame = torch.where(last_reset >= 0, position - last_reset, first + position)
        return frame, resets.long().cumsum(dim=1)

    def step(
        self, state: ModelState, frame: torch.Tensor, action: torch.Tensor
    ) -> tuple[WorldModelOutput, ModelState]:
        """One frame [B, H, W] and action [B] for every env; `state` is updated in place and returned.

        The output holds the same numbers as forward(...)[:, t] without the time dimension.
        """
        self._check(frame, action, time_dim=False)
        if state.batch_size != frame.shape[0]:
            raise ValueError(f"state holds {state.batch_size} envs but frame holds {frame.shape[0]}")
        x, cond = self._embed(frame[:, None], action[:, None])
        rows = torch.arange(state.batch_size, device=state.device)
        slot = torch.remainder(state.frame, self.config.attn_window + 1)
        state.slot_frame[rows, slot] = state.frame
        # Computed once for all layers: which rows carry an episode on, and the attention's inputs.
        carried = state.frame > 0
        shared = self.layers[0].attn.step_inputs(state.frame, state.slot_frame)
        for layer, layer_state in zip(self.layers, state.layers, strict=True):
            x = layer.step(x, cond, state.frame, layer_state, state.slot_frame, carried, shared)
        logits, reward, done, features = self._heads(x, cond)
        state.frame += 1
        return WorldModelOutput(logits[:, 0], reward[:, 0], done[:, 0], features[:, 0]), state

    # ---- files ---------------------------------------------------------------------------------

    def save_pretrained(self, path) -> None:
        """Write `config.json` and `model.safetensors` into the folder `path` (created if needed), and the
        codec's files when it keeps any (a frame tokenizer: `path`/tokenizer)."""
        save_checkpoint(self, self.config, path)
        save_codec_files((self.config.metadata or {}).get("codec"), path)

    @classmethod
    def from_pretrained(cls, path, device: torch.device | str = "cpu", **overrides) -> "WorldModel":
        """Load a folder written by `save_pretrained`. `overrides` change run-time settings such as
        `backend` or `chunk_size`; sizes must match the weights."""
        config = load_config(path)
        if overrides:
            config = WorldModelConfig.from_dict({**config.to_dict(), **overrides})
        model = cls(config)
        load_weights(path, model)
        try:
            load_codec_files((config.metadata or {}).get("codec"), path)
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path}: its frames cannot be decoded: {e}") from None
        return model.to(device)
