"""Reads training rows (anchor, positive, any number of hard negatives) from the files people already have.

CSV, TSV, JSONL, a JSON array, Parquet, a folder saved with `datasets` (`save_to_disk`), a file of a hub dataset
(`hf://owner/name/file.csv`) or a hub dataset itself (`hf://owner/name` with `data.config` and `data.split`).
Column names are recognised without a mapping: SimCSE's (`sent0`, `sent1`, `hard_neg`) and sentence-transformers'
(`anchor` or `query`, `positive`, `negative`, `negative_1` ... `negative_n`), and a list column `negatives`.

Rows with an empty, whitespace-only or missing anchor or positive are dropped and counted, so a user sees how much
of the file was usable; empty hard negatives are left out, and a row with none left is a pair. Problems with the
file itself (missing, unreadable, wrong encoding, missing column) stop with a message naming the file and, when
known, the line.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cft.config import DataConfig
from cft.errors import CFTError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}
HF_PREFIX = "hf://"
MAX_FIELD_CHARS = 2**31 - 1
AUTO = "auto"
# Names recognised when a column is `auto`, first match wins: SimCSE's, then sentence-transformers'.
ANCHOR_NAMES = ("sent0", "anchor", "query")
POSITIVE_NAMES = ("sent1", "positive")
NEGATIVE_NAMES = ("hard_neg", "negative")
NEGATIVES_LIST = "negatives"
_NUMBERED_NEGATIVE = re.compile(r"^negative_(\d+)$")


@dataclass(frozen=True)
class Triplet:
    """One training row: an anchor, its positive, and zero or more hard negatives (zero: a pair).

    `Triplet(a, p, "n")` and `Triplet(a, p, None)` still read as one negative and as a pair."""

    anchor: str
    positive: str
    negatives: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        negatives = self.negatives
        if negatives is None:
            negatives = ()
        elif isinstance(negatives, str):
            negatives = (negatives,)
        object.__setattr__(self, "negatives", tuple(negatives))

    @property
    def negative(self) -> str | None:
        """The first hard negative, or None for a pair."""
        return self.negatives[0] if self.negatives else None


@dataclass
class DataReport:
    """What happened to each row of the input; printed by `cft prepare` and `cft train`."""

    source: str
    rows_read: int = 0
    kept: int = 0
    pairs_without_negative: int = 0
    negatives: int = 0
    most_negatives: int = 0
    columns: str = ""
    column_names: tuple[str, ...] = ()  # anchor, positive, and the first row's negative columns
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def summary(self) -> str:
        dropped = sum(self.dropped.values())
        lines = [f"{self.source}: read {self.rows_read} rows, kept {self.kept}, dropped {dropped}"]
        if self.columns:
            lines.append(f"  columns: {self.columns}")
        lines += [f"  dropped {count}: {reason}" for reason, count in sorted(self.dropped.items())]
        if self.most_negatives > 1:
            lines.append(f"  {self.negatives} hard negatives, up to {self.most_negatives} per row, each a candidate "
                         "for every anchor")
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


def _iter_json(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """`.json`: a JSON array of row objects (as `json.dump(rows)` writes it), or JSON Lines under a .json name."""
    with path.open(encoding="utf-8-sig") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith("["):
        yield from _iter_jsonl(path)
        return
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise CFTError(f"{path}:{error.lineno}: not valid JSON ({error.msg}); give a JSON array of objects or "
                       "JSON Lines") from None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise CFTError(f"{path}: item {number} of the array is {type(row).__name__}, not an object with the "
                           "text columns")
        yield number, row


def _iter_parquet(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as error:  # pyarrow raises several types for corrupt files
        raise CFTError(f"{path}: cannot read as Parquet ({error})") from None
    for number, row in enumerate(table.to_pylist(), start=1):
        yield number, row


def _pick_split(dataset: Any, split: str, where: str) -> Any:
    """One split of a `DatasetDict`; a plain `Dataset` is already one."""
    if not hasattr(dataset, "keys"):
        return dataset
    if split not in dataset:
        raise CFTError(f"{where}: no split {split!r}; it has {', '.join(dataset.keys())}. Set data.split to one of them")
    return dataset[split]


def _iter_saved_dataset(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """A folder written by `datasets`' `save_to_disk` (a Dataset or a DatasetDict)."""
    import datasets

    try:
        dataset = datasets.load_from_disk(str(path))
    except Exception as error:  # noqa: BLE001 - datasets raises many types for damaged folders
        raise CFTError(f"{path}: cannot load the saved dataset ({type(error).__name__}: {error})") from None
    for number, row in enumerate(_pick_split(dataset, split, str(path)), start=1):
        yield number, row


def _iter_hub(spec: str, config: DataConfig) -> Iterator[tuple[int, dict[str, Any]]]:
    """`hf://owner/name/file.csv` -> that file of that hub dataset; `hf://owner/name` -> the dataset itself, its
    `data.config` and `data.split`, through `datasets.load_dataset`."""
    parts = spec[len(HF_PREFIX):].split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise CFTError(f"data.train_file {spec}: expected hf://<owner>/<dataset>[/<file>]")
    repo = "/".join(parts[:2])
    data_file = "/".join(parts[2:]) or None
    try:
        if data_file:
            from huggingface_hub import hf_hub_download

            local = hf_hub_download(repo_id=repo, filename=data_file, repo_type="dataset")
            rows = _iter_file(Path(local), config.split)
        else:
            import datasets

            rows = enumerate(datasets.load_dataset(repo, config.config, split=config.split), start=1)
    except CFTError:
        raise
    except Exception as error:  # noqa: BLE001 - the hub and datasets raise many types; all mean "not loadable"
        first = str(error).splitlines()[0] if str(error) else ""
        raise CFTError(f"data.train_file {spec} (data.config {config.config}, data.split {config.split}): cannot "
                       f"load it from the Hugging Face hub ({type(error).__name__}: {first}); check the names, or "
                       "save it with datasets' save_to_disk and point data.train_file at that folder when offline"
                       ) from None
    yield from rows


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `datasets`' `save_to_disk` (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file())


def _iter_file(path: Path, split: str = "train") -> Iterator[tuple[int, dict[str, Any]]]:
    if path.is_dir():
        if is_saved_dataset(path):
            yield from _iter_saved_dataset(path, split)
            return
        raise CFTError(f"{path}: is a folder, but not one saved by datasets' save_to_disk; give a triplet file "
                       f"({', '.join(FORMATS)}) or such a folder")
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
    elif fmt == "json":
        yield from _iter_json(path)
    else:
        yield from _iter_parquet(path)


@dataclass(frozen=True)
class Columns:
    """Which columns hold what; `negatives` is None when every row finds its own (`auto`)."""

    anchor: str
    positive: str
    negatives: tuple[str, ...] | None

    def of_row(self, row: dict[str, Any]) -> tuple[str, ...]:
        return self.negatives if self.negatives is not None else auto_negative_columns(row)

    def describe(self) -> str:
        negatives = "recognised per row" if self.negatives is None else (", ".join(self.negatives) or "none (pairs)")
        return f"anchor {self.anchor}, positive {self.positive}, negatives {negatives}"


def auto_negative_columns(row: dict[str, Any]) -> tuple[str, ...]:
    """hard_neg, negative, negative_1 ... negative_n (in number order), negatives: those this row has."""
    numbered = sorted((int(match.group(1)), key) for key in row
                      if isinstance(key, str) and (match := _NUMBERED_NEGATIVE.match(key)))
    return (*(name for name in NEGATIVE_NAMES if name in row), *(key for _, key in numbered),
            *((NEGATIVES_LIST,) if NEGATIVES_LIST in row else ()))


def resolve_columns(config: DataConfig, row: dict[str, Any], where: str) -> Columns:
    """The columns of `config` in the first row; CFTError naming every missing one and the names that were found."""
    def pick(setting: str, names: tuple[str, ...]) -> str | None:
        if setting != AUTO:
            return setting if setting in row else None
        return next((name for name in names if name in row), None)

    anchor = pick(config.anchor_column, ANCHOR_NAMES)
    positive = pick(config.positive_column, POSITIVE_NAMES)
    missing = [config.anchor_column if config.anchor_column != AUTO else ANCHOR_NAMES[0]] if anchor is None else []
    if positive is None:
        missing.append(config.positive_column if config.positive_column != AUTO else POSITIVE_NAMES[0])
    negatives: tuple[str, ...] | None
    if config.negative_column is None:
        negatives = ()
    elif config.negative_column == AUTO:
        negatives = None
    else:
        negatives = tuple(name.strip() for name in config.negative_column.split(",") if name.strip())
        missing += [name for name in negatives if name not in row]
    if missing:
        raise CFTError(
            f"{where}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, row))}. Recognised without "
            f"a mapping: anchor {' or '.join(ANCHOR_NAMES)}, positive {' or '.join(POSITIVE_NAMES)}, negatives "
            f"{', '.join(NEGATIVE_NAMES)}, negative_1..negative_n, {NEGATIVES_LIST} (a list). Map your names with "
            "data.anchor_column / positive_column / negative_column (negative_column: null for pairs)")
    return Columns(anchor, positive, negatives)  # type: ignore[arg-type]


def _negatives(row: dict[str, Any], columns: tuple[str, ...], limit: int | None = None) -> tuple[str, ...]:
    """The row's distinct non-empty hard negatives in column order (the first `limit`); a column may hold a text
    or a list of texts."""
    found: list[str] = []
    for name in columns:
        value = row.get(name)
        for item in value if isinstance(value, (list, tuple)) else (value,):
            text = _clean(item)
            if text is not None and text not in found:
                found.append(text)
    return tuple(found[:limit])


def load_triplets(config: DataConfig) -> tuple[list[Triplet], DataReport]:
    """Reads, validates and deduplicates the training rows named by `config`."""
    source = config.train_file
    if not source:
        raise CFTError("data.train_file is not set; give a triplet file (csv, tsv, jsonl, json, parquet), a folder "
                       "saved with datasets, or hf://...")
    rows = _iter_hub(source, config) if source.startswith(HF_PREFIX) else _iter_file(Path(source), config.split)
    report = DataReport(source=source)
    triplets: list[Triplet] = []
    seen: set[Triplet] = set()
    columns: Columns | None = None
    try:
        for number, row in rows:
            if columns is None:
                columns = resolve_columns(config, row, f"{source}:{number}")
                report.columns = columns.describe()
                report.column_names = (columns.anchor, columns.positive, *columns.of_row(row))
            report.rows_read += 1
            if None in row:  # csv.DictReader puts surplus fields under the None key
                report.drop("more fields than the header")
                continue
            anchor = _clean(row.get(columns.anchor))
            positive = _clean(row.get(columns.positive))
            if anchor is None:
                report.drop(f"empty or missing {columns.anchor}")
                continue
            if positive is None:
                report.drop(f"empty or missing {columns.positive}")
                continue
            triplet = Triplet(anchor, positive, _negatives(row, columns.of_row(row), config.max_negatives))
            if config.dedupe:
                if triplet in seen:
                    report.drop("duplicate row")
                    continue
                seen.add(triplet)
            triplets.append(triplet)
            report.negatives += len(triplet.negatives)
            report.most_negatives = max(report.most_negatives, len(triplet.negatives))
            if not triplet.negatives:
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
    # hard_neg holds the first hard negative and negative_2 ... negative_k the others (k: the most any row has), so
    # the reader finds them all again without a mapping
    most = max((len(t.negatives) for t in triplets), default=0)
    columns = ("sent0", "sent1", "hard_neg", *(f"negative_{n}" for n in range(2, most + 1)))
    rows = [(t.anchor, t.positive, *(t.negatives[n] if n < len(t.negatives) else None for n in range(max(most, 1))))
            for t in triplets]
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = list(zip(*rows)) or [()] * len(columns)
        pq.write_table(pa.table({name: pa.array(list(values), pa.string()) for name, values in zip(columns, data)}),
                       handle_path)
        return
    with open(handle_path, "w", encoding="utf-8", newline="") as handle:
        if fmt in ("jsonl", "json"):  # JSON Lines under either name: the reader takes lines or an array
            for row in rows:
                kept = {name: value for name, value in zip(columns, row) if name == "hard_neg" or value is not None}
                handle.write(json.dumps(kept, ensure_ascii=False) + "\n")
            return
        if fmt == "tsv":  # the reader splits on tabs only (quotes are text), so nothing is quoted
            writer = csv.writer(handle, delimiter="\t", quoting=csv.QUOTE_NONE, quotechar=None)
        else:
            writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(tuple(text or "" for text in row) for row in rows)  # an empty negative reads back as none


def write_triplets(triplets: list[Triplet], path: str | os.PathLike[str]) -> None:
    """Writes columns sent0, sent1, hard_neg (and negative_2 ... for rows with several hard negatives) in the
    format the extension names, atomically (temp name, rename)."""
    fmt = output_format(path)
    if fmt == "tsv":
        for number, triplet in enumerate(triplets, 1):
            if any(text and any(ch in text for ch in "\t\r\n")
                   for text in (triplet.anchor, triplet.positive, *triplet.negatives)):
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
