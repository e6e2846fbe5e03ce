"""Named task suites and task-list parsing for `cft eval --tasks`.

A suite is a short name for a list of MTEB tasks; anything else is read as a comma-separated list of MTEB task
names. A task may carry a subset in brackets (`STS17[en-en]`), which restricts a multi-subset task to those subsets.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from cft.errors import CFTError

#: `sts`: the STS tasks of the MTEB English benchmark (STS17 restricted to its English pair).
#: `retrieval`: small and mid-sized BEIR retrieval tasks that run in minutes on one GPU.
SUITES: dict[str, tuple[str, ...]] = {
    "sts": (
        "STS12",
        "STS13",
        "STS14",
        "STS15",
        "STS16",
        "STS17[en-en]",
        "STSBenchmark",
        "BIOSSES",
        "SICK-R",
    ),
    "retrieval": ("SciFact", "NFCorpus", "ArguAna", "FiQA2018", "SCIDOCS", "TRECCOVID"),
}


@dataclass(frozen=True)
class TaskSpec:
    """One task to evaluate: its MTEB name, the subsets to keep (None = all), and whether the user named it."""

    name: str
    subsets: tuple[str, ...] | None = None
    explicit: bool = field(default=True, compare=False)

    @property
    def label(self) -> str:
        return self.name if not self.subsets else f"{self.name}[{','.join(self.subsets)}]"


def _parse_one(token: str, explicit: bool) -> TaskSpec:
    token = token.strip()
    if "[" in token:
        if not token.endswith("]"):
            raise CFTError(f"--tasks: cannot read {token!r}; write a subset as TASK[subset], e.g. STS17[en-en]")
        name, _, rest = token.partition("[")
        subsets = tuple(s.strip() for s in rest[:-1].split("|") if s.strip())
        return TaskSpec(name.strip(), subsets or None, explicit)
    return TaskSpec(token, None, explicit)


def resolve_tasks(spec: str | list[str] | tuple[str, ...]) -> list[TaskSpec]:
    """Turn `--tasks` into task specs: suite names expand (tasks from a suite are not `explicit`), duplicates go.

    Task names are checked against mteb's registry, and an unknown name lists the suites and a close match.
    """
    tokens = [t for t in (spec.split(",") if isinstance(spec, str) else spec) if t and t.strip()]
    if not tokens:
        raise CFTError(f"--tasks is empty; give a suite ({', '.join(SUITES)}) or MTEB task names, e.g. STS12,SICK-R")
    out: list[TaskSpec] = []
    seen: set[str] = set()
    for token in tokens:
        key = token.strip().lower()
        if key in SUITES:
            specs = [_parse_one(t, explicit=False) for t in SUITES[key]]
        else:
            specs = [_parse_one(token, explicit=True)]
        for s in specs:
            if s.label not in seen:
                seen.add(s.label)
                out.append(s)
    _check_known(out)
    return out


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def suggest_tasks(name: str, all_names: list[str]) -> list[str]:
    """Up to three task names for a misspelt one, cft's own suites first: `STS-B` is STSBenchmark, not one of
    mteb's hundreds of multilingual STS tasks that happen to be spelt closer."""
    ours = list(dict.fromkeys(t.partition("[")[0] for suite in SUITES.values() for t in suite))
    key = _normal(name)
    picks = [t for t in ours if key and (_normal(t).startswith(key) or key.startswith(_normal(t)))]
    by_normal = {_normal(t): t for t in ours}
    picks += [by_normal[n] for n in difflib.get_close_matches(key, list(by_normal), n=3, cutoff=0.75)]
    picks += difflib.get_close_matches(name, all_names, n=3)
    return list(dict.fromkeys(picks))[:3]


def _check_known(specs: list[TaskSpec]) -> None:
    import mteb

    for s in specs:
        try:
            mteb.get_task(s.name)
        except KeyError:
            close = suggest_tasks(s.name, [t.metadata.name for t in mteb.get_tasks()])
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise CFTError(
                f"--tasks: unknown MTEB task {s.name!r}{hint} (suites: {', '.join(SUITES)})"
            ) from None
