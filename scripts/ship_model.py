"""Put a trained world model into the package (worldsim/models/<env id>/) with its model card.

    python3 scripts/ship_model.py --model RUN/model --data data/empty8 --metrics RUN/metrics.jsonl \
        --gpu "NVIDIA H200" --collect-command "..." --train-command "..." [--benchmark OUT/learned_vs_real.json]

The card (card.json, and README.md for people) says what the model was trained on (env, policy,
episodes, steps), how (steps, sequence lengths, time, GPU), and what it scores (held-out next-frame
and remembered-cell accuracy, termination precision/recall, and the learned-vs-real result if given).
Numbers come from the files named; nothing is typed in by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worldsim.model import WorldModel  # noqa: E402
from worldsim.zoo import CARD_FILE, MODELS_DIR, dream_id_for  # noqa: E402

CARD_METRICS = ("eval/acc", "eval/acc_remembered", "eval/exact_frame", "eval/copy_acc", "eval/copy_exact_frame",
                "eval/done_precision", "eval/done_recall", "eval/reward_mae_terminal", "rollout/acc",
                "rollout/copy_acc")


def last_eval(metrics_path: Path) -> tuple[dict, float]:
    """The last line holding eval/ numbers, and the training wall time (first to last logged line)."""
    lines = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
    evals = [x for x in lines if any(k.startswith("eval/") for k in x)]
    if not evals:
        raise SystemExit(f"{metrics_path}: no eval/ metrics (train with --eval-at-end true)")
    return evals[-1], float(lines[-1]["time"] - lines[0]["time"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path, help="checkpoint folder (config.json, model.safetensors)")
    p.add_argument("--data", required=True, type=Path, help="the dataset folder it was trained on")
    p.add_argument("--metrics", required=True, type=Path, help="the run's metrics.jsonl")
    p.add_argument("--gpu", required=True, help="the GPU it was trained on")
    p.add_argument("--collect-command", required=True)
    p.add_argument("--train-command", required=True)
    p.add_argument("--benchmark", type=Path, default=None, help="learned_vs_real.json of this model")
    args = p.parse_args()

    model = WorldModel.from_pretrained(args.model, device="cpu")
    config = json.loads((args.model / "config.json").read_text())
    manifest = json.loads((args.data / "manifest.json").read_text())
    env_id = config["config"]["metadata"]["env_id"]
    if manifest["env_id"] != env_id:
        raise SystemExit(f"the model is of {env_id}, the data of {manifest['env_id']}")
    metrics, seconds = last_eval(args.metrics)
    out = MODELS_DIR / env_id
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # The dataset path is the training machine's; the card says what the data was instead.
    config["config"]["metadata"]["dataset"] = None
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(args.model / "model.safetensors", out / "model.safetensors")
    weights = (out / "model.safetensors").read_bytes()

    steps_log = [json.loads(x) for x in args.metrics.read_text().splitlines() if '"train/seq_len"' in x]
    card = {
        "env_id": env_id, "gym_id": dream_id_for(env_id),
        "model": {"parameters": sum(p.numel() for p in model.parameters()), "file_bytes": len(weights),
                  "sha256": hashlib.sha256(weights).hexdigest(), "config": config["config"]},
        "data": {"policy": manifest["policy"], "episodes": manifest["totals"]["episodes"],
                 "steps": manifest["totals"]["steps"], "max_steps": manifest["max_steps"],
                 "first_seed": manifest["seed"], "command": args.collect_command},
        "training": {"steps": int(metrics["step"]), "seconds": round(seconds, 1), "gpu": args.gpu,
                     "sequence_lengths": sorted({int(x["train/seq_len"]) for x in steps_log}),
                     "command": args.train_command},
        "metrics": {k: metrics[k] for k in CARD_METRICS if k in metrics},
        "metrics_what": "held-out episodes of the dataset (10%): per-cell next-frame accuracy, exact-frame "
                        "rate, copy-last-frame baseline, termination precision/recall, open-loop rollouts",
        "learned_vs_real": None,
    }
    if args.benchmark is not None:
        b = json.loads(args.benchmark.read_text())
        card["learned_vs_real"] = {
            "steps": b["steps"], "seeds": b["seeds"], "hyperparams": b["hyperparams"], "num_envs": b["num_envs"],
            "success_ratio_dream_over_real": b["success_ratio_dream_over_real"],
            **{m: {k: v[k] for k in ("success_rate", "success_ci", "mean_return", "episodes")}
               for m, v in b["methods"].items()},
        }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(render_card(card))
    print(f"shipped {env_id} as {card['gym_id']} in {out} ({len(weights) / 2**20:.1f} MB)")
    return 0


def render_card(card: dict) -> str:
    d, t, m = card["data"], card["training"], card["metrics"]
    lines = [f"# {card['gym_id']}: world model of {card['env_id']}", "",
             f"`gym.make(\"{card['gym_id']}\")` dreams {card['env_id']} with this model (offline).", "",
             "## Model", f"- {card['model']['parameters']:,} parameters, {card['model']['file_bytes'] / 2**20:.1f} MB "
             f"(float32 safetensors, sha256 {card['model']['sha256'][:16]}...)",
             f"- d_model {card['model']['config']['d_model']}, {card['model']['config']['n_layers']} layers, "
             f"blocks {card['model']['config']['block_sizes']}, attention window {card['model']['config']['attn_window']}",
             "", "## Data", f"- policy: `{d['policy']}`",
             f"- {d['episodes']:,} episodes, {d['steps']:,} steps (episode limit {d['max_steps']}, seeds from {d['first_seed']})",
             f"- `{d['command']}`", "", "## Training",
             f"- {t['steps']:,} optimizer steps in {t['seconds'] / 60:.1f} min on one {t['gpu']}; sequence lengths "
             f"{t['sequence_lengths']}", f"- `{t['command']}`", "", "## Held-out metrics", "",
             "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in m.items()]
    lvr = card["learned_vs_real"]
    if lvr:
        lines += ["", "## Learned vs real (PPO, evaluated in the real env)", "",
                  f"{lvr['steps']:,} agent steps per agent, {lvr['seeds']} seeds, {lvr['num_envs']} envs, "
                  f"hyperparameters {lvr['hyperparams'] or 'defaults'}.", "",
                  "| agent | success (95% CI) | mean return | episodes |", "| --- | --- | --- | --- |"]
        for name in ("real_ppo", "dream_ppo", "planner"):
            if name in lvr:
                r = lvr[name]
                lines.append(f"| {name} | {r['success_rate']:.2f} ({r['success_ci'][0]:.2f}-{r['success_ci'][1]:.2f}) "
                             f"| {r['mean_return']:.3f} | {r['episodes']} |")
        ratio = lvr["success_ratio_dream_over_real"]
        lines += ["", f"Dream/real success ratio: {'n/a' if ratio is None else f'{ratio:.2f}'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
