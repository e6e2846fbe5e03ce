"""Reads NLI-style triplets (anchor, positive, optional hard negative) from CSV, TSV, JSONL, Parquet or the hub.

Rows with an empty, whitespace-only or missing anchor or positive are dropped and counted, so a user sees how much
of the file was usable; a hard negative that is empty makes the row a pair. Problems with the file itself (missing,
unreadable, wrong encoding, missing column) stop with a message naming the file and, when known, the line.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cft.config import DataConfig
from cft.errors import CFTError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
HF_PREFIX = "hf://"
MAX_FIELD_CHARS = 2**31 - 1


@dataclass(frozen=True)
class Triplet:
    anchor: str
    positive: str
    negative: str | None = None


@dataclass
class DataReport:
    """What happened to each row of the input; printed by `cft prepare` and `cft train`."""

    source: str
    rows_read: int = 0
    kept: int = 0
    pairs_without_negative: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        lines = [f"{self.source}: read {self.rows_read} rows, kept {self.kept}, dropped {dropped}"]
        lines += [f"  dropped {count}: {reason}" for reason, count in sorted(self.dropped.items())]
        if self.pairs_without_negative:
            lines.append(f"  {self.pairs_without_negative} kept rows have no hard negative (used as pairs)")
        return "\n".join(lines)


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from parquet/pandas
        return None
    text = str(value).strip()
    return text or None


def _bad_encoding_line(path: Path, error: UnicodeDecodeError) -> int:
    data = path.read_bytes()
    # error.start is an offset into the chunk being decoded; find the first undecodable byte ourselves.
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return number
    return 0


def _iter_delimited(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, Any]]]:
    # utf-8-sig: spreadsheet programs save "CSV UTF-8" with a byte-order mark, which would otherwise glue itself to
    # the first column's name. strict: an unbalanced quote is an error at its line, not one giant field.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_CHARS))  # the default 131,072 refuses long texts
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, strict=True,
                                quoting=csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE)
        started = 1
        try:
            if reader.fieldnames is None:
                return
            while True:
                started = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                yield reader.line_num, row
        except csv.Error as error:
            hint = ("a quoted field starts here and never ends: close the quote or double the \" inside it"
                    if "end of data" in str(error) else f"malformed CSV ({error})")
            raise CFTError(f"{path}:{started}: {hint}") from None


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CFTError(f"{path}:{number}: not valid JSON ({error.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise CFTError(f"{path}:{number}: each line must be a JSON object with the text columns")
            yield number, row


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise CFTError(f"{path}: cannot read as Parquet ({error})") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row


def _iter_hub(spec: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """`hf://princeton-nlp/datasets-for-simcse/nli_for_simcse.csv` -> that file of that hub dataset."""
    parts = spec[len(HF_PREFIX):].split("/")
    if len(parts) < 2:
        raise CFTError(f"{spec}: expected hf://<owner>/<dataset>[/<file>]")
    repo = "/".join(parts[:2])
    data_file = "/".join(parts[2:]) or None
    try:
        from huggingface_hub import hf_hub_download

        if data_file:
            local = hf_hub_download(repo_id=repo, filename=data_file, repo_type="dataset")
            yield from _iter_file(Path(local))
            return
        import datasets

        dataset = datasets.load_dataset(repo, split="train")
    except CFTError:
        raise
    except Exception as error:
        raise CFTError(f"{spec}: cannot load from the Hugging Face hub ({type(error).__name__}: {error}); "
                       "download the file and point data.train_file at it when offline") from None
    for number, row in enumerate(dataset, start=1):
        yield number, row


def _iter_file(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if path.is_dir():
        raise CFTError(f"{path}: is a folder; give a triplet file ({', '.join(FORMATS)})")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CFTError(f"{path}: unknown file type {path.suffix!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise CFTError(f"{path}: file not found")
    if fmt == "csv":
        yield from _iter_delimited(path, ",")
    elif fmt == "tsv":
        yield from _iter_delimited(path, "\t")
    elif fmt == "jsonl":
        yield from _iter_jsonl(path)
    else:
        yield from _iter_parquet(path)


def load_triplets(config: DataConfig) -> tuple[list[Triplet], DataReport]:
    """Reads, validates and deduplicates the triplets named by `config`."""
    source = config.train_file
    if not source:
        raise CFTError("data.train_file is not set; give a triplet file (csv, tsv, jsonl, parquet) or hf://...")
    rows = _iter_hub(source) if source.startswith(HF_PREFIX) else _iter_file(Path(source))
    report = DataReport(source=source)
    triplets: list[Triplet] = []
    seen: set[Triplet] = set()
    columns = [config.anchor_column, config.positive_column] + ([config.negative_column] if config.negative_column else [])
    checked_columns = False
    try:
        for number, row in rows:
            if not checked_columns:
                missing = [name for name in columns[:2] if name not in row]
                if config.negative_column and config.negative_column not in row:
                    missing.append(config.negative_column)
                if missing:
                    raise CFTError(
                        f"{source}:{number}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, row))}. "
                        "Map your names with data.anchor_column / positive_column / negative_column "
                        "(negative_column: null for pairs)"
                    )
                checked_columns = True
            report.rows_read += 1
            if None in row:  # csv.DictReader puts surplus fields under the None key
                report.drop("more fields than the header")
                continue
            anchor = _clean(row.get(config.anchor_column))
            positive = _clean(row.get(config.positive_column))
            negative = _clean(row.get(config.negative_column)) if config.negative_column else None
            if anchor is None:
                report.drop(f"empty or missing {config.anchor_column}")
                continue
            if positive is None:
                report.drop(f"empty or missing {config.positive_column}")
                continue
            triplet = Triplet(anchor, positive, negative)
            if config.dedupe:
                if triplet in seen:
                    report.drop("duplicate row")
                    continue
                seen.add(triplet)
            triplets.append(triplet)
            if negative is None:
                report.pairs_without_negative += 1
            if config.limit is not None and len(triplets) >= config.limit:
                break
    except UnicodeDecodeError as error:
        path = Path(source)
        line = _bad_encoding_line(path, error)
        raise CFTError(f"{source}:{line}: not valid UTF-8 ({error.reason}); re-save the file as UTF-8") from None
    except csv.Error as error:
        raise CFTError(f"{source}: malformed CSV ({error})") from None
    except PermissionError:
        raise CFTError(f"{source}: permission denied") from None
    except IsADirectoryError:
        raise CFTError(f"{source}: is a folder, not a file") from None
    report.kept = len(triplets)
    if not triplets:
        raise CFTError(f"{source}: no usable rows ({report.rows_read} read); check the file and the column names")
    return triplets, report


def output_format(path: str | os.PathLike[str]) -> str:
    """The format a triplet file is written in, from its extension (the same table the reader uses)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise CFTError(f"{path}: cannot tell the format from {suffix or 'a name without an extension'!r}; "
                       f"end the name with one of {', '.join(FORMATS)}")
    return FORMATS[suffix]


def _write_rows(triplets: list[Triplet], handle_path: str, fmt: str) -> None:
    columns = ("sent0", "sent1", "hard_neg")
    rows = ((t.anchor, t.positive, t.negative) for t in triplets)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = list(zip(*rows)) or [(), (), ()]
        pq.write_table(pa.table({name: pa.array(list(values), pa.string()) for name, values in zip(columns, data)}),
                       handle_path)
        return
    with open(handle_path, "w", encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            for row in rows:
                handle.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n")
            return
        if fmt == "tsv":  # the reader splits on tabs only (quotes are text), so nothing is quoted
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None)
        else:
            writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows((a, p, n or "") for a, p, n in rows)  # an empty hard negative reads back as a pair


def write_triplets(triplets: list[Triplet], path: str | os.PathLike[str]) -> None:
    """Writes columns sent0, sent1, hard_neg in the format the extension names, atomically (temp name, rename)."""
    fmt = output_format(path)
    if fmt == "tsv":
        for number, triplet in enumerate(triplets, 1):
            if any(text and any(ch in text for ch in "\t\r\n")
                   for text in (triplet.anchor, triplet.positive, triplet.negative)):
                raise CFTError(f"{path}: triplet {number} has a tab or line break inside a text, which TSV cannot "
                               "hold; name the file .csv, .jsonl or .parquet instead")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        _write_rows(triplets, tmp, fmt)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
