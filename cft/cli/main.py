"""Assembles the `cft` command from one module per sub-command.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func` to a callable taking the
parsed arguments and returning an exit code. Every failure becomes one line on stderr, `cft: error: ...`: bad input
(see `cft.errors.user_message`) exits 2, an unexpected error exits 1 and asks for the traceback, which `CFT_DEBUG=1`
shows. Usage mistakes get the same one line (argparse's own two-line usage message is replaced).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from types import ModuleType
from typing import NoReturn

from cft import __version__
from cft.errors import one_line, user_message

COMMAND_MODULES = ("train", "prepare", "eval", "runs", "export", "demo", "recipe", "check", "sweep", "notify")


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors that say where the help is; sub-command parsers inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"cft: error: {one_line(message)} (see {self.prog} --help)\n")


def command_modules() -> dict[str, ModuleType]:
    """The command modules that exist, by command name (imported lazily: they import nothing heavy themselves)."""
    modules = {}
    for name in COMMAND_MODULES:
        try:
            modules[name] = importlib.import_module(f"cft.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"cft.cli.{name}":
                continue  # command not built yet
            raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="cft",
        description="Contrastive fine-tuning of small causal LMs into text-embedding models.",
        epilog="`cft COMMAND --help` describes a command; the README's \"Command reference\" lists every flag.",
    )
    parser.add_argument("--version", action="version", version=f"cft {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in command_modules().values():
        module.register(subparsers)
    return parser


def with_default_actions(argv: list[str]) -> list[str]:
    """A command group with a default action (`cft runs` = `cft runs list`) gets it put in when none is named."""
    for index, word in enumerate(argv):
        if word.startswith("-"):
            continue  # the top level's options (--help, --version) take no value
        hook = getattr(command_modules().get(word), "with_default_action", None)
        return [*argv[: index + 1], *hook(argv[index + 1:])] if hook else argv
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(with_default_actions(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as exit:  # --help, --version, or a usage error already printed as one line
        return int(exit.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cft: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cft recipe fields | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141
    except Exception as error:
        if os.environ.get("CFT_DEBUG") == "1":
            raise
        message = user_message(error)
        if message is not None:
            print(f"cft: error: {message}", file=sys.stderr)
            return 2
        detail = one_line(str(error))[:300]
        print(f"cft: error: unexpected {type(error).__name__}{': ' + detail if detail else ''} (a bug in cft; "
              "CFT_DEBUG=1 shows the traceback, please report it)", file=sys.stderr)
        return 1
