"""The ``notify`` commands' arguments, shared by ``python -m notify`` and its alias ``cft notify``.

Only argument parsing lives here; each command is one call into its module, imported when it runs (``cft
--help`` must not load ``requests``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ON_HANGUP = ("keep", "stop")


def _priority(value: str) -> str:
    from notify.client import parse_priority

    try:
        parse_priority(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add ``run``, ``send``, ``ls``, ``logs`` and ``event`` to ``parser`` as sub-commands."""
    commands = parser.add_subparsers(dest="notify_command", required=True, metavar="{run,send,ls,logs,event}")

    run = commands.add_parser(
        "run",
        help="run a command, tee its output to a log, notify when it ends",
        description="Run CMD, stream its output to the terminal and logs/<name>-YYYYmmdd-HHMMSS.log, forward "
        "SIGINT/SIGTERM to it, notify on success/failure/interruption, exit with its exit code. CMD is tied to "
        "this wrapper: if the wrapper is killed, CMD gets SIGTERM (Linux). With --detach it runs apart from this "
        "terminal instead, in a tmux session when tmux is installed.",
        epilog="example: python -m notify run --detach --name smol -- cft train --config recipes/smollm2-135m.yaml",
    )
    run.add_argument("--name", help="name for the log file, the notifications, `notify ls` and the tmux session "
                     "(default: CMD's basename)")
    run.add_argument("--detach", action="store_true",
                     help="return at once and run the job where a dropped connection cannot stop it: in tmux "
                     "session NAME when tmux is on PATH, else in a new session with no terminal; prints the log "
                     "path and how to follow it")
    run.add_argument("--no-tmux", action="store_true", help="with --detach: do not use tmux even if installed")
    run.add_argument("--on-hangup", choices=ON_HANGUP, default="keep",
                     help="when the terminal hangs up (SIGHUP, e.g. the SSH connection dropped): keep CMD running "
                     "(default), or stop it by passing SIGHUP on")
    run.add_argument("--notify-start", action="store_true", help="also notify when the command starts")
    run.add_argument("--log-dir", type=Path, default=Path("logs"), help="folder for the log file (default: logs)")
    run.add_argument("--bucket", "-b", help="bucket root (local folder or s3://...) for the manifest and the log "
                     "(default: env BUCKET)")
    run.add_argument("--run-id", help="run id (default: env RUN_ID, SKYPILOT_TASK_ID, or a timestamp); "
                     "exported to CMD as RUN_ID")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="CMD", help="the command to run, after --")

    send = commands.add_parser("send", help="send one notification; exits 1 when it was not delivered",
                               epilog='example: python -m notify send "eval done: STS mean 83.9" --priority high')
    send.add_argument("message", help="the message (Markdown); '-' reads it from stdin")
    send.add_argument("--title", help="notification title")
    send.add_argument("--priority", type=_priority, help="1-5 or min/low/default/high/urgent")
    send.add_argument("--tags", help="comma-separated tags or emoji short codes, e.g. tada,cft")
    send.add_argument("--click", help="URL to open when the notification is tapped")

    ls = commands.add_parser("ls", help="list the wrapped jobs of this machine: name, state, start, duration, log",
                             description="States: running, succeeded, failed, interrupted (also a job whose "
                             "wrapper was killed). Records live in $NOTIFY_STATE_DIR, else "
                             "$XDG_STATE_HOME/cft-notify, else ~/.local/state/cft-notify.")
    ls.add_argument("--json", action="store_true", help="print the records as a JSON list")

    logs = commands.add_parser("logs", help="print the log of the newest job called NAME (-f: follow it)")
    logs.add_argument("name", metavar="NAME", help="a job's name (or its id, as `notify ls --json` shows)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")

    commands.add_parser(
        "event",
        help="SkyPilot managed-jobs event_callback (reads JOB_ID, JOB_STATUS, TASK_NAME, ... from the env)",
        description="Use as `event_callback: python -m notify event` in a managed-job YAML.",
    )


def dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser, prog: str = "python -m notify") -> int:
    """Run the parsed command; ``parser`` reports usage errors, ``prog`` is how the user called us (for hints)."""
    command = args.notify_command
    if command == "run":
        return _run(args, parser, prog)
    if command == "send":
        from notify.notifier import Notifier

        message = sys.stdin.read() if args.message == "-" else args.message
        delivered = Notifier.from_env(os.environ).publish(
            message, title=args.title, priority=args.priority, tags=args.tags, click=args.click
        )
        return 0 if delivered else 1  # why it was not is already on stderr
    if command in ("ls", "logs"):
        return _jobs(args, prog)
    from notify import event_callback

    return event_callback.main()


def _error(prog: str, message: str) -> int:
    print(f"{'cft' if prog.startswith('cft') else 'notify'}: error: {message}", file=sys.stderr)
    return 2


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser, prog: str) -> int:
    from notify.run_identity import InvalidRunId
    from notify.wrapper import RunOptions, run

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("run: give the command after --, e.g. python -m notify run -- python train.py")
    if args.no_tmux and not args.detach:
        parser.error("run: --no-tmux goes with --detach")
    try:  # before the command starts: afterwards only the command's own exit code may come out
        args.log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"run: --log-dir {args.log_dir}: cannot create the folder ({exc.strerror or exc})")
    options = RunOptions(cmd, args.name, args.notify_start, args.log_dir, args.bucket, args.run_id,
                         on_hangup=args.on_hangup)
    try:
        if args.detach:
            from notify.detach import DetachError, launch

            try:
                return launch(options, os.environ, use_tmux=not args.no_tmux, prog=prog)
            except (DetachError, OSError) as error:
                return _error(prog, f"run --detach: {error}")
        return run(options)
    except InvalidRunId as error:
        return _error(prog, str(error))


def _jobs(args: argparse.Namespace, prog: str) -> int:
    import json

    from notify import jobs

    if args.notify_command == "ls":
        records = jobs.load_all()
        if args.json:
            print(json.dumps([r.to_json() for r in records], indent=1))
        elif records:
            print(jobs.table(records))
        else:
            print(f"no wrapped jobs recorded in {jobs.state_dir()}")
        return 0
    record = jobs.find(args.name)
    if record is None:
        return _error(prog, f"logs: no job called {args.name!r} in {jobs.state_dir()} (see {prog} ls)")
    try:
        jobs.show_log(record, sys.stdout.buffer, follow=args.follow)
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        return _error(prog, f"logs: {record.log}: {exc.strerror or exc}")
    return 0
