"""`cft runs`: the runs in a bucket, one run in detail, or two runs side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from cft.cli.options import BUCKET_HELP, default_bucket
from cft.errors import CFTError
from notify.run_layout import RUNS_DIR

ACTIONS = ("list", "show", "compare")
DEFAULT_ACTION = "list"  # `cft runs` and `cft runs BUCKET_ROOT` (the first build's spelling) list
VALUE_OPTIONS = ("--bucket", "-b")  # the group's options that take a value (to find the action word after them)

EXAMPLES = """examples:
  cft runs                                  runs in $BUCKET (or ./cft-runs)
  cft runs list --bucket s3://my-bucket/cft runs in an S3 bucket (AWS_ENDPOINT_URL for R2, MinIO...)
  cft runs show 20250101-120000             manifest, config, eval summary and files of one run
  cft runs show s3://my-bucket/cft/runs/r1  the same, naming the run by its folder
  cft runs compare r1 r2                    scores side by side, and how the two configs differ
  cft runs compare r1 r2 --json             the same, for scripts"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "runs",
        help="list, show and compare runs in a bucket",
        description="The runs under <bucket>/runs/, read from their manifests: succeeded, failed, running\n"
                    "(no manifest yet, recent heartbeat), interrupted (stopped by SIGTERM or SIGINT; resumes on the\n"
                    "next start), incomplete (no manifest, no recent heartbeat) or corrupt (a manifest that cannot\n"
                    "be trusted). Nothing is hidden. `cft runs` alone is `cft runs list`.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(parser, suppress=False)
    actions = parser.add_subparsers(dest="runs_action", metavar="ACTION")
    listing = actions.add_parser("list", help="every run: status, model, steps, duration, score, adapter",
                                 description="Every run in the bucket, newest first.")
    listing.add_argument("root", nargs="*", metavar="BUCKET_ROOT", help="same as --bucket (one)")
    show = actions.add_parser("show", help="one run: manifest, config, eval summary, files",
                              description="One run in detail; incomplete checkpoints are flagged.")
    show.add_argument("run", metavar="RUN_ID", help="a run id, or a run folder <bucket>/runs/<run_id>")
    show.add_argument("root", nargs="?", metavar="BUCKET_ROOT", help="same as --bucket")
    compare = actions.add_parser("compare", help="two runs side by side: scores, and how their configs differ",
                                 description="Two runs side by side: what each was, every score with the "
                                             "difference b - a, and every config field whose value differs.")
    compare.add_argument("a", metavar="A", help="a run id or run folder")
    compare.add_argument("b", metavar="B", help="a run id or run folder")
    compare.add_argument("root", nargs="?", metavar="BUCKET_ROOT", help="same as --bucket")
    for sub in (listing, show, compare):
        _add_common(sub, suppress=True)  # given before or after the action word; the later one wins
    parser.set_defaults(func=run, runs_action=DEFAULT_ACTION)


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """--bucket and --json; on an action's parser they must not reset what was given before the action word."""
    parser.add_argument("--bucket", "-b", metavar="ROOT", default=argparse.SUPPRESS if suppress else None,
                        help=BUCKET_HELP)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False,
                        help="print JSON instead of text (for scripts)")


def with_default_action(words: list[str]) -> list[str]:
    """The words after `runs`, with `list` put first when no action is named (`cft runs`, `cft runs ROOT`)."""
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in ("-h", "--help"):
            return words  # the group's own help
        elif word.startswith("-"):
            skip = word in VALUE_OPTIONS
        else:
            return words if word in ACTIONS else [DEFAULT_ACTION, *words]
    return [DEFAULT_ACTION, *words]


def _pick_root(flag: str | None, positional: str | None, from_ref: str | None) -> str | None:
    given = {name: value for name, value in (("--bucket", flag), ("BUCKET_ROOT", positional), ("the run's folder", from_ref))
             if value}
    if len({value.rstrip("/") for value in given.values()}) > 1:
        raise CFTError("two bucket roots given: " + ", ".join(f"{name} {value}" for name, value in given.items()))
    return next(iter(given.values()), None)


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


def _no_runs_yet(runs_folder: str, default_root: bool) -> str:
    elsewhere = "; runs kept elsewhere: cft runs --bucket ROOT (or set $BUCKET)" if default_root else ""
    return (f"no runs in {runs_folder} yet; make one with `cft demo` (a few minutes on a CPU, offline) or "
            f"`cft train --config recipes/smollm2-135m.yaml`{elsewhere}")


def run(args: argparse.Namespace) -> int:
    from cft.registry import compare_runs, list_runs, load_run
    from cft.registry.render import format_compare, format_runs, format_show, to_json
    from cft.storage.bucket import open_bucket

    if args.runs_action == "list":
        if len(args.root) > 1:
            raise CFTError(f"cft runs list takes one BUCKET_ROOT (got {' '.join(args.root)}); one run: "
                           "cft runs show RUN_ID; two: cft runs compare A B")
        root = _pick_root(args.bucket, next(iter(args.root), None), None)
        if root is None and "://" not in default_bucket() and not Path(default_bucket()).exists():
            # a fresh machine: nothing has been run yet, which is not a mistake
            print(to_json([]) if args.json else _no_runs_yet(f"{default_bucket().rstrip('/')}/{RUNS_DIR}", True))
            return 0
        bucket = open_bucket(root or default_bucket())
        records = list_runs(bucket)
        if args.json:
            print(to_json([r.to_dict() for r in records]))
        else:
            print(format_runs(records, bucket.uri) if records else _no_runs_yet(bucket.join(RUNS_DIR), root is None))
        return 0

    operands = [args.run] if args.runs_action == "show" else [args.a, args.b]
    refs = [split_run_ref(ref) for ref in operands]
    ref_roots = {root for root, _ in refs if root}
    if len(ref_roots) > 1:
        raise CFTError(f"runs from two buckets: {', '.join(sorted(ref_roots))}; compare runs of one bucket")
    bucket = open_bucket(_pick_root(args.bucket, args.root, next(iter(ref_roots), None)) or default_bucket())
    details = [load_run(bucket, run_id) for _, run_id in refs]
    if args.runs_action == "show":
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
