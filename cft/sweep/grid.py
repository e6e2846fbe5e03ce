"""The grid of a sweep: which settings vary, over which values, and the members (one per combination).

`--grid train.learning_rate=1e-5,5e-5 --grid lora.r=8,16` is four members. Values are what `--set` takes (read as
YAML by the recipe loader); a value with a comma, or a list such as `lora.target_modules`, goes in a sweep file:

    config: recipes/qwen2.5-0.5b.yaml      # optional: --config wins
    set: {train.num_epochs: 1}             # optional: fixed overrides for every member
    grid:
      train.learning_rate: [1.0e-5, 5.0e-5]
      lora.target_modules: [[q_proj, v_proj], all-linear]

Members are numbered in the grid's order (the last key varies fastest) and named `<sweep>-<index>`, which is both
the run id (`<bucket>/runs/<sweep>-00/`) and the managed job's name.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cft.errors import CFTError

# A managed job's name is checked like a cluster name by SkyPilot; a run id is one path segment. Both hold here.
NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,39}")


@dataclass
class Member:
    """One combination of the grid: its run id and the `--set` pairs that make it."""

    index: int
    run_id: str
    settings: dict[str, str] = field(default_factory=dict)  # varied key -> value as given to --set

    def pairs(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.settings.items()]

    def label(self) -> str:
        return " ".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in self.settings.items())


@dataclass
class SweepSpec:
    """What was asked for: the recipe, the fixed overrides and the grid (key -> values, in order)."""

    name: str
    config: str
    sets: list[str]
    grid: dict[str, list[str]]

    def members(self) -> list[Member]:
        keys = list(self.grid)
        combos = itertools.product(*(self.grid[key] for key in keys))
        width = max(2, len(str(self.size() - 1)))
        return [Member(i, f"{self.name}-{i:0{width}d}", dict(zip(keys, combo))) for i, combo in enumerate(combos)]

    def size(self) -> int:
        total = 1
        for values in self.grid.values():
            total *= len(values)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "sets": list(self.sets), "grid": {k: list(v) for k, v in self.grid.items()}}


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name or ""):
        raise CFTError(f"--name {name!r}: a sweep name is 1-40 lowercase letters, digits and '-', starting with a "
                       "letter (it names the runs and the managed jobs), e.g. --name lr-rank")
    return name


def _value_text(value: Any) -> str:
    """A YAML value as `--set` takes it: scalars as written, lists and mappings in YAML's one-line form."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    if isinstance(value, (int, float)):
        return repr(value)
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()


def parse_grid_flag(text: str) -> tuple[str, list[str]]:
    """`train.learning_rate=1e-5,5e-5` -> ('train.learning_rate', ['1e-5', '5e-5'])."""
    key, sep, values = text.partition("=")
    key = key.strip()
    if not sep or not re.fullmatch(r"[A-Za-z_]+\.[A-Za-z_0-9]+", key):
        raise CFTError(f"--grid {text!r}: expected section.key=value1,value2,... (e.g. train.learning_rate=1e-5,5e-5)")
    parts = [part.strip() for part in values.split(",")]
    if not all(parts):
        raise CFTError(f"--grid {text!r}: an empty value; list values separated by commas, or use a sweep file")
    return key, parts


def read_sweep_file(path: str) -> dict[str, Any]:
    """A sweep file's `config`, `set` and `grid`, checked; CFTError naming the file and field otherwise."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise CFTError(f"{path}: sweep file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CFTError(f"{path}: cannot read the sweep file ({error})") from None
    except yaml.YAMLError as error:
        raise CFTError(f"{path}: not valid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(data, dict):
        raise CFTError(f"{path}: a sweep file is a mapping with `grid` (and optionally `config`, `set`)")
    unknown = sorted(set(data) - {"config", "set", "grid"})
    if unknown:
        raise CFTError(f"{path}: unknown key `{unknown[0]}`; a sweep file has config, set, grid")
    grid = data.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise CFTError(f"{path}: `grid` must map setting names to lists of values, e.g. train.learning_rate: [1e-5]")
    parsed: dict[str, list[str]] = {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise CFTError(f"{path}: grid.{key} must be a non-empty list of values (got {values!r})")
        parsed[str(key)] = [_value_text(value) for value in values]
    sets = data.get("set") or {}
    if not isinstance(sets, dict):
        raise CFTError(f"{path}: `set` must map setting names to values (got {sets!r})")
    config = data.get("config")
    if config is not None and not isinstance(config, str):
        raise CFTError(f"{path}: `config` must be a recipe path (got {config!r})")
    return {"config": config, "set": [f"{k}={_value_text(v)}" for k, v in sets.items()], "grid": parsed}


def build_spec(name: str, config: str | None, sets: list[str], grid_flags: list[str],
               grid_file: str | None) -> SweepSpec:
    """The sweep from the command line (and a sweep file): CFTError for a missing recipe, grid or a repeated key."""
    check_name(name)
    from_file = read_sweep_file(grid_file) if grid_file else {"config": None, "set": [], "grid": {}}
    grid = dict(from_file["grid"])
    for text in grid_flags:
        key, values = parse_grid_flag(text)
        if key in grid:
            raise CFTError(f"--grid {key}: given twice; list all its values in one --grid")
        grid[key] = values
    if not grid:
        raise CFTError("no grid: give --grid section.key=value1,value2 (repeatable) or --grid-file FILE")
    for key, values in grid.items():
        if len(set(values)) != len(values):
            raise CFTError(f"--grid {key}: a value is listed twice ({', '.join(values)})")
    recipe = config or from_file["config"]
    if not recipe:
        raise CFTError("no recipe: give --config recipes/<model>.yaml (or `config:` in the sweep file)")
    fixed = [*from_file["set"], *sets]
    clash = sorted({pair.split("=", 1)[0].strip() for pair in fixed} & set(grid))
    if clash:
        raise CFTError(f"--set {clash[0]}: also in the grid; a setting is either fixed or varied")
    return SweepSpec(name=name, config=recipe, sets=fixed, grid=grid)


def check_members(spec: SweepSpec) -> list[Member]:
    """Every member's recipe loads (so a typo costs nothing): the members, or CFTError naming the member."""
    from cft.config import load_recipe

    members = spec.members()
    for member in members:
        try:
            load_recipe(spec.config, [*spec.sets, *member.pairs()])
        except CFTError as error:
            raise CFTError(f"member {member.run_id} ({member.label()}): {error}") from None
    return members
