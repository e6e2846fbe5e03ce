"""`cft eval`: MTEB scores of a base model, an adapter, or both side by side."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from cft.cli.options import add_deprecated, add_out

EXAMPLES = """examples:
  cft eval --adapter cft-runs/runs/<run_id>/adapter --tasks sts
  cft eval --adapter s3://bucket/cft/runs/<run_id>/adapter --tasks retrieval
  cft eval --adapter ... --tasks sts --data-dir data --compare base,adapter
  cft eval --model openbmb/MiniCPM-2B-dpo-bf16 --tasks STS12,STSBenchmark,SICK-R
  cft eval --model embedded:smollm2-135m --data-dir data
  cft eval --st-model path/to/all-MiniLM-L6-v2 --tasks BIOSSES --data-dir data

tasks: "sts" (STS12-16, STS17 en-en, STSBenchmark, BIOSSES, SICK-R), "retrieval" (SciFact, NFCorpus, ArguAna,
FiQA2018, SCIDOCS, TRECCOVID), or MTEB task names separated by commas (a subset in brackets: STS17[en-en]).
--data-dir DIR reads local files instead of the hub: DIR/sts/<task>.tsv (sentence1, sentence2, score; tab-separated)
and DIR/retrieval/<task>/{corpus,queries}.jsonl with qrels/test.tsv; suite tasks without a local file are skipped
and listed. Results: summary.md, summary.json, mteb's JSON per task, and compare.png with --compare;
by default in the run's eval/ folder next to the adapter."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="MTEB evaluation (STS, retrieval) of a model or adapter",
        description="Evaluates a base model, an adapter, or both on MTEB tasks through the mteb package.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--adapter", metavar="URI", help="adapter folder or s3:// URI saved by cft train")
    source.add_argument("--model", metavar="ID_OR_PATH", help="base model: hub id, local folder, .gguf file, or embedded:smollm2-135m")
    source.add_argument("--st-model", metavar="FOLDER", help="a sentence-transformers model folder (baseline)")
    parser.add_argument("--gguf-file", metavar="F", help="GGUF file name inside --model's folder or repo")
    parser.add_argument("--pooling", choices=("last_token", "mean"), default=None,
                        help="pooling for --model (default last_token; an adapter uses its own)")
    parser.add_argument("--max-length", type=int, default=None, help="max tokens per text for --model (default 128)")
    parser.add_argument("--tasks", default="sts", help="suite (sts, retrieval) or comma-separated MTEB task names (default: sts)")
    parser.add_argument("--data-dir", metavar="DIR", help="read tasks from local files in DIR (sts/*.tsv, retrieval/<task>/; see below) instead of the hub")
    parser.add_argument("--compare", metavar="base,adapter",
                        help="with --adapter: evaluate the base model without the adapter too, in this column order")
    add_out(parser, metavar="DIR",
            help="folder for the results, or an s3:// URI (default: <run>/eval next to the adapter, "
                 "else ./cft-eval/<model>)")
    parser.add_argument("--encode-batch-size", type=int, default=64, metavar="N",
                        help="texts per forward pass (default 64)")
    add_deprecated(parser, "--batch-size", new="--encode-batch-size", dest="encode_batch_size", type=int, metavar="N")
    parser.add_argument("--prompt", metavar="TEMPLATE",
                        help='prompt template with one {} for every text, queries and documents alike, e.g. '
                             '\'This sentence : "{}" means in one word:"\' (default: the adapter\'s own query and '
                             "document templates, STS taking the query one; '' for none)")
    parser.add_argument("--query-instruction", metavar="TEXT",
                        help='retrieval: put before each query (or a template with {}); "mteb" = the task\'s own instruction')
    parser.add_argument("--document-instruction", metavar="TEXT", help="retrieval: put before each document")
    parser.add_argument("--dim", type=int, default=None, metavar="N",
                        help="evaluate the first N dimensions of each embedding, re-normalized (a model trained with "
                             "loss.matryoshka_dims); default: all")
    parser.add_argument("--device", help="torch device, e.g. cuda, cuda:1, cpu (default: cuda if available)")
    parser.add_argument("--cache-dir", metavar="DIR", help="mteb result cache (default: $MTEB_CACHE or ~/.cache/mteb)")
    parser.add_argument("--no-cache", action="store_true", help="recompute every task; read and write no cache")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _compare_labels(value: str | None, adapter: str | None) -> list[str] | None:
    from cft.errors import CFTError

    if value is None:
        return None
    labels = [v.strip() for v in value.split(",") if v.strip()]
    if sorted(labels) != ["adapter", "base"]:
        raise CFTError(f"--compare {value}: give base,adapter (or adapter,base)")
    if not adapter:
        raise CFTError("--compare needs --adapter (the base is the adapter's base model without it)")
    return labels


def _check_args(args: argparse.Namespace) -> None:
    from cft.errors import CFTError

    if not (args.adapter or args.model or args.st_model):
        raise CFTError("give what to evaluate: --adapter URI, --model ID_OR_PATH, or --st-model FOLDER")
    if args.gguf_file and not args.model:
        raise CFTError("--gguf-file goes with --model")
    if (args.pooling or args.max_length) and not args.model:
        raise CFTError("--pooling and --max-length go with --model (an adapter uses the settings it was trained with)")
    if args.dim is not None and args.dim < 1:
        raise CFTError(f"--dim must be >= 1 (got {args.dim})")
    if args.encode_batch_size < 1:
        raise CFTError(f"--encode-batch-size must be >= 1 (got {args.encode_batch_size})")
    if args.max_length is not None and args.max_length < 2:
        raise CFTError(f"--max-length must be >= 2 (got {args.max_length})")
    if args.out and "://" in args.out:
        from cft.storage.bucket import open_bucket

        open_bucket(args.out)  # a bad bucket URI or name fails now, not after the evaluation
    if args.out and "://" not in args.out:
        for folder in (Path(args.out), *Path(args.out).parents):  # refuse before hours of encoding, not after
            if folder.exists() and not folder.is_dir():
                raise CFTError(f"--out {args.out}: {folder} is a file; results go in a folder")
    from cft.modeling.encoder import resolve_device

    args.device = str(resolve_device(args.device)) if args.device else None


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    compare = _compare_labels(args.compare, args.adapter)
    debug = os.environ.get("CFT_DEBUG") == "1"
    logging.basicConfig(level=logging.INFO if debug else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    if not debug:
        logging.getLogger("mteb").setLevel(logging.ERROR)

    from cft.evaluation import default_output, evaluate_encoder, format_table, prepare_tasks, write_report
    from cft.evaluation.mteb_encoder import check_template

    check_template(args.prompt, "--prompt")
    tasks = prepare_tasks(args.tasks, args.data_dir)  # a typo or a missing file fails before any model loads
    output = args.out or default_output(adapter=args.adapter, model=args.model or args.st_model)

    runs = {}
    for label, encoder in _encoders(args, compare):
        runs[label] = evaluate_encoder(
            encoder,
            tasks,
            batch_size=args.encode_batch_size,
            prompt_template=args.prompt,
            query_instruction=args.query_instruction,
            document_instruction=args.document_instruction,
            dim=args.dim,
            cache_dir=args.cache_dir,
            use_cache=not args.no_cache,
            show_progress=not args.no_progress,
            label=label,
        )
    summary = write_report(runs, output)

    print(format_table(runs))
    for task, why in summary["skipped"].items():
        print(f"skipped {task}: {why}")
    for label, run in runs.items():
        rate = f", {run.texts_per_second:.0f} texts/s" if run.texts_per_second else ""
        cached = f"; {len(run.cached)} task(s) from mteb's cache" if run.cached else ""
        print(f"{label}: {run.name} (revision {run.revision}): {run.texts_encoded} texts encoded in "
              f"{run.encode_seconds:.1f}s{rate}, {run.seconds:.1f}s in all{cached}")
    print(f"results: {summary['output']}")
    if args.adapter and "adapter" in runs:
        _record_in_run(args.adapter, runs["adapter"], output)
    return 0


def _record_in_run(adapter: str, run: object, output: str) -> None:
    """Adds the adapter's scores to its run's manifest (shown by `cft runs` and in the success notification)."""
    from cft.storage.manifest import record_scores

    import mteb

    summary = run.summary  # type: ignore[attr-defined]
    kinds = {mteb.get_task(name).metadata.type for name in summary["tasks"]}
    key = {frozenset({"STS"}): "sts_mean", frozenset({"Retrieval"}): "retrieval_mean"}.get(frozenset(kinds), "eval_mean")
    scores = {**summary["tasks"], key: summary["mean"]}
    if record_scores(adapter, scores, f"{output.rstrip('/')}/summary.json") is not None:
        print(f"scores added to the run's manifest ({key} {summary['mean']:.2f})")
        _refresh_card(adapter)


def _refresh_card(adapter: str) -> None:
    """The adapter's model card, written at training end, now with the scores (and their model-index)."""
    from cft.export.model_card import refresh_adapter_card

    try:
        written = refresh_adapter_card(adapter)
    except Exception as error:  # the scores are recorded; a stale card is worth a warning, not a failed eval
        print(f"cft: warning: could not update the adapter's model card ({type(error).__name__}: {error})",
              file=sys.stderr)
        return
    if written:
        print(f"model card updated: {written}")


def _encoders(args: argparse.Namespace, compare: list[str] | None):  # noqa: ANN202 - yields (label, Encoder)
    """Yields (label, encoder) one at a time, so a model is loaded only when its turn comes."""
    if args.st_model:
        from cft.evaluation import SentenceTransformerEncoder

        yield "model", SentenceTransformerEncoder(args.st_model, device=args.device)
        return

    from cft.modeling.encoder import TextEncoder
    from cft.storage.bucket import materialize

    if args.model:
        options = {k: v for k, v in (("pooling", args.pooling), ("max_length", args.max_length)) if v is not None}
        yield "base", TextEncoder.from_base(args.model, gguf_file=args.gguf_file, device=args.device, **options)
        return
    adapted = TextEncoder.from_adapter(materialize(args.adapter), device=args.device)
    trained = adapted.metadata.matryoshka_dims
    if args.dim is not None and args.dim not in (trained or []):
        logging.getLogger("cft").warning(
            "--dim %d: the adapter was trained with %s; a truncation it was not trained for usually scores lower",
            args.dim, f"loss.matryoshka_dims {trained}" if trained else "no Matryoshka loss")
    if not compare:
        yield "adapter", adapted
        return
    # The base is the same weights with the LoRA layers switched off: same tokenizer, pooling, length and prompt.
    base = adapted.base_encoder()
    for label in compare:
        yield label, (base if label == "base" else adapted)
