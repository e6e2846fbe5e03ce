"""Local MTEB tasks: scores equal an independent computation, and bad data folders say which file is wrong."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from cft.errors import CFTError
from cft.evaluation import evaluate_encoder, prepare_tasks

WORDS = "a man woman dog cat plays eats runs sleeps near the park guitar beach bread car river house red old".split()


class BagOfWordsEncoder:
    """A sentence is the normalized sum of fixed random word vectors: cheap, deterministic, and STS-like."""

    def __init__(self, name: str = "test/bow", revision: str | None = "bow-1", dim: int = 48, seed: int = 0):
        self.name, self.revision, self.dim, self.seed = name, revision, dim, seed
        self.calls: list[list[str]] = []

    def _word(self, word: str) -> np.ndarray:
        return np.random.default_rng(zlib.crc32(f"{self.seed}:{word}".encode())).standard_normal(self.dim)

    def encode(self, texts, batch_size=64, show_progress=False):
        self.calls.append(list(texts))
        rows = [sum((self._word(w) for w in t.lower().split()), np.zeros(self.dim)) + 1e-3 for t in texts]
        vectors = np.asarray(rows)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class TopicEncoder:
    """Maps any text mentioning "topic<i>" to the i-th unit vector: a perfect retriever for the test corpus."""

    name, revision = "test/topic", "topic-1"

    def encode(self, texts, batch_size=64, show_progress=False):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, int(re.search(r"topic(\d+)", text).group(1))] = 1.0
        return out


class NoiseEncoder:
    name, revision = "test/noise", "noise-1"

    def encode(self, texts, batch_size=64, show_progress=False):
        rows = [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(64) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def sts_pairs(count: int = 60, seed: int = 0) -> list[tuple[str, str, float]]:
    """Pairs whose gold score is the share of words they have in common (0-5), some sentences repeated."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(count):
        first = list(rng.choice(WORDS, size=6, replace=False))
        keep = int(rng.integers(0, 6))  # never identical sentences: their cosine ties at 1 +- float32 noise
        second = first[:keep] + list(rng.choice([w for w in WORDS if w not in first], size=6 - keep, replace=False))
        rows.append((" ".join(first), " ".join(second), 5.0 * keep / 6))
    rows += rows[:5]  # duplicates, as in real STS files
    return rows


def write_sts(path: Path, rows=None, header: str = "sentence1\tsentence2\tscore") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] + [f'{a}\t{b}\t{s}' for a, b, s in (rows if rows is not None else sts_pairs())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_retrieval(folder: Path, n_docs: int = 40, n_queries: int = 15) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i in range(n_docs):
            f.write(json.dumps({"_id": f"d{i}", "title": f"Title {i}", "text": f"all about topic{i} and more"}) + "\n")
    with (folder / "queries.jsonl").open("w") as f:
        for i in range(n_queries + 3):  # three queries without judgments: mteb drops them
            f.write(json.dumps({"_id": f"q{i}", "text": f"what is topic{i}?", "metadata": {}}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(n_queries))
    )
    return folder


def test_local_sts_score_is_the_spearman_of_cosines(tmp_path):
    rows = sts_pairs()
    write_sts(tmp_path / "sts" / "biosses.tsv", rows)
    encoder = BagOfWordsEncoder()
    run = evaluate_encoder(encoder, "BIOSSES", data_dir=tmp_path, use_cache=False, show_progress=False)

    (result,) = run.results
    assert result.task_name == "BIOSSES"
    assert result.dataset_revision.startswith("local-")
    a = encoder.encode([r[0] for r in rows]).astype(np.float64)
    b = encoder.encode([r[1] for r in rows]).astype(np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    expected = spearmanr([r[2] for r in rows], cosine)[0]
    assert result.scores["test"][0]["cosine_spearman"] == pytest.approx(expected, abs=1e-6)
    assert result.scores["test"][0]["main_score"] == pytest.approx(expected, abs=1e-6)
    assert run.summary["tasks"]["BIOSSES"] == pytest.approx(100 * expected, abs=1e-3)
    assert run.summary["mean"] == run.summary["tasks"]["BIOSSES"]
    assert run.summary["primary_metric"] == "main_score"
    # each distinct sentence is encoded once, in one call per side
    assert run.texts_encoded == len({r[0] for r in rows}) + len({r[1] for r in rows})


def test_local_retrieval_ndcg_is_one_for_a_perfect_encoder_and_lower_for_noise(tmp_path):
    write_retrieval(tmp_path / "retrieval" / "scifact")
    perfect = evaluate_encoder(TopicEncoder(), "SciFact", data_dir=tmp_path, use_cache=False, show_progress=False)
    noise = evaluate_encoder(NoiseEncoder(), "SciFact", data_dir=tmp_path, use_cache=False, show_progress=False)

    scores = perfect.results[0].scores["test"][0]
    assert perfect.summary["metrics"]["SciFact"] == "ndcg_at_10"
    assert scores["ndcg_at_10"] == pytest.approx(1.0)
    assert scores["main_score"] == pytest.approx(1.0)
    assert noise.results[0].scores["test"][0]["ndcg_at_10"] < 0.6


def test_missing_file_names_the_file(tmp_path):
    (tmp_path / "sts").mkdir()
    with pytest.raises(CFTError, match=re.escape(str(tmp_path / "sts" / "biosses.tsv"))):
        prepare_tasks("BIOSSES", tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("sentence1\tsentence2\tlabel\na\tb\t1\n", r"biosses\.tsv: missing column\(s\) score"),
        ("sentence1\tsentence2\tscore\na\tb\n", r"biosses\.tsv:2: expected 3 tab-separated fields, found 2"),
        ("sentence1\tsentence2\tscore\na\tb\thigh\n", r"biosses\.tsv:2: score 'high' is not a number"),
        ("sentence1\tsentence2\tscore\n", r"biosses\.tsv: no rows"),
    ],
)
def test_bad_sts_file_names_the_file_and_the_problem(tmp_path, content, message):
    (tmp_path / "sts").mkdir()
    (tmp_path / "sts" / "biosses.tsv").write_text(content)
    with pytest.raises(CFTError, match=message):
        evaluate_encoder(BagOfWordsEncoder(), "BIOSSES", data_dir=tmp_path, use_cache=False, show_progress=False)


def test_quotes_inside_sentences_are_text(tmp_path):
    rows = [(f'he said "hi {w}', f"it's {w} \"quoted\" text", float(i % 5)) for i, w in enumerate(WORDS)]
    write_sts(tmp_path / "sts" / "biosses.tsv", rows)
    encoder = BagOfWordsEncoder()
    evaluate_encoder(encoder, "BIOSSES", data_dir=tmp_path, use_cache=False, show_progress=False)
    assert set(encoder.calls[0]) == {r[0] for r in rows}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("qrels/test.tsv", r"qrels/test\.tsv: file not found"),
        ("corpus.jsonl", r"corpus\.jsonl: file not found"),
    ],
)
def test_missing_retrieval_file_names_the_file(tmp_path, broken, message):
    folder = write_retrieval(tmp_path / "retrieval" / "scifact")
    (folder / broken).unlink()
    with pytest.raises(CFTError, match=message):
        prepare_tasks("SciFact", tmp_path)


def test_retrieval_line_without_text_names_the_line(tmp_path):
    folder = write_retrieval(tmp_path / "retrieval" / "scifact")
    with (folder / "corpus.jsonl").open("a") as f:
        f.write(json.dumps({"_id": "x", "body": "no text field"}) + "\n")
    with pytest.raises(CFTError, match=r"corpus\.jsonl:41: missing field\(s\) text"):
        evaluate_encoder(TopicEncoder(), "SciFact", data_dir=tmp_path, use_cache=False, show_progress=False)


def _write_sts_suite(root: Path) -> None:
    for name in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb-test", "sick-r-all", "biosses"):
        write_sts(root / "sts" / f"{name}.tsv", sts_pairs(12))


def test_suite_skips_a_task_without_local_data_and_says_why(tmp_path):
    _write_sts_suite(tmp_path)
    tasks = prepare_tasks("sts", tmp_path)
    assert [t.metadata.name for t in tasks.tasks] == [
        "STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "BIOSSES", "SICK-R"
    ]
    assert list(tasks.skipped) == ["STS17[en-en]"]
    assert "sts/sts17-en-en.tsv" in tasks.skipped["STS17[en-en]"]


def test_a_named_task_without_local_data_is_an_error(tmp_path):
    _write_sts_suite(tmp_path)
    with pytest.raises(CFTError, match=r"--tasks STS17: no local data"):
        prepare_tasks("STS12,STS17", tmp_path)


def test_other_tasks_are_found_by_convention(tmp_path):
    _write_sts_suite(tmp_path)
    write_sts(tmp_path / "sts" / "sts17-en-en.tsv", sts_pairs(12))
    tasks = prepare_tasks("sts", tmp_path)
    assert not tasks.skipped
    (sts17,) = [t for t in tasks.tasks if t.metadata.name == "STS17"]
    assert sts17.hf_subsets == ["en-en"]
    run = evaluate_encoder(BagOfWordsEncoder(), "STS17[en-en]", data_dir=tmp_path, use_cache=False, show_progress=False)
    assert [s["hf_subset"] for s in run.results[0].scores["test"]] == ["en-en"]


def test_unknown_task_suggests_a_name():
    with pytest.raises(CFTError, match="did you mean SciFact"):
        prepare_tasks("SciFactt")
