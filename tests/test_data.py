"""Triplet files: every format, what is dropped and counted, and messages that name the file and line."""

import json
import subprocess
import sys

import pytest

from cft.config import DataConfig
from cft.data.triplets import load_triplets
from cft.errors import CFTError

ROWS = [
    {"sent0": "a man plays", "sent1": "someone plays", "hard_neg": "nobody plays"},
    {"sent0": "  ", "sent1": "empty anchor", "hard_neg": "x"},
    {"sent0": "a dog runs", "sent1": "", "hard_neg": "x"},
    {"sent0": "a dog runs", "sent1": "an animal moves", "hard_neg": ""},
    {"sent0": "a man plays", "sent1": "someone plays", "hard_neg": "nobody plays"},
    {"sent0": "kids eat", "sent1": "children eat", "hard_neg": "adults fast"},
]


def write(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        import csv

        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet"])
def test_formats_drop_and_count_the_same(tmp_path, suffix):
    triplets, report = load_triplets(DataConfig(train_file=str(write(tmp_path / f"t{suffix}", ROWS))))
    assert [t.anchor for t in triplets] == ["a man plays", "a dog runs", "kids eat"]
    assert triplets[1].negative is None  # empty hard negative -> a pair
    assert report.rows_read == 6 and report.kept == 3
    assert report.dropped == {"empty or missing sent0": 1, "empty or missing sent1": 1, "duplicate row": 1}
    assert report.pairs_without_negative == 1


def test_column_mapping_and_pairs(tmp_path):
    path = write(tmp_path / "p.jsonl", [{"premise": "a", "hypothesis": "b"}, {"premise": "c", "hypothesis": "d"}])
    triplets, _ = load_triplets(DataConfig(train_file=str(path), anchor_column="premise",
                                           positive_column="hypothesis", negative_column=None))
    assert [(t.anchor, t.positive, t.negative) for t in triplets] == [("a", "b", None), ("c", "d", None)]


def test_limit_gives_a_pilot(tmp_path):
    triplets, _ = load_triplets(DataConfig(train_file=str(write(tmp_path / "t.csv", ROWS)), limit=2))
    assert len(triplets) == 2


def test_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path / "t.csv", [{"premise": "a", "sent1": "b", "hard_neg": "c"}])
    with pytest.raises(CFTError, match=r"t.csv:\d+: missing column\(s\) sent0; found premise, sent1, hard_neg"):
        load_triplets(DataConfig(train_file=str(path)))


def test_wrong_encoding_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("sent0,sent1,hard_neg\na,b,c\ncaf\xe9 au lait,d,e\n".encode("latin-1"))
    with pytest.raises(CFTError, match=r"latin1.csv:3: not valid UTF-8"):
        load_triplets(DataConfig(train_file=str(path)))


def test_bad_json_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"sent0": "a", "sent1": "b", "hard_neg": "c"}\n{oops\n')
    with pytest.raises(CFTError, match=r"t.jsonl:2: not valid JSON"):
        load_triplets(DataConfig(train_file=str(path)))


@pytest.mark.parametrize("name, message", [
    ("missing.csv", "file not found"),
    ("data.xlsx", "unknown file type '.xlsx'"),
])
def test_unreadable_inputs(tmp_path, name, message):
    with pytest.raises(CFTError, match=message):
        load_triplets(DataConfig(train_file=str(tmp_path / name)))


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "t.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(CFTError, match=r"t.parquet: cannot read as Parquet"):
        load_triplets(DataConfig(train_file=str(path)))


def test_only_empty_rows(tmp_path):
    path = write(tmp_path / "t.csv", [{"sent0": "", "sent1": "x", "hard_neg": "y"}])
    with pytest.raises(CFTError, match="no usable rows"):
        load_triplets(DataConfig(train_file=str(path)))


def cft(*args):
    return subprocess.run([sys.executable, "-m", "cft", *args], capture_output=True, text=True, timeout=120)


def test_prepare_cli_reports_and_converts(tmp_path):
    source = write(tmp_path / "t.csv", ROWS)
    result = cft("prepare", str(source), "--out", str(tmp_path / "clean.jsonl"))
    assert result.returncode == 0, result.stderr
    assert "read 6 rows, kept 3, dropped 3" in result.stdout
    assert "dropped 1: duplicate row" in result.stdout
    assert len((tmp_path / "clean.jsonl").read_text().splitlines()) == 3


def test_cli_user_errors_are_one_line(tmp_path):
    result = cft("prepare", str(tmp_path / "missing.csv"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"cft: error: {tmp_path / 'missing.csv'}: file not found"]
    result = cft("train", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "recipe file not found" in result.stderr and "Traceback" not in result.stderr
