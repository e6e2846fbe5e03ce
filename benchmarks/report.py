"""Markdown for the benchmarks' JSON results, and the command that puts it into BENCHMARKS.md.

    python benchmarks/report.py results/train.json                        # print the tables
    python benchmarks/report.py results/train.json --into BENCHMARKS.md   # replace its <!-- BEGIN train --> section
    python benchmarks/report.py --headline train.json eval.json tune.json  # summary lines for the README

A section of BENCHMARKS.md lies between `<!-- BEGIN name -->` and `<!-- END name -->`; its name is the result's
kind (train, train-max-batch, eval, quality), with `-smoke` for a smoke run, unless --section says otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

SMOKE_NOTE = ("**Smoke run (CPU, tiny model): these numbers only show that every code path runs. They say nothing "
              "about speed on a GPU.**")


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def rate(flops_per_s: float) -> str:
    if flops_per_s >= 1e12:
        return f"{flops_per_s / 1e12:,.1f} TFLOP/s"
    return f"{flops_per_s / 1e9:,.1f} GFLOP/s"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def environment_lines(result: dict[str, Any]) -> list[str]:
    env = result["environment"]
    threads = env.get("torch_threads")
    device = env.get("gpu") or f"CPU ({env.get('cpu')}, {threads} thread{'' if threads == 1 else 's'})"
    if env.get("gpu_memory_gib"):
        device += f", {env['gpu_memory_gib']} GiB"
    lines = [f"- device: {device}"]
    if result.get("matmul_peak"):
        peak = result["matmul_peak"]
        lines.append(f"- measured matmul rate (the MFU denominator): {rate(peak['flops_per_s'])}, {peak['what']}")
    lines.append(f"- torch {env['torch']}, transformers {env['transformers']}, peft {env['peft']}, "
                 f"python {env['python']}" + (f", CUDA {env['cuda']}" if env.get("cuda") else ""))
    lines.append(f"- date {env['date']}, git {env.get('git_sha') or 'unknown'}")
    lines.append(f"- command: `{env['command']}`")
    if result.get("wall_s") is not None:
        lines.append(f"- wall time of the whole run: {result['wall_s']} s")
    return lines


def run_line(row: dict[str, Any]) -> str:
    """One line per finished run, for the console."""
    if row["status"] != "ok":
        return f"{row['size']} {row['mode']} batch {row['batch']}: {row['status']}"
    memory = f", peak {row['peak_memory_gib']} GiB" if row.get("peak_memory_gib") is not None else ""
    return (f"{row['size']} {row['mode']} batch {row['batch']}: {row['triplets_per_s']:.1f} triplets/s, "
            f"{row['real_tokens_per_s']:.0f} real tokens/s, MFU {_pct(row['mfu'])}{memory}")


def render_train(result: dict[str, Any]) -> str:
    parts = []
    if result.get("smoke"):
        parts.append(SMOKE_NOTE)
    if result.get("partial"):
        parts.append("**Partial: the run was stopped at its time limit; what is not listed was not measured.**")
    parts.append("\n".join(environment_lines(result)))
    if result.get("memory_limit_gib"):
        parts.append(f"GPU memory capped at {result['memory_limit_gib']:g} GiB (as on an 80 GB card).")
    data = result.get("data", {})
    if data:
        parts.append(f"Data: {data['file']}, {data['triplets']:,} triplets, {data['sentences']:,} sentences of "
                     f"{data['mean_tokens']} tokens on average (median {data['median_tokens']}, p99 "
                     f"{data['p99_tokens']}, max {data['max_tokens']}); tokenizer: {data['tokenizer']}. "
                     f"Weights: {result['settings']['dtype']}.")
    runs = result.get("runs") or []
    if runs:
        rows = []
        for r in runs:
            mode = r["mode"] + (f" (chunk {r['chunk_rows']})" if r.get("chunk_rows") else "")
            if r["status"] != "ok":
                rows.append([r["size"], mode, str(r["batch"]), r["lora"], r["status"], "–", "–",
                             _num(r.get("peak_memory_gib"), 2), "–", "–", "–"])
                continue
            rows.append([r["size"], mode, str(r["batch"]), r["lora"], _num(r["triplets_per_s"]),
                         _num(r["real_tokens_per_s"], 0), _num(r.get("padding_ratio"), 2),
                         _num(r.get("peak_memory_gib"), 2), _pct(r["mfu"]), _pct(r.get("hfu")), _num(r["step_ms"])])
        parts.append(table(["model", "mode", "batch", "LoRA", "triplets/s", "real tokens/s", "padded/real",
                            "peak GPU GiB", "MFU", "HFU", "ms/step"], rows, "llrlrrrrrrr"))
    found = result.get("ratios") or []
    if found:
        rows = [[f["size"], f"{f['mode']} @ {f['batch']}", f"reference @ {f['reference_batch']}", f"{f['ratio']:.2f}x"]
                for f in found]
        parts.append("Speed-up in triplets/s over the published approach (same run, same batches):\n\n"
                     + table(["model", "cft mode", "against", "ratio"], rows, "lllr"))
    maxes = result.get("max_batch") or []
    if maxes:
        limit = result.get("memory_limit_gib")
        rows = []
        for m in maxes:
            best = m.get("at_largest") or {}
            limited = {"memory": f"out of memory at {m['smallest_failing']}", "cap": f"cap ({m['cap']})",
                       "time": "step time limit"}[m["limited_by"]]
            rows.append([m["size"], m["mode"] + (f" (chunk {m['chunk_rows']})" if m.get("chunk_rows") else ""),
                         m["lora"], _num(m["largest_fit"]), limited, _num(best.get("triplets_per_s")),
                         _num(best.get("peak_reserved_gib"), 2),
                         ", ".join(f"{t['batch']}{'' if t['fits'] else ' ✗'}" for t in m["tried"])])
        note = f" (allocator capped at {limit} GiB to stand for an 80 GB H100)" if limit else ""
        parts.append(f"Largest batch that fits{note}, each trial on the worst-case batch (the longest triplets of "
                     "the data), two steps:\n\n" + table(
                         ["model", "mode", "LoRA", "largest batch", "stopped by", "triplets/s there",
                          "peak reserved GiB", "batches tried (✗ = out of memory)"], rows, "lllrlrrl"))
    return "\n\n".join(parts) + "\n"


def render_eval(result: dict[str, Any]) -> str:
    parts = [SMOKE_NOTE] if result.get("smoke") else []
    parts.append("\n".join(environment_lines(result)))
    rows = []
    for r in result.get("models", []):
        rows.append([r["model"], _num(r["sentences"], 0), f"{r['batch_size']}", _num(r["batched_per_s"], 0),
                     _num(r["single_per_s"], 1), f"{r['speedup']:.1f}x",
                     _num(r.get("reference_single_per_s"), 1),
                     f"{r['speedup_vs_reference']:.1f}x" if r.get("speedup_vs_reference") else "–",
                     _num(r.get("peak_memory_gib"), 2), f"{r['min_cosine_batched_vs_single']:.4f}"])
    if rows:
        parts.append(f"Sentences: {result['sentences']}; the one-at-a-time columns use the first "
                     f"{result['models'][0]['single_sentences']:,}.\n\n" + table(
                         ["model", "sentences", "batch", "batched sentences/s", "one at a time /s", "speed-up",
                          "published one at a time /s", "speed-up vs published", "peak GPU GiB",
                          "min cosine batched vs single"], rows, "lrrrrrrrrr"))
    sts = result.get("sts_eval") or []
    if sts:
        rows = [[s["model"], s["status"], _num(s.get("wall_s")), _num(s.get("encode_s")),
                 _num(s.get("texts_encoded"), 0), _num(s.get("mean"), 2)] for s in sts]
        parts.append(f"Local STS tasks {sts[0]['tasks']} through `cft eval` (a fresh process: the wall time includes "
                     f"imports, model loading, mteb and scoring), e.g. `{sts[0]['command']}`:\n\n"
                     + table(["model", "status", "wall s", "encode s", "texts", "mean Spearman x100"], rows, "llrrrr"))
    return "\n\n".join(parts) + "\n"


def render_quality(result: dict[str, Any]) -> str:
    parts = []
    if result.get("reduced"):
        parts.append("**Reduced-budget run (few steps or triplets, a subset of tasks): it checks the pipeline; the "
                     "scores are not the quality of a trained model.**")
    parts.append("\n".join(environment_lines(result)))
    columns = result["columns"]  # [(key, label)]
    tasks = result["tasks"]
    rows = []
    for task in tasks:
        cells = []
        for key, _ in columns:
            value = ((result["scores"].get(key) or {}).get("tasks") or {}).get(task)
            cells.append(_num(value, 2) if value is not None else "–")
        rows.append([task, *cells])
    means = []
    for key, _ in columns:  # over the tasks of this table, so every column averages the same tasks
        values = [((result["scores"].get(key) or {}).get("tasks") or {}).get(task) for task in tasks]
        means.append(f"**{sum(values) / len(values):.2f}**" if values and None not in values else "–")
    rows.append([f"**mean of {len(tasks)}**", *means])
    parts.append(table(["task", *[label for _, label in columns]], rows, "l" + "r" * len(columns)))
    retrieval = result.get("retrieval") or {}
    if retrieval.get("tasks"):
        rows = [[task, *(_num(((retrieval["scores"].get(key) or {}).get("tasks") or {}).get(task), 2)
                         for key, _ in columns)] for task in retrieval["tasks"]]
        parts.append("Retrieval (main score nDCG@10 x100, local BEIR files):\n\n"
                     + table(["task", *[label for _, label in columns]], rows, "l" + "r" * len(columns)))
    if result.get("tuning"):
        tuning = result["tuning"]
        rows = [[f"{t['learning_rate']:g}", f"{t['num_epochs']:g}", _num(t.get("stsb_dev"), 2), _num(t.get("train_s"))]
                for t in tuning["trials"]]
        best = tuning["best"]
        parts.append(f"Hyperparameters chosen on stsb-dev only (Spearman x100 of cosine similarity over its "
                     f"{tuning.get('pairs', '?')} pairs); chosen: learning rate {best['learning_rate']:g}, "
                     f"{best['num_epochs']:g} epochs.\n\n" + table(["learning rate", "epochs", "stsb-dev", "train s"],
                                                                     rows, "rrrr"))
    timing = [f"{label} {result[key]} s" for key, label in (("train_s", "training"), ("eval_s", "cft eval before+after"),
                                                              ("minilm_eval_s", "MiniLM eval")) if result.get(key)]
    notes = list(result.get("notes") or []) + (["times: " + ", ".join(timing)] if timing else [])
    if notes:
        parts.append("\n".join(f"- {note}" for note in notes))
    return "\n\n".join(parts) + "\n"


def render(result: dict[str, Any]) -> str:
    kind = result.get("kind")
    if kind == "train":
        return render_train(result)
    if kind == "eval":
        return render_eval(result)
    if kind == "quality":
        return render_quality(result)
    raise ValueError(f"unknown result kind {kind!r} (train, eval, quality)")


def render_headline(results: list[dict[str, Any]]) -> str:
    """A few lines for the README: the ratios and scores the issue asks for, from any of the results given."""
    lines = []
    for result in results:
        gpu = result["environment"].get("gpu") or "CPU"
        date = result["environment"]["date"][:10]
        if result["kind"] == "train":
            for ratio in result.get("ratios") or []:
                if ratio["mode"] in ("cft", "gradcache", "trainer") and (
                        ratio["reference_batch"] == ratio["batch"] or ratio["mode"] == "gradcache"):
                    lines.append(f"- {ratio['size']}: {ratio['mode']} at batch {ratio['batch']} trains "
                                 f"**{ratio['ratio']:.1f}x** the published approach's triplets/s at batch "
                                 f"{ratio['reference_batch']} ({gpu}, {date})")
            for run in result.get("runs") or []:
                if run["status"] == "ok" and run["mode"] in ("cft", "gradcache") and run["size"] == "minicpm-2b":
                    lines.append(f"- minicpm-2b-sized, {run['mode']} at batch {run['batch']}: "
                                 f"{run['triplets_per_s']:.1f} triplets/s, MFU {_pct(run['mfu'])}, "
                                 f"{_num(run['peak_memory_gib'], 1)} GiB ({gpu}, {date})")
            for found in result.get("max_batch") or []:
                lines.append(f"- {found['size']}, {found['mode']}: largest batch that fits on 80 GB: "
                             f"**{found['largest_fit']}** ({gpu}, {date})")
        elif result["kind"] == "eval":
            for row in result.get("models") or []:
                lines.append(f"- evaluation, {row['model']}: {row['batched_per_s']:,.0f} sentences/s, "
                             f"**{row['speedup']:.0f}x** one sentence at a time ({gpu}, {date})")
            for sts in result.get("sts_eval") or []:
                if sts["status"] == "ok":
                    lines.append(f"- {len(sts['tasks'].split(','))} STS tasks through `cft eval`, {sts['model']}: "
                                 f"{sts['wall_s']:.0f} s ({gpu}, {date})")
        elif result["kind"] == "quality":
            scores = result["scores"]
            tasks = result["tasks"]

            def mean(key: str) -> str:
                values = [((scores.get(key) or {}).get("tasks") or {}).get(t) for t in tasks]
                return f"{sum(values) / len(values):.1f}" if values and None not in values else "–"
            lines.append(f"- SmolLM2-135M, mean of {len(tasks)} STS tasks: {mean('base')} before, "
                         f"**{mean('adapter')}** after cft (all-MiniLM-L6-v2: {mean('minilm')}) ({gpu}, {date})")
    return "\n".join(lines) + "\n"


def section_name(result: dict[str, Any]) -> str:
    name = result.get("section") or result["kind"]
    if name == "train" and result.get("max_batch") and not result.get("runs"):
        name = "train-max-batch"
    return name + ("-smoke" if result.get("smoke") else "") + ("-reduced" if result.get("reduced") else "")


def replace_section(text: str, name: str, content: str) -> str:
    """Replaces what lies between `<!-- BEGIN name -->` and `<!-- END name -->` (both kept)."""
    pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)} -->\n)(.*?)(<!-- END {re.escape(name)} -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"no section <!-- BEGIN {name} --> ... <!-- END {name} --> in the file")
    return pattern.sub(lambda m: m.group(1) + content.rstrip("\n") + "\n" + m.group(3), text, count=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSON files written by bench_train.py, bench_eval.py or "
                                                    "quality_run.py (several only with --headline)")
    parser.add_argument("--into", metavar="MARKDOWN", help="replace the result's section of this file")
    parser.add_argument("--section", help="section name (default: from the result; 'headline' with --headline)")
    parser.add_argument("--headline", action="store_true", help="a few summary lines from all the results")
    args = parser.parse_args(argv)
    results = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.results]
    if args.headline:
        markdown, name = render_headline(results), args.section or "headline"
    elif len(results) == 1:
        markdown, name = render(results[0]), args.section or section_name(results[0])
    else:
        raise SystemExit("give one result, or several with --headline")
    if not args.into:
        print(markdown)
        return
    path = Path(args.into)
    path.write_text(replace_section(path.read_text(encoding="utf-8"), name, markdown), encoding="utf-8")
    print(f"updated section {name} of {path}")


if __name__ == "__main__":
    main()


def save(result: dict[str, Any], out: Path, stem: str) -> str:
    """Writes `<stem>.json` and `<stem>.md` into `out`, prints the tables, and returns the Markdown."""
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    markdown = render(result)
    (out / f"{stem}.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return markdown
