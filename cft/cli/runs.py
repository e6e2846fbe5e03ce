"""`cft runs`: the runs in a bucket, one run in detail, or two runs side by side."""

from __future__ import annotations

import argparse
import os

from cft.errors import CFTError
from notify.run_layout import RUNS_DIR

USAGE = "cft runs [BUCKET_ROOT] | cft runs show RUN_ID [BUCKET_ROOT] | cft runs compare A B [BUCKET_ROOT]"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list, show and compare runs in a bucket",
        usage="cft runs [BUCKET_ROOT] [--json]\n"
              "       cft runs show RUN_ID [BUCKET_ROOT] [--bucket ROOT] [--json]\n"
              "       cft runs compare A B [BUCKET_ROOT] [--bucket ROOT] [--json]",
        description="Lists the runs under <BUCKET_ROOT>/runs/ from their manifests: succeeded, failed, running\n"
                    "(no manifest yet, recent heartbeat), interrupted (stopped by SIGTERM or SIGINT; resumes on the\n"
                    "next start), incomplete (no manifest, no recent heartbeat) or corrupt (a manifest that cannot\n"
                    "be trusted). Nothing is hidden.",
        epilog="examples:\n"
               "  cft runs                                  runs in $BUCKET (or ./cft-runs)\n"
               "  cft runs s3://my-bucket/cft               runs in an S3 bucket (AWS_ENDPOINT_URL for R2, MinIO...)\n"
               "  cft runs show 20250101-120000             manifest, config, eval summary and files of one run\n"
               "  cft runs show s3://my-bucket/cft/runs/r1  the same, naming the run by its folder\n"
               "  cft runs compare r1 r2 --json             scores side by side, for scripts",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("words", nargs="*", metavar="ARGS", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", "-b", default=None,
                        help="bucket root: a local folder or s3://bucket/prefix (default: $BUCKET or ./cft-runs)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text (for scripts)")
    parser.set_defaults(func=run)


def _default_root() -> str:
    return os.environ.get("BUCKET") or "./cft-runs"


def _pick_root(flag: str | None, positional: str | None, from_ref: str | None) -> str:
    given = {name: value for name, value in (("--bucket", flag), ("BUCKET_ROOT", positional), ("the run's folder", from_ref))
             if value}
    if len({value.rstrip("/") for value in given.values()}) > 1:
        raise CFTError("two bucket roots given: " + ", ".join(f"{name} {value}" for name, value in given.items()))
    return next(iter(given.values()), None) or _default_root()


def split_run_ref(ref: str) -> tuple[str | None, str]:
    """A run id, or a run folder `<root>/runs/<id>` -> (root or None, id)."""
    text = ref.rstrip("/")
    if "/" not in text:
        return None, text
    parent, _, run_id = text.rpartition("/")
    if parent == RUNS_DIR:
        return ".", run_id
    if parent.endswith(f"/{RUNS_DIR}"):
        return parent[: -len(RUNS_DIR) - 1] or "/", run_id
    raise CFTError(f"{ref}: give a run id, or a run folder <BUCKET_ROOT>/runs/<run_id>")


def run(args: argparse.Namespace) -> int:
    from cft.registry import compare_runs, list_runs, load_run
    from cft.registry.render import format_compare, format_runs, format_show, to_json
    from cft.storage.bucket import open_bucket

    words = list(args.words)
    action = words[0] if words and words[0] in ("show", "compare") else "list"
    if action == "list":
        if len(words) > 1:
            raise CFTError(f"cft runs takes one BUCKET_ROOT (got {' '.join(words)}); usage: {USAGE}")
        bucket = open_bucket(_pick_root(args.bucket, words[0] if words else None, None))
        records = list_runs(bucket)
        print(to_json([r.to_dict() for r in records]) if args.json else format_runs(records, bucket.uri))
        return 0

    wanted = 1 if action == "show" else 2
    operands = words[1:]
    if len(operands) not in (wanted, wanted + 1):
        what = "RUN_ID" if action == "show" else "A B"
        raise CFTError(f"cft runs {action} needs {what} [BUCKET_ROOT] (got {len(operands)} argument(s)); usage: {USAGE}")
    refs = [split_run_ref(ref) for ref in operands[:wanted]]
    positional = operands[wanted] if len(operands) > wanted else None
    ref_roots = {root for root, _ in refs if root}
    if len(ref_roots) > 1:
        raise CFTError(f"runs from two buckets: {', '.join(sorted(ref_roots))}; compare runs of one bucket")
    bucket = open_bucket(_pick_root(args.bucket, positional, next(iter(ref_roots), None)))
    details = [load_run(bucket, run_id) for _, run_id in refs]
    if action == "show":
        (one,) = details
        if args.json:
            payload = {"run": one.record.to_dict(with_files=True), "manifest": one.record.manifest and one.record.manifest.to_dict(),
                       "config": one.config, "config_error": one.config_error,
                       "eval": one.eval_summary, "eval_error": one.eval_error}
            print(to_json(payload))
        else:
            print(format_show(one))
        return 0
    comparison = compare_runs(*details)
    print(to_json(comparison) if args.json else format_compare(comparison))
    return 0
