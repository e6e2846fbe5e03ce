"""The CLI a new user meets: one meaning per flag (old spellings warn), every flag in the README's command reference,
help that points at no source file, a light install without torch, and recipes that explain themselves."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from cft.cli.main import build_parser, main
from cft.config import SECTIONS, Recipe, load_recipe
from conftest import REPO

# ------------------------------------------------------------------------------------------ the command reference


def parsers(parser: argparse.ArgumentParser | None = None):
    """Every parser of the `cft` command, groups and subcommands alike."""
    parser = parser or build_parser()
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


def reference_rows() -> tuple[list[tuple[str, set[str]]], list[tuple[str, set[str]]]]:
    """(command, words of its flag cell) for the reference table and for the old-spellings table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Command reference", 1)[1].split("\n## ", 1)[0]
    current, tables = None, {"reference": [], "old": []}
    for line in section.splitlines():
        if line.startswith("| command | flag or argument"):
            current = "reference"
        elif line.startswith("| command | old spelling"):
            current = "old"
        elif line.startswith("| `cft") and current:
            cells = [c.strip() for c in line.strip("|").split("|")]
            words = {w.strip("[],") for chunk in re.findall(r"`([^`]*)`", cells[1]) for w in chunk.split()}
            tables[current].append((cells[0].strip("`"), words))
    return tables["reference"], tables["old"]


def _names(action: argparse.Action) -> list[str]:
    return list(action.option_strings) or [action.metavar or action.dest.upper()]


def test_every_command_and_flag_is_in_the_readme_command_reference_once():
    reference, old = reference_rows()
    assert reference and old
    missing, repeated = [], []
    for parser in parsers():
        if not any(command == parser.prog or command.startswith(parser.prog + " ") for command, _ in reference):
            missing.append(parser.prog)
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            table = old if action.help == argparse.SUPPRESS else reference
            for name in _names(action):
                # a group's flags (cft runs --bucket) serve its subcommands; listed once, on the group
                rows = [c for c, words in table if name in words and (parser.prog + " ").startswith(c + " ")]
                if not rows:
                    missing.append(f"{parser.prog} {name}")
                elif len(rows) > 1:
                    repeated.append(f"{parser.prog} {name}")
    assert not missing, f"add to README.md's command reference: {missing}"
    assert not repeated, f"listed more than once: {repeated}"


def test_help_texts_point_at_no_source_file_or_shared_folder(capsys):
    for parser in parsers():
        text = parser.format_help()
        assert not re.search(r"\.py\b|\.\./shared|(?<![\w/])cft/[a-z_]+/", text), (parser.prog, text)


# ---------------------------------------------------------------------------------------- one meaning per flag

NEW_AND_OLD = [  # argv with the old spelling, the new flag, the dest it fills
    (["train", "--config", "r.yaml", "--output", "/b"], "--bucket", "bucket"),
    (["train", "--config", "r.yaml", "-o", "/b"], "--bucket", "bucket"),
    (["demo", "--output", "/b"], "--bucket", "bucket"),
    (["eval", "--model", "m", "--output", "/b"], "--out", "out"),
    (["eval", "--model", "m", "--batch-size", "8"], "--encode-batch-size", "encode_batch_size"),
    (["export", "--adapter", "a", "--output", "/b"], "--out", "out"),
    (["prepare", "in.csv", "--output", "/b"], "--out", "out"),
]


@pytest.mark.parametrize("argv, new, dest", NEW_AND_OLD)
def test_old_spellings_still_work_with_a_one_line_notice(argv, new, dest, capsys):
    args = build_parser().parse_args(argv)
    assert str(getattr(args, dest)) in ("/b", "8")
    err = capsys.readouterr().err
    old = argv[-2]
    assert err == f"cft: warning: {argv[0]} {old} is deprecated; use {new} (same value)\n"
    new_argv = [*argv[:-2], new, argv[-1]]
    assert getattr(build_parser().parse_args(new_argv), dest) == getattr(args, dest)
    assert capsys.readouterr().err == ""


def test_o_means_out_where_a_plain_file_is_written(tmp_path, capsys):
    parser = build_parser()
    assert parser.parse_args(["eval", "--model", "m", "-o", "res"]).out == "res"
    assert parser.parse_args(["export", "-a", "x", "-o", "dir"]).out == "dir"
    assert parser.parse_args(["prepare", "in.csv", "-o", "x.csv"]).out == "x.csv"
    assert parser.parse_args(["demo", "-b", "/r"]).bucket == "/r"
    assert parser.parse_args(["demo", "--batch-size", "8"]).batch_size == 8  # triplets per step, as in train
    assert capsys.readouterr().err == ""


def test_export_without_out_is_one_line(capsys):
    assert main(["export", "--adapter", "x"]) == 2
    assert capsys.readouterr().err.strip() == ("cft: error: cft export needs --out DIR, the folder to write "
                                               "(e.g. --out exported/<run_id>)")


# ------------------------------------------------------------------------------------------------ prepare -o


def _triplets_file(tmp_path: Path) -> Path:
    source = tmp_path / "in.jsonl"
    rows = [{"sent0": "a man plays", "sent1": "someone plays", "hard_neg": "nobody, \"ever\" plays"},
            {"sent0": "a dog runs", "sent1": "an animal runs", "hard_neg": ""}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return source


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.jsonl", "out.json", "out.parquet"])
def test_prepare_writes_the_format_its_out_extension_names(tmp_path, name, capsys):
    from cft.config import DataConfig
    from cft.data.triplets import load_triplets

    target = tmp_path / name
    assert main(["prepare", str(_triplets_file(tmp_path)), "-o", str(target)]) == 0
    assert f"wrote 2 triplets to {target}" in capsys.readouterr().out
    if name.endswith(".csv"):
        assert next(csv.reader(target.open())) == ["sent0", "sent1", "hard_neg"]
    elif name.endswith(".tsv"):
        assert target.read_text().splitlines()[0] == "sent0\tsent1\thard_neg"
    elif name.endswith(".parquet"):
        assert target.read_bytes()[:4] == b"PAR1"
    else:
        assert json.loads(target.read_text().splitlines()[0])["sent0"] == "a man plays"
    triplets, report = load_triplets(DataConfig(train_file=str(target)))
    assert [(t.anchor, t.negative) for t in triplets] == [("a man plays", 'nobody, "ever" plays'), ("a dog runs", None)]
    assert not list(tmp_path.glob(".*.tmp"))


def test_prepare_refuses_an_extension_it_cannot_write_before_reading(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "out.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cft: error: --out ") and "out.txt" in err and ".csv, .tsv, .jsonl, .json, .parquet" in err


# -------------------------------------------------------------------------------------------------- recipes


def test_recipe_fields_lists_every_field_with_type_default_and_help(capsys):
    assert main(["recipe", "fields", "--json"]) == 0
    listed = {f["key"]: f for f in json.loads(capsys.readouterr().out)}
    expected = {"name", *(f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in fields(cls))}
    assert set(listed) == expected
    assert listed["train.learning_rate"] == {"key": "train.learning_rate", "type": "float", "default": 5e-05,
                                            "help": "Peak learning rate."}
    assert listed["lora.target_modules"]["default"] == ["q_proj", "v_proj"]
    assert listed["model.revision"]["type"] == "str | None"
    assert all(f["help"] for f in listed.values())
    assert main(["recipe", "fields", "lora"]) == 0
    text = capsys.readouterr().out
    assert "lora.alpha" in text and "LoRA alpha (scale = alpha / r)." in text and "train." not in text


def test_recipe_show_prints_the_resolved_recipe_after_set(capsys):
    recipe = str(REPO / "recipes" / "smollm2-135m.yaml")
    assert main(["recipe", "show", "-c", recipe, "--set", "train.learning_rate=1e-4", "--set",
                 "model.revision=1234e56", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["train"]["learning_rate"] == 1e-4 and shown["model"]["revision"] == "1234e56"
    assert shown["name"] == "smollm2-135m"
    assert main(["recipe", "show", "-c", recipe]) == 0
    assert load_recipe(recipe).to_yaml() == capsys.readouterr().out  # the YAML a run saves as config.yaml


@pytest.mark.parametrize("override, value", [
    ("model.revision=1234e56", "1234e56"),           # a commit, not 1.234e+59
    ("model.revision=2024", "2024"),                 # a tag, not the integer 2024
    ("model.revision=null", None),
    ("data.anchor_column=1e5", "1e5"),
    ("train.learning_rate=5e-5", 5e-5),              # YAML 1.1 reads this as text; the field is a float
    ("train.batch_size=64", 64),
    ("train.grad_cache_chunk_size=auto", "auto"),
    ("train.grad_cache_chunk_size=32", 32),
    ("train.bf16=false", False),
    ("lora.target_modules=q_proj,k_proj", ["q_proj", "k_proj"]),
    ("lora.target_modules=[q_proj, o_proj]", ["q_proj", "o_proj"]),
    ("model.prompt_template=Say: {}", "Say: {}"),
])
def test_set_values_take_the_fields_declared_type(override, value):
    key, _, _ = override.partition("=")
    section, name = key.split(".")
    assert getattr(getattr(load_recipe(None, [override]), section), name) == value


def test_a_typo_suggests_the_nearest_field_and_blames_where_it_came_from(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("train:\n  learning_rate: 1e-4\n")
    assert main(["recipe", "show", "-c", str(good), "--set", "train.learnig_rate=2e-4"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cft: error: --set train.learnig_rate=2e-4: unknown key `train.learnig_rate`; did you mean "
        "train.learning_rate? (`cft recipe fields` lists every field)")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learnig_rate: 1e-4\n")
    assert main(["recipe", "show", "-c", str(bad), "--set", "train.batch_size=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cft: error: {bad}: unknown key `train.learnig_rate`; did you mean train.learning_rate?")
    for typo, meant in (("learning_rate", "train.learning_rate"), ("trian.batch_size", "train.batch_size"),
                        ("train.lr", "train.learning_rate"), ("model.poolng", "model.pooling")):
        assert main(["recipe", "show", "--set", f"{typo}=1"]) == 2
        assert f"did you mean {meant}?" in capsys.readouterr().err


def test_a_bad_value_names_the_set_that_gave_it_or_the_file(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  temperature: 0.05\n")
    assert main(["recipe", "show", "-c", str(recipe), "--set", "train.temperature=0"]) == 2
    assert capsys.readouterr().err.strip() == ("cft: error: --set train.temperature=0: train.temperature must be > 0 "
                                               "(got 0.0)")
    recipe.write_text("train:\n  temperature: 0\n")
    assert main(["recipe", "show", "-c", str(recipe), "--set", "train.batch_size=8"]) == 2
    assert capsys.readouterr().err.strip().startswith(f"cft: error: {recipe}: train.temperature must be > 0")


def test_unknown_task_suggests_cft_suite_names_first(capsys):
    assert main(["eval", "--model", "unused", "--tasks", "STS-B"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cft: error: --tasks: unknown MTEB task 'STS-B'; did you mean STSBenchmark")


# ------------------------------------------------------------------------------------------- a light install

BLOCKER = """
import importlib.abc, sys
HEAVY = {"torch", "transformers", "peft", "accelerate", "datasets", "mteb", "sentence_transformers", "scipy",
         "matplotlib", "pyarrow", "tokenizers", "gguf"}
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
sys.meta_path.insert(0, Blocker())
from cft.cli.main import main
codes = [main(argv.split()) for argv in sys.argv[1:]]
print("exit codes", codes)
"""


def test_cli_help_runs_and_recipes_work_without_torch(tmp_path):
    from test_runs import CONFIG_YAML, manifest

    for run_id in ("r1", "r2"):
        run = tmp_path / "bucket" / "runs" / run_id
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(CONFIG_YAML)
        (run / "manifest.json").write_text(json.dumps(manifest(run_id)))
    bucket = tmp_path / "bucket"
    commands = ["--help", "runs", "runs --help", f"runs {bucket}", f"runs list --bucket {bucket}",
                f"runs show r1 --bucket {bucket}", f"runs compare r1 r2 -b {bucket}", "recipe fields",
                f"recipe show -c {REPO / 'recipes' / 'smollm2-135m.yaml'}", "train --help", "eval --help",
                "export --help", "prepare --help", "demo --help"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BUCKET"}
    done = subprocess.run([sys.executable, "-c", BLOCKER, *commands], cwd=fresh, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == f"exit codes {[0] * len(commands)}", done.stderr[-2000:]
    assert "no runs in ./cft-runs/runs yet" in done.stdout and "lora.r" in done.stdout
    assert "r1" in done.stdout and "config (fields that differ)" not in done.stdout  # same config: "identical"


def test_output_cut_short_by_a_pipe_is_not_an_error():
    process = subprocess.Popen([sys.executable, "-m", "cft", "recipe", "fields"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("name")
    process.stdout.close()  # `| head -1`
    assert process.wait(timeout=60) in (0, 141)
    assert process.stderr.read() == ""
