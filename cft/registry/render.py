"""Terminal text for `cft runs`: a table of runs, one run in detail, two runs side by side."""

from __future__ import annotations

import json
from typing import Any

from cft.registry.durations import format_duration
from cft.registry.runs import RunDetails, RunRecord, Score
from notify.run_layout import CHECKPOINTS_DIR, COMPLETE_MARKER, MANIFEST_FILE, checkpoint_step

MAX_CELL = 36


def format_score(score: Score | None) -> str:
    if score is None:
        return "-"
    if score.label == "sts_mean":
        return f"sts {score.value:.2f}"
    if score.label == "eval_mean":
        return f"eval {score.value:.2f}"
    return f"loss {score.value:.4f}"


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def shorten(text: str | None, limit: int = MAX_CELL) -> str:
    """Keeps the end of long paths and ids: it is the part that differs between runs."""
    if not text:
        return "-"
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def format_runs(records: list[RunRecord], root: str) -> str:
    if not records:
        return f"no runs in {root.rstrip('/')}/runs"
    header = ["RUN", "STATUS", "MODEL", "RECIPE", "STEPS", "DURATION", "SCORE", "ADAPTER"]
    rows = [[r.run_id, r.status, shorten(r.model), shorten(r.recipe, 24), _number(r.steps),
             format_duration(r.duration_s), format_score(r.score), r.adapter or "-"] for r in records]
    lines = [table(header, rows)]
    notes = [(r.run_id, r.reason) for r in records if r.reason and r.status != "running"]
    notes += [(r.run_id, note) for r in records for note in r.notes]
    if notes:
        lines.append("")
        lines += [f"{run_id}: {note}" for run_id, note in notes]
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    lines += ["", f"{len(records)} run{'s' if len(records) != 1 else ''} in {root.rstrip('/')}/runs: "
              + ", ".join(f"{n} {status}" for status, n in counts.items())]
    return "\n".join(lines)


def _config_summary(config: dict[str, Any]) -> list[tuple[str, Any]]:
    picks = [
        ("name", ("name",)), ("model", ("model", "name_or_path")), ("gguf_file", ("model", "gguf_file")),
        ("pooling", ("model", "pooling")), ("max_length", ("model", "max_length")),
        ("prompt_template", ("model", "prompt_template")), ("query_template", ("model", "query_template")),
        ("document_template", ("model", "document_template")), ("train_file", ("data", "train_file")),
        ("lora r / alpha", None), ("target_modules", ("lora", "target_modules")),
        ("batch_size", ("train", "batch_size")), ("learning_rate", ("train", "learning_rate")),
        ("max_steps", ("train", "max_steps")), ("num_epochs", ("train", "num_epochs")),
        ("temperature", ("train", "temperature")), ("grad_cache_chunk_size", ("train", "grad_cache_chunk_size")),
        ("matryoshka_dims", ("loss", "matryoshka_dims")),
    ]

    def get(path: tuple[str, ...]) -> Any:
        node: Any = config
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    out = []
    for label, path in picks:
        if path is None:
            r, alpha = get(("lora", "r")), get(("lora", "alpha"))
            value = f"{r} / {alpha}" if r is not None else None
        else:
            value = get(path)
        if value is not None:
            out.append((label, ", ".join(map(str, value)) if isinstance(value, list) else value))
    return out


def _pairs(pairs: list[tuple[str, Any]], indent: str = "  ") -> list[str]:
    width = max((len(label) for label, _ in pairs), default=0)
    return [f"{indent}{label.ljust(width)}  {value}" for label, value in pairs]


def _file_groups(files: list[str]) -> list[str]:
    """Top-level files as they are; folders summed up, checkpoints one per line with their completeness."""
    lines, folders = [], {}
    checkpoints: dict[str, list[str]] = {}
    for name in files:
        top, _, rest = name.partition("/")
        if not rest:
            lines.append(top)
        elif top == CHECKPOINTS_DIR and "/" in rest:
            checkpoint, _, inner = rest.partition("/")
            checkpoints.setdefault(checkpoint, []).append(inner)
        else:
            folders.setdefault(top, []).append(rest)
    for folder, inner in sorted(folders.items()):
        shown = ", ".join(sorted(inner)[:6]) + (", ..." if len(inner) > 6 else "")
        lines.append(f"{folder}/  ({len(inner)} file{'s' if len(inner) != 1 else ''}: {shown})")
    for checkpoint, inner in sorted(checkpoints.items(), key=lambda item: _step(item[0])):
        state = "complete" if COMPLETE_MARKER in inner else f"INCOMPLETE (no {COMPLETE_MARKER} marker)"
        lines.append(f"{CHECKPOINTS_DIR}/{checkpoint}/  ({len(inner)} files, {state})")
    return lines


def _step(name: str) -> int:
    step = checkpoint_step(name)
    return -1 if step is None else step


def format_show(details: RunDetails) -> str:
    r = details.record
    head: list[tuple[str, Any]] = [("run", r.run_id), ("status", r.status), ("location", r.location)]
    if r.reason:
        head.append(("reason" if r.status != "running" else "heartbeat", r.reason))
    if r.manifest is not None:
        m = r.manifest
        recipe = r.recipe if r.recipe == r.recipe_path else f"{r.recipe} ({r.recipe_path})"
        steps = str(r.steps) if r.steps is not None else "-"
        if m.resumed_from_step is not None:
            steps += f" (resumed from step {m.resumed_from_step})"
        if m.world_size:
            steps += f" on {m.world_size} process{'es' if m.world_size != 1 else ''}"
        head += [("model", r.model), ("recipe", recipe), ("steps", steps),
                 ("started", r.started_at or "-"), ("finished", r.finished_at or "-"),
                 ("duration", format_duration(r.duration_s)), ("adapter", r.adapter or "-"),
                 ("git sha", m.git_sha or "-"), ("cft version", m.cft_version or "-")]
        if m.triplets is not None:
            head.append(("triplets", m.triplets))
        if r.error:
            head.append(("error", r.error.strip().splitlines()[-1] if r.error.strip() else r.error))
    else:
        head += [("model", r.model or "-"), ("recipe", r.recipe or "-")]
        if r.status != "corrupt":
            head += [("step", _number(r.steps)), ("heartbeat at", r.heartbeat_at or "-")]
    head.append(("score", format_score(r.score)))
    lines = _pairs(head, indent="")
    for note in r.notes:
        lines.append(f"note: {note}")

    if r.metrics:
        lines += ["", f"metrics ({MANIFEST_FILE})", *_pairs([(k, _number(v)) for k, v in sorted(r.metrics.items())])]
    lines.append("")
    if details.config is not None:
        lines += ["config (config.yaml)", *_pairs(_config_summary(details.config))]
    else:
        lines.append(f"config: {details.config_error or 'no config.yaml'}")
    lines.append("")
    if details.eval_summary is not None:
        tasks = details.eval_summary["tasks"]
        rows = [(task, f"{score:.2f}") for task, score in tasks.items()]
        if details.eval_summary.get("mean") is not None:
            rows.append(("mean", f"{details.eval_summary['mean']:.2f}"))
        lines += ["eval (eval/summary.json)", *_pairs(rows)]
    else:
        lines.append(f"eval: {details.eval_error or 'no eval/summary.json'}")
    lines += ["", "files", *[f"  {line}" for line in _file_groups(r.files)]]
    return "\n".join(lines)


def _fixed(value: float | None, digits: int, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def format_compare(comparison: dict[str, Any]) -> str:
    a, b = comparison["a"], comparison["b"]
    rows = []
    for name, pair in comparison["fields"].items():
        va, vb = pair["a"], pair["b"]
        if name == "duration_s":
            name, va, vb = "duration", format_duration(va), format_duration(vb)
        rows.append([name, shorten(str(va) if va is not None else None, 48),
                     shorten(str(vb) if vb is not None else None, 48)])
    lines = [table(["", a, b], rows)]
    if not comparison["scores"]:
        lines += ["", "no scores to compare (neither run has eval/summary.json or metrics)"]
    else:
        lines += ["", _score_table(comparison)]
    lines += ["", *_config_lines(comparison.get("config") or {}, a, b)]
    return "\n".join(lines)


def _config_lines(config: dict[str, Any], a: str, b: str) -> list[str]:
    if config.get("unavailable"):
        return [f"config: cannot compare ({config['unavailable']})"]
    differences = config.get("differences") or {}
    if not differences:
        return ["config: identical"]
    rows = [[key, shorten(_config_value(pair["a"]), 40), shorten(_config_value(pair["b"]), 40)]
            for key, pair in differences.items()]
    return [table(["config (fields that differ)", a, b], rows)]


def _config_value(value: Any) -> str:
    return "-" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _score_table(comparison: dict[str, Any]) -> str:
    a, b = comparison["a"], comparison["b"]
    score_rows = []
    for task, pair in comparison["scores"].items():
        is_loss = "loss" in task
        digits = 4 if is_loss else 2  # losses are small numbers; scores are x100
        delta = _fixed(pair["delta"], digits, sign=True)
        if pair["delta"] is not None and round(pair["delta"], digits) != 0:
            delta += "  (better)" if (pair["delta"] > 0) != is_loss else "  (worse)"
        score_rows.append([task, _fixed(pair["a"], digits), _fixed(pair["b"], digits), delta])
    return table(["score", a, b, "delta (b - a)"], score_rows)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str)
