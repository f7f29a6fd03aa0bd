"""What the exploration bonuses buy in one round of `worldsim learn`: on the same world model, the
agent (no bonus) and explorers (the dream pays `bonus` x the model's uncertainty about each next
frame, `novelty` for each frame new to the episode, or `interactions` / sqrt(1 + count) for an
interaction the real data holds few of), and the real episodes each collects.

For each seed: round 0 of `learn` collects random episodes and round 1 trains a world model on them
(once, shared). Then for each bonus and each novelty, the native PPO trains in that model's dream
(`learn`'s agent for bonus 0, its explorer otherwise), collects a whole round of real episodes
(with `learn`'s random-action rate), and is scored on held-out real seeds. Reported: how many collected episodes
reached the goal (a paying episode: the data the model needs to learn the reward) and the policy's
real success. A tiny model by default, so it runs on a CPU.

    PYTHONPATH=. python3 benchmarks/explore_bonus.py --env MiniGrid-DoorKey-5x5-v0 --seeds 0,1 \
        --explorers agent,u2,o2,n0.01,o2+n0.01 --out docs/learn/explore_bonus_doorkey5x5_cpu.json

An explorer is a "+"-joined list of bonuses: uB (B x the uncertainty on every step), oB (on frames
new to the episode only), nN (N per frame new to the episode) and iI (I / sqrt(1 + count) per
interaction new to the episode); "agent" is none.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch

from train.learn import LearnConfig, Learner
from worldsim.data.dataset import EpisodeDataset
from worldsim.json_io import write_json


def paying_episodes(data_dir: Path) -> tuple[int, int, int]:
    """(episodes, steps, episodes with a positive return) of a dataset folder."""
    data = EpisodeDataset(data_dir)
    episodes = [data.episode(i) for i in range(data.num_episodes)]
    return len(episodes), sum(len(e.actions) for e in episodes), sum(int(e.rewards.sum() > 0) for e in episodes)


def parse_explorer(spec: str) -> tuple[float, bool, float, float]:
    """'agent', or '+'-joined uB / oB / nN / iI -> (uncertainty bonus, paid on new frames only, novelty,
    interaction bonus)."""
    bonus, once, novelty, interactions = 0.0, False, 0.0, 0.0
    for term in ([] if spec == "agent" else spec.split("+")):
        try:
            kind, value = term[0], float(term[1:])
        except (IndexError, ValueError):
            kind, value = "?", 0.0
        if kind in "uo" and value > 0 and not bonus:
            bonus, once = value, kind == "o"
        elif kind == "n" and value > 0 and not novelty:
            novelty = value
        elif kind == "i" and value > 0 and not interactions:
            interactions = value
        else:
            raise SystemExit(f"--explorers: {term!r} of {spec!r} is not uB, oB, nN or iI (B, N, I > 0, each kind "
                             "once), nor 'agent'")
    return bonus, once, novelty, interactions


def one_seed(args, seed: int, work: Path) -> list[dict]:
    rows = []
    shared = None                   # the first explorer's folder: round 0's data and round 1's model
    for bonus, once, novelty, interactions in args.explorers:
        config = LearnConfig(
            env_id=args.env, seed=seed, explore_bonus=bonus, explore_novelty=novelty,
            explore_interactions=interactions,
            explore_bonus_once=once, initial_episodes=args.episodes,
            round_episodes=args.episodes, model_steps=args.model_steps, dream_steps=args.dream_steps,
            dream_envs=args.dream_envs, dream_state_starts=args.state_starts, eval_episodes=args.eval_episodes,
            model=json.loads(args.model), train={"batch_size": 16, "curriculum": [[0, 64]], "lr": 2e-3,
                                                 "aux_loss_weight": 0.0, "num_threads": args.threads},
            ppo={"num_steps": 64}, device=args.device, agent_from_explorer=False)
        run = work / (f"seed{seed}-bonus{bonus:g}" + ("-once" if once else "")
                      + (f"-novelty{novelty:g}" if novelty else "")
                      + (f"-interactions{interactions:g}" if interactions else ""))
        if shared is not None and not (run / "round-01" / "model_run" / "model").is_dir():
            for part in ("round-00/data", "round-01/model_run"):
                shutil.copytree(shared / part, run / part)
        learner = Learner(config, run, progress=None)
        began = time.time()
        learner.collect(0, config.initial_policy, config.initial_epsilon)
        model = learner.train_model(1)
        agent = learner.train_agent(1, model, "explorer" if config.explores else "agent")
        learner.collect(1, str(agent), config.epsilon_at(1))
        real = learner.evaluate(1, agent)
        shared = shared or run
        last = json.loads((agent / "agent.json").read_text())["history"][-1]
        random_play, collected = paying_episodes(run / "round-00" / "data"), paying_episodes(run / "round-01" / "data")
        rows.append({"seed": seed, "bonus": bonus, "bonus_once": once, "novelty": novelty,
                     "interactions": interactions,
                     "random_play": dict(zip(("episodes", "steps", "paying"), random_play)),
                     "collected": dict(zip(("episodes", "steps", "paying"), collected)),
                     "real_success": real["success_rate"], "real_success_ci": real["success_ci"],
                     "dream_last_iteration": {k: last.get(k) for k in ("mean_return", "mean_length", "success_rate")},
                     "seconds": round(time.time() - began, 1)})
        r = rows[-1]
        print(f"{seed:>4} {bonus:>6g} {'once' if once else '':>4} {novelty:>7g} {interactions:>6g} "
              f"{random_play[2]:>4}/{random_play[0]:<4} "
              f"{collected[2]:>4}/{collected[0]:<4} "
              f"{collected[1]:>9,} {r['real_success']:>12.2f}", flush=True)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--env", default="MiniGrid-DoorKey-5x5-v0")
    p.add_argument("--seeds", default="0", help="comma-separated run seeds")
    p.add_argument("--explorers", default="agent,u2", help="comma-separated policies: agent, or '+'-joined uB "
                   "(uncertainty bonus on every step), oB (on new frames only), nN (novelty), iI (interactions the "
                   "data lacks); the first trains the model")
    p.add_argument("--episodes", type=int, default=50, help="random episodes first, and the agent's episodes after")
    p.add_argument("--model", default='{"d_model": 48, "n_layers": 2}', help="world-model size as JSON")
    p.add_argument("--model-steps", type=int, default=600)
    p.add_argument("--dream-steps", type=int, default=300_000)
    p.add_argument("--dream-envs", type=int, default=64)
    p.add_argument("--state-starts", type=float, default=0.5)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/benchmark/explore-bonus", help="folder for the runs")
    args = p.parse_args(argv)
    args.explorers = [parse_explorer(spec) for spec in args.explorers.split(",")]
    torch.set_num_threads(args.threads)
    print(f"{'seed':>4} {'bonus':>6} {'':>4} {'novelty':>7} {'inter.':>6} {'random: paying':>14} {'collected: paying':>17} {'its steps':>9} "
          f"{'real success':>12}")
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        rows += one_seed(args, seed, Path(args.work))
    write_json(args.out, {"benchmark": "explore_bonus", "env_id": args.env, "device": args.device,
                          "machine": platform.processor() or platform.machine(), "threads": args.threads,
                          "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
                          "runs": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
