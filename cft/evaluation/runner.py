"""Runs an encoder on MTEB tasks (from the hub or from local files) and collects mteb's results.

    from cft.evaluation import evaluate_encoder, write_report
    run = evaluate_encoder(encoder, "sts", data_dir="../shared/data")
    run.summary            # {"tasks": {"STS12": 72.37, ...}, "mean": 79.1, "primary_metric": "main_score", ...}
    write_report({"adapter": run}, "cft-runs/runs/<id>/eval")

Each task goes through `mteb.evaluate`, so the task's own evaluator and main score are used. Results are cached in
mteb's result cache (keyed on model name, revision and the adapter's experiment settings); a cached result is
reused only if it was computed on the same data (same dataset revision; local files have a content hash).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cft.errors import CFTError
from cft.evaluation.local_tasks import LocalDataUnavailable, local_task
from cft.evaluation.mteb_encoder import Encoder, MTEBEncoder
from cft.evaluation.suites import TaskSpec, resolve_tasks

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask
    from mteb.results import TaskResult

logger = logging.getLogger(__name__)

PRIMARY_METRIC = "main_score"


class _DropSupersededNote(logging.Filter):
    # The local STSBenchmark file is the original test set on purpose; mteb's "superseded by v2" note is noise.
    def filter(self, record: logging.LogRecord) -> bool:
        return "superseded" not in record.getMessage()


logging.getLogger("mteb.abstasks.abstask").addFilter(_DropSupersededNote())


@dataclass
class EvalRun:
    """One encoder's results on a list of tasks.

    Attributes:
        name, revision: the model as mteb files it.
        data: the data folder the tasks were read from, or "huggingface-hub".
        results: mteb's `TaskResult` per task evaluated, in task order (restricted to the subsets asked for).
        skipped: task label -> why it was not evaluated.
        cached: labels of the tasks whose results came from mteb's cache.
        texts_encoded, encode_seconds: distinct texts encoded in this run and the time spent in `encode`.
    """

    name: str
    revision: str | None
    results: list[TaskResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    texts_encoded: int = 0
    encode_seconds: float = 0.0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    data: str = "huggingface-hub"

    @property
    def summary(self) -> dict[str, Any]:
        out = summarize(self.results)
        out["skipped"] = dict(self.skipped)
        return out

    @property
    def texts_per_second(self) -> float | None:
        return self.texts_encoded / self.encode_seconds if self.encode_seconds > 0 else None


def main_score(result: TaskResult) -> float:
    """The task's main score (mteb's scale, 0-1), averaged over the splits and subsets present in the result."""
    values = [float(s[PRIMARY_METRIC]) for scores in result.scores.values() for s in scores]
    if not values:
        raise ValueError(f"{result.task_name}: no scores in the result")
    return sum(values) / len(values)


def summarize(results: Any) -> dict[str, Any]:
    """{"tasks": {task: main score x100}, "mean": mean over tasks, "primary_metric": "main_score"}.

    `results` is a list of mteb `TaskResult`, a `ModelResult`, or an `EvalRun`. The mean is None with no tasks.
    Also gives "metrics": {task: the name of its main score, e.g. "cosine_spearman" or "ndcg_at_10"}.
    """
    if isinstance(results, EvalRun):
        results = results.results
    elif hasattr(results, "task_results"):
        results = results.task_results
    tasks = {r.task_name: round(100.0 * main_score(r), 4) for r in results}
    mean = round(sum(tasks.values()) / len(tasks), 4) if tasks else None
    return {
        "tasks": tasks,
        "mean": mean,
        "primary_metric": PRIMARY_METRIC,
        "metrics": {r.task_name: _metric_name(r.task_name) for r in results},
    }


def _metric_name(task_name: str) -> str:
    import mteb

    try:
        return str(mteb.get_task(task_name).metadata.main_score)
    except KeyError:
        return PRIMARY_METRIC


@dataclass
class TaskSet:
    """mteb task objects ready to run, the tasks skipped (label -> why), and where the data comes from."""

    tasks: list[AbsTask]
    skipped: dict[str, str]
    data: str


def prepare_tasks(tasks: str | list[str] | list[TaskSpec], data_dir: str | Path | None = None) -> TaskSet:
    """Resolves suites and names, and builds the task objects (local ones with `data_dir`) without loading data.

    Do this before loading a model: a typo or a missing file then fails in a second, not after a model load.
    """
    specs = tasks if tasks and isinstance(tasks[0], TaskSpec) else resolve_tasks(tasks)  # type: ignore[arg-type,index]
    task_objects, skipped = build_tasks(specs, data_dir)  # type: ignore[arg-type]
    return TaskSet(task_objects, skipped, str(data_dir) if data_dir is not None else "huggingface-hub")


def build_tasks(
    specs: list[TaskSpec], data_dir: str | Path | None
) -> tuple[list[AbsTask], dict[str, str]]:
    """mteb task objects for `specs`: local ones with a data folder, hub ones without.

    With a data folder, a task that has no local file is skipped when it came from a suite, and is an error when
    the user named it: asking for STS17 explicitly and getting no STS17 score would be a silent surprise.
    """
    import mteb

    tasks: list[AbsTask] = []
    skipped: dict[str, str] = {}
    if data_dir is not None and not Path(data_dir).is_dir():
        what = "is a file" if Path(data_dir).exists() else "no such folder"
        raise CFTError(f"--data-dir {data_dir}: {what}; give a folder laid out like ../shared/data (sts/, retrieval/)")
    for spec in specs:
        if data_dir is None:
            try:
                tasks.append(mteb.get_task(spec.name, hf_subsets=list(spec.subsets) if spec.subsets else None))
            except ValueError as error:
                raise CFTError(f"--tasks {spec.label}: {error}") from None
            continue
        try:
            tasks.append(local_task(spec, data_dir))
        except LocalDataUnavailable as why:
            if spec.explicit:
                raise CFTError(
                    f"--tasks {spec.label}: no local data for it ({why}); drop it from --tasks, or add the file, "
                    "or run without --data-dir to load it from the Hugging Face hub"
                ) from None
            skipped[spec.label] = f"no local data ({why})"
    if not tasks:
        raise CFTError(
            f"none of the tasks has local data in {data_dir}: "
            + "; ".join(f"{k}: {v}" for k, v in skipped.items())
        )
    return tasks, skipped


def evaluate_encoder(
    encoder: Encoder,
    tasks: str | list[str] | list[TaskSpec] | TaskSet = "sts",
    *,
    data_dir: str | Path | None = None,
    batch_size: int = 64,
    prompt_template: str | None = None,
    query_instruction: str | None = None,
    document_instruction: str | None = None,
    dim: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    show_progress: bool = True,
    label: str | None = None,
) -> EvalRun:
    """Evaluates `encoder` on `tasks` and returns its results.

    Args:
        encoder: see `cft.evaluation.mteb_encoder.Encoder` (`TextEncoder`, `SentenceTransformerEncoder`, ...).
        tasks: "sts", "retrieval", "STS12,SICK-R", a list of names or specs, or a `TaskSet` from `prepare_tasks`.
        data_dir: a folder laid out like `../shared/data`; tasks read their test data from it (see `local_tasks`).
            Ignored when `tasks` is a `TaskSet` (it was given to `prepare_tasks`).
        batch_size: texts per forward pass.
        prompt_template: overrides the encoder's own templates, for both roles (a string with one "{}").
        query_instruction, document_instruction: retrieval only; see `MTEBEncoder`.
        dim: evaluate the first `dim` dimensions only (a Matryoshka embedding), re-normalized.
        cache_dir: mteb's result cache (default: mteb's, i.e. $MTEB_CACHE or ~/.cache/mteb).
        use_cache: False recomputes every task and writes nothing to the cache. An encoder without a revision
            is never cached: its results could not be told apart from another model's.
        show_progress: progress bars over tasks and over long encodes.
        label: shown on the progress bar (e.g. "base", "adapter").
    """
    import mteb
    from mteb.cache import ResultCache
    from tqdm.auto import tqdm

    task_set = tasks if isinstance(tasks, TaskSet) else prepare_tasks(tasks, data_dir)
    model = MTEBEncoder(
        encoder,
        prompt_template=prompt_template,
        query_instruction=query_instruction,
        document_instruction=document_instruction,
        dim=dim,
        show_progress=show_progress,
    )
    meta = model.mteb_model_meta
    cache = None
    if use_cache and model.revision is not None:
        cache = ResultCache(cache_dir) if cache_dir is not None else ResultCache()
    elif use_cache:
        logger.warning("%s has no revision: its results are not cached", meta.name)

    run = EvalRun(
        name=str(meta.name),
        revision=model.revision,
        skipped=dict(task_set.skipped),
        settings=model.settings,
        data=task_set.data,
    )
    start = time.perf_counter()
    bar = tqdm(task_set.tasks, desc=f"MTEB {label or meta.name}", unit="task", disable=not show_progress)
    for task in bar:
        name = task.metadata.name
        bar.set_postfix_str(name)
        result = _cached_result(cache, task, meta)
        if result is not None:
            run.cached.append(name)
        else:
            result = _run_task(mteb, model, task, cache, batch_size, show_progress)
        run.results.append(result)
    run.seconds = time.perf_counter() - start
    run.texts_encoded = model.texts_encoded
    run.encode_seconds = model.encode_seconds
    return run


def _cached_result(cache: Any, task: AbsTask, meta: Any) -> TaskResult | None:
    if cache is None:
        return None
    try:
        cached = cache.load_task_result(task.metadata.name, meta)
    except Exception as error:  # noqa: BLE001 - an unreadable cache entry is recomputed, never fatal
        logger.warning("ignoring unreadable cached result for %s: %s", task.metadata.name, error)
        return None
    if cached is None or cached.dataset_revision != task.metadata.revision:
        return None
    if cached.get_missing_evaluations(task):
        return None
    return _only_requested(cached, task)


def _only_requested(result: TaskResult, task: AbsTask) -> TaskResult:
    """Keeps the splits and subsets the task asks for (a cached result may hold more, e.g. all of STS17)."""
    subsets = set(task.hf_subsets)
    scores = {
        split: [s for s in result.scores[split] if s.get("hf_subset") in subsets]
        for split in task.eval_splits
        if split in result.scores
    }
    return result.model_copy(update={"scores": scores})


def _run_task(mteb: Any, model: MTEBEncoder, task: AbsTask, cache: Any, batch_size: int, progress: bool) -> TaskResult:
    name = task.metadata.name
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*superseded.*")
        if not task.data_loaded:
            try:
                task.load_data()
            except CFTError:
                raise
            except Exception as error:  # noqa: BLE001 - datasets/hub raise many types; all mean "no data"
                first = str(error).splitlines()[0] if str(error) else ""
                raise CFTError(
                    f"{name}: cannot load its data from the Hugging Face hub ({type(error).__name__}: {first}); "
                    "give --data-dir with local files, or check the network and HF_HUB_OFFLINE"
                ) from None
        try:
            result = mteb.evaluate(
                model,
                task,
                encode_kwargs={"batch_size": batch_size, "show_progress_bar": progress},
                cache=cache,
                overwrite_strategy="always",
                show_progress_bar=False,
                co2_tracker=False,
            )
        finally:
            task.unload_data()
    if result.exceptions:
        raise RuntimeError(f"{name}: {result.exceptions[0].exception}")
    (task_result,) = result.task_results
    return task_result
