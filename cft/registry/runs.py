"""What is in a bucket's `runs/` folder: one record per run, read from its manifest, never from guesses.

    succeeded / failed   the manifest (written last, atomically) says so
    running              no manifest yet, and status.json's heartbeat is recent (within STALE_AFTER)
    interrupted          status.json says a signal (SIGTERM: preemption, cancel; SIGINT) stopped it; it resumes
    incomplete           no manifest, and no recent heartbeat: killed, preempted, or never started
    corrupt              a manifest exists but cannot be trusted (not JSON, a field missing or of the wrong type)

The bucket is listed once; each run then costs one read (its manifest, or its status.json and config.yaml when it
has no manifest), plus eval/summary.json when the manifest carries no evaluation scores. A run that cannot be read
is shown with the reason; it never hides the others or stops the listing. File names are `notify.run_layout`'s and
the manifest is `notify.manifest.Manifest`, the types every writer uses.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cft.errors import CFTError
from cft.registry.durations import format_duration
from cft.storage.bucket import Bucket
from notify.manifest import Manifest, ManifestError
from notify.run_layout import CONFIG_FILE, EVAL_SUMMARY, MANIFEST_FILE, RUNS_DIR, STATUS_FILE, RunPaths

STALE_AFTER = timedelta(hours=2)
STATUSES = ("succeeded", "failed", "running", "interrupted", "incomplete", "corrupt")


@dataclass
class Score:
    """The one number that sums a run up: `label` says which (sts_mean, eval_mean or final_loss)."""

    label: str
    value: float
    higher_is_better: bool = True


@dataclass
class RunRecord:
    run_id: str
    status: str
    reason: str | None = None
    model: str | None = None
    recipe: str | None = None
    recipe_path: str | None = None
    steps: int | None = None
    duration_s: float | None = None
    started_at: str | None = None
    finished_at: str | None = None
    heartbeat_at: str | None = None
    adapter: str | None = None
    error: str | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)  # the manifest's metrics and scores, flat
    eval_scores: dict[str, float] = field(default_factory=dict)
    eval_mean: float | None = None
    score: Score | None = None
    location: str = ""
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: Manifest | None = field(default=None, repr=False)

    def to_dict(self, with_files: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data.pop("manifest")
        if not with_files:
            data.pop("files")
        return data


@dataclass
class RunDetails:
    """A run with everything `cft runs show` prints: its record, resolved config and evaluation summary."""

    record: RunRecord
    config: dict[str, Any] | None = None
    config_error: str | None = None
    eval_summary: dict[str, Any] | None = None
    eval_error: str | None = None


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def manifest_task_scores(manifest: Manifest | None) -> dict[str, float]:
    """Per-task evaluation scores of a manifest (its `scores`, without `*_mean` aggregates or non-numbers)."""
    if manifest is None:
        return {}
    found = {name: _number(value) for name, value in manifest.task_scores().items()}
    return {name: value for name, value in found.items() if value is not None}


def headline_score(manifest: Manifest | None, eval_mean: float | None = None) -> Score | None:
    """sts_mean when evaluated on STS; else the mean of the evaluation scores; else the final training loss."""
    if manifest is None:
        return Score("eval_mean", eval_mean) if eval_mean is not None else None
    sts = _number(manifest.scores.get("sts_mean"))
    if sts is not None:
        return Score("sts_mean", sts)
    scores = manifest_task_scores(manifest)
    if scores:
        return Score("eval_mean", sum(scores.values()) / len(scores))
    if eval_mean is not None:
        return Score("eval_mean", eval_mean)
    for name in ("final_loss", "train_loss"):
        loss = _number(manifest.metrics.get(name))
        if loss is not None:
            return Score(name, loss, higher_is_better=False)
    return None


def _read(bucket: Bucket, key: str) -> tuple[str | None, str | None]:
    """(text, None), (None, None) when absent, or (None, why) when reading failed."""
    try:
        return bucket.read_text(key), None
    except CFTError as error:
        return None, str(error)
    except (OSError, UnicodeDecodeError) as error:
        return None, f"{type(error).__name__}: {error}"


def _read_json(bucket: Bucket, key: str, name: str) -> tuple[Any, str | None]:
    text, problem = _read(bucket, key)
    if problem or text is None:
        return None, problem
    try:
        return json.loads(text), None
    except json.JSONDecodeError as error:
        return None, f"{name} is not JSON ({error.msg}: line {error.lineno})"
    except RecursionError:
        return None, f"{name} is nested too deeply to read"


def read_config(bucket: Bucket, prefix: str) -> tuple[dict[str, Any] | None, str | None]:
    import yaml

    text, problem = _read(bucket, f"{prefix}/{CONFIG_FILE}")
    if problem or text is None:
        return None, problem
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        return None, f"{CONFIG_FILE} is not valid YAML ({str(error).splitlines()[0]})"
    except RecursionError:
        return None, f"{CONFIG_FILE} is nested too deeply to read"
    if not isinstance(data, dict):
        return None, f"{CONFIG_FILE} holds {type(data).__name__}, not a mapping"
    return data, None


def read_eval_summary(bucket: Bucket, prefix: str) -> tuple[dict[str, Any] | None, str | None]:
    """eval/summary.json as {"tasks": {name: score}, "mean": x, ...}; (None, why) when it is unusable."""
    data, problem = _read_json(bucket, f"{prefix}/{EVAL_SUMMARY}", EVAL_SUMMARY)
    if problem or data is None:
        return None, problem
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        return None, f"{EVAL_SUMMARY} has no \"tasks\" object"
    tasks = {name: _number(value) for name, value in data["tasks"].items()}
    bad = sorted(name for name, value in tasks.items() if value is None)
    if bad:
        return None, f"{EVAL_SUMMARY}: tasks.{bad[0]} is not a number"
    data = dict(data, tasks=tasks, mean=_number(data.get("mean")))
    if data["mean"] is None and tasks:
        data["mean"] = sum(tasks.values()) / len(tasks)
    return data, None


def _recipe_label(manifest: Manifest) -> str:
    if manifest.recipe_name:
        return manifest.recipe_name
    name = manifest.recipe.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if name.endswith((".yaml", ".yml")) else name


def _fill_from_manifest(record: RunRecord, manifest: Manifest) -> None:
    record.manifest = manifest
    record.status = manifest.status
    record.model = manifest.model
    record.recipe = _recipe_label(manifest)
    record.recipe_path = manifest.recipe
    record.steps = manifest.steps
    record.duration_s = _number(manifest.duration_s)
    record.started_at = manifest.started_at
    record.finished_at = manifest.finished_at
    record.adapter = manifest.adapter
    record.error = manifest.error
    record.metrics = manifest.flat_metrics()
    if record.status == "failed":
        record.reason = (record.error or "failed (no error recorded)").strip().splitlines()[-1][:300]
    if manifest.run_id != record.run_id:
        record.notes.append(f"manifest run_id is {manifest.run_id!r}, folder is {record.run_id!r} (copied run?)")


def _fill_from_heartbeat(record: RunRecord, bucket: Bucket, prefix: str, has_status: bool, now: datetime) -> None:
    """No manifest: running if the heartbeat is fresh, else incomplete, with what we know about why."""
    record.status = "incomplete"
    if not has_status:
        record.reason = "no manifest.json and no status.json: never started, or stopped before its first heartbeat"
        return
    status, problem = _read_json(bucket, f"{prefix}/{STATUS_FILE}", STATUS_FILE)
    if problem or not isinstance(status, dict):
        record.reason = f"no manifest.json; {problem or STATUS_FILE + ' is not an object'}"
        return
    step = status.get("step")
    if isinstance(step, int) and not isinstance(step, bool):
        record.steps = step
    updated = parse_time(status.get("updated_at"))
    record.heartbeat_at = status.get("updated_at") if updated else None
    state = status.get("status")
    age = now - updated if updated else None
    if state == "running" and age is not None and age <= STALE_AFTER:
        record.status = "running"
        record.reason = f"heartbeat {format_age(age)} ago"
        return
    at_step = f" at step {record.steps}" if record.steps is not None else ""
    if state == "interrupted":
        _mark_interrupted(record, status, now)
        return
    if state == "running" and age is not None:
        record.reason = (f"no manifest.json; last heartbeat {format_age(age)} ago{at_step} "
                         "(killed or preempted?)")
    elif state == "running":
        record.reason = f"no manifest.json; {STATUS_FILE} has no valid updated_at"
    else:
        record.reason = f"no manifest.json, though {STATUS_FILE} says {state!r}{at_step} (stopped while finishing?)"


def _mark_interrupted(record: RunRecord, status: dict[str, Any], now: datetime) -> None:
    record.status = "interrupted"
    updated = parse_time(status.get("updated_at"))
    record.heartbeat_at = status.get("updated_at") if updated else None
    step = status.get("step")
    at_step = f" at step {step}" if isinstance(step, int) and not isinstance(step, bool) else ""
    ago = f" {format_age(now - updated)} ago" if updated else ""
    record.reason = (f"interrupted by {status.get('signal') or 'a signal'}{at_step}{ago} (preempted or cancelled?); "
                     "the next start with the same run id resumes")


def _check_resumed(record: RunRecord, bucket: Bucket, prefix: str, now: datetime) -> None:
    """A failed run restarted under the same id (a recovered managed job) keeps its old manifest until it ends:
    a fresh heartbeat newer than that manifest means it is running again."""
    status, problem = _read_json(bucket, f"{prefix}/{STATUS_FILE}", STATUS_FILE)
    if problem or not isinstance(status, dict) or status.get("status") not in ("running", "interrupted"):
        return
    updated, finished = parse_time(status.get("updated_at")), parse_time(record.finished_at)
    if updated is None or (finished is not None and updated <= finished):
        return
    if status["status"] == "interrupted":  # a later attempt than the failed one, stopped by a signal
        record.duration_s = None
        _mark_interrupted(record, status, now)
        return
    if now - updated > STALE_AFTER:
        return
    record.status = "running"
    record.heartbeat_at = status["updated_at"]
    record.duration_s = None  # the failed attempt's; this one has not finished
    step = status.get("step")
    if isinstance(step, int) and not isinstance(step, bool):
        record.steps = step
    record.reason = f"heartbeat {format_age(now - updated)} ago; resumed after failing with: {record.reason}"


def format_age(age: timedelta) -> str:
    return format_duration(max(age.total_seconds(), 0.0))


def build_record(bucket: Bucket, run_id: str, files: list[str], now: datetime | None = None) -> RunRecord:
    """The record of one run, from the names of its files (relative to the run folder)."""
    now = now or datetime.now(timezone.utc)
    prefix = RunPaths(run_id).prefix
    record = RunRecord(run_id=run_id, status="incomplete", location=bucket.join(prefix), files=sorted(files))
    present = set(files)
    if MANIFEST_FILE in present:
        text, problem = _read(bucket, f"{prefix}/{MANIFEST_FILE}")
        if problem or text is None:
            record.status, record.reason = "corrupt", f"cannot read {MANIFEST_FILE}: {problem or 'vanished'}"
        else:
            try:
                _fill_from_manifest(record, Manifest.from_json(text))
            except ManifestError as error:
                record.status, record.reason = "corrupt", str(error)
        if record.status == "failed" and STATUS_FILE in present:
            _check_resumed(record, bucket, prefix, now)
    else:
        _fill_from_heartbeat(record, bucket, prefix, STATUS_FILE in present, now)

    if record.manifest is None and CONFIG_FILE in present:
        # Without a trusted manifest, the resolved recipe still says what the run was.
        config, _ = read_config(bucket, prefix)
        model = (config or {}).get("model")
        if isinstance(model, dict) and isinstance(model.get("name_or_path"), str):
            record.model = model["name_or_path"]
        if isinstance((config or {}).get("name"), str):
            record.recipe = config["name"]

    if record.manifest is not None and not manifest_task_scores(record.manifest) and EVAL_SUMMARY in present:
        summary, problem = read_eval_summary(bucket, prefix)
        if summary:
            record.eval_scores, record.eval_mean = summary["tasks"], summary["mean"]
        elif problem:
            record.notes.append(problem)
    record.score = headline_score(record.manifest, record.eval_mean)
    return record


def _group_by_run(keys: list[str]) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = {}
    base = f"{RUNS_DIR}/"
    for key in keys:
        if not key.startswith(base):
            continue
        run_id, _, rest = key[len(base):].partition("/")
        if run_id and rest:
            runs.setdefault(run_id, []).append(rest)
    return runs


def _check_root(bucket: Bucket) -> None:
    local = bucket.local_path("")
    if local is not None and not local.is_dir():
        what = "is a file, not a folder" if local.exists() else "no such folder"
        raise CFTError(f"{bucket.uri}: {what}; give a bucket root (a local folder or s3://bucket/prefix), "
                       "or set $BUCKET")


def sort_key(record: RunRecord) -> tuple[int, float, str]:
    """Newest first; runs with no timestamp at all last, by id."""
    when = parse_time(record.started_at) or parse_time(record.heartbeat_at)
    return (0, -when.timestamp(), record.run_id) if when else (1, 0.0, record.run_id)


def list_runs(bucket: Bucket, now: datetime | None = None) -> list[RunRecord]:
    """Every run under <bucket>/runs/, newest first, whatever state it is in."""
    _check_root(bucket)
    now = now or datetime.now(timezone.utc)
    grouped = _group_by_run(bucket.list_keys(f"{RUNS_DIR}/"))
    records = [build_record(bucket, run_id, files, now) for run_id, files in grouped.items()]
    return sorted(records, key=sort_key)


def load_run(bucket: Bucket, run_id: str, now: datetime | None = None) -> RunDetails:
    """One run with its config and evaluation summary; CFTError when the bucket has no such run."""
    _check_root(bucket)
    from notify.run_identity import InvalidRunId, validate_run_id

    try:
        validate_run_id(run_id.strip("/"), "run")
    except InvalidRunId as error:
        raise CFTError(f"{error} (runs are the folders of {bucket.join(RUNS_DIR)})") from None
    prefix = RunPaths(run_id.strip("/")).prefix
    files = [key[len(prefix) + 1:] for key in bucket.list_keys(f"{prefix}/")]
    if not files:
        known = sorted(_group_by_run(bucket.list_keys(f"{RUNS_DIR}/")))
        hint = f"; runs there: {', '.join(known[:8])}{', ...' if len(known) > 8 else ''}" if known else "; it has no runs"
        raise CFTError(f"run {run_id!r} not found in {bucket.join(RUNS_DIR)}{hint}")
    record = build_record(bucket, run_id.strip("/"), files, now)
    details = RunDetails(record)
    if CONFIG_FILE in files:
        details.config, details.config_error = read_config(bucket, prefix)
    if EVAL_SUMMARY in files:
        details.eval_summary, details.eval_error = read_eval_summary(bucket, prefix)
    return details


def task_scores(details: RunDetails) -> dict[str, float]:
    """Per-task scores: eval/summary.json's when present, else those among the manifest's metrics."""
    if details.eval_summary:
        return dict(details.eval_summary["tasks"])
    return manifest_task_scores(details.record.manifest)


def compare_runs(a: RunDetails, b: RunDetails) -> dict[str, Any]:
    """Side by side: what each run was (model, recipe, steps, status) and every score, with delta = b - a."""
    fields = {}
    for name in ("status", "model", "recipe", "steps", "duration_s", "started_at"):
        fields[name] = {"a": getattr(a.record, name), "b": getattr(b.record, name)}
    scores_a, scores_b = task_scores(a), task_scores(b)
    rows: dict[str, dict[str, float | None]] = {}
    for task in [*scores_a, *(t for t in scores_b if t not in scores_a)]:
        rows[task] = _pair(scores_a.get(task), scores_b.get(task))
    shared = [t for t in scores_a if t in scores_b]
    if len(shared) > 1:
        rows["mean (shared tasks)"] = _pair(sum(scores_a[t] for t in shared) / len(shared),
                                            sum(scores_b[t] for t in shared) / len(shared))
    for name in ("sts_mean", "final_loss", "train_loss"):  # flat: sts_mean is a score, the losses are metrics
        va, vb = _number(a.record.metrics.get(name)), _number(b.record.metrics.get(name))
        if va is not None or vb is not None:
            rows[name] = _pair(va, vb)
    return {"a": a.record.run_id, "b": b.record.run_id, "fields": fields, "scores": rows,
            "config": config_differences(a, b)}


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(a: RunDetails, b: RunDetails) -> dict[str, Any]:
    """Every recipe field (`section.field`) whose value differs between the runs' config.yaml, or why it cannot tell.

    A field present in one config only (a recipe from an older or newer cft) counts as differing, with None for
    the side that lacks it.
    """
    missing = [f"{d.record.run_id}: {d.config_error or 'no config.yaml'}" for d in (a, b) if d.config is None]
    if missing:
        return {"differences": {}, "unavailable": "; ".join(missing)}
    flat_a, flat_b = _flatten(a.config or {}), _flatten(b.config or {})
    keys = [*flat_a, *(k for k in flat_b if k not in flat_a)]
    return {"differences": {k: {"a": flat_a.get(k), "b": flat_b.get(k)} for k in keys if flat_a.get(k) != flat_b.get(k)},
            "unavailable": None}


def _pair(a: float | None, b: float | None) -> dict[str, float | None]:
    return {"a": a, "b": b, "delta": (b - a) if a is not None and b is not None else None}
