"""Stopping a long run at a safe point when asked to: SIGTERM (what `timeout`, Slurm, Kubernetes and
`kill` send before they kill) and the first Ctrl-C set a flag that the training loop reads between
steps, so it can write a checkpoint and leave; a second Ctrl-C interrupts at once as usual."""

from __future__ import annotations

import signal
import threading


class TrainingStopped(Exception):
    """Training left early on a stop signal, after saving a checkpoint at `step` (when it has a run folder)."""

    def __init__(self, signal_number: int, step: int, checkpoint=None):
        self.signal_number, self.step, self.checkpoint = signal_number, step, checkpoint
        name = signal.Signals(signal_number).name
        where = f"checkpoint saved in {checkpoint}" if checkpoint is not None else "no run folder, nothing saved"
        super().__init__(f"stopped by {name} at step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + self.signal_number


class StopSignals:
    """Context manager: while inside, SIGTERM and a first SIGINT only record `requested` (the signal
    number). Handlers can be installed from the main thread alone; elsewhere this does nothing and
    signals keep their usual effect."""

    HANDLED = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _on_signal(self, number, frame) -> None:
        if self.requested is not None and number == signal.SIGINT:
            raise KeyboardInterrupt           # asked twice: stop now, without the checkpoint
        self.requested = number

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for number in self.HANDLED:
                self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
