"""`OVERRIDES`: recipe overrides handed to a job through one environment variable.

A SkyPilot task gets its settings as `--env NAME=VALUE`, one string each, so the `--set` pairs of a run travel as
one string of shell words, `OVERRIDES="train.learning_rate=1e-4 lora.r=8 'model.prompt_template=Say: {}'"`, usable by
hand and written by `cft sweep launch` (`join_overrides`). On the node, `python -m cft.overrides` splits them, checks
each against the recipe in `$RECIPE` (a typo fails here, in one line, before torchrun starts a process per GPU) and
prints one pair per line for the job script to pass on as `--set` flags.
"""

from __future__ import annotations

import os
import shlex
import sys

from cft.config import load_recipe, parse_override
from cft.errors import CFTError, user_message

ENV_NAME = "OVERRIDES"


def split_overrides(text: str, source: str = ENV_NAME) -> list[str]:
    """Shell words -> `section.key=value` pairs; CFTError naming the pair (and `source`) when one is malformed."""
    try:
        pairs = shlex.split(text)
    except ValueError as error:
        raise CFTError(f"{source}={text!r}: {error}; quote a value with spaces, e.g. 'model.prompt_template=Say: {{}}'")
    for pair in pairs:
        if "\n" in pair:
            raise CFTError(f"{source}: {pair!r} holds a newline; a value must be one line")
        try:
            keys, _ = parse_override(pair)
        except CFTError as error:
            raise CFTError(f"{source}: {error}") from None
        if len(keys) != 2 and keys != ["name"]:
            raise CFTError(f"{source}: {pair!r}: keys look like <section>.<field>, e.g. train.learning_rate=1e-4")
    return pairs


def join_overrides(pairs: list[str]) -> str:
    """The inverse of `split_overrides`: one string that a shell (and `split_overrides`) reads back as `pairs`."""
    return shlex.join(pairs)


def main(env: dict[str, str] | None = None) -> int:
    """Prints `$OVERRIDES` as one pair per line, after checking them against `$RECIPE` when it is a file."""
    env = dict(os.environ if env is None else env)
    try:
        pairs = split_overrides(env.get(ENV_NAME, ""))
        recipe = env.get("RECIPE")
        if pairs and recipe and os.path.isfile(recipe):
            try:
                load_recipe(recipe, pairs)
            except CFTError as error:
                raise CFTError(f"{ENV_NAME}: {error}") from None
    except CFTError as error:
        print(f"cft: error: {user_message(error)}", file=sys.stderr)
        return 2
    for pair in pairs:
        print(pair)
    return 0


if __name__ == "__main__":
    sys.exit(main())
