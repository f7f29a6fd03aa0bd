"""The command lines of the benchmarks: `worldsim demo` and `worldsim benchmark learned-vs-real | memory |
scaling`. The command line's root (`train.cli`) builds a command's parser only when that command runs,
so this module imports nothing heavy itself: each parser and each run imports its own modules."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


# ---------------------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    try:
        run_demo(out_dir=args.out, quick=args.quick, seed=args.seed, device=args.device, threads=args.threads)
    except ValueError as e:
        print(f"worldsim demo: error: {e}", file=sys.stderr)
        return 2
    return 0


def add_demo_parser(commands, help: str) -> argparse.ArgumentParser:
    """Register `demo` on the `worldsim` command's subparsers (`help`: its line in `worldsim --help`)."""
    demo = commands.add_parser(
        "demo", help=help,
        description="Offline, on the world model shipped for MiniGrid-Empty-8x8-v0: dream an episode beside the "
        "real env under the same actions (GIF), train PPO in the dream and in the real env with the same budget, "
        "evaluate both in the real env and print the learned-vs-real table. About 8 minutes on a 2-core "
        "laptop, idle or busy (a progress line about every 10 s); faster on a GPU, which it uses when there is one.",
    )
    demo.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    demo.add_argument("--quick", action="store_true", help="tiny budgets, seconds instead of minutes (a smoke test)")
    demo.add_argument("--seed", type=int, default=0,
                      help="seed of the GIF's episode and of both PPO agents (default: 0)")
    demo.add_argument("--threads", type=int, default=1,
                      help="torch threads (default: 1: the models are tiny, and one thread is faster than two on "
                      "a busy machine)")
    demo.add_argument("--device", default="auto",
                      help="torch device: auto (cuda if available), cpu or cuda (default: auto)")
    demo.set_defaults(run=_demo)
    return demo


# ---------------------------------------------------------------------------------------- learned vs real


def _learned_vs_real(args: argparse.Namespace) -> int:
    from agents.cli import planner_config
    from agents.training import parse_hyperparams

    from .learned_vs_real import learned_vs_real
    from .learned_vs_real_report import format_benchmark_table

    try:
        pc = planner_config(args, prefix="planner-")
        out = args.out or os.path.join("runs", "benchmark", args.env.split(":")[-1])
        result = learned_vs_real(args.env, args.checkpoint, args.steps, args.seeds, eval_episodes=args.eval_episodes,
                                 planner_episodes=args.planner_episodes, out=out, num_envs=args.num_envs,
                                 device=args.device, world_model_data=args.world_model_data, planner_config=pc,
                                 max_episode_steps=args.max_episode_steps, verbose=not args.quiet,
                                 hyperparams=parse_hyperparams(args.hyperparams, "ppo"), workers=args.workers,
                                 real_device=args.real_device, first_seed=args.first_seed,
                                 deterministic_eval=not args.sample_actions)
    except (ValueError, OSError) as e:                  # CheckpointError is a ValueError
        print(f"worldsim benchmark learned-vs-real: error: {e}", file=sys.stderr)
        return 1
    print(format_benchmark_table(result))
    print(f"wrote {result['files']['json']}, {result['files']['curves_csv']} and {result['files']['curves_svg']}")
    return 0


def add_benchmark_parser(subparsers, help: str | None = None):
    """Register `benchmark` (with `learned-vs-real`, `memory` and `scaling`) on the `worldsim` command's
    subparsers; returns the benchmark's own subparsers."""
    from agents.cli import add_planner_flags
    from agents.training import DEFAULT_NUM_ENVS

    bench = subparsers.add_parser(
        "benchmark", help=help,
        description="Benchmarks: agents trained or planning in a world model against agents trained in the real "
        "env (learned-vs-real), how a dream behaves where policies go against the real env (fidelity), world "
        "models' recall over long gaps (memory), and the cost of training and of a step against the length of "
        "the context (scaling).")
    commands = bench.add_subparsers(dest="benchmark_command", required=True, metavar="BENCHMARK_COMMAND")
    p = commands.add_parser(
        "learned-vs-real", help="PPO trained in the real env vs PPO trained in the dream vs the planner",
        description="For each seed: train PPO in the real env and in the dream of --checkpoint with the same step "
        "budget and seed, evaluate both in the real env, and run the planner in the real env. Prints success rate "
        "and mean return with 95% confidence intervals (pooled over seeds, and per seed), real env steps used and "
        "wall time, and the dream/real success ratio; writes OUT/learned_vs_real.json, learning curves as CSV and SVG.")
    p.add_argument("--env", required=True, help="real env id, e.g. MiniGrid-Empty-8x8-v0")
    p.add_argument("--checkpoint", default=None,
                   help="a world model: the model/ folder of a `worldsim train` run, or a shipped model's id "
                   "(default: the model shipped for --env)")
    p.add_argument("--steps", type=int, required=True, help="agent steps of PPO training, in each env and seed")
    p.add_argument("--seeds", type=int, required=True, help="number of seeds (FIRST_SEED .. FIRST_SEED+SEEDS-1)")
    p.add_argument("--first-seed", type=int, default=0, help="the first training seed (default: 0)")
    p.add_argument("--eval-episodes", type=int, default=100, help="real-env evaluation episodes per policy and seed (default: 100)")
    p.add_argument("--planner-episodes", type=int, default=10, help="real-env planner episodes per seed; 0 skips the planner (default: 10)")
    p.add_argument("--out", default=None, help="output folder (default: runs/benchmark/<env>)")
    p.add_argument("--num-envs", type=int, default=DEFAULT_NUM_ENVS, help=f"parallel envs for PPO (default: {DEFAULT_NUM_ENVS})")
    p.add_argument("--device", default="auto", help="torch device of the policies, the dream and the planner (default: auto)")
    p.add_argument("--world-model-data", default=None,
                   help="the dataset folder the world model was trained on (its manifest gives the real steps counted for the dream)")
    p.add_argument("--max-episode-steps", type=int, default=None, help="episode step limit replacing the env's own (default: the env's)")
    add_planner_flags(p, prefix="planner-")
    p.add_argument("--real-device", default=None,
                   help="torch device of the real-env PPO (default: --device); 'cpu' leaves a shared GPU to the dream")
    p.add_argument("--workers", type=int, default=1,
                   help="run the (method, seed) jobs in this many processes at once (default: 1)")
    p.add_argument("--hyperparams", metavar="KEY=VALUE,...", default=None,
                   help="override PPO's defaults for both agents, e.g. 'ent_coef=0.01,batch_size=256'")
    p.add_argument("--sample-actions", action="store_true",
                   help="evaluate the PPO policies with sampled actions instead of their most likely action")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(run=_learned_vs_real, benchmark_parser=p)
    add_memory_parser(commands)
    add_scaling_parser(commands)
    add_fidelity_parser(commands)
    add_sample_efficiency_parser(commands)
    return commands


# ---------------------------------------------------------------------------------------- memory


def _memory(args: argparse.Namespace) -> int:
    from .memory import format_memory_table, memory_benchmark

    try:
        models = {}
        for spec in args.model:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"--model {spec!r}: expected NAME=CHECKPOINT")
            models[name] = path
        result = memory_benchmark(models, args.data, out=args.out, episodes=args.episodes,
                                  batch_size=args.batch_size, sampling=args.sampling, device=args.device)
    except (ValueError, OSError) as e:                 # DatasetError and CheckpointError are ValueErrors
        print(f"worldsim benchmark memory: error: {e}", file=sys.stderr)
        return 1
    print(format_memory_table(result))
    print(f"wrote {Path(args.out) / 'memory.json'} and memory.svg")
    return 0


def add_memory_parser(benchmark_commands) -> argparse.ArgumentParser:
    """Register `memory` on `worldsim benchmark`'s subcommands."""
    p = benchmark_commands.add_parser(
        "memory", help="open-loop recall on memory-task episodes, models side by side, by time since last seen",
        description="Score world models on a memory-task dataset, side by side. Each episode is a context walk "
        "of C steps and then a test phase. Every model is given the C + 1 context frames, then generates the test "
        "phase open loop: each frame is its own prediction fed back, with the real actions. Each generated cell "
        "is scored against the real frame by how long ago its place was last in view (1 frame, 2-4, ..., 4097+, "
        "or never seen), and whole frames by the exact-frame rate. The same frames are also predicted from the "
        "real frames before them (teacher-forced), which shows what a model recalls apart from what its own "
        "errors do to a long rollout. Prints a table and writes OUT/memory.json and OUT/memory.svg.")
    p.add_argument("--data", required=True,
                   help="dataset of memory-task episodes (worldsim collect --policy retrace:C or reasoning:C)")
    p.add_argument("--model", action="append", required=True, metavar="NAME=CHECKPOINT",
                   help="a model to score: a checkpoint folder or a shipped model's id (repeat for each)")
    p.add_argument("--episodes", type=int, default=64, help="episodes scored per model (default: 64)")
    p.add_argument("--batch-size", type=int, default=8, help="episodes generated at once (default: 8)")
    p.add_argument("--sampling", choices=("argmax", "sample"), default="argmax",
                   help="how generated frames pick each token: argmax (the most likely) or sample (default: argmax)")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu or cuda (default: auto)")
    p.add_argument("--out", default="runs/benchmark/memory", help="output folder (default: runs/benchmark/memory)")
    p.set_defaults(run=_memory)
    return p


# ---------------------------------------------------------------------------------------- fidelity


def _fidelity(args: argparse.Namespace) -> int:
    from .fidelity import fidelity_benchmark, format_fidelity_table

    try:
        from worldsim.zoo import resolve_checkpoint

        checkpoint = resolve_checkpoint(args.checkpoint, args.env)
        if checkpoint is None:
            raise ValueError(f"--checkpoint: none given and no model is shipped for {args.env}")
        out = args.out or f"runs/benchmark/fidelity-{args.env or Path(str(checkpoint)).name}"
        result = fidelity_benchmark(checkpoint, [p.strip() for p in args.policies.split(",") if p.strip()],
                                    env_id=args.env, episodes=args.episodes, seed=args.seed, horizon=args.horizon,
                                    temperature=args.temperature, device=args.device,
                                    max_episode_steps=args.max_episode_steps, out=out)
    except (ValueError, OSError) as e:
        print(f"worldsim benchmark fidelity: error: {e}", file=sys.stderr)
        return 1
    print(format_fidelity_table(result))
    print(f"wrote {Path(out) / 'fidelity.json'} and fidelity.svg")
    return 0


def add_fidelity_parser(benchmark_commands) -> argparse.ArgumentParser:
    """Register `fidelity` on `worldsim benchmark`'s subcommands."""
    p = benchmark_commands.add_parser(
        "fidelity", help="does the dream behave like the real env where policies go? replay, closed loop, exploits",
        description="For each policy, from the same real reset seeds: (1) the policy's real actions replayed in the "
        "dream, open loop from the real first frame with the dream's own decoder: per-cell accuracy and exact-frame "
        "rate by step, the first step that differs, reward and termination agreement; (2) the policy closed loop in "
        "the dream and in the real env: success, return, length and the optimism gap (dream success - real "
        "success); (3) the dream's successful episodes replayed in the real env: how many succeed there too. "
        "Scripted policies read the agent's pose, so they get (1) only. Prints a table and writes "
        "OUT/fidelity.json and OUT/fidelity.svg (accuracy vs step).")
    p.add_argument("--env", default=None, help="real env id (default: the one the checkpoint was trained on)")
    p.add_argument("--checkpoint", default=None,
                   help="a world model folder or a shipped model's id (default: the model shipped for --env)")
    p.add_argument("--policies", default="random,expert",
                   help="comma-separated: random, expert, explore, or folders written by `worldsim agent train` "
                   "(default: random,expert)")
    p.add_argument("--episodes", type=int, default=16, help="episodes per policy (default: 16)")
    p.add_argument("--seed", type=int, default=10_000, help="reset seed of the first episode (default: 10000)")
    p.add_argument("--horizon", type=int, default=500, help="steps of each replay at most (default: 500)")
    p.add_argument("--temperature", type=float, default=None,
                   help="the dream's sampling temperature (default: the dream's own: 0, argmax, for a world-view "
                   "model; 1 for one of the agent's view)")
    p.add_argument("--max-episode-steps", type=int, default=None, help="episode step limit replacing the env's own")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu or cuda (default: auto)")
    p.add_argument("--out", default=None, help="output folder (default: runs/benchmark/fidelity-<env>)")
    p.set_defaults(run=_fidelity)
    return p


# ------------------------------------------------------------------------------- sample efficiency


def _json_dict(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of settings; got {text!r}")
    return value


def _sample_efficiency(args: argparse.Namespace) -> int:
    from .sample_efficiency import format_table, sample_efficiency_benchmark

    out = args.out or f"runs/benchmark/sample-efficiency-{args.env}"
    try:
        result = sample_efficiency_benchmark(args.env, args.real_steps, seeds=args.seeds, out=out,
                                             learn_settings=args.learn, ppo_envs=args.ppo_envs, ppo=args.ppo,
                                             marks=args.marks, eval_episodes=args.eval_episodes, device=args.device,
                                             ppo_only=args.ppo_only,
                                             **({} if args.baselines is None else {"baselines": args.baselines}))
    except (ValueError, OSError) as e:
        print(f"worldsim benchmark sample-efficiency: error: {e}", file=sys.stderr)
        return 1
    print(format_table(result))
    print(f"wrote the baselines' curves into {out}" if args.ppo_only else
          f"wrote {Path(out) / 'sample_efficiency.json'} and sample_efficiency.svg")
    return 0


def add_sample_efficiency_parser(benchmark_commands) -> argparse.ArgumentParser:
    """Register `sample-efficiency` on `worldsim benchmark`'s subcommands."""
    p = benchmark_commands.add_parser(
        "sample-efficiency", help="worldsim learn against PPO in the real env at equal real env steps",
        description="For each seed, `worldsim learn` and PPO in the real env each spend --real-steps real env "
        "steps; all are scored on the same held-out real seeds (learn after each round, PPO at --marks equal "
        "marks). The PPO baselines: ppo_real (the native PPO; --ppo-envs, --ppo), sb3_zoo (Stable-Baselines3's "
        "PPO, rl-baselines3-zoo's MiniGrid settings, 8 envs) and sb3_doorkey_tuned (SB3's PPO with the settings "
        "tuned on DoorKey-8x8: 64 envs, n_steps 128, batch 256, 4 epochs, entropy 0.01, learning rate 5e-4). "
        "Reports the real steps to reach 0.5 and 0.9 success and the area under the success curve, with t "
        "intervals over seeds. Writes OUT/sample_efficiency.json and .svg; each seed's learn run stays in "
        "OUT/learn-seed<N> and each baseline's curve in its own file (OUT/ppo-seed<N>.json, "
        "OUT/sb3-zoo-seed<N>.json, OUT/sb3-doorkey-tuned-seed<N>.json): run the command again to continue.")
    p.add_argument("--env", required=True, help="real env id, e.g. MiniGrid-DoorKey-8x8-v0")
    p.add_argument("--real-steps", type=int, required=True, help="real env steps each method may spend")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: 3)")
    p.add_argument("--learn", type=_json_dict, default=None,
                   help='`worldsim learn` settings as JSON, e.g. \'{"dream_steps": 2000000, "dream_envs": 1024}\' '
                   "(default: learn's own)")
    p.add_argument("--ppo-envs", type=int, default=16, help="real envs of the PPO baseline (default: 16)")
    p.add_argument("--ppo", type=_json_dict, default=None,
                   help="native PPO settings of the baseline as JSON (default: its own, rl-starter-files')")
    p.add_argument("--baselines", type=lambda text: tuple(v.strip() for v in text.split(",") if v.strip()),
                   default=None, help="comma-separated PPO baselines of ppo_real, sb3_zoo, sb3_doorkey_tuned "
                   "(default: all three)")
    p.add_argument("--marks", type=int, default=10, help="points on each PPO baseline's curve (default: 10)")
    p.add_argument("--ppo-only", action="store_true",
                   help="make only the PPO baselines' curves, e.g. on a machine without a GPU; a later full run with "
                   "the same settings reuses them")
    p.add_argument("--eval-episodes", type=int, default=50, help="held-out real episodes per point (default: 50)")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu or cuda (default: auto)")
    p.add_argument("--out", default=None, help="output folder (default: runs/benchmark/sample-efficiency-<env>)")
    p.set_defaults(run=_sample_efficiency)
    return p


# ---------------------------------------------------------------------------------------- scaling


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers; got {text!r}") from None


def _scaling(args: argparse.Namespace) -> int:
    from .scaling import format_scaling_tables, scaling_benchmark

    try:
        result = scaling_benchmark(
            [m.strip() for m in args.models.split(",") if m.strip()], lengths=args.lengths, frames=args.frames,
            batch=args.batch_size, window=args.window, seconds=args.seconds, d_model=args.d_model,
            n_layers=args.n_layers, device=args.device, out=args.out, parts=tuple(args.parts.split(",")))
    except (ValueError, RuntimeError) as e:
        print(f"worldsim benchmark scaling: error: {e}", file=sys.stderr)
        return 1
    print(format_scaling_tables(result))
    print(f"wrote {Path(args.out) / 'scaling.json'} and scaling.svg")
    return 0


def add_scaling_parser(benchmark_commands) -> argparse.ArgumentParser:
    """Register `scaling` on `worldsim benchmark`'s subcommands."""
    from .scaling import DEFAULT_FRAMES, DEFAULT_LENGTHS

    lengths = ",".join(map(str, DEFAULT_LENGTHS))
    frames = ",".join(map(str, DEFAULT_FRAMES))
    p = benchmark_commands.add_parser(
        "scaling", help="training and per-frame inference cost vs context length, the model beside baselines",
        description="Measure what training and stepping cost as the context grows, for the model and its "
        "baselines, each built MiniGrid-sized (7x7 frames, 138 tokens, 7 actions) with the same number of "
        "parameters. Training: one forward and backward pass on a window of random tokens for each length in "
        "--lengths, reporting the median time, tokens per second and peak memory (a length that runs out of "
        "memory is recorded as such and the run goes on). Inference: one episode stepped frame by frame up to "
        "the largest of --frames, reporting at each of them the median time per step, the step's peak memory "
        "and the memory the model's recurrent state holds. Prints both tables and writes OUT/scaling.json and "
        "OUT/scaling.svg; compare models within one run.")
    p.add_argument("--models", default="ours,causal",
                   help="comma-separated models to measure: ours (this project's model), mamba2 (a plain "
                   "Mamba2 scan over whole frames), local (frame-local attention only), causal (attention to every "
                   "earlier frame) (default: ours,causal)")
    p.add_argument("--lengths", type=_ints, default=DEFAULT_LENGTHS,
                   help=f"comma-separated training window lengths, in frames (default: {lengths})")
    p.add_argument("--frames", type=_ints, default=DEFAULT_FRAMES,
                   help=f"comma-separated frame numbers at which to time an inference step (default: {frames})")
    p.add_argument("--window", type=int, default=32,
                   help="inference steps timed from each of those frames (default: 32)")
    p.add_argument("--batch-size", type=int, default=1, help="windows per training step (default: 1)")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="time spent timing each training length, in seconds (default: 3)")
    p.add_argument("--parts", default="train,inference",
                   help="what to measure: train, inference, or train,inference for both (default: train,inference)")
    p.add_argument("--d-model", type=int, default=128,
                   help="width of the model; the baselines are sized to its number of parameters (default: 128)")
    p.add_argument("--n-layers", type=int, default=4, help="number of layers of the model (default: 4)")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda if available), cpu or cuda "
                   "(default: auto)")
    p.add_argument("--out", default="runs/benchmark/scaling", help="output folder (default: runs/benchmark/scaling)")
    p.set_defaults(run=_scaling)
    return p
