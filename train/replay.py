"""A policy's real episodes and their actions replayed in a world model's dream, open loop.

The policy plays real MiniGrid episodes from given reset seeds (`real_episodes`, frames recorded by the
model's codec); the dream starts from each episode's first real frame and is fed the same actions, each
new frame being its own previous output, sampled by the dream's own decoder (`replay_in_dream`). Per
step: per-cell accuracy and exact-frame rate against the real frame, the first step where the frames
differ, and whether reward and termination agree. Accuracy is also given over the *knowable* cells: a
cell showing a place never in view before in the episode cannot be known from the past (the dream must
imagine it). `worldsim benchmark fidelity` reports it beside closed-loop results; `worldsim learn`
scores each round's world model with it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from worldsim.codecs import real_frame
from worldsim.data.gap import episode_gap
from worldsim.simulator import Simulator

from .collect_policies import make_policy

REPORT_STEPS = (1, 16, 64, 128, 256, 500)
REWARD_TOLERANCE = 0.1


def real_episodes(env_id: str, policy_spec: str, seeds: list[int], codec, num_actions: int,
                  max_steps: int | None) -> list[dict[str, Any]]:
    """The policy's real episodes, one per seed: token frames [T + 1, H, W], actions, rewards, and how
    the episode ended."""
    import minigrid  # noqa: F401  (registers the MiniGrid ids)

    n = len(seeds)
    policy = make_policy(policy_spec, n, num_actions, codec.view_size)
    kwargs = {} if max_steps is None else {"max_episode_steps": max_steps}
    envs = [gym.make(env_id, **kwargs) for _ in range(n)]
    obs, frames, actions, rewards = [], [], [[] for _ in range(n)], [[] for _ in range(n)]
    poses, transitions = [[] for _ in range(n)], [[] for _ in range(n)]

    def pose(env):
        return np.array(env.unwrapped.agent_pos), int(env.unwrapped.agent_dir)

    for i, (env, seed) in enumerate(zip(envs, seeds)):
        o, _ = env.reset(seed=seed)
        u = env.unwrapped
        policy.start(i, seed, o, np.array(u.agent_pos), (u.width, u.height))
        obs.append(o)
        frames.append([real_frame(codec, o, env)])
        poses[i].append(pose(env))
    active = np.ones(n, dtype=bool)
    ended = [None] * n
    while active.any():
        batch = {"image": np.stack([o["image"] for o in obs]), "direction": np.array([o["direction"] for o in obs])}
        pos = np.stack([np.array(env.unwrapped.agent_pos) for env in envs])
        chosen = policy.act(batch, pos, active)
        for i in np.flatnonzero(active):
            transitions[i].append(transition_kind(envs[i], int(chosen[i])))
            o, r, te, tr, _ = envs[i].step(int(chosen[i]))
            obs[i] = o
            frames[i].append(real_frame(codec, o, envs[i]))
            poses[i].append(pose(envs[i]))
            actions[i].append(int(chosen[i]))
            rewards[i].append(float(r))
            if te or tr:
                active[i], ended[i] = False, "terminated" if te else "truncated"
    for env in envs:
        env.close()
    out = []
    for i in range(n):
        ret = sum(rewards[i])
        tokens = torch.stack(frames[i]).long()
        gap = episode_gap(tokens.numpy(), np.stack([p for p, _ in poses[i]]), np.array([d for _, d in poses[i]]),
                          codec)
        # Never in view before, and not the unseen token (which an occluded cell shows whatever lies there).
        knowable = ~((gap < 0) & (tokens.numpy() != codec.unseen_token))
        out.append({"seed": seeds[i], "frames": tokens, "knowable": torch.from_numpy(knowable),
                    "actions": actions[i], "transitions": transitions[i], "rewards": rewards[i],
                    "ended": ended[i], "return": ret,
                    "success": ended[i] == "terminated" and ret > 0})
    return out


def transition_kind(env, action: int) -> str:
    """What a MiniGrid step is about to do: the action, the object the agent faces and what it carries."""
    u = env.unwrapped
    ahead = u.grid.get(*u.front_pos)
    facing = "nothing" if ahead is None else ahead.type
    if ahead is not None and ahead.type == "door":
        facing = f"{'locked' if ahead.is_locked else 'open' if ahead.is_open else 'closed'} door"
    return f"{u.actions(action).name} facing {facing}, carrying {u.carrying.type if u.carrying else 'nothing'}"


def padded_episodes(sim: Simulator, episodes: list[dict[str, Any]], horizon: int):
    """(lengths [n], real frames [n, steps + 1, H, W], actions [n, steps]) of the episodes' first
    `horizon` steps, zero-padded to the longest."""
    lengths = np.array([min(len(e["actions"]), horizon) for e in episodes])
    steps = int(lengths.max())
    real = torch.zeros(len(episodes), steps + 1, *sim.frame_shape, dtype=torch.long)
    acts = torch.zeros(len(episodes), steps, dtype=torch.long)
    for i, e in enumerate(episodes):
        real[i, :lengths[i] + 1] = e["frames"][:lengths[i] + 1]
        acts[i, :lengths[i]] = torch.tensor(e["actions"][:lengths[i]])
    return lengths, real, acts


@torch.no_grad()
def replay_in_dream(sim: Simulator, episodes: list[dict[str, Any]], horizon: int, seed: int) -> dict[str, Any]:
    """Feed every episode's real actions to the dream, open loop from its first real frame."""
    n = len(episodes)
    lengths, real, acts = padded_episodes(sim, episodes, horizon)
    steps = acts.shape[1]
    knowable = torch.zeros(n, steps + 1, *sim.frame_shape, dtype=torch.bool)
    for i, e in enumerate(episodes):
        knowable[i, :lengths[i] + 1] = e["knowable"][:lengths[i] + 1]
    gen = torch.Generator(device=sim.device)
    gen.manual_seed(seed)
    state = sim.initial_state(n)
    frames = real[:, 0].to(sim.device)
    acc = np.full((n, steps), np.nan)
    acc_known = np.full((n, steps), np.nan)
    exact = np.full((n, steps), np.nan)
    reward_ok = np.full((n, steps), np.nan)
    done_ok = np.full((n, steps), np.nan)
    for t in range(steps):
        frames, reward, terminated, _ = sim.step(state, frames, acts[:, t].to(sim.device), gen)
        live = t < lengths
        same = (frames.cpu() == real[:, t + 1])
        acc[live, t] = same.float().mean(dim=(1, 2)).numpy()[live]
        known = knowable[:, t + 1]
        hits_known = (same & known).flatten(1).sum(1).float() / known.flatten(1).sum(1).clamp(min=1).float()
        acc_known[live, t] = hits_known.numpy()[live]
        exact[live, t] = same.flatten(1).all(1).float().numpy()[live]
        real_reward = np.array([e["rewards"][t] if t < len(e["rewards"]) else 0.0 for e in episodes])
        real_done = np.array([t == len(e["actions"]) - 1 and e["ended"] == "terminated" for e in episodes])
        reward_ok[live, t] = (np.abs(reward.cpu().numpy() - real_reward) <= REWARD_TOLERANCE)[live]
        done_ok[live, t] = (terminated.cpu().numpy() == real_done)[live]
    diverged = [int(np.argmax(exact[i, :lengths[i]] < 1)) + 1 if (exact[i, :lengths[i]] < 1).any() else None
                for i in range(n)]
    by_step = {}
    for s in REPORT_STEPS:
        if s <= steps:
            column = acc[:, s - 1]
            live = ~np.isnan(column)
            if live.any():
                by_step[s] = {"episodes": int(live.sum()), "cell_accuracy": float(column[live].mean()),
                              "knowable_cell_accuracy": float(acc_known[live, s - 1].mean()),
                              "exact_frame": float(exact[live, s - 1].mean())}
    curve = [float(np.nanmean(acc_known[:, t])) for t in range(steps)]
    ended_early = [d for d in diverged if d is not None]
    return {"steps_replayed": int(lengths.sum()), "by_step": by_step, "accuracy_curve": curve,
            "mean_cell_accuracy": float(np.nanmean(acc)), "mean_knowable_cell_accuracy": float(np.nanmean(acc_known)),
            "mean_exact_frame": float(np.nanmean(exact)),
            "first_divergence_steps": diverged,
            "median_first_divergence": float(np.median(ended_early)) if ended_early else None,
            "never_diverged": sum(d is None for d in diverged),
            "reward_agreement": float(np.nanmean(reward_ok)), "termination_agreement": float(np.nanmean(done_ok))}
