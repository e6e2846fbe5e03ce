"""The training data: reachable from the node, and its first rows parse with the recipe's columns.

The rows are read by `cft.data.triplets.load_triplets`, the reader training uses, stopped after `ROWS` usable rows.
A hub file (`hf://owner/dataset/file`) is not downloaded whole: its first `HEAD_BYTES` are fetched with a range
request (cut at the last full line) and parsed the same way; Parquet keeps its schema at the end, so a Parquet file
on the Hub is only checked to exist.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from cft.config import DataConfig
from cft.data.triplets import HF_PREFIX, is_saved_dataset, load_triplets
from cft.errors import CFTError
import cft.preflight.hub as hub
from cft.preflight.job import JobSpec, node_problem
from cft.preflight.result import CheckFailed

ROWS = 100
HEAD_BYTES = 256 * 1024


def _parse_first_rows(config: DataConfig, path: Path, shown_as: str) -> tuple[int, str]:
    """(rows parsed, the columns they were read from: anchor, positive, the first row's hard negatives)."""
    try:
        triplets, report = load_triplets(dataclasses.replace(config, train_file=str(path), limit=ROWS, dedupe=False))
    except CFTError as error:
        raise CheckFailed(str(error).replace(str(path), shown_as)) from None
    return len(triplets), ", ".join(report.column_names)


def check(config: DataConfig, job: JobSpec) -> str:
    source = config.train_file
    if not source:
        raise CheckFailed("data.train_file is not set in the recipe; give a triplet file (csv, tsv, jsonl, parquet) "
                          "or hf://owner/dataset/file")
    if source.startswith(HF_PREFIX):
        return _on_hub(config, source)
    path = Path(source).expanduser()
    if not (path.is_file() or is_saved_dataset(path)):
        raise CheckFailed(f"data.train_file {source}: {'is a folder' if path.is_dir() else 'file not found'}")
    problem = node_problem(path, job.workdir)
    if problem:
        raise CheckFailed(f"data.train_file {source} {problem}")
    rows, columns = _parse_first_rows(config, path, source)
    return f"{source}: the first {rows} rows parse with columns {columns}"


def _on_hub(config: DataConfig, source: str) -> str:
    parts = source[len(HF_PREFIX):].split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise CheckFailed(f"data.train_file {source}: expected hf://<owner>/<dataset>[/<file>]")
    repo, file_name = "/".join(parts[:2]), "/".join(parts[2:])
    hub.require_online(f"data.train_file {source}")
    if not file_name:
        try:
            hub.api().dataset_info(repo, timeout=hub.TIMEOUT_S)
        except Exception as error:
            raise hub.explain(error, repo, repo_type="dataset") from None
        return f"{source}: dataset found on {hub.endpoint()} (a whole-dataset load: rows not checked before training)"
    try:
        meta = hub.file_metadata(repo, file_name, repo_type="dataset")
    except Exception as error:
        raise hub.explain(error, repo, repo_type="dataset") from None
    size = hub.human_size(meta.size)
    suffix = Path(file_name).suffix.lower()
    if suffix == ".parquet":
        return f"{source}: on {hub.endpoint()} ({size}); Parquet, so its rows are checked only when training reads it"
    head = _head(repo, file_name, meta.size)
    with tempfile.TemporaryDirectory(prefix="cft-check-") as folder:
        sample = Path(folder) / f"head{suffix}"
        sample.write_bytes(head)
        rows, columns = _parse_first_rows(config, sample, source)
    return f"{source}: on {hub.endpoint()} ({size}); its first {rows} rows parse with columns {columns}"


def _head(repo: str, file_name: str, size: int | None) -> bytes:
    """The file's first bytes, up to the last complete line (the whole file when it is small)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hf_hub_url(repo, file_name, repo_type="dataset", endpoint=hub.endpoint())
    headers = build_hf_headers(token=hub.token())
    headers["Range"] = f"bytes=0-{HEAD_BYTES - 1}"
    try:
        response = get_session().get(url, headers=headers, follow_redirects=True, timeout=hub.TIMEOUT_S)
        hf_raise_for_status(response)
    except Exception as error:
        raise CheckFailed(f"cannot read the start of {url} ({type(error).__name__})") from None
    data = response.content[:HEAD_BYTES]
    if size is not None and len(data) >= size:
        return data
    return data[: data.rfind(b"\n") + 1]
