"""One function of device tensors, captured once as a CUDA graph and replayed.

A dream step at small batch is hundreds of small kernels, and launching them costs more than
running them; a CUDA graph launches them all at once. The captured function must work in place on
tensors whose addresses never change (the env's state, frames, counters) and must not synchronise
with the host; its inputs are copied into fixed buffers before each replay, and its outputs are
fixed buffers that the next replay overwrites.

Capture runs the function a few times first (lazy initialisation, Triton autotuning, compilation)
on a side stream; those runs change the buffers listed in `restore`, so they are saved before and
written back after, and capturing leaves the env exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

WARMUP_RUNS = 3


class CapturedStep:
    def __init__(self, fn: Callable[..., tuple], inputs: Sequence[torch.Tensor | None],
                 restore: Sequence[torch.Tensor], warmup: int = WARMUP_RUNS):
        self.inputs = [None if x is None else x.clone() for x in inputs]
        saved = [t.clone() for t in restore]
        side = torch.cuda.Stream()
        try:
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(warmup):
                    fn(*self.inputs)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.no_grad():
                self.outputs = fn(*self.inputs)
        finally:                      # also when capture fails: the caller may go on eagerly
            torch.cuda.current_stream().wait_stream(side)
            with torch.no_grad():
                for t, s in zip(restore, saved, strict=True):
                    t.copy_(s)

    def __call__(self, *inputs: torch.Tensor | None) -> tuple:
        for buffer, x in zip(self.inputs, inputs, strict=True):
            if buffer is not None:
                buffer.copy_(x)
        self.graph.replay()
        return self.outputs
