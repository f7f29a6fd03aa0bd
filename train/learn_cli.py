"""`worldsim learn`: the command line of the online loop (`train.learn`)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from worldsim.stop_signals import TrainingStopped

from .flags import add_dataclass_flags
from .learn import LearnConfig, LearnError, learn

LEARN_HELP = {
    "real_steps": "budget of real env steps for training data; rounds stop once they have used it",
    "initial_episodes": "episodes of the initial policy collected first",
    "initial_policy": "policy of the first episodes: random, explore or expert (the scripted goal seeker)",
    "initial_epsilon": "rate of random actions mixed into the initial policy: E, or a range LOW:HIGH drawn per "
                       "episode (e.g. expert with 0:0.6)",
    "round_episodes": "episodes collected with the agent in each later round",
    "epsilon": "rate of random actions mixed into the agent's first collection",
    "epsilon_decay": "factor on that rate in each later round",
    "min_epsilon": "lowest rate of random actions",
    "model_steps": "world-model optimizer steps of the first round",
    "finetune_steps": "world-model optimizer steps of each later round, warm-started from the last model",
    "model": 'world-model settings as JSON, e.g. \'{"d_model": 64, "n_layers": 2}\'',
    "train": 'other `worldsim train` settings as JSON, e.g. \'{"batch_size": 32, "input_noise": 0.1}\', over '
             'learn\'s own: windows of 64 frames (curriculum [[0, 64]]), lr 1e-3, aux_loss_weight 0.1',
    "dream_steps": "native PPO steps in the dream each round (dream steps cost no real steps; none: 4,000,000 "
                   "when the device is a GPU, 200,000 on a CPU)",
    "dream_envs": "dream envs the native PPO steps together (none: 1,024 on a GPU, 64 on a CPU)",
    "ppo": 'native PPO settings as JSON, e.g. \'{"num_steps": 64}\', over learn\'s own on a GPU: rollouts of 64 '
           'steps, minibatches of 8,192',
    "warm_start_agent": "start each round's agent from the last round's instead of a fresh network",
    "agent_from_explorer": "train each round's explorer first and start the round's agent from it instead of a "
                           "fresh network: the explorer learns to reach what the data lacks (a door opened, a goal "
                           "room), and the agent keeps that and learns the task's own reward (none: whenever an explorer is trained "
                           "and --warm-start-agent is not set)",
    "explorer_until_reward": "with --agent-from-explorer: while no step of the data so far has earned a reward, "
                             "the round's agent is its explorer (a dream of that data pays nothing, so PPO on the "
                             "task's reward alone would only wear the explorer's skills down)",
    "gpus": "train each round's world model data-parallel in this many processes, one GPU each (torchrun, as "
            "`worldsim train --gpus`); the dream's agents stay on one",
    "stop_at_success": "stop once a round's agent reaches this real success on the held-out seeds, 0 to 1 (0: spend "
                       "the whole --real-steps budget)",
    "dream_state_starts": "share of dream episodes that start from recorded states of the data so far instead of "
                          "real resets, 0 to 1 (world view only): the agent meets the states rewards hide behind (none: 0.5 "
                          "in the world view, 0 in the agent's)",
    "explore_bonus": "train an explorer each round too: its dream pays this times the model's uncertainty about "
                     "each next frame (mean per-cell entropy, nats), so it goes where the model is unsure, and it "
                     "collects a share of the round's episodes; the scored agent never sees the bonus (0: none)",
    "explore_novelty": "train an explorer each round too (or pay the one --explore-bonus trains): its dream also "
                       "pays this for each frame new to its episode, so it learns to cover what it can reach "
                       "(0: none)",
    "explore_interactions": "train an explorer each round too (or pay the one the other bonuses train): its dream "
                            "also pays this / sqrt(1 + count) the first time in an episode that it tries an "
                            "interaction (what it holds, what is ahead, the action), counted over the real data so "
                            "far, so it goes and tries what the data lacks (0: none)",
    "explore_bonus_once": "pay the explorer's --explore-bonus only on steps whose frame is new to its episode, so "
                          "it cannot earn it again and again by repeating one step the model is unsure of",
    "explore_share": "share of each round's episodes the explorer collects, between 0 and 1",
    "eval_episodes": "real episodes on held-out seeds scoring each round's agent (not training data)",
    "replay_episodes": "real episodes from the first held-out seeds, played by the random policy and by the "
                       "round's agent, whose actions are replayed open loop in the round's dream: its per-cell "
                       "accuracy against the real frames, step by step (0: not scored)",
    "replay_horizon": "steps of each replayed episode",
    "view": "what a frame records: 'world', the whole grid (the dream starts from the real layout), or 'ego', "
            "the agent's own view (the dream imagines the rest)",
    "seed": "seed of the whole run",
    "device": "torch device: auto (cuda if available), cpu or cuda",
}


def add_learn_parser(subparsers, help: str | None = None) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "learn", help=help,
        description="Model-based RL from scratch: collect random episodes of a MiniGrid env, then in rounds "
        "train a world model on all the data (warm-started), train the native PPO in its dream, score the agent "
        "in the real env on held-out seeds and collect more episodes with it, until the budget of real steps is "
        "spent. Writes OUT/metrics.jsonl (one line per round: real steps used, real success with its interval, "
        "success in its own dream from the same seeds and the optimism gap, the model's held-out accuracy, its "
        "open-loop accuracy on replayed real actions, the seconds each phase took), OUT/curve.svg and TensorBoard logs in OUT/tb. "
        "Run again on the same OUT to continue a stopped run.")
    p.add_argument("--env", required=True, help="real env id, e.g. MiniGrid-DoorKey-8x8-v0")
    p.add_argument("--out", required=True, help="run folder (created, or continued when it holds this run)")
    add_dataclass_flags(p, LearnConfig, skip=("env_id",), extra={k: {"help": v} for k, v in LEARN_HELP.items()})
    p.set_defaults(run=run_learn_command)
    return p


def run_learn_command(args: argparse.Namespace) -> int:
    fields = {f.name for f in dataclasses.fields(LearnConfig)}
    settings = {k: v for k, v in vars(args).items() if k in fields and k != "env_id"}
    try:
        config = LearnConfig(env_id=args.env, **settings)
        learn(config, args.out)
    except TrainingStopped as e:
        print(f"worldsim learn: {e}; run the same command to continue", file=sys.stderr)
        return e.exit_code
    except (LearnError, ValueError) as e:
        print(f"worldsim learn: error: {e}", file=sys.stderr)
        return 2
    return 0
