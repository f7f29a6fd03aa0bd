"""Data-parallel training over several processes: torchrun plus PyTorch DistributedDataParallel.

    torchrun --nproc_per_node=2 -m train --data DIR --out RUN ...      # or: worldsim train --gpus 2 ...
    torchrun --nnodes=2 --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:29500 \\
             --nproc_per_node=8 -m train ...                            # several machines: the same code

torchrun starts one process per GPU and sets RANK, WORLD_SIZE and LOCAL_RANK; ``from_environment``
reads them and joins the process group (NCCL on CUDA, gloo on CPU). The trainer then wraps its
modules in DDP: gradients are averaged across ranks during backward, so every rank takes the same
optimizer step and the parameters stay identical. Each rank samples its own windows from its own
seed; rank 0 alone evaluates, logs, shows progress and writes checkpoints.
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the training processes (1 process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistributedContext:
    """The context torchrun's variables describe; joins the process group on first use."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext()
    ctx = DistributedContext(rank=int(os.environ["RANK"]), world_size=world_size,
                             local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return ctx


def device_for(ctx: DistributedContext, device: torch.device) -> torch.device:
    """Each rank of a multi-GPU run gets its own GPU (its local rank)."""
    if ctx.enabled and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return device


def wrap(module: nn.Module | None, ctx: DistributedContext) -> nn.Module | None:
    """DDP around `module` in a multi-process run (its gradients are averaged across ranks)."""
    if module is None or not ctx.enabled:
        return module
    device = module_device(module)
    return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def no_sync(modules, skip: bool):
    """Inside: backward accumulates gradients locally (DDP's no_sync) when `skip`, e.g. for all but
    the last truncated-backprop chunk of a step, so each step all-reduces once."""
    stack = ExitStack()
    if skip:
        for m in modules:
            if isinstance(m, DistributedDataParallel):
                stack.enter_context(m.no_sync())
    return stack


def all_reduce_sum(tensor: torch.Tensor, ctx: DistributedContext) -> torch.Tensor:
    """The sum of `tensor` over ranks (a copy); `tensor` itself with one process."""
    if not ctx.enabled:
        return tensor
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total


def barrier(ctx: DistributedContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group this process joined, if any (NCCL warns about, and may leak, one left open)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> None:
    """End this rank's process with `code` once its work is written, without running the process
    group's destructors: with gloo, a process group destroyed while the interpreter holds the GIL
    can deadlock against its own worker threads, which need the GIL to finish (seen at exit on a
    busy 2-core CPU: the rank had saved everything, then hung). Call `shutdown()` first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def torchrun_command(nproc: int, train_args: list[str]) -> list[str]:
    """The command that runs `worldsim train <train_args>` in `nproc` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "train", *train_args]
