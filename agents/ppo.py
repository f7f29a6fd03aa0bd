"""Native PPO: proximal policy optimisation that keeps everything on one torch device.

Written in the manner of CleanRL's single-file ``ppo.py``, for vector envs that return tensors
(``agents.torch_envs``: the dream's ``DreamVectorEnv(return_torch=True)``, or the real MiniGrid env
behind the same face): the rollout buffers, the policy, the value function, generalised advantage
estimation and the updates all live on the device; the host reads the iteration's statistics and
losses once per iteration (and the KL once per epoch with ``target_kl``). With thousands of dream
envs on a GPU nothing crosses to numpy.

    policy, history = train_ppo(envs, total_steps=200_000, settings=PPOSettings(), seed=0)

One iteration: ``num_steps`` steps of every env (actions sampled from the policy), advantages by
GAE(gamma, lambda) with truncated episodes bootstrapped from the value of their last observation,
then ``epochs`` passes over the batch in shuffled minibatches of the clipped surrogate loss plus
``vf_coef`` x value loss minus ``ent_coef`` x entropy, gradients clipped to ``max_grad_norm``. The
learning rate falls linearly to 0 over training (``anneal_lr``), as in rl-baselines3-zoo's 'lin_'
schedules and CleanRL.

The defaults are rl-starter-files' PPO settings for MiniGrid (16 envs x 128 steps, 4 epochs,
minibatches of 256, learning rate 1e-3, entropy bonus 0.01, GAE lambda 0.95, clip 0.2, gradient
norm 0.5), with which it solves DoorKey-5x5 in 100k steps. Thousands of dream envs want shorter
rollouts and bigger minibatches (e.g. ``num_steps=32, minibatch_size=4096``).

A policy is saved as safetensors plus JSON (``save_policy``): loading it (``NativePolicy.load``)
never unpickles anything, and its ``predict`` has Stable-Baselines3's signature, so
``worldsim agent eval`` and ``worldsim collect --policy`` take it like an SB3 model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from gymnasium import spaces
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from worldsim.actions import ActionBox
from worldsim.checkpoint import atomic_write
from worldsim.checks import positive_int
from worldsim.stop_signals import StopSignals, TrainingStopped

from .features import FEATURES, features_extractor

ALGO = "native-ppo"
WEIGHTS_FILE = "policy.safetensors"


@dataclass(frozen=True)
class PPOSettings:
    """Hyperparameters of the native PPO (see the module docstring for what each does)."""

    num_steps: int = 128          # steps of every env per rollout
    epochs: int = 4               # passes over each rollout
    minibatch_size: int = 256
    learning_rate: float = 1e-3
    anneal_lr: bool = True        # fall linearly to 0 over training
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = True         # normalise advantages per minibatch
    target_kl: float | None = None  # stop an iteration's epochs early past this approximate KL
    critic_warmup: int = 0        # first iterations that train the value function alone (the policy acts, unchanged)

    def __post_init__(self):
        for name in ("num_steps", "epochs", "minibatch_size"):
            positive_int(name, getattr(self, name))
        positive_int("critic_warmup", self.critic_warmup, allow_zero=True)
        for name in ("learning_rate", "clip_coef", "max_grad_norm"):
            _number(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("gamma", "gae_lambda"):
            _number(name, getattr(self, name), low=0.0, high=1.0)
        for name in ("ent_coef", "vf_coef"):
            _number(name, getattr(self, name), low=0.0)
        for name in ("anneal_lr", "norm_adv"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        if self.target_kl is not None:
            _number("target_kl", self.target_kl, low=0.0, low_open=True)

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None) -> "PPOSettings":
        """The defaults with `overrides` applied; an unknown key is a ValueError listing the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides or {}) - known)
        if unknown:
            raise ValueError(f"hyperparameter {unknown[0]!r}: the native PPO takes no such setting; "
                             f"known: {', '.join(sorted(known))}")
        return cls(**(overrides or {}))


def _number(name: str, value: Any, low: float | None = None, high: float | None = None, low_open: bool = False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low)) and (high is None or value <= high)
    if not ok:
        allowed = " and ".join(filter(None, [
            None if low is None else f"{'>' if low_open else '>='} {low:g}", None if high is None else f"<= {high:g}"]))
        raise ValueError(f"{name} must be a finite number {allowed}; got {value!r}")


# -------------------------------------------------------------------------------------- network


def _layer(layer: nn.Linear, std: float = math.sqrt(2)) -> nn.Linear:
    # CleanRL's initialisation: orthogonal weights, zero biases; a near-uniform first policy.
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class ActorCritic(nn.Module):
    """Shared image features, then a 64-unit tanh actor head and critic head (value), as rl-starter-files'
    MiniGrid model. Input: uint8 symbolic images [B, H, W, 3], or pixel images [B, H, W, C] for features
    "pixels". The actor gives logits over `num_actions` Discrete actions or, for a Box of actions
    (`action_box`, num_actions 0), the mean of a diagonal Gaussian with a learned, state-independent log
    standard deviation (CleanRL's continuous PPO) in the box scaled to [-1, 1]; ``to_env`` clips a sample to
    that and scales it to the env's units."""

    def __init__(self, observation_shape: tuple[int, ...], num_actions: int, features: str = "cnn",
                 action_box: ActionBox | None = None):
        super().__init__()
        self.observation_shape, self.num_actions, self.feature_kind = tuple(observation_shape), int(num_actions), features
        self.action_box = action_box
        space = spaces.Box(0, 255, self.observation_shape, np.uint8)
        self.features = features_extractor(features, space)
        n = self.features.features_dim
        outputs = num_actions if action_box is None else action_box.dim
        self.actor = nn.Sequential(_layer(nn.Linear(n, 64)), nn.Tanh(), _layer(nn.Linear(64, outputs), 0.01))
        self.critic = nn.Sequential(_layer(nn.Linear(n, 64)), nn.Tanh(), _layer(nn.Linear(64, 1), 1.0))
        if action_box is not None:
            self.log_std = nn.Parameter(torch.zeros(action_box.dim))
            middle, half = action_box.scaling()
            self.register_buffer("action_middle", middle, persistent=False)
            self.register_buffer("action_half", half, persistent=False)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the actor's output [B, A]: action logits, or a Box's Gaussian mean; values [B])."""
        h = self.features(obs)
        return self.actor(h), self.critic(h)[:, 0]

    def sample(self, head: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """An action per row: Discrete by Gumbel-max, a Box's Gaussian sample (in [-1, 1] units, unclipped)."""
        if self.action_box is None:
            return sample_actions(head, generator)
        noise = torch.randn(head.shape, generator=generator, device=head.device)
        return head.float() + self.log_std.exp() * noise

    def mode(self, head: torch.Tensor) -> torch.Tensor:
        """The most likely action of each row."""
        return head.argmax(-1) if self.action_box is None else head.float()

    def log_prob_entropy(self, head: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log-probability of `actions` [B], entropy of the distribution [B])."""
        if self.action_box is None:
            logp = F.log_softmax(head.float(), -1)
            return logp.gather(1, actions[:, None])[:, 0], -(logp.exp() * logp).sum(-1)
        dist = torch.distributions.Normal(head.float(), self.log_std.exp().expand_as(head))
        return dist.log_prob(actions).sum(-1), dist.entropy().sum(-1)

    def to_env(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the env takes them: Discrete as they are; a Box's clipped to [-1, 1], then scaled to
        its bounds."""
        if self.action_box is None:
            return actions
        return self.action_middle + self.action_half * actions.clamp(-1.0, 1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self.features(obs))[:, 0]

    def reset_critic(self) -> None:
        """A value function that knows nothing yet: fresh hidden layer, output 0 everywhere. For a policy
        started from one trained for another reward, whose values would price that reward: an explorer's
        value drops where it collects a bonus, which would read as a loss to the new task."""
        hidden, out = self.critic[0], self.critic[2]
        _layer(hidden)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)

    def spec(self) -> dict[str, Any]:
        return {"observation_shape": list(self.observation_shape), "num_actions": self.num_actions,
                "features": self.feature_kind,
                **({} if self.action_box is None else {"action_box": self.action_box.to_json()})}


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One action per row from softmax(logits), by Gumbel-max with `generator` (reproducible per seed)."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp_(min=1e-20)
    return (logits.float() - torch.log(-torch.log(u))).argmax(-1)


# -------------------------------------------------------------------------------------- learning


def compute_gae(rewards: torch.Tensor, values: torch.Tensor, dones: torch.Tensor, last_value: torch.Tensor,
                gamma: float, gae_lambda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns [T, N] from rewards, values V(obs_t) and dones [T, N] (episode ended
    at step t; the next observation starts a new one) and last_value [N] = V(obs_T)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(last_value)
    next_value = last_value
    for t in reversed(range(rewards.shape[0])):
        carry = 1.0 - dones[t].float()
        delta = rewards[t] + gamma * next_value * carry - values[t]
        running = delta + gamma * gae_lambda * carry * running
        advantages[t] = running
        next_value = values[t]
    return advantages, advantages + values


@dataclass
class _Rollout:
    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    rewards: torch.Tensor
    dones: torch.Tensor
    values: torch.Tensor

    @classmethod
    def empty(cls, steps: int, n: int, obs_shape, obs_dtype, device, action_dim: int | None = None) -> "_Rollout":
        f = lambda dtype: torch.zeros(steps, n, dtype=dtype, device=device)  # noqa: E731
        actions = f(torch.long) if action_dim is None else torch.zeros(steps, n, action_dim, device=device)
        return cls(torch.zeros(steps, n, *obs_shape, dtype=obs_dtype, device=device), actions,
                   f(torch.float32), f(torch.float32), f(torch.bool), f(torch.float32))


class _EpisodeTally:
    """Per-env running return and length on the device; sums over the episodes that end."""

    def __init__(self, n: int, device):
        self.ret = torch.zeros(n, device=device)
        self.length = torch.zeros(n, dtype=torch.long, device=device)
        self.clear()

    def clear(self) -> None:
        z = torch.zeros((), device=self.ret.device)
        self.count, self.return_sum, self.length_sum, self.successes = z.clone(), z.clone(), z.clone(), z.clone()

    def add(self, reward, terminated, done) -> None:
        self.ret += reward
        self.length += 1
        d = done.float()
        self.count += d.sum()
        self.return_sum += (self.ret * d).sum()
        self.length_sum += (self.length * d).sum()
        self.successes += (terminated & (self.ret > 0)).float().sum()   # MiniGrid: reached the goal
        self.ret.masked_fill_(done, 0.0)
        self.length.masked_fill_(done, 0)

    def read(self) -> dict[str, float | None]:
        count, ret, length, wins = torch.stack([self.count, self.return_sum, self.length_sum, self.successes]).tolist()
        self.clear()
        if count == 0:
            return {"episodes": 0, "mean_return": None, "mean_length": None, "success_rate": None}
        return {"episodes": int(count), "mean_return": ret / count, "mean_length": length / count,
                "success_rate": wins / count}


def train_ppo(envs, *, total_steps: int, settings: PPOSettings | None = None, seed: int = 0,
              features: str = "cnn", progress: Callable[[str], None] | None = None, label: str = "native PPO",
              writer=None, every_s: float = 10.0,
              on_iteration: Callable[[ActorCritic, dict[str, Any]], None] | None = None,
              initial: ActorCritic | None = None, keep_critic: bool = True) -> tuple[ActorCritic, list[dict[str, Any]]]:
    """Train a fresh ActorCritic in `envs` (a torch vector env, see the module docstring) for at least
    `total_steps` env steps (whole iterations of num_envs x num_steps). Returns the policy and one
    record per iteration: steps, seconds, the training episodes that ended in it (count, mean return
    and length, success rate) and the losses. `progress` gets a line about every `every_s` seconds;
    `writer`, a TensorBoard SummaryWriter, gets the same numbers. `on_iteration(policy, record)` is
    called after each iteration's update (e.g. to score the policy at fixed step marks). `initial`: a
    policy to start from (its weights are copied; it must fit the env's spaces), else a fresh one; with
    `keep_critic` False its value function starts afresh (``ActorCritic.reset_critic``: it was trained for
    another reward)."""
    settings = settings or PPOSettings()
    positive_int("total_steps", total_steps)
    s, n = settings, envs.num_envs
    device = envs.device
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    action_box = None
    if not isinstance(act_space, spaces.Discrete):
        try:
            action_box = ActionBox.from_space(act_space, "the env")
        except ValueError:
            raise ValueError(f"the native PPO needs a Discrete action space or a Box of floats of shape (N,); the "
                             f"env has {act_space}") from None
    if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 3 or obs_space.shape[-1] != 3:
        raise ValueError(f"the native PPO reads MiniGrid's symbolic image, a Box (H, W, 3); the env observes "
                         f"{obs_space} (a dream env needs image_only=True)")
    torch.manual_seed(seed)
    policy = ActorCritic(obs_space.shape, 0 if action_box else int(act_space.n), features, action_box).to(device)
    if initial is not None:
        if initial.spec() != policy.spec():
            raise ValueError(f"the initial policy is {initial.spec()}; this env and features need {policy.spec()}")
        policy.load_state_dict(initial.state_dict())
        if not keep_critic:
            policy.reset_critic()
    optimizer = torch.optim.Adam(policy.parameters(), lr=s.learning_rate, eps=1e-5)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    batch = n * s.num_steps
    minibatch = min(s.minibatch_size, batch)
    iterations = math.ceil(total_steps / batch)
    buf = _Rollout.empty(s.num_steps, n, obs_space.shape, torch.uint8, device, action_box and action_box.dim)
    tally = _EpisodeTally(n, device)
    next_obs, _ = envs.reset(seed=seed)
    history: list[dict[str, Any]] = []
    start = last_line = time.monotonic()
    if progress:
        progress(f"{label}: starting, {iterations * batch:,} steps ({iterations} iterations of {n} envs x "
                 f"{s.num_steps} steps) on {device}")
    with StopSignals() as stop:
        for it in range(iterations):
            if s.anneal_lr:
                optimizer.param_groups[0]["lr"] = s.learning_rate * (1.0 - it / iterations)
            with torch.no_grad():
                for t in range(s.num_steps):
                    buf.obs[t] = next_obs
                    head, value = policy(next_obs)
                    action = policy.sample(head, gen)
                    buf.actions[t], buf.values[t] = action, value
                    buf.logprobs[t] = policy.log_prob_entropy(head, action)[0]
                    next_obs, reward, terminated, truncated, infos = envs.step(policy.to_env(action))
                    reward = reward.float()
                    tally.add(reward, terminated, terminated | truncated)
                    # A truncated episode did not end: its return goes on as the value of where it stopped.
                    final_value = policy.value(infos["final_obs"])
                    buf.rewards[t] = reward + s.gamma * final_value * (truncated & ~terminated)
                    buf.dones[t] = terminated | truncated
                advantages, returns = compute_gae(buf.rewards, buf.values, buf.dones, policy.value(next_obs),
                                                  s.gamma, s.gae_lambda)
            losses = _update(policy, optimizer, buf, advantages, returns, s, minibatch, gen,
                             critic_only=it < s.critic_warmup)
            episodes = tally.read()
            now = time.monotonic()
            record = {"iteration": it + 1, "steps": (it + 1) * batch, "seconds": round(now - start, 3), **episodes,
                      **losses, "learning_rate": optimizer.param_groups[0]["lr"]}
            history.append(record)
            if writer is not None:
                for key, value in record.items():
                    if key not in ("iteration", "steps") and value is not None:
                        writer.add_scalar(f"ppo/{key}", value, record["steps"])
            if on_iteration is not None:
                on_iteration(policy, record)
            if progress and (now - last_line >= every_s or it + 1 == iterations):
                last_line = now
                done = " (done)" if it + 1 == iterations else ""
                progress(_progress_line(label, record, iterations * batch) + done)
            if stop.requested is not None and it + 1 < iterations:
                # Asked to stop (SIGTERM, Ctrl-C): leave between iterations with the policy so far.
                raise TrainingStopped(stop.requested, record["steps"], work=label, partial=(policy, history))
    return policy, history


def _update(policy, optimizer, buf: _Rollout, advantages, returns, s: PPOSettings, minibatch: int, gen,
            critic_only: bool = False) -> dict:
    """The iteration's epochs of minibatch updates; with `critic_only` the value loss alone, through the critic
    head alone (the shared features and the actor stay as they are)."""
    obs = buf.obs.flatten(0, 1)
    actions, old_logprobs = buf.actions.flatten(0, 1), buf.logprobs.flatten()
    advantages, returns = advantages.flatten(), returns.flatten()
    size = obs.shape[0]
    totals = torch.zeros(4, device=obs.device)   # policy loss, value loss, entropy, approx KL
    updates = 0
    for _ in range(s.epochs):
        order = torch.randperm(size, generator=gen, device=obs.device)
        for lo in range(0, size, minibatch):      # the last minibatch takes the remainder
            idx = order[lo:lo + minibatch]
            if critic_only:
                with torch.no_grad():
                    h = policy.features(obs[idx])
                    head = policy.actor(h)
                values = policy.critic(h)[:, 0]
            else:
                head, values = policy(obs[idx])
            logprob, entropy = policy.log_prob_entropy(head, actions[idx])
            entropy = entropy.mean()
            log_ratio = logprob - old_logprobs[idx]
            ratio = log_ratio.exp()
            adv = advantages[idx]
            if s.norm_adv:
                adv = (adv - adv.mean()) / (adv.std(unbiased=False) + 1e-8)
            policy_loss = torch.max(-adv * ratio, -adv * ratio.clamp(1 - s.clip_coef, 1 + s.clip_coef)).mean()
            value_loss = 0.5 * (values.float() - returns[idx]).pow(2).mean()
            loss = s.vf_coef * value_loss if critic_only else policy_loss + s.vf_coef * value_loss - s.ent_coef * entropy
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), s.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()     # the low-variance estimator (Schulman)
                totals += torch.stack([policy_loss.detach(), value_loss.detach(), entropy.detach(), approx_kl])
            updates += 1
        if s.target_kl is not None and float(approx_kl) > s.target_kl:
            break
    policy_loss, value_loss, entropy, kl = (totals / max(updates, 1)).tolist()
    return {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, "approx_kl": kl}


def _progress_line(label: str, record: dict, total: int) -> str:
    steps, seconds = record["steps"], record["seconds"]
    if record["episodes"]:
        recent = (f"{record['episodes']} episodes ended: success {record['success_rate']:.2f}, "
                  f"mean return {record['mean_return']:z.2f}")
    else:
        recent = "no episode ended in this iteration"
    return f"{label}: {steps:,}/{total:,} steps, {recent}, {steps / max(seconds, 1e-9):,.0f} steps/s, {seconds:.0f} s"


# -------------------------------------------------------------------------------------- files


def save_policy(policy: ActorCritic, folder: str | Path) -> Path:
    """Write the weights as `folder`/policy.safetensors (atomically); the caller writes agent.json with
    ``policy.spec()`` under "network"."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": ALGO}))
    return folder / WEIGHTS_FILE


class NativePolicy:
    """A saved native-PPO policy, with Stable-Baselines3's ``predict`` (numpy in, numpy out) and
    ``act`` for tensors already on its device."""

    def __init__(self, network: ActorCritic, device: torch.device, seed: int = 0):
        self.network = network.to(device).eval()
        self.device = device
        self.observation_space = spaces.Box(0, 255, network.observation_shape, np.uint8)
        self.action_space = spaces.Discrete(network.num_actions) if network.action_box is None \
            else network.action_box.space()
        self._gen = torch.Generator(device=device)
        self._gen.manual_seed(seed)

    @classmethod
    def load(cls, folder: str | Path, info: dict[str, Any], device: str | torch.device = "cpu") -> "NativePolicy":
        """The policy in `folder` (policy.safetensors) built from agent.json's `info`; ValueError naming
        the file when either does not fit."""
        from worldsim.runtime import resolve_device

        folder = Path(folder)
        spec = info.get("network")
        try:
            shape, num_actions, features = tuple(spec["observation_shape"]), spec["num_actions"], spec["features"]
            box = None if spec.get("action_box") is None else ActionBox.from_json(spec["action_box"], "network")
            actions_fit = isinstance(num_actions, int) and (num_actions == 0 if box else num_actions > 0)
            if features not in FEATURES or not all(isinstance(v, int) and v > 0 for v in shape) or not actions_fit:
                raise ValueError
        except (TypeError, KeyError, ValueError, AttributeError):
            raise ValueError(f"{folder / 'agent.json'}: 'network' must give observation_shape (positive ints), "
                             f"num_actions (a positive int, or 0 beside an action_box) and features (one of "
                             f"{FEATURES}); got {spec!r}") from None
        network = ActorCritic(shape, num_actions, features, box)
        weights = folder / WEIGHTS_FILE
        try:
            tensors = load_file(weights)
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{weights} is not a readable safetensors file ({e})") from None
        expected = network.state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
            raise ValueError(f"{weights} does not fit the network agent.json describes ({spec})")
        network.load_state_dict(tensors)
        return cls(network, resolve_device(device))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        head, _ = self.network(obs.to(self.device))
        actions = self.network.mode(head) if deterministic else self.network.sample(head, self._gen)
        return self.network.to_env(actions)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = False):
        """SB3's signature: observations [B, H, W, 3] (or one [H, W, 3]) -> (actions, None)."""
        obs = np.asarray(observation)
        single = obs.shape == self.network.observation_shape
        if not single and obs.shape[1:] != self.network.observation_shape:
            raise ValueError(f"the policy observes {self.network.observation_shape} images; got an array of "
                             f"shape {obs.shape}")
        actions = self.act(torch.from_numpy(obs[None] if single else obs), deterministic).cpu().numpy()
        return (actions[0] if single else actions), None
