"""Assembles the `cft` command from one module per sub-command.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func` to a callable taking the
parsed arguments and returning an exit code. Known user errors become one line on stderr; `CFT_DEBUG=1` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from cft import __version__
from cft.errors import CFTError

COMMAND_MODULES = ("train", "prepare", "eval", "runs", "export", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cft",
        description="Contrastive fine-tuning of small causal LMs into text-embedding models.",
    )
    parser.add_argument("--version", action="version", version=f"cft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"cft.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"cft.cli.{name}":
                continue  # command not built yet
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CFTError as error:
        if os.environ.get("CFT_DEBUG") == "1":
            raise
        print(f"cft: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cft: interrupted", file=sys.stderr)
        return 130
