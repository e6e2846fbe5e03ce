"""A hostile user's inputs against every command: exit 2, one `cft: error:` line naming the thing, never a traceback.

Every case runs through the CLI's own `main` in-process (no interpreter start-up per case), on the tiny model and a
2-step adapter trained once for the module. Each entry is (case id, argv built from the fixtures' paths, a piece of
text the error line must contain: the file, field or value at fault). Valid inputs that were once refused (a CSV
saved with a byte-order mark, a field over 131,072 characters) are at the end and must succeed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cft.cli.main import main
from conftest import tiny_recipe_yaml, write_triplets_csv

class Paths(dict):
    """Fixture paths by name; `{name}` in a case's argv is replaced by the path."""


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_model_dir) -> Paths:
    root = tmp_path_factory.mktemp("hostile")
    p = Paths(root=str(root))
    csv = write_triplets_csv(root / "t.csv", 40)
    recipe = tiny_recipe_yaml(root / "r.yaml", tiny_model_dir, csv, max_steps=2, batch_size=8)
    assert main(["train", "--config", str(recipe), "--bucket", str(root / "bucket"), "--run-id", "a"]) == 0
    adapter = root / "bucket" / "runs" / "a" / "adapter"
    p.update(csv=str(csv), recipe=str(recipe), model=str(tiny_model_dir), adapter=str(adapter),
             bucket=str(root / "bucket"), file=str(root / "a-file.txt"), dir=str(root / "a-dir"))
    Path(p["file"]).write_text("hello")
    Path(p["dir"]).mkdir()
    (root / "folder.csv").mkdir()

    def write(name: str, content: str | bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content, encoding="utf-8")
        p[name] = str(path)

    rows = "".join(f"a{i},b{i},c{i}\n" for i in range(20))
    write("list.yaml", "- a\n- b\n")
    write("envs-list.yaml", "name: x\nenvs: [A, B]\nrun: echo\n")
    write("pairs.csv", "sent0,sent1\n" + "".join(f"a{i},b{i}\n" for i in range(20)))
    write("bad.yaml", "model: [\n")
    write("deep.yaml", "a: " + "[" * 5000 + "]" * 5000)
    write("binary.yaml", b"\xff\xfe\x00bad")
    write("unbalanced.csv", 'sent0,sent1,hard_neg\n"a,b,c\n' + rows)
    write("latin1.csv", "sent0,sent1,hard_neg\ncaf\xe9,b,c\n".encode("latin-1"))
    write("wrongcols.csv", "x,y,z\n1,2,3\n")
    write("header-only.csv", "sent0,sent1,hard_neg\n")
    write("garbage.jsonl", "{not json\n")
    write("list.jsonl", "[1, 2]\n")
    write("corrupt.parquet", b"PAR1garbagePAR1")
    write("notes.txt", "a,b,c\n")
    write("dev.tsv", "sentence1\tsentence2\tscore\na\tb\t1\nc\td\t2\n")
    write("dev-bad.csv", "sentence1,sentence2,score\na,b,1\nc,d,x\n")
    write("bad.gguf", b"GGUF\x03\x00\x00\x00garbage")
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"sent0": "a", "sent1": "b"}])}).save_to_disk(
        str(root / "saved-dataset"))
    p["saved-dataset"] = str(root / "saved-dataset")
    (root / "empty-model").mkdir()
    p["empty-model"] = str(root / "empty-model")
    truncated = root / "truncated-model"
    shutil.copytree(tiny_model_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    p["truncated-model"] = str(truncated)
    write("sts-bad/sts/stsb-test.tsv", "sentence1\tsentence2\tscore\na\tb\tx\n")
    p["sts-bad"] = str(root / "sts-bad")
    write("sts-binary/sts/stsb-test.tsv", b"sentence1\tsentence2\tscore\n\xff\xfe\x8d\tb\t1\n")
    p["sts-binary"] = str(root / "sts-binary")
    write("ret/retrieval/scifact/qrels/test.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    write("ret/retrieval/scifact/queries.jsonl", '{"_id": "q1", "text": "x"}\n')
    write("ret/retrieval/scifact/corpus.jsonl", b'{"_id": "d1", "text": "\xff\xfe"}\n')
    p["ret"] = str(root / "ret")
    deep_runs = root / "deep-bucket" / "runs" / "r1"
    deep_runs.mkdir(parents=True)
    (deep_runs / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    p["deep-bucket"] = str(root / "deep-bucket")

    metadata = json.loads((adapter / "cft_metadata.json").read_text())
    model = metadata["model"]  # the recipe's ModelConfig (format 2); v1-* cases write the first build's flat format
    damage = {
        "no-adapter-config": lambda d: (d / "adapter_config.json").unlink(),
        "bad-adapter-config": lambda d: (d / "adapter_config.json").write_text("{bad"),
        "list-adapter-config": lambda d: (d / "adapter_config.json").write_text("[]"),
        "no-metadata": lambda d: (d / "cft_metadata.json").unlink(),
        "bad-metadata": lambda d: (d / "cft_metadata.json").write_text("{bad"),
        "list-metadata": lambda d: (d / "cft_metadata.json").write_text("[1]"),
        "pooling-metadata": lambda d: (d / "cft_metadata.json").write_text(
            json.dumps({**metadata, "model": {**model, "pooling": "cls"}})),
        "length-metadata": lambda d: (d / "cft_metadata.json").write_text(
            json.dumps({**metadata, "model": {**model, "max_length": "x"}})),
        "no-base-metadata": lambda d: (d / "cft_metadata.json").write_text(
            json.dumps({**metadata, "model": {k: v for k, v in model.items() if k != "name_or_path"}})),
        "gone-base-metadata": lambda d: (d / "cft_metadata.json").write_text(
            json.dumps({**metadata, "model": {**model, "name_or_path": str(root / "gone-base")}})),
        "v1-length-metadata": lambda d: (d / "cft_metadata.json").write_text(json.dumps(
            {"base_model": model["name_or_path"], "pooling": model["pooling"], "max_length": "x"})),
        "truncated-weights": lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00"),
        "no-weights": lambda d: (d / "adapter_model.safetensors").unlink(),
        "bad-tokenizer": lambda d: (d / "tokenizer.json").write_text("{bad"),
    }
    for name, spoil in damage.items():
        folder = root / "adapters" / name
        shutil.copytree(adapter, folder)
        spoil(folder)
        p[name] = str(folder)
    return p


def _train(*sets: str, config: str = "{recipe}") -> list[str]:
    return ["train", "--config", config, "--bucket", "{root}/out", *[a for s in sets for a in ("--set", s)]]


EVAL = ["eval", "--tasks", "STSBenchmark", "--data-dir", "{sts-bad}", "--no-cache", "--no-progress"]
CHECK = ["check", "--job", str(Path(__file__).resolve().parents[1] / "jobs" / "train.yaml")]
ADAPTER_DAMAGE = {  # damaged adapter -> what the line must name
    "no-adapter-config": "adapter_config.json", "bad-adapter-config": "bad-adapter-config",
    "list-adapter-config": "list-adapter-config", "no-metadata": "cft_metadata.json",
    "bad-metadata": "cft_metadata.json", "list-metadata": "cft_metadata.json",
    "pooling-metadata": "cft_metadata.json: model.pooling", "length-metadata": "cft_metadata.json: model.max_length",
    "no-base-metadata": "model.name_or_path", "gone-base-metadata": "gone-base: no such model folder",
    "v1-length-metadata": "cft_metadata.json: max_length",
    "truncated-weights": "truncated-weights", "no-weights": "adapter_model.safetensors",
    "bad-tokenizer": "tokenizer",
}

DATA_CASES = [  # (case, triplet file, what the line must name)
    ("data-missing", "{root}/nope.csv", "nope.csv"), ("data-folder", "{root}/folder.csv", "folder.csv: is a folder"),
    ("unbalanced-quote", "{unbalanced.csv}", "unbalanced.csv:2: a quoted field"),
    ("latin1", "{latin1.csv}", "latin1.csv:2: not valid UTF-8"), ("wrong-columns", "{wrongcols.csv}", "missing column"),
    ("header-only", "{header-only.csv}", "header-only.csv"), ("bad-jsonl", "{garbage.jsonl}", "garbage.jsonl:1"),
    ("list-jsonl", "{list.jsonl}", "list.jsonl:1"), ("corrupt-parquet", "{corrupt.parquet}", "corrupt.parquet"),
    ("unknown-type", "{notes.txt}", "notes.txt"),
]

CASES: list[tuple[str, list[str], str]] = [
    # recipe files and --set
    ("recipe-missing", _train(config="{root}/nope.yaml"), "nope.yaml"),
    ("recipe-folder", _train(config="{dir}"), "a-dir: is a folder"),
    ("recipe-binary", _train(config="{binary.yaml}"), "binary.yaml"),
    ("recipe-list", _train(config="{list.yaml}"), "list.yaml"),
    ("recipe-bad-yaml", _train(config="{bad.yaml}"), "bad.yaml"),
    ("recipe-deep-yaml", _train(config="{deep.yaml}"), "deep.yaml: nested too deeply"),
    ("set-no-equals", _train("train.lr"), "train.lr"),
    ("set-unknown-section", _train("foo.bar=1"), "foo.bar"),
    ("set-unknown-key", _train("train.lr=1"), "train.lr"),
    ("set-name-empty", _train("name="), "name must be"),  # name=[1,2] is the text "[1,2]": --set keeps a text field text
    ("warmup-negative", _train("train.warmup_steps=-1"), "train.warmup_steps"),
    ("logging-steps-0", _train("train.logging_steps=0"), "train.logging_steps"),
    ("workers-negative", _train("train.dataloader_workers=-1"), "train.dataloader_workers"),
    ("epochs-0", _train("train.max_steps=-1", "train.num_epochs=0"), "train.num_epochs"),
    ("epochs-nan", _train("train.max_steps=-1", "train.num_epochs=.nan"), "train.num_epochs"),
    ("max-steps-0", _train("train.max_steps=0"), "train.max_steps"),
    ("lora-alpha-0", _train("lora.alpha=0"), "lora.alpha"),
    ("lora-r-0", _train("lora.r=0"), "lora.r"),
    ("lora-dropout-nan", _train("lora.dropout=.nan"), "lora.dropout"),
    ("lora-target-missing", _train("lora.target_modules=nonexistent"), "lora.target_modules"),
    ("lr-nan", _train("train.learning_rate=.nan"), "train.learning_rate"),
    ("lr-inf", _train("train.learning_rate=.inf"), "train.learning_rate"),
    ("temperature-inf", _train("train.temperature=.inf"), "train.temperature"),
    ("weight-decay-negative", _train("train.weight_decay=-1"), "train.weight_decay"),
    ("grad-norm-nan", _train("train.max_grad_norm=.nan"), "train.max_grad_norm"),
    ("save-limit-0", _train("train.save_total_limit=0"), "train.save_total_limit"),
    ("seed-negative", _train("train.seed=-1"), "train.seed"),
    ("seed-huge", _train("train.seed=99999999999"), "train.seed"),
    ("chunk-negative", _train("train.grad_cache_chunk_size=-1"), "train.grad_cache_chunk_size"),
    ("chunk-word", _train("train.grad_cache_chunk_size=lots"), "train.grad_cache_chunk_size"),
    ("template-twice", _train("model.prompt_template={} {}"), "model.prompt_template"),
    ("query-template-twice", _train("model.query_template={} {}"), "model.query_template"),
    ("template-and-role-template", _train("model.prompt_template=a {}", "model.document_template=d {}"),
     "model.prompt_template sets the template of both roles"),
    ("matryoshka-wider-than-model", _train("loss.matryoshka_dims=[64, 8]"), "loss.matryoshka_dims [64, 8]: 64 is larger"),
    ("matryoshka-weights-short", _train("loss.matryoshka_dims=[16, 8]", "loss.matryoshka_weights=[1]"),
     "loss.matryoshka_weights"),
    ("data-split-missing", _train("data.train_file={saved-dataset}", "data.split=test"), "no split 'test'"),
    ("attention-unknown", _train("model.attn_implementation=bogus"), "model.attn_implementation"),
    ("attention-absent", _train("model.attn_implementation=flash_attention_2"), "flash_attention_2"),
    ("bf16-on-cpu", _train("train.bf16=true"), "train.bf16"),
    ("batch-larger-than-data", _train("train.batch_size=1000"), "train.batch_size"),
    ("batch-1-pairs-only", _train("train.batch_size=1", "data.train_file={pairs.csv}", "data.negative_column=null"),
     "train.batch_size=1 on pairs"),
    ("model-missing-path", _train("model.name_or_path={root}/no-model"), "no-model: no such model folder"),
    ("model-empty-folder", _train("model.name_or_path={empty-model}"), "empty-model: no config.json"),
    ("model-truncated", _train("model.name_or_path={truncated-model}"), "truncated-model"),
    ("model-corrupt-gguf", _train("model.name_or_path={bad.gguf}"), "bad.gguf"),
    ("model-is-a-file", _train("model.name_or_path={file}"), "a-file.txt: is a file"),
    ("gguf-file-missing", _train("model.gguf_file=nope.gguf"), "model.gguf_file nope.gguf"),
    # evaluation during training: settings refused when the recipe loads, dev files before the model loads
    ("keep-best-without-dev-set", _train("train.keep_best=true"), "train.keep_best is set"),
    ("patience-0", _train("train.eval_data={dev.tsv}", "train.early_stopping_patience=0"),
     "train.early_stopping_patience"),
    ("eval-data-not-sts", _train("train.eval_data={notes.txt}"), "notes.txt' is not an STS file"),
    ("eval-data-missing", _train("train.eval_data={root}/nope.tsv"), "nope.tsv: file not found"),
    ("eval-data-bad-score", _train("train.eval_data={dev-bad.csv}"), "dev-bad.csv:3: score 'x'"),
    ("eval-data-not-sts-task", _train("train.eval_data=SciFact"), "SciFact is a Retrieval task"),
    # data files, through train and prepare alike
    *[case for name, data, needle in DATA_CASES for case in (
        (f"train-{name}", _train(f"data.train_file={data}"), needle), (f"prepare-{name}", ["prepare", data], needle))],
    ("prepare-columns-no-equals", ["prepare", "{csv}", "--columns", "sent0"], "--columns"),
    ("prepare-columns-unknown", ["prepare", "{csv}", "--columns", "foo=bar"], "--columns"),
    ("prepare-columns-empty-anchor", ["prepare", "{csv}", "--columns", "sent0=,sent1=b"], "sent0= needs a column"),
    ("prepare-output-folder", ["prepare", "{csv}", "--out", "{dir}"], "a-dir"),
    ("prepare-out-unknown-extension", ["prepare", "{csv}", "--out", "{root}/out.txt"], "out.txt"),
    ("prepare-output-under-file", ["prepare", "{csv}", "--out", "{file}/x.jsonl"], "a-file.txt"),
    ("prepare-limit-word", ["prepare", "{csv}", "--limit", "x"], "--limit"),
    # outputs and buckets
    ("train-output-is-file", ["train", "--config", "{recipe}", "--bucket", "{file}"], "a-file.txt"),
    ("train-output-under-file", ["train", "--config", "{recipe}", "--bucket", "{file}/sub"], "a-file.txt"),
    ("train-bad-bucket-name", ["train", "--config", "{recipe}", "--bucket", "s3://Bad_Bucket!!/x"], "Bad_Bucket!!"),
    ("train-empty-s3", ["train", "--config", "{recipe}", "--bucket", "s3://"], "s3://"),
    ("train-gs", ["train", "--config", "{recipe}", "--bucket", "gs://b/x"], "gs://b/x"),
    ("train-no-config", ["train"], "--config"),
    ("train-empty-config", ["train", "--config", ""], "--config is empty"),
    # eval
    ("eval-adapter-missing", ["eval", "--adapter", "{root}/nope"], "nope"),
    ("eval-adapter-is-file", ["eval", "--adapter", "{file}"], "a-file.txt: is a file"),
    ("eval-adapter-empty", ["eval", "--adapter", "{dir}"], "cft_metadata.json"),
    *[(f"eval-{name}", [*EVAL, "--adapter", "{" + name + "}"], needle) for name, needle in ADAPTER_DAMAGE.items()],
    ("eval-device-unknown", [*EVAL, "--adapter", "{adapter}", "--device", "tpu9"], "--device tpu9"),
    ("eval-device-cuda-absent", [*EVAL, "--adapter", "{adapter}", "--device", "cuda:7"], "--device cuda:7"),
    ("eval-task-unknown", [*EVAL, "--adapter", "{adapter}", "--tasks", "NoSuchTask"], "NoSuchTask"),
    ("eval-tasks-empty", [*EVAL, "--adapter", "{adapter}", "--tasks", ",,"], "--tasks"),
    ("eval-data-dir-missing", ["eval", "--adapter", "{adapter}", "--data-dir", "{root}/nope"], "--data-dir"),
    ("eval-data-dir-file", ["eval", "--adapter", "{adapter}", "--data-dir", "{file}"], "a-file.txt: is a file"),
    ("eval-bad-sts-file", [*EVAL, "--adapter", "{adapter}"], "stsb-test.tsv:2"),
    ("eval-binary-sts-file", ["eval", "--model", "{model}", "--tasks", "STSBenchmark", "--data-dir", "{sts-binary}",
                              "--no-cache"], "stsb-test.tsv: not valid UTF-8"),
    ("eval-binary-corpus", ["eval", "--model", "{model}", "--tasks", "SciFact", "--data-dir", "{ret}", "--no-cache"],
     "corpus.jsonl: not valid UTF-8"),
    ("eval-model-missing", [*EVAL, "--model", "{root}/no-model"], "no-model: no such model folder"),
    ("eval-model-truncated", [*EVAL, "--model", "{truncated-model}"], "truncated-model"),
    ("eval-st-model-missing", [*EVAL, "--st-model", "{root}/nope"], "--st-model"),
    ("eval-st-model-is-causal-lm", ["eval", "--st-model", "{model}", "--tasks", "STSBenchmark", "--data-dir",
                                    "{sts-binary}"], "--st-model"),
    ("eval-batch-0", [*EVAL, "--adapter", "{adapter}", "--encode-batch-size", "0"], "--encode-batch-size"),
    ("eval-dim-0", [*EVAL, "--adapter", "{adapter}", "--dim", "0"], "--dim must be >= 1"),
    ("eval-prompt-no-slot", [*EVAL, "--adapter", "{adapter}", "--prompt", "hello"], "--prompt"),
    ("eval-compare-bogus", [*EVAL, "--adapter", "{adapter}", "--compare", "a,b"], "--compare"),
    ("eval-output-is-file", [*EVAL, "--adapter", "{adapter}", "--out", "{file}"], "a-file.txt is a file"),
    ("eval-output-under-file", [*EVAL, "--adapter", "{adapter}", "--out", "{file}/x"], "a-file.txt is a file"),
    ("eval-nothing", ["eval"], "--adapter"),
    ("eval-output-bad-bucket", [*EVAL, "--adapter", "{adapter}", "--out", "s3://Bad_Bucket!!/x"], "Bad_Bucket!!"),
    ("eval-adapter-bad-bucket", ["eval", "--adapter", "s3://Bad_Bucket!!/x"], "Bad_Bucket!!"),
    # export
    ("export-adapter-missing", ["export", "--adapter", "{root}/nope", "--out", "{root}/e"], "nope"),
    ("export-adapter-is-file", ["export", "--adapter", "{file}", "--out", "{root}/e"], "a-file.txt: is a file"),
    ("export-output-is-file", ["export", "--adapter", "{adapter}", "--out", "{file}"], "a-file.txt"),
    ("export-output-is-adapter", ["export", "--adapter", "{adapter}", "--out", "{adapter}"], "holds the adapter"),
    ("export-inside-adapter", ["export", "--adapter", "{adapter}", "--out", "{adapter}/out"], "inside the adapter"),
    ("export-output-under-file", ["export", "--adapter", "{adapter}", "--out", "{file}/x"], "a-file.txt"),
    ("export-dim-with-hf", ["export", "--adapter", "{adapter}", "--out", "{root}/e", "--format", "hf", "--dim", "8"],
     "truncate_dim is a sentence-transformers setting"),
    ("export-device-unknown", ["export", "--adapter", "{adapter}", "--out", "{root}/e", "--device", "tpu9"],
     "--device tpu9"),
    ("export-device-cuda-absent", ["export", "--adapter", "{adapter}", "--out", "{root}/e", "--device", "cuda:7"],
     "--device cuda:7"),
    *[(f"export-{name}", ["export", "--adapter", "{" + name + "}", "--out", "{root}/e-" + name], needle)
      for name, needle in ADAPTER_DAMAGE.items()],
    # runs
    ("runs-missing-root", ["runs", "{root}/nope"], "nope: no such folder"),
    ("runs-root-is-file", ["runs", "{file}"], "a-file.txt: is a file"),
    ("runs-show-missing", ["runs", "show", "zzz", "{bucket}"], "zzz"),
    ("runs-show-not-an-id", ["runs", "show", "../..", "{bucket}"], "../.."),
    ("runs-bad-bucket-name", ["runs", "s3://Bad_Bucket!!"], "Bad_Bucket!!"),
    ("runs-unsupported", ["runs", "gs://x"], "gs://x"),
    ("runs-too-many", ["runs", "a", "b", "c"], "BUCKET_ROOT"),
    # demo
    ("demo-steps-0", ["demo", "--steps", "0"], "--steps"),
    ("demo-batch-1", ["demo", "--batch-size", "1"], "--batch-size"),
    ("demo-model-missing", ["demo", "--model", "{root}/no-model", "--bucket", "{root}/d"], "no-model"),
    ("demo-output-is-file", ["demo", "--model", "{model}", "--bucket", "{file}", "--steps", "1", "--batch-size", "4"],
     "a-file.txt"),
    # check
    ("check-job-missing", ["check", "--job", "{root}/nope.yaml"], "--job"),
    ("check-job-bad-yaml", ["check", "--job", "{bad.yaml}"], "bad.yaml: not valid YAML"),
    ("check-job-a-list", ["check", "--job", "{list.yaml}"], "list.yaml: not a SkyPilot task YAML"),
    ("check-job-deep", ["check", "--job", "{deep.yaml}"], "nested too deeply"),
    ("check-job-binary", ["check", "--job", "{binary.yaml}"], "binary.yaml: cannot read"),
    ("check-job-envs-a-list", ["check", "--job", "{envs-list.yaml}"], "`envs` must be a mapping"),
    ("check-secrets-missing", [*CHECK, "--secrets", "{root}/nope.env"], "nope.env: file not found"),
    ("check-secrets-is-dir", [*CHECK, "--secrets", "{dir}"], "a-dir: is a folder"),
    ("check-env-malformed", [*CHECK, "--env", "=x"], "--env =x"),
    ("check-skip-unknown", [*CHECK, "--skip", "gpu"], "--skip"),
    ("check-overrides-unbalanced", [*CHECK, "--env", "OVERRIDES='a"], "OVERRIDES"),
    # usage
    ("unknown-command", ["trian"], "trian"),
    ("unknown-flag", ["runs", "--colour"], "--colour"),
]


def _fill(argv: list[str], paths: Paths) -> list[str]:
    out = []
    for arg in argv:
        for name, value in sorted(paths.items(), key=lambda item: -len(item[0])):
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


@pytest.mark.parametrize(("argv", "needle"), [pytest.param(a, n, id=i) for i, a, n in CASES])
def test_bad_input_is_one_line_and_exit_2(paths, argv, needle, capsys, monkeypatch):
    monkeypatch.delenv("CFT_DEBUG", raising=False)
    monkeypatch.delenv("BUCKET", raising=False)
    code = main(_fill(argv, paths))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("cft: error:")]
    assert "Traceback" not in err, err
    assert code == 2, err
    assert len(errors) == 1, err
    assert needle in errors[0], errors[0]


def test_deeply_nested_manifest_is_listed_as_corrupt(paths, capsys):
    assert main(["runs", paths["deep-bucket"]]) == 0
    assert "corrupt" in capsys.readouterr().out
    assert main(["runs", "show", "r1", paths["deep-bucket"]]) == 0


@pytest.mark.parametrize("argv", [["run", "--log-dir", "{file}", "--", "true"], ["send", "hi", "--priority", "9"],
                                  ["run"], ["bogus"], ["run", "--no-tmux", "--", "true"],
                                  ["run", "--on-hangup", "later", "--", "true"]],
                         ids=["log-dir-is-file", "priority", "no-command", "unknown", "no-tmux-alone", "on-hangup"])
def test_notify_bad_input_is_one_line_and_exit_2(paths, argv, capsys):
    from notify.__main__ import main as notify_main

    with pytest.raises(SystemExit) as exit:
        notify_main(_fill(argv, paths))
    err = capsys.readouterr().err
    assert exit.value.code == 2 and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err


def test_unexpected_errors_are_one_line_too(paths, capsys, monkeypatch):
    """A bug is not bad input: exit 1 and one line that asks for CFT_DEBUG=1, which shows the traceback."""
    import cft.cli.prepare as prepare

    monkeypatch.setattr(prepare, "parse_columns", lambda text: {}["boom"])
    assert main(["prepare", paths["csv"]]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("cft: error: unexpected KeyError") and "CFT_DEBUG=1" in line
    monkeypatch.setenv("CFT_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["prepare", paths["csv"]])


@pytest.mark.parametrize(("name", "content", "kept"), [
    ("bom.csv", "\ufeffsent0,sent1,hard_neg\n" + "".join(f"a{i},b{i},c{i}\n" for i in range(5)), 5),
    ("bom.tsv", "\ufeffsent0\tsent1\thard_neg\n" + "".join(f"a{i}\tb{i}\tc{i}\n" for i in range(5)), 5),
    ("bom.jsonl", "\ufeff" + "".join(json.dumps({"sent0": f"a{i}", "sent1": "b", "hard_neg": "c"}) + "\n"
                                     for i in range(5)), 5),
    ("long-field.csv", "sent0,sent1,hard_neg\n" + "x" * 200_000 + ",b,c\na,b,c\n", 2),
])
def test_valid_input_once_refused_is_accepted(tmp_path, capsys, name, content, kept):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert main(["prepare", str(path), "--out", str(tmp_path / "out.jsonl")]) == 0, capsys.readouterr().err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == kept


def test_bom_in_a_local_sts_file_is_read(tmp_path):
    from cft.evaluation.local_tasks import read_sts_tsv

    path = tmp_path / "stsb-test.tsv"
    path.write_text("\ufeffsentence1\tsentence2\tscore\na\tb\t1.5\nc\td\t2\n", encoding="utf-8")
    assert read_sts_tsv(path)["sentence1"] == ["a", "c"]
