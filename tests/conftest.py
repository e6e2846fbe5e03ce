"""Shared fixtures: tiny models and tokenizers built from configs, so no test needs the network.

Models are built once per session; tests that change a model get their own copy.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from transformers import TrainerCallback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `notify run` records every job it wraps; the suite's go to a folder of their own, not the user's ~/.local/state.
if "NOTIFY_STATE_DIR" not in os.environ:
    os.environ["NOTIFY_STATE_DIR"] = tempfile.mkdtemp(prefix="cft-notify-state-")
    atexit.register(shutil.rmtree, os.environ["NOTIFY_STATE_DIR"], True)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CFT_SHARED_DATA", REPO.parent / "shared" / "data"))
REQUIRE_SHARED_DATA = "CFT_REQUIRE_SHARED_DATA"  # .ci/run sets it to 1: there the data is present, so use it


def needs_shared_data(*paths: str) -> pytest.MarkDecorator:
    """Marks a test that reads files under SHARED_DATA (../shared/data), which the repository does not ship.

    Without them the test is skipped with a reason, so `make test` passes on a user's fresh clone; with
    CFT_REQUIRE_SHARED_DATA=1 (CI, where the data is present) it fails instead, so a data test cannot be skipped
    there unseen. `paths` are relative to SHARED_DATA (files or folders); none means the folder itself.
    """
    return pytest.mark.shared_data(*paths)


def check_shared_data(paths: tuple[str, ...], root: Path = SHARED_DATA) -> None:
    """Skips (or, when required, fails) the running test when a path it needs under `root` is absent."""
    missing = [p for p in paths or (".",) if not (root / p).exists()]
    if not missing:
        return
    reason = (f"needs the shared data ({', '.join(missing)} under {root}), which the repository does not ship; "
              "set CFT_SHARED_DATA to its folder")
    if os.environ.get(REQUIRE_SHARED_DATA) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SHARED_DATA}=1 requires it)", pytrace=False)
    pytest.skip(reason)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_data(*paths): reads files under ../shared/data (see needs_shared_data)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    for mark in item.iter_markers("shared_data"):
        check_shared_data(tuple(mark.args))

SUBJECTS = ["a man", "a woman", "two kids", "the dog", "a cat", "an old farmer", "the band", "three girls"]
VERBS = ["is playing", "is eating", "walks along", "is sleeping near", "is painting", "looks at", "runs across"]
OBJECTS = ["the park", "a guitar", "the beach", "some bread", "a red car", "the river", "a small house"]


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} ." for _ in range(count)]


def write_triplets_csv(path: Path, count: int = 200, seed: int = 0) -> Path:
    """Triplets whose positive shares the anchor's subject and object; the negative does not."""
    import csv

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        for _ in range(count):
            subject, obj = rng.choice(SUBJECTS), rng.choice(OBJECTS)
            other_subject = rng.choice([s for s in SUBJECTS if s != subject])
            other_obj = rng.choice([o for o in OBJECTS if o != obj])
            writer.writerow([f"{subject} {rng.choice(VERBS)} {obj} .", f"{subject} is near {obj} .",
                             f"{other_subject} {rng.choice(VERBS)} {other_obj} ."])
    return path


def _corpus() -> list[str]:
    return sentences(400) + [" ".join(SUBJECTS + VERBS + OBJECTS)] * 5


def build_bpe_tokenizer(folder: Path):
    """GPT-2-style byte-level BPE (as in Phi-2, SmolLM2, Qwen): never adds EOS, no pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", unk_token="<unk>")
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def build_sentencepiece_tokenizer(folder: Path):
    """A Llama-style sentencepiece tokenizer (as in Llama, MiniCPM, Gemma): adds BOS, not EOS."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_corpus()), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(folder / "tokenizer"), vocab_size=120,
                                   model_type="bpe", bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
                                   hard_vocab_limit=False, minloglevel=2)
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False}))
    return AutoTokenizer.from_pretrained(str(folder))


def build_tiny_llama(folder: Path, tokenizer, seed: int = 0) -> Path:
    """A 2-layer, 32-wide Llama with random weights, saved with its tokenizer: a model folder like any other."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny Llama + byte-level BPE tokenizer (no pad token, no EOS appended by the tokenizer)."""
    folder = tmp_path_factory.mktemp("tiny-llama-bpe")
    tokenizer = build_bpe_tokenizer(folder)
    return build_tiny_llama(folder, tokenizer)


@pytest.fixture(scope="session")
def tiny_sp_model_dir(tmp_path_factory) -> Path:
    """Tiny Llama + sentencepiece tokenizer."""
    folder = tmp_path_factory.mktemp("tiny-llama-sp")
    tokenizer = build_sentencepiece_tokenizer(folder)
    return build_tiny_llama(folder, tokenizer, seed=1)


@pytest.fixture(scope="session")
def triplets_csv(tmp_path_factory) -> Path:
    return write_triplets_csv(tmp_path_factory.mktemp("data") / "triplets.csv")


def tiny_recipe_yaml(path: Path, model_dir: Path, train_file: Path, **train: object) -> Path:
    settings = {"batch_size": 8, "learning_rate": 5e-3, "warmup_steps": 0, "max_steps": 30, "save_steps": 10,
                "logging_steps": 5, "report_to": "none", "lr_scheduler": "constant", **train}
    import yaml

    path.write_text(yaml.safe_dump({
        "name": "tiny",
        "model": {"name_or_path": str(model_dir), "max_length": 32, "attn_implementation": "eager"},
        "data": {"train_file": str(train_file)},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "train": settings,
    }))
    return path


@pytest.fixture(autouse=True)
def restore_root_logging():
    """`cft train` configures the root logger on the captured stderr; later tests must not write to it."""
    import logging

    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)


class StopAt(TrainerCallback):
    """Simulates a crash (preemption) right after a given step."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("simulated crash")
