"""One run of the sweep that chose the demo's PPO settings: train PPO for the demo's budget in the
dream or the real env of MiniGrid-Empty-8x8-v0 with settings A or C, then evaluate it on 50 real
episodes with sampled and with most-likely actions. Progress and results go as JSON lines to OUT.

    python3 scripts/demo_settings_sweep.py {A,C} SEED {dream,real} OUT.jsonl

A: learning rate 2.5e-4 falling linearly to 0, entropy 0.01.  C (the demo's): 1e-3 falling to 0,
entropy 0.01. The sweep behind docs/demo/settings_sweep_xeon16.jsonl ran 16 of these at once, one
per core, on CPU (CUDA hidden): A x seeds 0-4 and C x seeds 0-4 in the dream, A and C x seeds 0-2 in
the real env.
"""

import json
import sys
import time

import torch

from agents.evaluation import evaluate_policy
from agents.training import train_agent

SETTINGS = {
    "A": {"learning_rate": "lin_2.5e-4", "ent_coef": 0.01},
    "C": {"learning_rate": "lin_1e-3", "ent_coef": 0.01},
}
ENV_ID = "MiniGrid-Empty-8x8-v0"
STEPS = 49_152


def main(name: str, seed: int, where: str, out: str) -> None:
    torch.set_num_threads(1)
    start = time.time()

    def say(line: str) -> None:
        with open(out, "a") as f:
            f.write(json.dumps({"cfg": name, "seed": seed, "where": where, "t": round(time.time() - start),
                                "line": line}) + "\n")

    folder = f"runs/settings_sweep/{name}_{seed}_{where}"
    train_agent(ENV_ID, where=where, steps=STEPS, out=folder, checkpoint=ENV_ID if where == "dream" else None,
                seed=seed, device="cpu", hyperparams=SETTINGS[name], progress=say)
    for deterministic in (False, True):
        ev = evaluate_policy(folder, ENV_ID, episodes=50, where="real", seed=10_000 + seed * 50,
                             deterministic=deterministic, device="cpu")
        say(f"EVAL det={deterministic} success={sum(ev['success']) / 50:.3f} return={sum(ev['returns']) / 50:.3f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
