"""Data-parallel training: two gloo ranks on CPU against one process with the combined batch."""

import dataclasses
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from train.config import TrainConfig
from train.distributed import exit_rank, torchrun_command
from train.train_cli import _without_gpus
from train.trainer import Trainer
from train.training_data import TrainingData
from train.windows import Window, WindowSampler
from worldsim.data.stream import stream_from_episodes

TINY = dict(d_model=32, n_layers=2, d_state=8, headdim=16, n_heads=2, attn_window=3, chunk_size=16, backend="torch")
SEED, STEPS, PER_RANK = 3, 4, 2


def data() -> TrainingData:
    """Short random episodes: windows cross episode boundaries, so ranks hold different numbers of targets."""
    rng = np.random.default_rng(0)
    episodes = [dict(frames=rng.integers(11, size=(t + 1, 3, 4)), actions=rng.integers(3, size=t),
                     rewards=rng.normal(size=t).astype(np.float32), terminated=np.arange(t) == t - 1)
                for t in (5, 9, 3, 12, 7, 6, 10, 4)]
    stream = stream_from_episodes(episodes)
    return TrainingData(train=stream, eval=stream, vocab_size=11, num_actions=3)


def config(batch_size: int) -> TrainConfig:
    # TBPTT in 2 chunks (backward twice per step: DDP must sync once) and the aux head (a second DDP module).
    return TrainConfig(steps=STEPS, lr=3e-3, warmup_steps=1, batch_size=batch_size, curriculum=[[0, 8]],
                       tbptt_chunk=4, aux_loss_weight=0.5, aux_delay_max=3, model=TINY, seed=SEED, device="cpu",
                       progress=False, tensorboard=False, eval_every=0, eval_at_end=True, eval_windows=2,
                       eval_length=8, rollout_episodes=0, log_every=1, save_every=2)


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(config(PER_RANK), data(), out=os.path.join(out, "run"))
    trainer.fit()
    torch.save({k: v.clone() for k, v in trainer.model.state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()
    exit_rank(0)                 # as a rank started by torchrun ends: no process-group destructor at exit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _concat(a: Window, b: Window) -> Window:
    return Window(**{f.name: (np.concatenate if f.name == "starts" else torch.cat)([getattr(a, f.name),
                                                                                   getattr(b, f.name)])
                     for f in dataclasses.fields(Window)})


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank, args=(_free_port(), str(out)), nprocs=2, join=True)
    return out


def test_ranks_end_identical_and_equal_one_process_with_the_combined_batch(two_ranks, one_torch_thread):
    ranks = [torch.load(two_ranks / f"rank{r}.pt") for r in (0, 1)]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k          # DDP keeps the ranks in lockstep

    # One process, each step's batch = rank 0's windows + rank 1's windows (their own seeded streams).
    single = Trainer(config(2 * PER_RANK), data())
    initial = {k: v.clone() for k, v in single.model.state_dict().items()}
    rank_samplers = [WindowSampler(single.data.train, seed=[SEED, 1, r]) for r in (0, 1)]
    single.sampler.sample = lambda b, length: _concat(*(s.sample(b // 2, length) for s in rank_samplers))
    single.fit()
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0][k], v, atol=2e-5, rtol=1e-4, msg=k)
    moved = max(float((v - initial[k]).abs().max()) for k, v in single.model.state_dict().items())
    assert moved > 1e-3                                          # training changed the weights


def test_rank_zero_alone_writes_and_a_two_rank_run_resumes_on_one(two_ranks, one_torch_thread):
    run = two_ranks / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train_steps = [x["step"] for x in lines if "train/loss" in x]
    assert train_steps == list(range(1, STEPS + 1))              # one log line per step, not one per rank
    assert any("eval/acc" in x for x in lines) and (run / "model" / "model.safetensors").is_file()
    tokens = [x["train/tokens_seen"] for x in lines if "train/tokens_seen" in x]
    assert tokens[0] == 2 * PER_RANK * 8 * 3 * 4                 # both ranks' windows are counted
    latest = run / (run / "latest").read_text().strip()
    state = json.loads((latest / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == STEPS
    resumed = Trainer.resume(run, data=data(), steps=STEPS + 2)
    resumed.fit()
    assert resumed.step == STEPS + 2


def test_gpus_option_launches_torchrun_without_itself():
    argv = ["--data", "d", "--gpus", "2", "--out", "o", "--gpus=2"]
    assert _without_gpus(argv) == ["--data", "d", "--out", "o"]
    cmd = torchrun_command(2, ["--data", "d"])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert cmd[-3:] == ["train", "--data", "d"]


def test_worldsim_train_gpus_2_runs_two_ranks_end_to_end(tmp_path):
    """`worldsim train --gpus 2` on CPU: torchrun starts two gloo ranks that train and save once."""
    from train.cli import main
    from train.collect import collect

    collect("MiniGrid-Empty-5x5-v0", "random", episodes=6, out=tmp_path / "data", max_steps=20, progress=False)
    run = tmp_path / "run"
    code = main(["train", "--data", str(tmp_path / "data"), "--out", str(run), "--gpus", "2", "--steps", "2",
                 "--batch-size", "2", "--curriculum", "0:8", "--device", "cpu", "--progress", "false",
                 "--tensorboard", "false", "--eval-at-end", "false", "--num-threads", "1", "--log-every", "1",
                 "--model.d_model", "32", "--model.n_layers", "1", "--model.headdim", "16", "--model.d_state", "8"])
    assert code == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "train/loss" in x] == [1, 2]
    assert (run / "model" / "model.safetensors").is_file()
