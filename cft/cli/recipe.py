"""`cft recipe`: what a recipe can hold (every field, its type, default and help) and what a recipe resolves to."""

from __future__ import annotations

import argparse
import json

from cft.cli.options import add_json, add_recipe

EXAMPLES = """examples:
  cft recipe fields                                   every field: type, default, help
  cft recipe fields train                             the fields of one section
  cft recipe show --config recipes/smollm2-135m.yaml --set train.learning_rate=1e-4
  cft recipe show --json                              the defaults, as JSON"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "recipe",
        help="list recipe fields; print a recipe resolved with --set",
        description="A recipe (YAML) holds the model, data, LoRA and training settings of a run.\n"
                    "`fields` lists every setting; `show` prints the recipe that `cft train` would use, after --set.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="recipe_action", metavar="ACTION", required=True)
    listing = actions.add_parser("fields", help="every recipe field with its type, default and help",
                                 description="Every recipe field (`--set` takes the same keys), with its type, "
                                             "default and help.")
    listing.add_argument("section", nargs="?", choices=("name", "model", "data", "lora", "train"),
                         metavar="SECTION", help="only this section (model, data, lora, train)")
    add_json(listing)
    listing.set_defaults(func=run_fields)
    show = actions.add_parser("show", help="the resolved recipe (file + --set), as train would use it",
                              description="Reads a recipe, applies --set, checks every field, and prints the result "
                                          "(the same YAML a run saves as config.yaml). Without --config: the "
                                          "defaults.")
    add_recipe(show, required=False)
    add_json(show)
    show.set_defaults(func=run_show)


def _shown(value: object) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) or value is None else str(value)


def run_fields(args: argparse.Namespace) -> int:
    from cft.config import recipe_fields

    infos = [f for f in recipe_fields() if args.section is None or f.key.split(".")[0] == args.section]
    if args.json:
        print(json.dumps([{"key": f.key, "type": f.type, "default": f.default, "help": f.help} for f in infos],
                         indent=2))
        return 0
    width = max(len(f.key) for f in infos)
    type_width = max(len(f.type) for f in infos)
    for f in infos:
        print(f"{f.key:<{width}}  {f.type:<{type_width}}  default {_shown(f.default)}")
        print(f"{'':<{width}}  {f.help}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from cft.config import load_recipe
    from cft.errors import CFTError

    if args.config is not None and not args.config.strip():
        raise CFTError("--config is empty; give a recipe file, e.g. --config recipes/smollm2-135m.yaml")
    recipe = load_recipe(args.config, args.overrides)
    print(json.dumps(recipe.to_dict(), indent=2) if args.json else recipe.to_yaml(), end="" if not args.json else "\n")
    return 0
