"""MTEB tasks that read their test data from local files instead of the Hugging Face hub.

A local task is mteb's own task class with only `load_data` replaced: the evaluator, the main score, the score
normalization and the task name stay mteb's, so a local score is an MTEB score. The dataset revision recorded in
the results is `local-<hash of the files>`, so results from different files never pass for each other.

Layout of a data folder (that of `../shared/data`):

    sts/<file>.tsv                 header "sentence1<TAB>sentence2<TAB>score"; split on tabs only (quotes are text)
    retrieval/<name>/corpus.jsonl  {"_id", "title", "text"} per line (BEIR)
    retrieval/<name>/queries.jsonl {"_id", "text"} per line
    retrieval/<name>/qrels/test.tsv  header "query-id<TAB>corpus-id<TAB>score"

`LOCAL_FILES` maps the MTEB tasks of the shared data to their files. Any other STS task is looked up as
`sts/<name in lower case>.tsv` (`sts/sts17-en-en.tsv` for a subset), any other retrieval task as
`retrieval/<name in lower case>/`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cft.errors import CFTError

if TYPE_CHECKING:
    from mteb.abstasks.abstask import AbsTask

    from cft.evaluation.suites import TaskSpec

#: Task name -> path under the data folder (a file for STS, a folder for retrieval). STSBenchmark is the test
#: split; SICK-R is all of SICK, as in MTEB.
LOCAL_FILES: dict[str, str] = {
    "STS12": "sts/sts12.tsv",
    "STS13": "sts/sts13.tsv",
    "STS14": "sts/sts14.tsv",
    "STS15": "sts/sts15.tsv",
    "STS16": "sts/sts16.tsv",
    "STSBenchmark": "sts/stsb-test.tsv",
    "SICK-R": "sts/sick-r-all.tsv",
    "BIOSSES": "sts/biosses.tsv",
    "SciFact": "retrieval/scifact",
}

STS_COLUMNS = ("sentence1", "sentence2", "score")
QRELS_COLUMNS = ("query-id", "corpus-id", "score")


class LocalDataUnavailable(LookupError):
    """The data folder has no file for a task that cft does not expect there (e.g. STS17); the caller decides."""


def local_source(spec: TaskSpec, data_dir: str | Path) -> Path:
    """Where a task's data lives under `data_dir`.

    Raises:
        CFTError: the task is one of `LOCAL_FILES` but its file is missing (the data folder is incomplete).
        LocalDataUnavailable: the task has no file by convention either.
    """
    import mteb

    data_dir = Path(data_dir)
    if spec.name in LOCAL_FILES:
        path = data_dir / LOCAL_FILES[spec.name]
        if not path.exists():
            raise CFTError(f"{path}: file not found (the local data of task {spec.name}; --data-dir {data_dir})")
        return path
    task_type = mteb.get_task(spec.name).metadata.type
    lower = spec.name.lower()
    if task_type == "STS":
        names = [f"{lower}-{'-'.join(spec.subsets)}.tsv"] if spec.subsets else []
        candidates = [data_dir / "sts" / n for n in [*names, f"{lower}.tsv"]]
    elif task_type == "Retrieval":
        candidates = [data_dir / "retrieval" / lower]
    else:
        raise LocalDataUnavailable(f"local data is supported for STS and Retrieval tasks, not {task_type}")
    for path in candidates:
        if path.exists():
            return path
    shown = " or ".join(str(p.relative_to(data_dir)) for p in candidates)
    raise LocalDataUnavailable(f"no {shown} in {data_dir}")


def local_task(spec: TaskSpec, data_dir: str | Path) -> AbsTask:
    """mteb's task `spec.name`, reading its test split from `data_dir` (see the module docstring)."""
    import mteb
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.sts import AbsTaskSTS

    path = local_source(spec, data_dir)
    task = mteb.get_task(spec.name, hf_subsets=list(spec.subsets) if spec.subsets else None)
    if isinstance(task, AbsTaskSTS):
        if not path.is_file():
            raise CFTError(f"{path}: expected a .tsv file for STS task {spec.name}, found a folder")
        files = [path]
    elif isinstance(task, AbsTaskRetrieval):
        if not path.is_dir():
            raise CFTError(f"{path}: expected a folder with corpus.jsonl, queries.jsonl, qrels/ for {spec.name}")
        files = [path / "corpus.jsonl", path / "queries.jsonl", *(path / "qrels" / f"{s}.tsv" for s in task.eval_splits)]
        for f in files:
            if not f.is_file():
                raise CFTError(f"{f}: file not found (the local data of task {spec.name})")
    else:  # pragma: no cover - local_source only returns paths for STS and retrieval
        raise CFTError(f"{spec.name}: local data is supported for STS and retrieval tasks only")
    if len(task.hf_subsets) != 1:
        raise CFTError(
            f"{spec.name} has subsets {task.hf_subsets}; a local file holds one, so name it, e.g. {spec.name}[{task.hf_subsets[0]}]"
        )
    return _localize(task, path, _fingerprint(files))


def sts_file_task(path: Path, name: str, description: str, template: str = "STSBenchmark") -> AbsTask:
    """A task of its own over one STS .tsv file, scored by mteb's `template` task (its evaluator and main score)."""
    import mteb

    task = _localize(mteb.get_task(template), path, _fingerprint([path]))
    cls = type(task)  # the task's own subclass (see _localize), so renaming it leaves mteb's task as it was
    cls.metadata = cls.metadata.model_copy(update={"name": name, "description": description, "reference": None})
    return task


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode("utf-8"))
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"local-{digest.hexdigest()[:12]}"


def _localize(task: AbsTask, path: Path, revision: str) -> AbsTask:
    from mteb.abstasks.retrieval import AbsTaskRetrieval

    base = type(task)
    metadata = base.metadata.model_copy(update={"dataset": {**base.metadata.dataset, "revision": revision}})
    is_retrieval = isinstance(task, AbsTaskRetrieval)
    split = task.eval_splits[0]

    def load_data(self: AbsTask, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        subset = self.hf_subsets[0]
        if is_retrieval:
            self.dataset = {subset: {s: read_retrieval_folder(path, s) for s in self.eval_splits}}
        else:
            from datasets import Dataset, DatasetDict

            self.dataset = {subset: DatasetDict({split: Dataset.from_dict(read_sts_tsv(path))})}
        self.data_loaded = True

    # A subclass, not a patched instance: mteb restores the class's metadata when it unloads the data.
    local_cls = type(
        base.__name__,
        (base,),
        {"metadata": metadata, "load_data": load_data, "local_path": path, "__module__": __name__},
    )
    local = local_cls()
    local.hf_subsets = list(task.hf_subsets)
    local._eval_splits = task._eval_splits
    return local


def _tsv_rows(path: Path, wanted: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, values of `wanted`) for each row of a tab-separated file with a header; errors name the line."""
    try:
        yield from _tsv_rows_utf8(path, wanted)
    except UnicodeDecodeError as error:  # a local file, never the hub's fault: name it
        raise CFTError(f"{path}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None


def _tsv_rows_utf8(path: Path, wanted: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        raise CFTError(f"{path}: file not found")
    with path.open(encoding="utf-8-sig", newline="") as f:  # -sig: spreadsheets save a byte-order mark
        header = f.readline().rstrip("\r\n").split("\t")
        missing = [c for c in wanted if c not in header]
        if missing:
            raise CFTError(
                f"{path}: missing column(s) {', '.join(missing)} in the header (found: {', '.join(header)}); "
                f"expected tab-separated columns {', '.join(wanted)}"
            )
        where = [header.index(c) for c in wanted]
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                raise CFTError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
            yield lineno, [fields[i] for i in where]


def _utf8_lines(handle: Any, path: Path) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as error:
        raise CFTError(f"{path}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None


def _number(path: Path, lineno: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CFTError(f"{path}:{lineno}: score {text!r} is not a number") from None


def read_sts_tsv(path: str | Path) -> dict[str, list]:
    """Columns sentence1, sentence2, score of a tab-separated STS file (other columns are ignored)."""
    path = Path(path)
    columns: dict[str, list] = {c: [] for c in STS_COLUMNS}
    for lineno, (s1, s2, score) in _tsv_rows(path, STS_COLUMNS):
        columns["sentence1"].append(s1)
        columns["sentence2"].append(s2)
        columns["score"].append(_number(path, lineno, score))
    if not columns["score"]:
        raise CFTError(f"{path}: no rows after the header")
    return columns


def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CFTError(f"{path}: file not found")
    rows = []
    with path.open(encoding="utf-8-sig", errors="strict") as f:
        for lineno, line in enumerate(_utf8_lines(f, path), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as error:
                raise CFTError(f"{path}:{lineno}: not valid JSON ({getattr(error, 'msg', 'nested too deeply')})") from None
            if not isinstance(row, dict):
                raise CFTError(f"{path}:{lineno}: each line must be a JSON object")
            if "_id" in row and "id" not in row:
                row["id"] = row["_id"]
            missing = [k for k in required if k not in row]
            if missing:
                raise CFTError(
                    f"{path}:{lineno}: missing field(s) {', '.join(missing)} (found: {', '.join(row)}); "
                    f"each line needs {', '.join(('_id', *required[1:]))}"
                )
            rows.append(row)
    if not rows:
        raise CFTError(f"{path}: no rows")
    return rows


def read_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """BEIR qrels (`query-id<TAB>corpus-id<TAB>score` with a header) as {query id: {document id: relevance}}."""
    path = Path(path)
    qrels: dict[str, dict[str, int]] = {}
    for lineno, (qid, did, score) in _tsv_rows(path, QRELS_COLUMNS):
        qrels.setdefault(qid, {})[did] = int(_number(path, lineno, score))
    if not qrels:
        raise CFTError(f"{path}: no rows after the header")
    return qrels


def read_retrieval_folder(folder: str | Path, split: str = "test") -> dict[str, Any]:
    """A BEIR folder as mteb's `RetrievalSplitData`; queries without judgments in `split` are dropped, as in mteb."""
    from datasets import Dataset

    folder = Path(folder)
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    corpus = _read_jsonl(folder / "corpus.jsonl", ("id", "text"))
    queries = [q for q in _read_jsonl(folder / "queries.jsonl", ("id", "text")) if str(q["id"]) in qrels]
    if not queries:
        raise CFTError(f"{folder / 'queries.jsonl'}: no query has a judgment in {folder / 'qrels' / f'{split}.tsv'}")
    return {
        "corpus": Dataset.from_dict(
            {
                "id": [str(d["id"]) for d in corpus],
                "title": [d.get("title") or "" for d in corpus],
                "text": [d["text"] or "" for d in corpus],
            }
        ),
        "queries": Dataset.from_dict({"id": [str(q["id"]) for q in queries], "text": [q["text"] for q in queries]}),
        "relevant_docs": qrels,
        "top_ranked": None,
    }
