"""The wrapper's direct child: runs CMD and takes CMD's whole process group down if the wrapper dies.

A parent-death signal reaches one process only, the wrapper's child, and only if that process passes it on does
the rest of the job stop: ``bash -c "cft train ...; cft eval ..."`` dies of SIGTERM but leaves ``cft train``
running, untracked. So the child is this small guard, the leader of the job's process group: when the kernel
tells it that the wrapper is gone, it sends SIGTERM to the whole group. Signals the wrapper forwards reach the
group, CMD included, so the guard lets them be and waits for CMD. It exits as CMD did (with the same code, or by
the same signal), so the wrapper reports CMD's result. Standard library only, run as a file (``-I -S``): it must
start fast, with nothing of the job's environment on its path.

Usage (by the wrapper): ``python -I -S guard.py WRAPPER_PID CMD...``
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

PASSED_ON = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main(argv: list[str]) -> int:
    wrapper, command = int(argv[0]), argv[1:]
    stopping = False

    def stop_all() -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group includes the guard itself
            os.killpg(0, signal.SIGTERM)

    def on_signal(signum: int, _frame: object) -> None:
        if os.getppid() != wrapper:  # the parent-death signal: nobody else will stop the job
            stop_all()
        # otherwise the wrapper signalled the whole group, CMD included: wait for CMD's answer

    for signum in PASSED_ON:
        signal.signal(signum, on_signal)
    try:
        process = subprocess.Popen(command, restore_signals=True)
    except OSError as exc:
        print(f"cannot run {command[0]!r}: {exc.strerror or exc}", flush=True)
        return 126 if isinstance(exc, PermissionError) else 127
    if os.getppid() != wrapper:  # the wrapper died while CMD was starting
        stop_all()
    while True:
        try:
            code = process.wait()
            break
        except InterruptedError:
            continue
    if code < 0:  # die of the same signal, so the wrapper sees what CMD saw (but leave no core file of ours)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
