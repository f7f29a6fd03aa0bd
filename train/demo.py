"""`worldsim demo`: what the project is for, in a few minutes, offline, on the shipped Empty-8x8 model.

1. Loads the world model shipped in the package (`worldsim.zoo`; nothing is downloaded or trained).
2. Dreams one episode and plays the same actions in the real env (a scripted expert's actions from the
   real reset), and writes the two side by side as a GIF.
3. Trains PPO in the dream, and PPO in the real env with the same budget and seed, evaluates both in
   the real env and prints the learned-vs-real table (`agents.benchmark.learned_vs_real`).

Uses the GPU when there is one. ``quick`` (CI) shrinks every budget so the whole path runs in seconds;
its numbers mean nothing beyond "this works".
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import torch

from worldsim.zoo import shipped_model

ENV_ID = "MiniGrid-Empty-8x8-v0"


def expert_actions(env_id: str, seed: int, limit: int = 64) -> list[int]:
    """The scripted expert's actions in the real env from reset(seed), up to the goal."""
    from envs.minigrid.goal_seeker import GoalSeeker

    env = gym.make(env_id)
    try:
        obs, _ = env.reset(seed=seed)
        u = env.unwrapped
        agent = GoalSeeker(seed=seed)
        agent.reset(obs, u.agent_pos, (u.width, u.height))
        actions = []
        for _ in range(limit):
            actions.append(int(agent.act(obs, u.agent_pos)))
            obs, _, terminated, truncated, _ = env.step(actions[-1])
            if terminated or truncated:
                break
        return actions
    finally:
        env.close()


def run_demo(out_dir: str = "runs/demo", quick: bool = False, seed: int = 0, device: str = "auto") -> dict:
    from agents.benchmark import format_benchmark_table, learned_vs_real

    from .play import PlaySession, run_headless

    start = time.perf_counter()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = shipped_model(ENV_ID)
    print(f"world model: {model.dream_id} (shipped, {model.card['model']['parameters'] / 1e6:.1f} M parameters, "
          f"held-out next-frame accuracy {model.card['metrics']['eval/acc']:.3f}); device: {device}")

    gif = out / "dream_vs_real.gif"
    session = PlaySession(str(model.path), real=True, seed=seed, device=device)
    try:
        rollout = run_headless(session, expert_actions(ENV_ID, seed), record=str(gif), verbose=False)
    finally:
        session.close()
    print(f"same actions in the dream and the real env: {rollout['steps']} steps, cells agreeing "
          f"{rollout['agreement']:.1%}, dream {'reached the goal' if rollout['terminated'] else 'did not end'} "
          f"(reward {rollout['dream_reward']:.2f}, real {rollout['real_reward']:.2f}); wrote {gif}")

    steps, episodes = (1024, 3) if quick else (20480, 50)
    print(f"training PPO for {steps:,} steps in the dream and in the real env, then {episodes} real "
          "evaluation episodes each ...", flush=True)
    result = learned_vs_real(ENV_ID, model.path, steps=steps, seeds=1, eval_episodes=episodes, planner_episodes=0,
                             out=out / "learned_vs_real", device=device, real_device="cpu",
                             max_episode_steps=64 if quick else None)
    print(format_benchmark_table(result))
    summary = {
        "gif": str(gif), "rollout_agreement": rollout["agreement"], "dream_terminated": rollout["terminated"],
        "real_success": result["methods"]["real_ppo"]["success_rate"],
        "dream_success": result["methods"]["dream_ppo"]["success_rate"],
        "success_ratio_dream_over_real": result["success_ratio_dream_over_real"],
        "seconds": time.perf_counter() - start,
    }
    print(f"demo done in {summary['seconds']:.0f} s; results in {out}")
    return summary
