"""The flags every command shares, declared once so that one flag has one meaning everywhere.

The vocabulary (the README's "Command reference" lists every command and flag):

    --bucket/-b ROOT   a run store: a local folder or s3://bucket/prefix (default $BUCKET or ./cft-runs)
    --out/-o PATH      a plain local folder or file to write
    --config/-c FILE   a recipe YAML;  --set KEY=VALUE  a recipe override (repeatable);  --run-id ID
    --batch-size N     triplets per training step;  --encode-batch-size N  texts per forward pass in evaluation
    --json, --dry-run, --force, --secrets FILE, --name NAME, --device

Old spellings whose meaning moved (`--output` was a bucket in train and demo, a folder in eval, export and
prepare; eval's `--batch-size` counted texts) still work and print one line on stderr naming the new flag.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

DEFAULT_BUCKET = "./cft-runs"
BUCKET_HELP = "run store: a local folder or s3://bucket/prefix (default: $BUCKET, else ./cft-runs)"


def default_bucket() -> str:
    """Where runs live when no --bucket is given."""
    return os.environ.get("BUCKET") or DEFAULT_BUCKET


class DeprecatedAlias(argparse.Action):
    """An old spelling of a flag: stores into the new flag's dest and says once, on stderr, what to write instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        command = parser.prog.removeprefix("cft ").strip()
        print(f"cft: warning: {command} {option_string} is deprecated; use {self.new} (same value)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated(parser: argparse.ArgumentParser, *old: str, new: str, dest: str, **kwargs: Any) -> None:
    """Accepts `old` spellings for `new` without showing them in --help (the README lists them)."""
    parser.add_argument(*old, dest=dest, action=DeprecatedAlias, new=new, help=argparse.SUPPRESS,
                        default=argparse.SUPPRESS, **kwargs)


def add_bucket(parser: argparse.ArgumentParser, *, deprecated: Sequence[str] = (), default: Any = None) -> None:
    """--bucket/-b ROOT; `deprecated` lists old spellings of it in this command."""
    parser.add_argument("--bucket", "-b", metavar="ROOT", default=default, help=BUCKET_HELP)
    if deprecated:
        add_deprecated(parser, *deprecated, new="--bucket", dest="bucket", metavar="ROOT")


def add_out(parser: argparse.ArgumentParser, help: str, *, metavar: str = "PATH",
            deprecated: Sequence[str] = ("--output",)) -> None:
    """--out/-o PATH, a plain local folder or file; `--output` is its old spelling (so argparse cannot require it:
    a command that needs it checks `args.out` itself)."""
    parser.add_argument("--out", "-o", metavar=metavar, default=None, help=help)
    if deprecated:
        add_deprecated(parser, *deprecated, new="--out", dest="out", metavar=metavar)


def add_recipe(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """--config/-c FILE and --set KEY=VALUE (repeatable)."""
    parser.add_argument("--config", "-c", metavar="FILE", required=required, default=None,
                        help="recipe YAML (shipped ones are in recipes/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. train.learning_rate=1e-4 (repeatable; "
                             "`cft recipe fields` lists them)")


def add_json(parser: argparse.ArgumentParser, default: Any = False) -> None:
    parser.add_argument("--json", action="store_true", default=default, help="print JSON instead of text (for scripts)")
