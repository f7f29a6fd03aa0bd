"""`worldsim agent train`, `eval` and `plan`: agents (SB3 or the native PPO) in the dream or the real env, and
the planner in the real env."""

from __future__ import annotations

import argparse
import json
import os
import sys


def _where(args) -> str:
    """--in, checked; with --in dream, args.checkpoint resolved (a shipped model's id, or the one
    shipped for --env when none is given)."""
    from worldsim.zoo import resolve_checkpoint

    where = args.where
    if where == "dream":
        args.checkpoint = resolve_checkpoint(args.checkpoint, args.env)
    if where == "dream" and args.checkpoint is None:
        raise ValueError(f"--in dream needs --checkpoint DIR (a world-model checkpoint folder) or the id of a "
                         f"shipped model (`worldsim models`); none is shipped for {args.env or 'this env'}")
    if where == "real" and args.checkpoint is not None:
        raise ValueError("--checkpoint is only used with --in dream")
    return where


def _train(args: argparse.Namespace) -> int:
    from worldsim.stop_signals import TrainingStopped

    from .training import parse_hyperparams, train_agent

    try:
        where = _where(args)
        info = train_agent(args.env, where=where, algo=args.algo, steps=args.steps, out=args.out,
                           checkpoint=args.checkpoint, num_envs=args.num_envs, seed=args.seed, device=args.device,
                           features=args.features, max_episode_steps=args.max_episode_steps,
                           hyperparams=parse_hyperparams(args.hyperparams, args.algo),
                           verbose=0 if args.quiet else 1, uncertainty_penalty=args.uncertainty_penalty,
                           uncertainty_limit=args.uncertainty_limit, init_from=args.init_from,
                           fresh_critic=args.fresh_critic,
                           temperature=args.temperature, state_starts=args.start_states,
                           state_start_fraction=args.start_state_fraction, novelty_bonus=args.novelty_bonus,
                           novelty_uncertainty=args.novelty_uncertainty, interaction_bonus=args.interaction_bonus,
                           interaction_counts=args.interaction_counts, starts=args.starts)
    except TrainingStopped as e:
        print(f"worldsim agent train: {e} (the policy so far; its agent.json records where it stopped)",
              file=sys.stderr)
        return e.exit_code
    except (ValueError, OSError) as e:                  # CheckpointError is a ValueError
        print(f"worldsim agent train: error: {e}", file=sys.stderr)
        return 1
    place = f"the dream of {info['env_id']}" if info["where"] == "dream" else f"the real {info['env_id']}"
    print(f"trained {info['algo']} in {place} for {info['num_timesteps']} steps "
          f"({info['train_seconds']:.1f} s): {info['policy_path']} (+ {os.path.join(args.out, 'agent.json')}, "
          f"TensorBoard logs in {os.path.join(args.out, 'tb')})")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_policy, format_table

    try:
        if not os.path.exists(args.policy):
            raise FileNotFoundError(f"--policy {args.policy!r} does not exist (a folder written by "
                                    "`worldsim agent train` or an SB3 .zip)")
        if args.env is None:      # the env the policy was trained on, so that its shipped dream can be found
            from worldsim.checks import registered_env_id

            from .training import agent_info_file

            info = agent_info_file(args.policy)
            if info.is_file():
                import envs  # noqa: F401  (registers the ids the file may name: MiniGrid's, Crafter's)

                saved = json.loads(info.read_text())
                args.env = registered_env_id(saved.get("env_id") if isinstance(saved, dict) else None, str(info))
        where = _where(args)
        out = args.out
        if out is None:
            folder = args.policy if os.path.isdir(args.policy) else os.path.dirname(args.policy) or "."
            out = os.path.join(folder, f"eval_{where}.json")
        result = evaluate_policy(args.policy, args.env, episodes=args.episodes, where=where,
                                 checkpoint=args.checkpoint, seed=args.seed, deterministic=args.deterministic,
                                 max_episode_steps=args.max_episode_steps, device=args.device, out=out,
                                 temperature=args.temperature)
    except (ValueError, OSError) as e:
        print(f"worldsim agent eval: error: {e}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(f"wrote {out}")
    return 0


def add_planner_flags(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The planner's settings as options --<prefix>optimizer, --<prefix>horizon, ... (`planner_config` reads them)."""
    from .planner import OPTIMIZERS, PlannerConfig

    d = PlannerConfig()
    p.add_argument(f"--{prefix}optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help=f"how the planner searches action sequences: random shooting or the cross-entropy method "
                   f"(default: {d.optimizer})")
    for name, text in (("horizon", "imagined steps per candidate action sequence"),
                       ("population", "candidate action sequences imagined per round"),
                       ("iterations", "rounds per real step (the cross-entropy method refits between them)")):
        p.add_argument(f"--{prefix}{name}", type=int, default=getattr(d, name),
                       help=f"{text} (default: {getattr(d, name)})")
    p.add_argument(f"--{prefix}temperature", type=float, default=d.temperature,
                   help=f"sampling temperature of the imagined frames, 0 for argmax (default: {d.temperature})")
    p.add_argument(f"--{prefix}agent", default=None, metavar="FOLDER",
                   help="a native-PPO agent (`worldsim agent train --algo native-ppo`, e.g. trained in this model's "
                   "dream) guiding the planner: its critic values what lies beyond the horizon, its policy acts in a "
                   "share of the branches (default: none)")
    p.add_argument(f"--{prefix}agent-share", type=float, default=d.agent_share,
                   help=f"with --{prefix}agent: the share of each round's branches its policy acts in "
                   f"(default: {d.agent_share})")


def planner_config(args: argparse.Namespace, prefix: str = "", **fixed):
    """The PlannerConfig of options added by `add_planner_flags` with this prefix; `fixed`: other fields."""
    from .planner import PlannerConfig

    key = prefix.replace("-", "_")
    names = ("optimizer", "horizon", "population", "iterations", "temperature", "agent", "agent_share")
    return PlannerConfig(**{name: getattr(args, key + name) for name in names}, **fixed)


def _plan(args: argparse.Namespace) -> int:
    from worldsim.zoo import resolve_checkpoint

    from .evaluation import format_table
    from .planner import evaluate_planner

    try:
        folder = resolve_checkpoint(args.checkpoint, args.env)
        if folder is None:
            raise ValueError(f"--checkpoint DIR (a world-model checkpoint folder or a shipped model's id) is needed: "
                             f"none is shipped for {args.env}")
        if not os.path.isdir(folder):
            raise ValueError(f"--checkpoint {folder!r} is neither a folder nor a shipped model's id "
                             "(`worldsim models`)")
        checkpoint = args.env if args.checkpoint is None else args.checkpoint   # as the user named it, for the report
        config = planner_config(args, seed=args.seed)
        result = evaluate_planner(checkpoint, args.env, episodes=args.episodes, seed=args.seed, config=config,
                                  batch=args.batch, device=args.device, max_episode_steps=args.max_episode_steps,
                                  out=args.out)
    except (ValueError, OSError) as e:                  # CheckpointError is a ValueError
        print(f"worldsim agent plan: error: {e}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(f"{result['seconds'] / result['episodes']:.2f} s per episode ({result['batch']} planned at once on "
          f"{result['device']})" + (f"; wrote {args.out}" if args.out else ""))
    return 0


def _common(p: argparse.ArgumentParser, seed_help: str) -> None:
    p.add_argument("--in", dest="where", choices=("dream", "real"), default="real",
                   help="the dream of a world model or the real env (default: real)")
    p.add_argument("--checkpoint", default=None,
                   help="with --in dream: a world-model checkpoint folder or a shipped model's id "
                   "(default: the model shipped for the env)")
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default: 0)")
    p.add_argument("--device", default="auto",
                   help="torch device of the policy and the dream: auto (cuda if available), cpu or cuda "
                   "(default: auto)")
    p.add_argument("--max-episode-steps", type=int, default=None,
                   help="episode step limit (truncation) replacing the env's own (default: the env's)")
    p.add_argument("--temperature", type=float, default=None,
                   help="with --in dream: the dream's sampling temperature per cell, 0 for argmax (default: "
                   "the dream's own: 0 for a world-view model, 1 for one of the agent's view)")


def add_agent_parser(subparsers, help: str | None = None) -> argparse.ArgumentParser:
    """Register `agent` (with `train` and `eval`) on the `worldsim` command's subparsers."""
    from .training import ALGO_CHOICES, DEFAULT_NUM_ENVS, FEATURES, NATIVE_NUM_ENVS

    agent = subparsers.add_parser(
        "agent", help=help,
        description="Train agents (Stable-Baselines3's, or the native PPO) on MiniGrid's 7x7x3 symbolic view inside a world model's dream "
        "or in the real env, and evaluate them (success rate and mean return with 95% confidence intervals) in "
        "either.")
    commands = agent.add_subparsers(dest="agent_command", required=True, metavar="AGENT_COMMAND")

    train = commands.add_parser(
        "train", help="train a PPO / A2C / DQN agent in the dream or the real env",
        description="Train a Stable-Baselines3 agent (PPO defaults follow rl-baselines3-zoo's MiniGrid entries) "
        "with a small CNN on the 7x7x3 symbolic image. Writes OUT/policy.zip, OUT/agent.json and TensorBoard logs "
        "in OUT/tb.")
    train.add_argument("--env", required=True, help="real env id, e.g. MiniGrid-Empty-8x8-v0")
    _common(train, "seed of the agent and of its envs")
    train.add_argument("--algo", choices=ALGO_CHOICES, default="ppo",
                       help="reinforcement-learning algorithm: Stable-Baselines3's ppo, a2c or dqn, or native-ppo "
                       "(PPO on torch tensors end to end: thousands of dream envs on a GPU; its policy is saved as "
                       "safetensors) (default: ppo)")
    train.add_argument("--steps", type=int, required=True, help="total env steps to train for")
    train.add_argument("--out", required=True,
                       help="output folder (policy.zip or, native-ppo, policy.safetensors; agent.json; tb/)")
    train.add_argument("--num-envs", type=int, default=None,
                       help=f"envs stepped in parallel (default: {DEFAULT_NUM_ENVS}, native-ppo {NATIVE_NUM_ENVS}; "
                       "native-ppo in a GPU dream runs best with thousands)")
    train.add_argument("--features", choices=FEATURES, default=None,
                       help="features extractor: 'cnn', a small CNN for MiniGrid's symbolic cells; 'mlp', the flattened "
                       "cells for an MLP; 'pixels', a CNN for images (a dream of an image model; native-ppo) "
                       "(default: pixels for an image model's dream, cnn otherwise)")
    train.add_argument("--hyperparams", metavar="KEY=VALUE,...", default=None,
                       help="override the algorithm's defaults, e.g. 'ent_coef=0.01,batch_size=256' "
                       "(arguments of the Stable-Baselines3 algorithm, or for native-ppo: num_steps, epochs, "
                       "minibatch_size, learning_rate, anneal_lr, gamma, gae_lambda, clip_coef, ent_coef, vf_coef, "
                       "max_grad_norm, norm_adv, target_kl; values are Python literals)")
    train.add_argument("--uncertainty-penalty", type=float, default=0.0,
                       help="pessimistic dream: subtract this times the model's uncertainty about each next frame "
                       "(mean per-cell entropy, nats) from the reward; negative: add it, a bonus that sends an "
                       "exploring agent where the model is unsure (default: 0)")
    train.add_argument("--uncertainty-limit", type=float, default=None,
                       help="pessimistic dream: truncate an episode once that uncertainty exceeds this "
                       "(default: no limit)")
    train.add_argument("--novelty-bonus", type=float, default=0.0,
                       help="exploring dream: a step also pays this when its frame is new to the episode, so the "
                       "agent learns to cover what it can reach (default: 0)")
    train.add_argument("--novelty-uncertainty", type=float, default=0.0,
                       help="exploring dream: a step whose frame is new to the episode also pays this times the "
                       "model's uncertainty there, so the agent seeks what the model does not know without "
                       "repeating one unsure step for its pay (default: 0)")
    train.add_argument("--interaction-bonus", type=float, default=0.0,
                       help="exploring dream: a step also pays this / sqrt(1 + count) the first time in its episode "
                       "that the agent tries an interaction (what it holds, what is ahead, the action), counted over "
                       "the real datasets --interaction-counts, so it goes and tries what the data lacks (default: 0)")
    train.add_argument("--interaction-counts", nargs="+", default=None, metavar="DATASET",
                       help="with --interaction-bonus: the dataset folders whose steps are counted")
    train.add_argument("--starts", default=None, metavar="DATASET",
                       help="a dataset folder whose episodes' first frames are where dream episodes start, instead of "
                       "resets of the real env: a dream makes 256 real resets before its first step, which takes "
                       "minutes for envs whose resets are slow, such as Crafter (default: real resets)")
    train.add_argument("--start-states", nargs="+", default=None, metavar="DATASET",
                       help="world-view dream: dataset folders whose recorded states some dream episodes start "
                       "from instead of real resets, so the agent meets the states rewards hide behind "
                       "(default: real resets only)")
    train.add_argument("--start-state-fraction", type=float, default=0.5,
                       help="with --start-states: the share of dream episodes starting from them, in (0, 1] "
                       "(default: 0.5)")
    train.add_argument("--init-from", default=None, metavar="FOLDER",
                       help="native-ppo: start from the policy in this folder (written by agent train) instead of "
                       "a fresh network (default: fresh)")
    train.add_argument("--fresh-critic", action="store_true",
                       help="with --init-from: keep its features and actor but start its value function afresh, for "
                       "a policy trained for another reward (an explorer's bonuses); with hyperparameter "
                       "critic_warmup=N its first N iterations fit the values alone")
    train.add_argument("--quiet", action="store_true", help="do not print the training log")
    train.set_defaults(run=_train, agent_parser=train)

    ev = commands.add_parser(
        "eval", help="success rate and mean return of a policy, with 95%% confidence intervals",
        description="Run --episodes episodes (episode i reset with seed --seed + i) in the real env or the dream. "
        "Success = terminated with a positive return (MiniGrid: reached the goal); Wilson interval for the "
        "success rate, Student t interval for the mean return. Prints a table and writes JSON.")
    ev.add_argument("--env", default=None, help="real env id (default: the one in the policy's agent.json)")
    ev.add_argument("--policy", required=True,
                    help="folder written by `worldsim agent train`, or a Stable-Baselines3 .zip (an SB3 zip runs "
                    "code as it loads, being a pickle: use only zips you trust)")
    ev.add_argument("--episodes", type=int, default=100, help="number of episodes (default: 100)")
    _common(ev, "episode i is reset with seed SEED + i")
    ev.add_argument("--deterministic", action="store_true", help="take the most likely action (default: sample)")
    ev.add_argument("--out", default=None, help="JSON file to write (default: POLICY/eval_<in>.json)")
    ev.set_defaults(run=_eval, agent_parser=ev)

    pl = commands.add_parser(
        "plan", help="the planner (model-predictive control in a world model) in the real env: success rate and "
        "mean return with 95%% confidence intervals",
        description="Act in the real env with the planner: at every real step it searches action sequences in "
        "the world model (random shooting or the cross-entropy method), optionally guided by a native-PPO agent "
        "whose policy proposes branches and whose critic values the horizon. Episode i is reset with seed "
        "--seed + i; --batch episodes are planned at once (their branches in one batch). Prints the same table "
        "as `agent eval` and writes JSON with --out.")
    pl.add_argument("--env", required=True, help="real env id, e.g. MiniGrid-DoorKey-8x8-v0")
    pl.add_argument("--checkpoint", default=None,
                    help="a world-model checkpoint folder or a shipped model's id (default: the model shipped "
                    "for the env)")
    add_planner_flags(pl)
    pl.add_argument("--episodes", type=int, default=100, help="number of episodes (default: 100)")
    pl.add_argument("--batch", type=int, default=32, help="episodes planned at once (default: 32)")
    pl.add_argument("--seed", type=int, default=0,
                    help="episode i is reset with seed SEED + i; also seeds the planner (default: 0)")
    pl.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda (default: auto)")
    pl.add_argument("--max-episode-steps", type=int, default=None,
                    help="episode step limit (truncation) replacing the env's own (default: the env's)")
    pl.add_argument("--out", default=None, help="JSON file to write (default: none)")
    pl.set_defaults(run=_plan, agent_parser=pl)
    return agent
