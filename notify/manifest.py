"""A run's manifest.json: the one `Manifest` type that training, evaluation and the demo write and that `cft runs`
and the notifier read.

It is written last (see `run_layout`), so a run is complete when it exists; a manifest that is not JSON, lacks a
field or holds a value of the wrong type is reported with the first problem found (`ManifestError`), never
half-used. It lives in ``notify`` for the reason given in `run_layout`: the notifier reads it where ``cft`` is not
installed, and ``notify`` never imports ``cft``. Stdlib only.

Schema versions:

- 1 (the first build, no ``schema_version`` field): evaluation scores were merged into ``metrics``; they are split
  out on reading (`_split_v1_scores`), so such manifests read as version 2.
- 2: training numbers in ``metrics``, evaluation scores (main score x100 per task, and ``<suite>_mean``) in
  ``scores``, with ``eval`` saying where the summary is and, for before/after runs, the base model's ``baseline``.

Fields this version does not know are kept in ``extra`` and written back, so rewriting a manifest (adding scores)
never drops what a newer writer put there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from notify.run_layout import MANIFEST_FILE

SCHEMA_VERSION = 2
STATUSES = ("succeeded", "failed", "running", "interrupted")

_NUMBER = (int, float)
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object"}

# field -> (allowed types, may be null, required)
_SCHEMA: dict[str, tuple[tuple[type, ...], bool, bool]] = {
    "run_id": ((str,), False, True),
    "status": ((str,), False, True),
    "model": ((str,), False, True),
    "recipe": ((str,), False, True),
    "started_at": ((str,), True, True),
    "finished_at": ((str,), True, True),
    "duration_s": (_NUMBER, True, True),
    "steps": ((int,), True, True),
    "metrics": ((dict,), False, True),
    "adapter": ((str,), True, True),
    "schema_version": ((int,), False, False),
    "scores": ((dict,), False, False),
    "eval": ((dict,), True, False),
    "recipe_name": ((str,), True, False),
    "git_sha": ((str,), True, False),
    "cft_version": ((str,), True, False),
    "resumed_from_step": ((int,), True, False),
    "world_size": ((int,), True, False),
    "triplets": ((int,), True, False),
    "error": ((str,), True, False),
}

# Version 1 only: manifest metrics that describe training, not an evaluation task (see `_split_v1_scores`).
_V1_TRAINING_METRIC_HINTS = ("loss", "runtime", "per_second", "epoch", "grad_norm", "learning_rate", "step", "triplets")


class ManifestError(ValueError):
    """The manifest cannot be trusted; the message says why, in a few words."""


@dataclass
class Manifest:
    """What a run was and how it ended. Build one with keywords; `to_json` is the file, `from_json` reads it back."""

    run_id: str
    status: str
    model: str
    recipe: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    steps: int | None = None
    adapter: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    eval: dict[str, Any] | None = None
    recipe_name: str | None = None
    git_sha: str | None = None
    cft_version: str | None = None
    resumed_from_step: int | None = None
    world_size: int | None = None
    triplets: int | None = None
    error: str | None = None
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The file's content, keys sorted as the file has them."""
        data = asdict(self)
        extra = data.pop("extra")
        if data["eval"] is None:
            data.pop("eval")
        if data["triplets"] is None:
            data.pop("triplets")
        return dict(sorted({**extra, **data}.items()))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """The manifest of any schema version, or ManifestError naming the first problem."""
        validate(data)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: value for key, value in data.items() if key in known}
        values["metrics"] = dict(values["metrics"])
        if "schema_version" not in data:
            values["metrics"], values["scores"] = _split_v1_scores(data)
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ManifestError(f"{MANIFEST_FILE} is not JSON ({error.msg}: line {error.lineno} "
                                f"column {error.colno})") from None
        except RecursionError:  # nesting deeper than the JSON parser follows: damaged or hostile, not a manifest
            raise ManifestError(f"{MANIFEST_FILE} is nested too deeply to be a manifest") from None
        return cls.from_dict(data)

    def record_scores(self, scores: dict[str, float], summary_uri: str,
                      baseline: dict[str, float] | None = None) -> None:
        """Adds evaluation scores (and the base model's, for a before/after run) and where their summary is."""
        self.scores.update({name: round(value, 2) for name, value in scores.items()})
        self.eval = {"summary": summary_uri, "tasks": sorted(k for k in self.scores if not k.endswith("_mean"))}
        if baseline:
            self.eval["baseline"] = {name: round(value, 2) for name, value in baseline.items()}

    def task_scores(self) -> dict[str, float]:
        """Per-task evaluation scores, without the `<suite>_mean` aggregates."""
        return {name: value for name, value in self.scores.items() if not name.endswith("_mean")}

    def flat_metrics(self) -> dict[str, float | None]:
        """Training metrics, scores and baseline scores in one mapping, as the first build listed them."""
        baseline = (self.eval or {}).get("baseline") or {}
        flat = {**self.metrics, **self.scores, **{f"{name} (base)": value for name, value in baseline.items()}}
        return dict(sorted(flat.items()))


def _split_v1_scores(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """Version 1 kept scores among the metrics: the tasks its `eval` named and `*_mean` are scores, `<task> (base)`
    was the demo's baseline; a manifest edited without `eval` falls back to the first build's own name test."""
    metrics, tasks = dict(data["metrics"]), (data.get("eval") or {}).get("tasks")

    def is_score(name: str) -> bool:
        if name.endswith("_mean"):
            return True
        if isinstance(tasks, list):
            return name in tasks
        return not name.endswith(" (base)") and not any(hint in name for hint in _V1_TRAINING_METRIC_HINTS)

    scores = {name: value for name, value in metrics.items() if _is_number(value) and is_score(name)}
    return {name: value for name, value in metrics.items() if name not in scores}, scores


def validate(data: Any) -> None:
    """ManifestError naming the first field that is missing or of the wrong type."""
    if not isinstance(data, dict):
        raise ManifestError(f"{MANIFEST_FILE} holds {type(data).__name__}, not an object")
    for name, (types, nullable, required) in _SCHEMA.items():
        if name not in data:
            if required:
                raise ManifestError(f"{MANIFEST_FILE}: missing field {name!r}")
            continue
        value = data[name]
        if value is None:
            if not nullable:
                raise ManifestError(f"{MANIFEST_FILE}: {name} must be {_describe(types, nullable)} (got null)")
            continue
        if not _type_ok(value, types):
            raise ManifestError(f"{MANIFEST_FILE}: {name} must be {_describe(types, nullable)} "
                                f"(got {type(value).__name__} {_short(value)})")
    if data["status"] not in STATUSES:
        raise ManifestError(f"{MANIFEST_FILE}: status must be one of {', '.join(STATUSES)} (got {data['status']!r})")
    if data["status"] == "succeeded":
        for name in ("steps", "adapter"):
            if data[name] is None:
                raise ManifestError(f"{MANIFEST_FILE}: a succeeded run needs {name} (got null)")
    for group in ("metrics", "scores"):
        for name, value in (data.get(group) or {}).items():
            if value is not None and not _is_number(value):
                raise ManifestError(f"{MANIFEST_FILE}: {group}.{name} must be a number or null "
                                    f"(got {type(value).__name__} {_short(value)})")


def _describe(types: tuple[type, ...], nullable: bool) -> str:
    name = "a number" if types == _NUMBER else _TYPE_NAMES.get(types[0], types[0].__name__)
    return f"{name} or null" if nullable else name


def _is_number(value: Any) -> bool:
    return isinstance(value, _NUMBER) and not isinstance(value, bool)


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false are not steps or durations
        return bool in types
    return isinstance(value, types)


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
