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


# sentence-transformers' own column names, several hard negatives per row, read without any mapping.
ST_ROWS = [
    {"anchor": "a man plays", "positive": "someone plays", "negative_1": "nobody plays", "negative_2": "a dog sleeps",
     "negative_10": "rain falls"},
    {"anchor": "kids eat", "positive": "children eat", "negative_1": "adults fast", "negative_2": "", "negative_10": ""},
    {"anchor": "a cat naps", "positive": "a cat sleeps", "negative_1": "", "negative_2": "", "negative_10": ""},
]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_sentence_transformers_columns_and_several_negatives_need_no_mapping(tmp_path, suffix):
    triplets, report = load_triplets(DataConfig(train_file=str(write(tmp_path / f"st{suffix}", ST_ROWS))))
    assert [t.negatives for t in triplets] == [("nobody plays", "a dog sleeps", "rain falls"), ("adults fast",), ()]
    assert report.pairs_without_negative == 1 and "anchor anchor, positive positive" in report.summary()
    assert "4 hard negatives, up to 3 per row" in report.summary()
    first_two, _ = load_triplets(DataConfig(train_file=str(tmp_path / f"st{suffix}"), max_negatives=2))
    assert first_two[0].negatives == ("nobody plays", "a dog sleeps")


def test_msmarco_style_query_column_is_an_anchor(tmp_path):
    """sentence-transformers' mined MS MARCO sets name the anchor `query`."""
    path = write(tmp_path / "m.jsonl", [{"query": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2"}])
    (triplet,), _ = load_triplets(DataConfig(train_file=str(path)))
    assert (triplet.anchor, triplet.positive, triplet.negatives) == ("q", "p", ("n1", "n2"))


def test_a_list_column_of_negatives_and_a_single_negative_column(tmp_path):
    rows = [{"anchor": "q1", "positive": "p1", "negative": "n0", "negatives": ["n1", "", "n2"]},
            {"anchor": "q2", "positive": "p2", "negatives": []}]
    triplets, _ = load_triplets(DataConfig(train_file=str(write(tmp_path / "l.jsonl", rows))))
    assert [t.negatives for t in triplets] == [("n0", "n1", "n2"), ()]
    named, _ = load_triplets(DataConfig(train_file=str(tmp_path / "l.jsonl"), negative_column="negatives"))
    assert named[0].negatives == ("n1", "n2")


def test_a_json_array_file(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ST_ROWS, indent=2))
    triplets, _ = load_triplets(DataConfig(train_file=str(path)))
    assert [t.anchor for t in triplets] == ["a man plays", "kids eat", "a cat naps"]
    path.write_text(json.dumps([ST_ROWS[0], "oops"]))
    with pytest.raises(CFTError, match=r"rows.json: item 2 of the array is str, not an object"):
        load_triplets(DataConfig(train_file=str(path)))


def test_a_folder_saved_with_datasets_and_its_split(tmp_path):
    import datasets

    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS), "dev": datasets.Dataset.from_list(ST_ROWS)}
                         ).save_to_disk(str(folder))
    triplets, _ = load_triplets(DataConfig(train_file=str(folder)))
    assert [t.anchor for t in triplets] == ["a man plays", "a dog runs", "kids eat"]
    dev, _ = load_triplets(DataConfig(train_file=str(folder), split="dev"))
    assert dev[0].negatives == ("nobody plays", "a dog sleeps", "rain falls")
    with pytest.raises(CFTError, match=r"saved: no split 'test'; it has train, dev. Set data.split"):
        load_triplets(DataConfig(train_file=str(folder), split="test"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(CFTError, match="plain: is a folder, but not one saved by datasets' save_to_disk"):
        load_triplets(DataConfig(train_file=str(tmp_path / "plain")))


def test_a_hub_dataset_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(CFTError, match=r"hf://nobody/no-such-set \(data.config pairs, data.split dev\): cannot load it"):
        load_triplets(DataConfig(train_file="hf://nobody/no-such-set", config="pairs", split="dev"))


def test_missing_columns_list_the_names_recognised_without_a_mapping(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"question": "a", "passage": "b"}])
    with pytest.raises(CFTError, match=r"missing column\(s\) sent0, sent1; found question, passage. Recognised "
                                       r"without a mapping: anchor sent0 or anchor or query, positive sent1 or positive"):
        load_triplets(DataConfig(train_file=str(path)))
    with pytest.raises(CFTError, match=r"missing column\(s\) neg_b"):
        load_triplets(DataConfig(train_file=str(path), anchor_column="question", positive_column="passage",
                                 negative_column="neg_b"))


def test_prepare_keeps_every_negative(tmp_path):
    source = write(tmp_path / "st.jsonl", ST_ROWS)
    result = cft("prepare", str(source), "--out", str(tmp_path / "clean.jsonl"))
    assert result.returncode == 0, result.stderr
    again, _ = load_triplets(DataConfig(train_file=str(tmp_path / "clean.jsonl")))
    assert again[0].negatives == ("nobody plays", "a dog sleeps", "rain falls")


def test_the_collator_puts_every_negative_in_the_batch_and_templates_by_role(tiny_model_dir):
    from cft.config import ModelConfig
    from cft.data.collator import TokenizedTriplets, TripletCollator
    from cft.data.triplets import Triplet
    from cft.modeling.backbone import load_tokenizer
    from cft.modeling.prompts import PromptTemplates
    from cft.modeling.tokenization import tokenize_with_eos

    tokenizer = load_tokenizer(ModelConfig(name_or_path=str(tiny_model_dir)))
    rows = [Triplet("q one", "d one", ("n one", "n two")), Triplet("q two", "d two"), Triplet("q three", "d three", "n3")]
    prompts = PromptTemplates("query: {}", "passage: {}")
    data = TokenizedTriplets(rows, tokenizer, 32, prompts, show_progress=False)
    batch = TripletCollator(tokenizer.pad_token_id)(list(data))
    assert batch["n_anchors"] == 3 and batch["n_negatives"] == 3 and batch["input_ids"].shape[0] == 9
    expected = tokenize_with_eos(tokenizer, ["query: q one", "passage: d one", "passage: n two"], 32)
    assert [data[0]["anchor"], data[0]["positive"], data[0]["negatives"][1]] == expected


def test_a_hub_dataset_with_a_config_and_a_split_goes_through_datasets_load_dataset(tmp_path, monkeypatch):
    """`hf://owner/name` is read by `datasets.load_dataset(owner/name, data.config, split=data.split)`. A folder at
    ./owner/name laid out as a hub dataset repo (README configs) is what load_dataset resolves the id to here, so
    the real call runs offline."""
    repo = tmp_path / "acme" / "marco"
    (repo / "triplet-2").mkdir(parents=True)
    (repo / "pairs").mkdir()
    (repo / "README.md").write_text(
        "---\nconfigs:\n- config_name: triplet-2\n  data_files:\n  - split: train\n    path: triplet-2/train.jsonl\n"
        "  - split: dev\n    path: triplet-2/dev.jsonl\n- config_name: pairs\n  data_files:\n  - split: train\n"
        "    path: pairs/train.jsonl\n---\n")
    write(repo / "triplet-2" / "train.jsonl", [{"query": "q", "positive": "p", "negative_1": "n1", "negative_2": "n2"}])
    write(repo / "triplet-2" / "dev.jsonl", [{"query": "dq", "positive": "dp", "negative_1": "dn1", "negative_2": ""}])
    write(repo / "pairs" / "train.jsonl", [{"anchor": "pa", "positive": "pp"}])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    (dev,), _ = load_triplets(DataConfig(train_file="hf://acme/marco", config="triplet-2", split="dev"))
    assert (dev.anchor, dev.negatives) == ("dq", ("dn1",))
    (pair,), _ = load_triplets(DataConfig(train_file="hf://acme/marco", config="pairs"))
    assert (pair.anchor, pair.negatives) == ("pa", ())
    with pytest.raises(CFTError, match=r"hf://acme/marco \(data.config nope, data.split train\): cannot load it .*'nope'"):
        load_triplets(DataConfig(train_file="hf://acme/marco", config="nope"))


def test_named_negative_columns_comma_separated(tmp_path):
    rows = [{"question": "q", "answer": "a", "wrong_a": "w1", "wrong_b": "w2", "hard_neg": "ignored"}]
    path = write(tmp_path / "named.jsonl", rows)
    (triplet,), report = load_triplets(DataConfig(train_file=str(path), anchor_column="question",
                                                  positive_column="answer", negative_column="wrong_a, wrong_b"))
    assert triplet.negatives == ("w1", "w2") and "negatives wrong_a, wrong_b" in report.summary()
    (pair,), _ = load_triplets(DataConfig(train_file=str(path), anchor_column="question", positive_column="answer",
                                          negative_column=None))
    assert pair.negatives == ()


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.jsonl", "out.json", "out.parquet"])
def test_prepare_writes_every_negative_in_each_format(tmp_path, name, capsys):
    from cft.cli.main import main

    source = write(tmp_path / "st.jsonl", ST_ROWS)
    assert main(["prepare", str(source), "--out", str(tmp_path / name)]) == 0
    again, _ = load_triplets(DataConfig(train_file=str(tmp_path / name)))
    assert [t.negatives for t in again] == [("nobody plays", "a dog sleeps", "rain falls"), ("adults fast",), ()]
