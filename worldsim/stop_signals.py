"""Stopping a long run at a safe point when asked to: SIGTERM (what `timeout`, Slurm, Kubernetes and
`kill` send before they kill) and the first Ctrl-C set a flag that the training loop reads between
steps, so it can write a checkpoint and leave; a second Ctrl-C interrupts at once as usual."""

from __future__ import annotations

import signal
import threading


class TrainingStopped(Exception):
    """Training (`work`) left early on a stop signal at `step`, after saving what it had in `checkpoint`
    (None: nowhere to save). `partial`: what the loop had made, for a caller that saves it."""

    def __init__(self, signal_number: int, step: int, checkpoint=None, work: str = "training", partial=None):
        self.signal_number, self.step, self.checkpoint, self.work = signal_number, step, checkpoint, work
        self.partial = partial
        name = signal.Signals(signal_number).name
        where = f"saved in {checkpoint}" if checkpoint is not None else "nothing saved"
        super().__init__(f"{work} stopped by {name} at step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal (143 for SIGTERM, 130 for SIGINT)."""
        return 128 + self.signal_number


class StopSignals:
    """Context manager: while inside, SIGTERM and a first SIGINT only record `requested` (the signal
    number). Handlers can be installed from the main thread alone; elsewhere this does nothing and
    signals keep their usual effect. A signal the process ignores is left ignored."""

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
                # A signal the process ignores (SIGINT in a background job) stays ignored.
                if signal.getsignal(number) is not signal.SIG_IGN:
                    self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
