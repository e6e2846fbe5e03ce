"""Writes evaluation results: mteb's JSON per task, summary.json, summary.md and (comparing two models) compare.png.

Layout of an output folder:

    summary.json             {"tasks", "mean", "primary_metric", "models": {label: ...}, "delta", ...}
    summary.md               the table, main score x100 per task and the mean
    compare.png              bar chart, one bar per model and task (only with two or more models)
    mteb/<label>/<task>.json mteb's own result file per task, and model_meta.json
"""

from __future__ import annotations

import datetime
import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cft import __version__
from cft.errors import CFTError
from notify.run_layout import ADAPTER_DIR, EVAL_DIR

if TYPE_CHECKING:
    from cft.evaluation.runner import EvalRun

SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
COMPARE_PNG = "compare.png"


def is_remote(uri: str | Path) -> bool:
    return "://" in str(uri)


def default_output(adapter: str | None = None, model: str | None = None) -> str:
    """Where results go by default: the run's `eval/` folder for `<bucket>/runs/<id>/adapter`, a sibling
    `<name>-eval` folder for any other adapter folder, and `cft-eval/<model name>` for a bare model."""
    if adapter:
        text = str(adapter).rstrip("/")
        parent, _, base = text.rpartition("/")
        if base == ADAPTER_DIR and parent:
            return f"{parent}/{EVAL_DIR}"
        return f"{text}-eval"
    name = Path(str(model or "model").rstrip("/")).name or "model"
    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
    return str(Path("cft-eval") / safe)


def publish_results(local_dir: str | Path, dest_uri: str) -> str:
    """Copies the files of `local_dir` under `dest_uri` (a local folder or s3://...) and returns `dest_uri`."""
    local_dir = Path(local_dir)
    if not is_remote(dest_uri):
        dest = Path(dest_uri)
        if dest.resolve() != local_dir.resolve():
            shutil.copytree(local_dir, dest, dirs_exist_ok=True)
        return str(dest)
    from cft.storage.bucket import open_bucket

    open_bucket(dest_uri).upload_dir(local_dir, "")
    return dest_uri


def _table_rows(runs: dict[str, EvalRun]) -> tuple[list[str], dict[str, dict[str, float]], dict[str, float | None]]:
    summaries = {label: run.summary for label, run in runs.items()}
    tasks: list[str] = []
    for summary in summaries.values():
        tasks.extend(t for t in summary["tasks"] if t not in tasks)
    scores = {label: summary["tasks"] for label, summary in summaries.items()}
    means = {label: _mean([scores[label][t] for t in tasks if t in scores[label]]) for label in runs}
    return tasks, scores, means


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def format_table(runs: dict[str, EvalRun]) -> str:
    """A Markdown table: one row per task plus the mean, one column per model, and a delta column for two."""
    from cft.evaluation.runner import summarize

    tasks, scores, means = _table_rows(runs)
    labels = list(runs)
    metrics: dict[str, str] = {}
    for run in runs.values():
        metrics.update(summarize(run.results)["metrics"])
    delta = len(labels) == 2
    head = ["task", "metric", *labels] + ([f"{labels[1]} - {labels[0]}"] if delta else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for task in tasks:
        row = [task, metrics.get(task, ""), *(_fmt(scores[label].get(task)) for label in labels)]
        if delta:
            a, b = scores[labels[0]].get(task), scores[labels[1]].get(task)
            row.append(_fmt(b - a if a is not None and b is not None else None, signed=True))
        lines.append("| " + " | ".join(row) + " |")
    row = ["**mean**", "", *(f"**{_fmt(means[label])}**" for label in labels)]
    if delta:
        a, b = means[labels[0]], means[labels[1]]
        row.append(f"**{_fmt(b - a if a is not None and b is not None else None, signed=True)}**")
    lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _score_axis_label(metrics: dict[str, str]) -> str:
    kinds = set(metrics.values())
    if kinds and all("spearman" in k for k in kinds):
        return "Spearman x100"
    if kinds == {"ndcg_at_10"}:
        return "nDCG@10 x100"
    if kinds <= {"main_score"}:
        return "main score x100"
    return "main score x100\n(STS: Spearman, retrieval: nDCG@10)"  # two lines: one is wider than the figure


def plot_compare(runs: dict[str, EvalRun], path: str | Path, title: str | None = None) -> Path:
    """A grouped bar chart: tasks (and the mean) on x, one bar per model, each bar labelled with its value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from cft.evaluation.runner import summarize

    tasks, scores, means = _table_rows(runs)
    metrics: dict[str, str] = {}
    for run in runs.values():
        metrics.update(summarize(run.results)["metrics"])
    groups = [*tasks, "mean"]
    labels = list(runs)
    x = np.arange(len(groups))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(groups) + 2), 4.8), dpi=120)
    for i, label in enumerate(labels):
        values = [scores[label].get(t) for t in tasks] + [means[label]]
        heights = [v if v is not None else 0.0 for v in values]
        bars = ax.bar(x + (i - (len(labels) - 1) / 2) * width, heights, width, label=label)
        for bar, value in zip(bars, values, strict=True):
            if value is not None:
                ax.annotate(
                    f"{value:.1f}",
                    (bar.get_x() + bar.get_width() / 2, max(bar.get_height(), 0.0)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_xlabel("MTEB task")
    ax.set_ylabel(_score_axis_label(metrics))
    lowest = min([0.0, *(v for s in scores.values() for v in s.values())])
    ax.set_ylim(lowest - (5 if lowest < 0 else 0), 118)  # room above 100 for the value labels and the legend
    ax.set_title(title or f"MTEB main scores: {' vs '.join(labels)}")
    ax.legend(loc="upper center", ncol=len(labels), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def build_summary(runs: dict[str, EvalRun]) -> dict[str, Any]:
    """summary.json's content. Its top-level "tasks"/"mean" are the last model's (the adapter in a comparison)."""
    import mteb

    labels = list(runs)
    models = {}
    for label, run in runs.items():
        summary = run.summary
        models[label] = {
            "name": run.name,
            "revision": run.revision,
            **summary,
            "cached": run.cached,
            "texts_encoded": run.texts_encoded,
            "encode_seconds": round(run.encode_seconds, 3),
            "texts_per_second": round(run.texts_per_second, 1) if run.texts_per_second else None,
            "settings": run.settings,
            "data": run.data,
        }
    subject = models[labels[-1]]
    out: dict[str, Any] = {
        "tasks": subject["tasks"],
        "mean": subject["mean"],
        "primary_metric": subject["primary_metric"],
        "metrics": subject["metrics"],
        "skipped": subject["skipped"],
        "models": models,
        "data": subject["data"],
        "cft_version": __version__,
        "mteb_version": getattr(mteb, "__version__", None),
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if len(labels) == 2:
        a, b = models[labels[0]], models[labels[1]]
        out["delta"] = {
            t: round(b["tasks"][t] - a["tasks"][t], 4) for t in b["tasks"] if t in a["tasks"]
        }
        out["mean_delta"] = round(b["mean"] - a["mean"], 4) if a["mean"] is not None and b["mean"] is not None else None
    return out


def format_markdown(runs: dict[str, EvalRun], summary: dict[str, Any]) -> str:
    labels = list(runs)
    title = " vs ".join(f"{label} (`{runs[label].name}`)" for label in labels)
    lines = [
        f"# MTEB evaluation: {title}",
        "",
        "Main score x100 per task (Spearman correlation of cosine similarities for STS, nDCG@10 for retrieval) "
        f"and the mean over tasks. Data: {summary['data']}.",
        "",
        format_table(runs),
    ]
    if summary["skipped"]:
        lines += ["", "Skipped:", *(f"- {task}: {why}" for task, why in summary["skipped"].items())]
    return "\n".join(lines) + "\n"


def write_report(runs: dict[str, EvalRun], output: str | Path) -> dict[str, Any]:
    """Writes all result files for `runs` ({label: run}) to `output` (a local folder or s3://...).

    Returns the summary dict (as written to summary.json) with "output" added: where the files are.
    """
    if not runs:
        raise ValueError("no runs to report")
    remote = is_remote(output)
    folder = Path(tempfile.mkdtemp(prefix="cft-eval-")) if remote else Path(output)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CFTError(f"--out {output}: cannot create the folder ({error.strerror})") from None
    for label, run in runs.items():
        target = folder / "mteb" / label
        target.mkdir(parents=True, exist_ok=True)
        for result in run.results:
            result.to_disk(target / f"{result.task_name}.json")
        (target / "model_meta.json").write_text(
            json.dumps({"name": run.name, "revision": run.revision, "settings": run.settings}, indent=2, default=str)
            + "\n",
            encoding="utf-8",
        )
    summary = build_summary(runs)
    (folder / SUMMARY_JSON).write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / SUMMARY_MD).write_text(format_markdown(runs, summary), encoding="utf-8")
    if len(runs) >= 2:
        plot_compare(runs, folder / COMPARE_PNG)
    if remote:
        try:
            publish_results(folder, str(output))
        except CFTError as error:
            raise CFTError(f"{error} (the results are kept in {folder})") from None
        shutil.rmtree(folder, ignore_errors=True)
    summary["output"] = str(output)
    return summary
