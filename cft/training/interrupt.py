"""A run stopped by a signal (SIGTERM is what a preemption or `sky jobs cancel` sends) is interrupted, not failed.

Python's default for SIGTERM is to die on the spot, leaving status.json saying "running" for hours. While a run
trains, SIGTERM instead raises `RunInterrupted` in the main thread, so the run records "interrupted" (a status the
registry shows) and exits 143; no manifest is written, so the interruption is not final and the next start resumes.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class RunInterrupted(KeyboardInterrupt):
    """Raised in the training process when it receives SIGTERM; `signal_name` says which signal."""

    def __init__(self, signal_name: str = "SIGTERM") -> None:
        super().__init__(f"interrupted by {signal_name}")
        self.signal_name = signal_name
        self.exit_code = 128 + int(signal.Signals[signal_name])


def signal_name(error: BaseException) -> str:
    """The signal behind an interruption: SIGTERM for RunInterrupted, SIGINT for a plain KeyboardInterrupt."""
    return error.signal_name if isinstance(error, RunInterrupted) else "SIGINT"


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises RunInterrupted (only the main thread can install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise RunInterrupted(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
