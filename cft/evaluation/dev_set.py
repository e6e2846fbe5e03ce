"""A dev set scored during training: sentence pairs with gold scores, and the Spearman x100 of their cosines.

    dev = load_dev_set("../shared/data/sts/stsb-dev.tsv")       # or an MTEB STS task name: "STSBenchmark"
    dev.score(encoder)                                          # 41.27: Spearman x100, as MTEB's STS main score

A dev set is read once, before the model loads, so a missing file or an unknown task fails in a second. Scoring
uses the encoder `cft eval` uses (`TextEncoder`: every distinct text encoded once, in length-sorted batches), and
computes what MTEB's STS evaluator reports as its main score: the Spearman correlation between the gold scores and
the cosine similarity of the two embeddings, over all pairs.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cft.config import DEV_FILE_SUFFIXES
from cft.errors import CFTError
from cft.evaluation.local_tasks import STS_COLUMNS, read_sts_tsv

WHERE = "train.eval_data"


@dataclass
class DevSet:
    """Pairs of sentences and their gold similarity; `name` is what logs and plots call it (e.g. stsb-dev)."""

    name: str
    sentence1: list[str]
    sentence2: list[str]
    gold: list[float]

    def __len__(self) -> int:
        return len(self.gold)

    def texts(self) -> list[str]:
        """The distinct sentences, in first-seen order: each is encoded once."""
        return list(dict.fromkeys(self.sentence1 + self.sentence2))

    def score(self, encoder: Any, batch_size: int = 64) -> float:
        """Spearman x100 between the gold scores and the cosine of the pairs' embeddings; NaN if the model gives
        every pair the same cosine (a correlation is then undefined)."""
        from scipy.stats import spearmanr
        from sklearn.metrics.pairwise import paired_cosine_distances

        texts = self.texts()
        row = {text: index for index, text in enumerate(texts)}
        vectors = np.asarray(encoder.encode(texts, batch_size=batch_size), dtype=np.float32)  # (texts, dim)
        # MTEB's STS evaluator computes its cosines this way, in float32: near-ties then rank as they do in `cft eval`
        cosines = 1 - paired_cosine_distances(vectors[[row[s] for s in self.sentence1]],
                                              vectors[[row[s] for s in self.sentence2]])  # (pairs,)
        if np.ptp(cosines) == 0:
            return math.nan
        return float(100.0 * spearmanr(self.gold, cosines).statistic)


def load_dev_set(spec: str) -> DevSet:
    """The dev set `spec` names: a local STS file by its suffix, else an MTEB STS task (see `cft eval --tasks`)."""
    if Path(spec).suffix.lower() in DEV_FILE_SUFFIXES:
        return _from_file(Path(spec))
    return _from_mteb(spec)


def _from_file(path: Path) -> DevSet:
    if not path.is_file():
        what = "is a folder" if path.exists() else "file not found"
        raise CFTError(f"{WHERE}: {path}: {what}; give an STS file with columns {', '.join(STS_COLUMNS)} (relative "
                       "paths are from the working directory)")
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        columns = read_sts_tsv(path)
    elif suffix == ".csv":
        columns = _read_csv(path)
    else:
        columns = _read_jsonl(path)
    name = path.stem
    return _checked(DevSet(name, columns["sentence1"], columns["sentence2"], columns["score"]), str(path))


def _read_csv(path: Path) -> dict[str, list]:
    columns: dict[str, list] = {c: [] for c in STS_COLUMNS}
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in STS_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise CFTError(f"{path}: missing column(s) {', '.join(missing)} in the header (found: "
                               f"{', '.join(reader.fieldnames or [])}); expected {', '.join(STS_COLUMNS)}")
            for row in reader:
                _append(columns, path, reader.line_num, row)
    except UnicodeDecodeError as error:
        raise CFTError(f"{path}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None
    return columns


def _read_jsonl(path: Path) -> dict[str, list]:
    columns: dict[str, list] = {c: [] for c in STS_COLUMNS}
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for lineno, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except (json.JSONDecodeError, RecursionError):
                    raise CFTError(f"{path}:{lineno}: not valid JSON") from None
                if not isinstance(row, dict):
                    raise CFTError(f"{path}:{lineno}: each line must be a JSON object with {', '.join(STS_COLUMNS)}")
                _append(columns, path, lineno, row)
    except UnicodeDecodeError as error:
        raise CFTError(f"{path}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None
    return columns


def _append(columns: dict[str, list], path: Path, lineno: int, row: dict[str, Any]) -> None:
    missing = [c for c in STS_COLUMNS if row.get(c) is None]
    if missing:
        raise CFTError(f"{path}:{lineno}: missing {', '.join(missing)}; each row needs {', '.join(STS_COLUMNS)}")
    score = row["score"]
    try:
        value = float(score) if not isinstance(score, bool) else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise CFTError(f"{path}:{lineno}: score {score!r} is not a number")
    columns["sentence1"].append(str(row["sentence1"]))
    columns["sentence2"].append(str(row["sentence2"]))
    columns["score"].append(value)


def _from_mteb(name: str) -> DevSet:
    """An MTEB STS task's evaluation split, resolved as `cft eval --tasks` resolves it, loaded from the hub."""
    from cft.evaluation.runner import prepare_tasks

    try:
        (task,) = prepare_tasks([name]).tasks
    except CFTError as error:
        raise CFTError(f"{WHERE}: {str(error).removeprefix('--tasks: ')}") from None
    except ValueError:
        raise CFTError(f"{WHERE}: {name!r} names more than one task; give one MTEB STS task or a file") from None
    return from_task(task, name)


def from_task(task: Any, name: str) -> DevSet:
    """The pairs of an mteb STS task object's first evaluation split and subset (loaded here, then unloaded)."""
    from mteb.abstasks.sts import AbsTaskSTS

    if not isinstance(task, AbsTaskSTS):
        raise CFTError(f"{WHERE}: {name} is a {task.metadata.type} task; evaluation during training scores STS "
                       "tasks (or an STS file: .tsv, .csv, .jsonl)")
    try:
        task.load_data()
    except CFTError:
        raise
    except Exception as error:  # noqa: BLE001 - datasets/hub raise many types; all mean "no data"
        first = str(error).splitlines()[0] if str(error) else ""
        raise CFTError(f"{WHERE}: cannot load {name} from the Hugging Face hub ({type(error).__name__}: {first}); "
                       "give a local STS file instead, or check the network and HF_HUB_OFFLINE") from None
    split, subset = task.eval_splits[0], task.hf_subsets[0]
    data = task.dataset[subset][split]
    first_column, second_column = task.column_names
    devset = DevSet(f"{name} ({split})", [str(s) for s in data[first_column]], [str(s) for s in data[second_column]],
                    [float(s) for s in data["score"]])
    task.unload_data()
    return _checked(devset, name)


def _checked(devset: DevSet, source: str) -> DevSet:
    if len(devset) < 2:
        raise CFTError(f"{WHERE}: {source} has {len(devset)} pair(s); a rank correlation needs at least 2")
    if len(set(devset.gold)) < 2:
        raise CFTError(f"{WHERE}: {source}: every pair has the same score; a rank correlation needs different scores")
    return devset
