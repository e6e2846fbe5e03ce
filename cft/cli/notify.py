"""`cft notify ...`: the notifier under cft's name. The commands are `notify`'s own (`notify.cli`), so the two
spellings cannot drift; `notify` itself never imports cft, because it runs where cft is not installed."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from notify.cli import add_commands  # argparse only: the senders load when a command runs

    parser = subparsers.add_parser(
        "notify",
        help="push notifications and the job wrapper: run (--detach), send, ls, logs (same as python -m notify)",
        description="Push notifications for long jobs: ntfy (NTFY_TOPIC, NTFY_SERVER, NTFY_TOKEN) and, with the "
        "apprise extra, any Apprise URL (APPRISE_URLS).",
    )
    add_commands(parser)
    parser.set_defaults(func=lambda args: _run(args, parser))


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from notify.cli import dispatch

    return dispatch(args, parser, prog="cft notify")
