"""``python -m notify``: ``run`` (wrap a command), ``send`` (one notification), ``event`` (SkyPilot callback).

Only argument parsing lives here; each command is one call into its module.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from notify import event_callback
from notify.client import NtfyClient, parse_priority


def _priority(value: str) -> str:
    try:
        parse_priority(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m notify",
        description="ntfy push notifications for long jobs (configure with NTFY_TOPIC, NTFY_SERVER, NTFY_TOKEN).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{run,send,event}")

    run = commands.add_parser(
        "run",
        help="run a command, tee its output to a log, notify when it ends",
        description="Run CMD, stream its output to the terminal and logs/<name>-YYYYmmdd-HHMMSS.log, forward "
        "SIGINT/SIGTERM to it, notify on success/failure/interruption, exit with its exit code.",
        epilog="example: python -m notify run -- accelerate launch -m cft train --config recipes/x.yaml",
    )
    run.add_argument("--name", help="name for the log file and the notifications (default: CMD's basename)")
    run.add_argument("--notify-start", action="store_true", help="also notify when the command starts")
    run.add_argument("--log-dir", type=Path, default=Path("logs"), help="folder for the log file (default: logs)")
    run.add_argument("--bucket", help="bucket root (local folder or s3://...) for the manifest and the log "
                     "(default: env BUCKET)")
    run.add_argument("--run-id", help="run id (default: env RUN_ID, SKYPILOT_TASK_ID, or a timestamp); "
                     "exported to CMD as RUN_ID")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="the command to run")

    send = commands.add_parser("send", help="send one notification",
                               epilog='example: python -m notify send "eval done: STS mean 83.9" --priority high')
    send.add_argument("message", help="the message (Markdown); '-' reads it from stdin")
    send.add_argument("--title", help="notification title")
    send.add_argument("--priority", type=_priority, help="1-5 or min/low/default/high/urgent")
    send.add_argument("--tags", help="comma-separated tags or emoji short codes, e.g. tada,cft")
    send.add_argument("--click", help="URL to open when the notification is tapped")

    commands.add_parser(
        "event",
        help="SkyPilot managed-jobs event_callback (reads JOB_ID, JOB_STATUS, TASK_NAME, ... from the env)",
        description="Use as `event_callback: python -m notify event` in a managed-job YAML.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        from notify.wrapper import RunOptions, run  # the wrapper's imports are not needed by `send`

        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("run: give the command after --, e.g. python -m notify run -- python train.py")
        from notify.run_identity import InvalidRunId

        try:  # before the command starts: afterwards only the command's own exit code may come out
            args.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            parser.error(f"run: --log-dir {args.log_dir}: cannot create the folder ({exc.strerror or exc})")
        options = RunOptions(cmd, args.name, args.notify_start, args.log_dir, args.bucket, args.run_id)
        try:
            return run(options)
        except InvalidRunId as error:
            print(f"notify: error: {error}", file=sys.stderr)
            return 2
    if args.command == "send":
        message = sys.stdin.read() if args.message == "-" else args.message
        NtfyClient.from_env(os.environ).publish(
            message, title=args.title, priority=args.priority, tags=args.tags, click=args.click
        )
        return 0  # a failed notification is reported on stderr, never as a failed job step
    return event_callback.main()


if __name__ == "__main__":
    sys.exit(main())
