"""Training a frame tokenizer (``envs.images.tokenizer``) on frames of an image env, and measuring
how well it reconstructs frames it never saw.

The loss is plain reconstruction (mean squared error on pixels in [0, 1]); FSQ needs nothing else.
Batches are drawn uniformly from the training frames with a seeded generator, the learning rate
warms up for 5% of the steps and then decays to a tenth along a cosine.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from envs.images import quality
from envs.images.sources import random_frames
from envs.images.tokenizer import FrameTokenizer, TokenizerConfig
from worldsim.checks import positive_int


@dataclass(frozen=True)
class TokenizerTraining:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    log_every: int = 200

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every"):
            positive_int(name, getattr(self, name))
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ValueError(f"lr must be a number in (0, 1); got {self.lr!r}")


def policy_frames(env_id: str, num_frames: int, seed: int = 0, policy: str = "random",
                  epsilon: str | float | None = None) -> np.ndarray:
    """`num_frames` image observations uint8 [N, H, W, C] of `policy` in the env, episodes seeded seed, seed
    + 1, ... A tokenizer must see the tiles an agent will meet (random play in DoorKey never shows the
    goal room; in Memory Maze it spins near the start), so envs take collect's policies (MiniGrid's
    "expert", "explore"; Memory Maze's "walk"; an agent folder; mixed with random actions by `epsilon`),
    MiniGrid's drawn in its RGB partial view."""
    positive_int("num_frames", num_frames)
    if policy == "random" and epsilon is None:
        return random_frames(env_id, num_frames, seed=seed)
    import gymnasium as gym
    from minigrid.minigrid_env import MiniGridEnv

    from envs.images.sources import MINIGRID_TILE, as_image_env
    from envs.memory_maze import MemoryMazeEnv

    from .collect import ImageView, PoseView
    from .collect_policies import make_policy

    probe = gym.make(env_id)
    try:
        num_actions = int(probe.action_space.n)
        if isinstance(probe.unwrapped, MiniGridEnv):
            side = probe.unwrapped.agent_view_size
            env = PoseView(gym.make(env_id), rgb_size=side * MINIGRID_TILE)
            actor = make_policy(policy, 1, num_actions, side, epsilon=epsilon)
        else:
            shape = tuple(as_image_env(probe).observation_space.shape)
            env = ImageView(gym.make(env_id), shape)
            actor = make_policy(policy, 1, num_actions, 0, epsilon=epsilon, image_shape=shape,
                                walkable=isinstance(probe.unwrapped, MemoryMazeEnv))
    finally:
        probe.close()
    frames, episode = [], seed
    try:
        while len(frames) < num_frames:
            obs, info = env.reset(seed=episode)
            actor.start(0, episode, obs, info["agent_pos"], info["grid_size"], info)
            frames.append(info["rgb"])
            done = False
            while not done and len(frames) < num_frames:
                batch = {"image": obs["image"][None], "direction": np.array([obs["direction"]])}
                action = int(actor.act(batch, info["agent_pos"][None], np.array([True]), [info])[0])
                obs, _, terminated, truncated, info = env.step(action)
                frames.append(info["rgb"])
                done = terminated or truncated
            episode += 1
    finally:
        env.close()
    return np.stack(frames)


def reconstruction(tokenizer: FrameTokenizer, frames: np.ndarray, batch: int = 256) -> dict:
    """PSNR (dB), SSIM and the exact-frame rate of `frames` passed through the tokenizer, how many of
    its tokens they use, and the share of their patches decoded from the patch table."""
    device = next(tokenizer.parameters()).device
    psnr, ssim, exact, used, from_table = [], [], [], set(), 0
    tokenizer.eval()
    for i in range(0, len(frames), batch):
        real = torch.as_tensor(frames[i:i + batch], device=device)
        tokens = tokenizer.encode(real)
        recon = tokenizer.decode(tokens)
        used.update(tokens.unique().tolist())
        from_table += int(tokenizer.table_known[tokens].sum())
        psnr.append(quality.psnr(real, recon))
        exact.append(quality.exact(real, recon))
        if min(real.shape[1:3]) >= 11:
            ssim.append(quality.ssim(real, recon))
    psnr_all = torch.cat(psnr)
    return {"frames": len(frames), "psnr_mean": float(psnr_all.mean()), "psnr_min": float(psnr_all.min()),
            "ssim_mean": float(torch.cat(ssim).mean()) if ssim else None,
            "exact_frame_rate": float(torch.cat(exact).mean()), "tokens_used": len(used),
            "vocab_size": tokenizer.vocab_size, "table_tokens": int(tokenizer.table_known.sum()),
            "patches_from_table": from_table / (len(frames) * math.prod(tokenizer.config.frame_shape))}


def train_tokenizer(frames: np.ndarray, config: TokenizerConfig, training: TokenizerTraining = TokenizerTraining(),
                    device: str | torch.device = "cpu", heldout: np.ndarray | None = None,
                    progress: bool = True) -> tuple[FrameTokenizer, list[dict]]:
    """A tokenizer fitted to `frames` (uint8 [N, H, W, C]) and its history: loss every `log_every`
    steps, with the reconstruction of `heldout` frames when given."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8 or tuple(frames.shape[1:]) != config.image_shape:
        raise ValueError(f"frames must be uint8 [N, {', '.join(map(str, config.image_shape))}]; got {frames.dtype} "
                         f"of shape {frames.shape}")
    torch.manual_seed(training.seed)
    device = torch.device(device)
    tokenizer = FrameTokenizer(config).to(device)
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=training.lr, weight_decay=0.0)
    warmup = max(1, training.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, training.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    data = torch.as_tensor(frames, device=device)
    gen = torch.Generator(device="cpu").manual_seed(training.seed)
    history, start, running = [], time.perf_counter(), 0.0
    bar = tqdm(total=training.steps, desc="tokenizer", unit="step", disable=not progress, dynamic_ncols=True)
    for step in range(1, training.steps + 1):
        tokenizer.train()
        batch = data[torch.randint(len(data), (training.batch_size,), generator=gen).to(device)]
        target = batch.permute(0, 3, 1, 2).float() / 255.0
        recon = tokenizer(batch)
        loss = F.mse_loss(recon, target) + 0.1 * F.l1_loss(recon, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        running += loss.item()
        bar.update(1)
        if step % training.log_every == 0 or step == training.steps:
            record = {"step": step, "loss": running / (step - (history[-1]["step"] if history else 0)),
                      "seconds": time.perf_counter() - start}
            running = 0.0
            if heldout is not None and len(heldout):
                record["heldout"] = reconstruction(tokenizer, heldout)
                bar.set_postfix(loss=f"{record['loss']:.2e}", psnr=f"{record['heldout']['psnr_mean']:.1f}")
            history.append(record)
    bar.close()
    tokenizer.eval().fit_patch_table(data)
    return tokenizer, history
