"""`worldsim demo`: the pipeline end to end on a real MiniGrid env, offline, on CPU.

Collects random-policy episodes with `worldsim collect`'s code, trains a tiny world model with the
trainer, and reports held-out next-frame accuracy beside the copy-previous-frame baseline, how
closely frame-by-frame `step()` matches the parallel forward, the recurrent state's size, and a
save/load round trip. (The full demo -- dream env, PPO in the dream -- builds on this.)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from worldsim import WorldModel

from .collect import collect
from .dataset import EpisodeDataset
from .trainer import train

ENV_ID = "MiniGrid-Empty-8x8-v0"


@torch.no_grad()
def step_vs_forward(model: WorldModel, frames: torch.Tensor, actions: torch.Tensor) -> tuple[float, bool]:
    """Largest |logit| difference between T calls of step() and one parallel forward, and whether
    the state's size stayed the same throughout."""
    parallel = model(frames[None], actions[None]).frame_logits[0]
    state = model.initial_state(1)
    size = state.nbytes
    worst = 0.0
    for t in range(len(actions)):
        out, state = model.step(state, frames[t : t + 1], actions[t : t + 1])
        worst = max(worst, (out.frame_logits[0] - parallel[t]).abs().max().item())
    return worst, state.nbytes == size


def run_demo(out_dir: str = "runs/demo", quick: bool = False, seed: int = 0) -> dict:
    start_time = time.perf_counter()
    out = Path(out_dir)
    episodes, steps, window = (12, 40, 16) if quick else (48, 300, 32)
    collect(ENV_ID, policy="random", episodes=episodes, out=out / "data", max_steps=64, seed=seed, progress=False)
    run = out / "run"
    shutil.rmtree(run, ignore_errors=True)  # the demo's own scratch run: each demo trains afresh
    trainer = train(
        data=out / "data", out=run, steps=steps, seed=seed,
        lr=3e-3, warmup_steps=10, batch_size=8, curriculum=[[0, window]], holdout_fraction=0.25,
        model={"d_model": 64, "n_layers": 2, "d_state": 16, "headdim": 16, "n_heads": 4, "attn_window": 4},
        eval_every=0, eval_windows=8, eval_length=window, rollout_episodes=4, rollout_context=8,
        rollout_horizon=16, save_every=0, keep_last=1, progress=False, device="cpu",
    )
    metrics = next(r for r in reversed(trainer.history) if "eval/acc" in r)
    model = trainer.model.eval()

    dataset = EpisodeDataset(out / "data")
    _, test_ids = dataset.split(holdout_fraction=0.25, seed=0)
    episode = dataset.episode(test_ids[0])
    frames = torch.tensor(episode.frames[:-1], dtype=torch.long)  # copies: the dataset's arrays are read-only
    worst, size_constant = step_vs_forward(model, frames, torch.tensor(episode.actions))

    reloaded = WorldModel.from_pretrained(run / "model")
    same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))
    summary = {
        "env_id": ENV_ID,
        "episodes": dataset.num_episodes,
        "heldout_next_frame_accuracy": metrics["eval/acc"],
        "copy_previous_frame_accuracy": metrics["eval/copy_acc"],
        "heldout_remembered_cell_accuracy": metrics["eval/acc_remembered"],
        "open_loop_rollout_accuracy": metrics["rollout/acc"],
        "step_vs_forward_max_abs_diff": worst,
        "state_bytes": model.initial_state(1).nbytes,
        "state_bytes_constant": size_constant,
        "model": str(run / "model"),
        "checkpoint_round_trip_exact": same,
        "seconds": time.perf_counter() - start_time,
    }
    print(f"\n{'what':<38}{'value':>14}")
    for key, value in summary.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{key:<38}{shown:>14}")
    return summary
