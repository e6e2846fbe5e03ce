"""``python -m notify``: ``run`` (wrap a command), ``send`` (one notification), ``ls`` and ``logs`` (the wrapped
jobs of this machine), ``event`` (SkyPilot callback). The commands are defined in ``notify.cli``."""

from __future__ import annotations

import argparse
import os
import sys

from notify.cli import add_commands, dispatch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m notify",
        description="Push notifications for long jobs: ntfy (NTFY_TOPIC, NTFY_SERVER, NTFY_TOKEN) and, with the "
        "apprise extra, any Apprise URL (APPRISE_URLS).",
    )
    add_commands(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return dispatch(args, parser)
    except BrokenPipeError:  # `notify ls | head`: the reader has had what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
