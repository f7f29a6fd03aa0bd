"""`worldsim demo`: an end-to-end smoke of the model core on a real MiniGrid env, offline, on CPU.

Collects random-policy episodes, encodes them with the exact MiniGrid codec, fits a tiny world
model for a short while, and reports held-out next-frame accuracy beside the copy-previous-frame
baseline, how closely frame-by-frame `step()` matches the parallel forward, the recurrent state's
size, and a save/load round trip. (The full demo -- dream env, PPO in the dream -- builds on this.)
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
import torch
import torch.nn.functional as F

from envs.minigrid import MiniGridCodec
from worldsim import WorldModel, WorldModelConfig


def collect_random_episodes(env_id: str, episodes: int, max_steps: int, seed: int):
    """[(frames LongTensor[T+1, H, W], actions LongTensor[T])] from a uniformly random policy."""
    env = gym.make(env_id, max_steps=max_steps)
    codec = MiniGridCodec.for_env(env)
    rng = np.random.default_rng(seed)
    data = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        frames, actions = [codec.encode(obs)], []
        done = False
        while not done:
            action = int(rng.integers(env.action_space.n))
            obs, _, terminated, truncated, _ = env.step(action)
            frames.append(codec.encode(obs))
            actions.append(action)
            done = terminated or truncated
        data.append((torch.stack(frames), torch.tensor(actions)))
    env.close()
    return codec, int(env.action_space.n), data


def sample_windows(data, batch: int, length: int, gen: torch.Generator):
    """Random windows of `length` steps: inputs frames/actions [B, L, ...] and target frames."""
    frames, actions, targets = [], [], []
    for _ in range(batch):
        ep_frames, ep_actions = data[int(torch.randint(len(data), (1,), generator=gen))]
        start = int(torch.randint(len(ep_actions) - length + 1, (1,), generator=gen))
        frames.append(ep_frames[start : start + length])
        actions.append(ep_actions[start : start + length])
        targets.append(ep_frames[start + 1 : start + length + 1])
    return torch.stack(frames), torch.stack(actions), torch.stack(targets)


@torch.no_grad()
def accuracy(model: WorldModel, data) -> tuple[float, float]:
    """Held-out next-frame token accuracy of the model and of copying the previous frame."""
    hits = copy_hits = total = 0
    for frames, actions in data:
        pred = model(frames[None, :-1], actions[None]).frame_logits.argmax(-1)[0]
        hits += (pred == frames[1:]).sum().item()
        copy_hits += (frames[:-1] == frames[1:]).sum().item()
        total += frames[1:].numel()
    return hits / total, copy_hits / total


def run_demo(out_dir: str = "runs/demo", quick: bool = False, seed: int = 0) -> dict:
    start_time = time.perf_counter()
    torch.manual_seed(seed)
    env_id = "MiniGrid-Empty-8x8-v0"
    episodes, steps, window = (12, 40, 16) if quick else (48, 300, 32)
    codec, num_actions, data = collect_random_episodes(env_id, episodes, max_steps=64, seed=seed)
    data = [d for d in data if len(d[1]) >= window]
    train_data, test_data = data[: len(data) * 3 // 4], data[len(data) * 3 // 4 :]
    print(f"collected {len(data)} random episodes of {env_id} ({sum(len(a) for _, a in data)} steps)")

    config = WorldModelConfig(
        vocab_size=codec.vocab_size, frame_shape=codec.frame_shape, num_actions=num_actions,
        d_model=64, n_layers=2, d_state=16, headdim=16, n_heads=4, attn_window=4,
        metadata={"env_id": env_id, "codec": codec.config},
    )
    model = WorldModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        frames, actions, targets = sample_windows(train_data, 8, window, gen)
        logits = model(frames, actions).frame_logits
        loss = F.cross_entropy(logits.flatten(0, -2), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    acc, copy_acc = accuracy(model, test_data)

    # Frame-by-frame recurrence against the parallel forward on a held-out episode.
    frames, actions = test_data[0]
    with torch.no_grad():
        parallel = model(frames[None, :-1], actions[None]).frame_logits[0]
        state = model.initial_state(1)
        size_at_start = state.nbytes
        worst = 0.0
        for t in range(len(actions)):
            out, state = model.step(state, frames[t : t + 1], actions[t : t + 1])
            worst = max(worst, (out.frame_logits[0] - parallel[t]).abs().max().item())

    out_path = Path(out_dir)
    model.save_pretrained(out_path / "checkpoint")
    reloaded = WorldModel.from_pretrained(out_path / "checkpoint")
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))

    summary = {
        "env_id": env_id,
        "train_loss_first": losses[0],
        "train_loss_last": float(np.mean(losses[-10:])),
        "heldout_next_frame_accuracy": acc,
        "copy_previous_frame_accuracy": copy_acc,
        "step_vs_forward_max_abs_diff": worst,
        "state_bytes": state.nbytes,
        "state_bytes_constant": state.nbytes == size_at_start,
        "checkpoint": str(out_path / "checkpoint"),
        "checkpoint_round_trip_exact": same,
        "seconds": time.perf_counter() - start_time,
    }
    print(f"\n{'what':<38}{'value':>14}")
    for key, value in summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<38}{shown:>14}")
    return summary
