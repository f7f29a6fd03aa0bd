"""`worldsim demo`: what the project is for, in a few minutes, offline, on the shipped Empty-8x8 model.

1. Loads the world model shipped in the package (`worldsim.zoo`; nothing is downloaded or trained).
2. Dreams one episode and plays the same actions in the real env (a scripted expert's actions from the
   real reset), and writes the two side by side as a GIF.
3. Trains PPO in the dream, and PPO in the real env with the same budget and seed, evaluates both in
   the real env and prints the learned-vs-real table (`benchmarks.learned_vs_real`).

The budget and settings are chosen so that both agents learn on any machine, not just on the one
where it was tried: PPO's outcome at a given budget depends on the machine's floating-point
arithmetic (thread count, vector instructions). So the budget leaves a wide margin past where PPO
learns this task (8 runs with these settings on another processor learned between 10k and 26k
steps), the learning rate starts at rl-starter-files' 1e-3 and decays to 0 so that the last updates
cannot undo a learned policy, and a little entropy (0.01) keeps the policy from collapsing onto one
action. Every episode of Empty-8x8 starts from the same state, so greedy evaluation would repeat one
trial 50 times; the demo samples the policies' actions, as they acted in training. The runs behind
these choices: docs/demo/README.md.

torch runs on `threads` threads (default 1): these models are tiny, and one thread is faster than two
on a busy 2-core machine. Uses the GPU when there is one. ``quick`` (CI) shrinks every budget so the
whole path runs in seconds; its numbers mean nothing beyond "this works".
"""

from __future__ import annotations

import time

import gymnasium as gym
import torch

from worldsim.checks import output_folder, positive_int
from worldsim.runtime import resolve_device
from worldsim.zoo import shipped_model

ENV_ID = "MiniGrid-Empty-8x8-v0"
STEPS = 49_152                # 48 PPO rollouts of 8 envs x 128 steps: about twice what PPO needs here
EVAL_EPISODES = 50
PPO_SETTINGS = {"learning_rate": "lin_1e-3", "ent_coef": 0.01}    # over agents.training's MiniGrid defaults


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


def run_demo(out_dir: str = "runs/demo", quick: bool = False, seed: int = 0, device: str = "auto",
             threads: int = 1) -> dict:
    from train.play import PlaySession, run_headless

    from .learned_vs_real import learned_vs_real
    from .learned_vs_real_report import format_benchmark_table

    start = time.perf_counter()
    torch.set_num_threads(positive_int("threads", threads))
    device = str(resolve_device(device))   # "auto": cuda if available, else cpu
    out = output_folder(out_dir)
    model = shipped_model(ENV_ID)
    print(f"world model: {model.dream_id} (shipped, {model.card['model']['parameters'] / 1e6:.1f} M parameters, "
          f"held-out next-frame accuracy {model.card['metrics']['eval/acc']:.3f}); device: {device}, "
          f"{threads} torch thread{'s' if threads > 1 else ''}", flush=True)

    gif = out / "dream_vs_real.gif"
    session = PlaySession(str(model.path), real=True, seed=seed, device=device)
    try:
        rollout = run_headless(session, expert_actions(ENV_ID, seed), record=str(gif), verbose=False)
    finally:
        session.close()
    print(f"same actions in the dream and the real env: {rollout['steps']} steps, cells agreeing "
          f"{rollout['agreement']:.1%}, dream {'reached the goal' if rollout['terminated'] else 'did not end'} "
          f"(reward {rollout['dream_reward']:z.2f}, real {rollout['real_reward']:z.2f}); wrote {gif}", flush=True)

    steps, episodes = (1024, 3) if quick else (STEPS, EVAL_EPISODES)
    print(f"training PPO (seed {seed}) for {steps:,} steps in the real env, then in the dream, and evaluating each "
          f"in {episodes} real episodes; a progress line about every 10 s ...", flush=True)
    result = learned_vs_real(ENV_ID, ENV_ID, steps=steps, seeds=1, first_seed=seed, eval_episodes=episodes,
                             planner_episodes=0, out=out / "learned_vs_real", device=device, real_device="cpu",
                             hyperparams=PPO_SETTINGS, deterministic_eval=False, verbose=True,
                             max_episode_steps=64 if quick else None)
    print(format_benchmark_table(result))
    summary = {
        "gif": str(gif), "rollout_agreement": rollout["agreement"], "dream_terminated": rollout["terminated"],
        "real_success": result["methods"]["real_ppo"]["success_rate"],
        "dream_success": result["methods"]["dream_ppo"]["success_rate"],
        "success_ratio_dream_over_real": result["success_ratio_dream_over_real"],
        "seconds": time.perf_counter() - start,
    }
    print(f"demo done in {_minutes(summary['seconds'])}; results in {out}")
    return summary


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
