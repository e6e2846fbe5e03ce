"""The run wrapper: "tmux + tee + ntfy" as one command that a job YAML or a researcher's machine can use.

``python -m notify run -- CMD...`` runs CMD, copies its output (stdout and stderr through one pipe, so in
order) to the terminal and to ``logs/<name>-YYYYmmdd-HHMMSS.log`` with secrets redacted, forwards SIGINT and
SIGTERM to CMD's process group (a preempted node gets SIGTERM), and then reports: success with duration, host
and the run manifest's headline metrics; failure with the exit code and the log's last lines; or "interrupted".
It exits with CMD's exit code (128+N when CMD died of signal N) whatever happens to the notification or the log
upload, and those add a bounded few seconds at most.

A hang-up (the SSH connection dropped) leaves CMD running by default (``--on-hangup keep``): the job is what
costs money, the terminal is not. CMD's life is tied to the wrapper's on Linux (a parent-death signal, passed on
to CMD's whole process group by ``notify.guard``), so a wrapper killed with SIGKILL leaves no untracked job;
``--detach`` (``notify.detach``) is the way to a job that outlives its terminal on purpose. Every run leaves a
record for ``notify ls`` (``notify.jobs``).
"""

from __future__ import annotations

import ctypes
import os
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from notify import guard, jobs, report
from notify.notifier import Notifier
from notify.redact import StreamRedactor, text_redactor
from notify.run_identity import resolve_run_id, sanitize_run_id, timestamp
from notify.storage import read_manifest, run_prefix, upload_log

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP only with --on-hangup stop
# What the guard, and through it CMD's process group, gets when the wrapper dies: SIGTERM, so a launcher
# (torchrun, accelerate) can stop its workers and a trainer can stop as it would on preemption.
PARENT_DEATH_SIGNAL = signal.SIGTERM
_PR_SET_PDEATHSIG = 1
DEFAULT_LOCAL_BUCKET = "cft-runs"  # where `cft train` writes when no bucket is given
STORAGE_TIMEOUT_S = 30.0
_IDLE_FLUSH_S = 0.2
_DRAIN_AFTER_EXIT_S = 2.0
_T = TypeVar("_T")


@dataclass
class RunOptions:
    command: list[str]
    name: str | None = None
    notify_start: bool = False
    log_dir: Path = Path("logs")
    bucket: str | None = None
    run_id: str | None = None
    on_hangup: str = "keep"
    log_file: Path | None = None  # chosen by a detaching launcher, which prints it before the job starts
    job_id: str | None = None
    tmux: str | None = None


@dataclass
class _SignalState:
    on_hangup: str = "keep"
    process: subprocess.Popen[bytes] | None = None
    received: int | None = None
    pending: list[int] = field(default_factory=list)

    def handle(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP and self.on_hangup == "keep":
            return  # the terminal went away; the job did not (its output still reaches the log)
        self.received = signum
        if self.process is None:
            self.pending.append(signum)
        elif self.process.returncode is None:  # once reaped, its pid may belong to someone else
            self.forward(signum)

    def forward(self, signum: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send the child PARENT_DEATH_SIGNAL when the wrapper dies (Linux).

    The signal fires when the *thread* that started the child ends, so ``run`` must be called from a thread that
    lives as long as the run (the CLI's main thread). If the wrapper died before the child could ask, the child
    stops at once. Elsewhere (macOS) there is no such call and the child is not tied.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child must not load anything
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), PARENT_DEATH_SIGNAL)

    return preexec


def _say(line: str, redact: Callable[[str], str]) -> None:
    """One line on stderr, whatever the message (botocore's errors span several)."""
    try:
        flat = " ".join(part.strip() for part in str(line).splitlines() if part.strip())
        print(redact(f"notify: {flat}"), file=sys.stderr, flush=True)
    except Exception:
        pass


def _bounded(what: str, fn: Callable[[], _T], timeout: float, redact: Callable[[str], str]) -> _T | None:
    """Run ``fn`` in a daemon thread for at most ``timeout`` s; a failure or a timeout is one stderr line."""
    result: list[_T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # reported below, never raised
            error.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        _say(f"{what}: gave up after {timeout:g}s", redact)
    elif error:
        _say(f"{what}: {error[0]}", redact)
    return result[0] if result else None


def log_path_for(log_dir: Path, name: str, env: Mapping[str, str]) -> Path:
    """A new log file's path: ``<name>-YYYYmmdd-HHMMSS[-nodeN][-2].log``, never one that exists."""
    rank = env.get("SKYPILOT_NODE_RANK", "0")
    suffix = f"-node{rank}" if rank not in ("", "0") else ""  # nodes of one run share its logs/ folder
    stem = f"{name}-{timestamp()}{suffix}"
    path = log_dir / f"{stem}.log"
    n = 2
    while path.exists():
        path = log_dir / f"{stem}-{n}.log"
        n += 1
    return path


def _pump(
    process: subprocess.Popen[bytes], sinks: list[BinaryIO], redactor: StreamRedactor
) -> None:
    """Copy the child's output to every sink, redacted, whole lines at a time (partial lines when idle).

    The redactor sees the stream, not the pieces: a secret written in two parts around a pause is still masked.
    """
    assert process.stdout is not None
    fd = process.stdout.fileno()
    alive = list(sinks)

    def emit(data: bytes, final: bool = False) -> None:
        data = redactor.feed(data) + (redactor.flush() if final else b"")
        if not data:
            return
        for sink in list(alive):
            try:
                sink.write(data)
                sink.flush()
            except (OSError, ValueError):  # e.g. the terminal went away: keep logging
                alive.remove(sink)

    pending = b""
    exited_at: float | None = None
    while True:
        if exited_at is None and process.poll() is not None:
            exited_at = time.monotonic()
        if exited_at is not None and time.monotonic() - exited_at > _DRAIN_AFTER_EXIT_S:
            break  # the command is gone; whatever it left behind may hold the pipe open forever
        ready, _, _ = select.select([fd], [], [], _IDLE_FLUSH_S)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            pending += data
            cut = max(pending.rfind(b"\n"), pending.rfind(b"\r"))
            if cut >= 0:
                emit(pending[: cut + 1])
                pending = pending[cut + 1 :]
            elif len(pending) > 65536:
                emit(pending)
                pending = b""
            continue
        if pending:  # idle: show a prompt or a partial line now
            emit(pending)
            pending = b""
        if exited_at is not None or process.poll() is not None:
            break  # exited and its output drained
    emit(pending, final=True)
    process.stdout.close()


def run(options: RunOptions, env: Mapping[str, str] = os.environ) -> int:
    """Run the command as described in the module docstring; returns its exit code."""
    if not options.command:
        raise ValueError("no command given")
    env = dict(env)
    redact_text = text_redactor(env)
    run_id = resolve_run_id(options.run_id, env)
    bucket = options.bucket or env.get("BUCKET") or None
    name = sanitize_run_id(options.name or Path(options.command[0]).name) or "run"
    command_text = shlex.join(options.command)
    # One notification per event: only the first node reports. When another node fails, rank 0's torchrun
    # fails too and its note carries the reason; every node still uploads its own log.
    notify_all = env.get("SKYPILOT_NODE_RANK", "0") in ("", "0")

    if options.log_file is not None:
        log_path = options.log_file
        log_path.parent.mkdir(parents=True, exist_ok=True)
    else:
        options.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_path_for(options.log_dir, name, env)
    client = Notifier.from_env(env)
    facts = report.RunFacts(name, command_text, run_id, report.describe_host(env), str(log_path))

    child_env = dict(env, RUN_ID=run_id)  # so the command writes its manifest where we will look
    if bucket:
        child_env["BUCKET"] = bucket
    child_env.setdefault("PYTHONUNBUFFERED", "1")  # live logs from Python children behind a pipe

    record = jobs.JobRecord(
        id=options.job_id or jobs.new_job_id(name), name=name, command=redact_text(command_text),
        log=str(log_path.absolute()), pid=os.getpid(), pid_start=jobs.process_start(os.getpid()),
        started_at=jobs.now_iso(), run_id=run_id, tmux=options.tmux,
    )
    state = _SignalState(options.on_hangup)
    recorded = True
    previous = {}
    for signum in FORWARDED_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, state.handle)
        except ValueError:  # not the main thread: nothing to forward from
            pass

    _say(f"running `{command_text}` (run {run_id}); log: {log_path}", redact_text)
    start = time.monotonic()
    starter: threading.Thread | None = None
    try:
        with open(log_path, "wb") as log:
            try:
                # A session of its own: the command and its children get exactly the signals we forward.
                tie = _die_with_parent()
                # The guard passes the parent-death signal on to CMD's whole process group (notify/guard.py).
                guarded = [sys.executable, "-I", "-S", guard.__file__, str(os.getpid())] if tie else []
                state.process = subprocess.Popen(
                    guarded + options.command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=child_env,
                    start_new_session=True,
                    preexec_fn=tie,
                )
            except OSError as exc:
                message = f"cannot run {options.command[0]!r}: {exc.strerror or exc}\n"
                log.write(redact_text(message).encode())
                _say(message.strip(), redact_text)
                code = 126 if isinstance(exc, PermissionError) else 127
            else:
                record.child_pid = state.process.pid
                recorded = _save(record, env, redact_text)
                for signum in state.pending:
                    state.forward(signum)
                if options.notify_start and notify_all:
                    note = report.started(facts)
                    starter = threading.Thread(  # never delay the job for a courtesy
                        target=client.publish, args=(note.message, note.title, note.priority, note.tags), daemon=True
                    )
                    starter.start()
                terminal = getattr(sys.stdout, "buffer", None)
                sinks = [terminal, log] if terminal is not None else [log]
                _pump(state.process, sinks, StreamRedactor(env))
                returncode = state.process.wait()
                code = 128 - returncode if returncode < 0 else returncode

        facts.duration_s = time.monotonic() - start
        facts.exit_code = code
        facts.signal_received = state.received
        record.state, record.exit_code, record.ended_at = _outcome(facts), code, jobs.now_iso()
        _save(record, env, redact_text, say=recorded)  # one complaint per run is enough
        _finish(facts, client, bucket, log_path, env, notify_all, starter)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code


def _save(record: jobs.JobRecord, env: Mapping[str, str], redact: Callable[[str], str], say: bool = True) -> bool:
    """Write the job's record for ``notify ls``; a failure is one stderr line (if ``say``), never the job's problem."""
    try:
        jobs.write(record, env)
    except OSError as exc:
        if say:
            _say(f"job record not written to {jobs.state_dir(env)}: {exc.strerror or exc}", redact)
        return False
    return True


def _outcome(facts: report.RunFacts) -> str:
    return "interrupted" if facts.signal_received else ("succeeded" if facts.exit_code == 0 else "failed")


def _finish(
    facts: report.RunFacts,
    client: Notifier,
    bucket: str | None,
    log_path: Path,
    env: Mapping[str, str],
    notify_all: bool,
    starter: threading.Thread | None,
) -> None:
    """Upload the log, gather the manifest, notify. Every step is bounded and none can raise."""
    redact_text = text_redactor(env)
    try:
        timeout = float(env.get("NOTIFY_STORAGE_TIMEOUT", STORAGE_TIMEOUT_S))
    except ValueError:
        timeout = STORAGE_TIMEOUT_S
    try:
        outcome = _outcome(facts)
        _say(f"{facts.name} {outcome} with {report.exit_phrase(facts.exit_code or 0)} "
             f"after {report.format_duration(facts.duration_s)}", redact_text)
        if bucket:
            where = _bounded("log upload", lambda: upload_log(bucket, facts.run_id, log_path, env), timeout,
                             redact_text)
            if where:
                facts.log = where
        if outcome == "succeeded":
            manifest_bucket = bucket or DEFAULT_LOCAL_BUCKET
            facts.manifest = _bounded(
                f"manifest {run_prefix(manifest_bucket, facts.run_id)}manifest.json",
                lambda: read_manifest(manifest_bucket, facts.run_id, env), timeout, redact_text,
            )
        else:
            facts.tail = report.tail(log_path)
            facts.reason = report.failure_reason(log_path)
        if starter is not None:
            starter.join(1.0)  # keep start before end on the phone, unless the server is the slow part
        if not notify_all:
            return
        if outcome == "succeeded" and env.get("NOTIFY_QUIET_SUCCESS") == "1":
            return  # a sweep member: the sweep tells its members' successes once, when it ends
        note = {"succeeded": report.succeeded, "failed": report.failed, "interrupted": report.interrupted}[
            outcome
        ](facts)
        client.publish(note.message, title=note.title, priority=note.priority, tags=note.tags)
    except Exception as exc:  # the exit code is the command's, always
        _say(f"reporting failed: {exc}", redact_text)
