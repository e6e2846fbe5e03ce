"""`cft prepare`: validate and convert a triplet file ahead of time, and say what was kept and dropped."""

from __future__ import annotations

import argparse
from pathlib import Path

from cft.cli.options import add_out
from cft.errors import CFTError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="validate and convert a triplet file",
        description="Reads triplets (csv, tsv, jsonl, json, parquet, a datasets folder, hf://...), drops empty rows "
                    "and duplicates, and writes the clean rows with columns sent0, sent1, hard_neg (and negative_2 "
                    "... when rows have several hard negatives) in the format --out's extension names (.csv, .tsv, "
                    ".jsonl, .json (JSON lines), .parquet).",
    )
    parser.add_argument("input", help="triplet file, a folder saved with datasets, or hf://<owner>/<dataset>[/<file>]")
    add_out(parser, metavar="FILE", help="write the cleaned triplets here; .csv, .tsv, .jsonl, .json or .parquet")
    parser.add_argument("--columns", default=None,
                        help="column mapping, e.g. sent0=premise,sent1=hypothesis,hard_neg=contradiction "
                             "(hard_neg= empty for pairs)")
    parser.add_argument("--limit", type=int, default=None, help="keep only the first N valid rows")
    parser.set_defaults(func=run)


def parse_columns(text: str | None) -> dict[str, str | None]:
    names = {"sent0": "anchor_column", "sent1": "positive_column", "hard_neg": "negative_column"}
    mapping: dict[str, str | None] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, equals, value = part.partition("=")
        key = key.strip()
        if not equals:
            raise CFTError(f"--columns: {part.strip()!r} has no '='; write role=column, e.g. "
                           "sent0=premise,sent1=hypothesis,hard_neg=contradiction")
        if key not in names:
            raise CFTError(f"--columns: unknown role {key!r}; use sent0, sent1 and hard_neg (got {text!r})")
        if not value.strip() and key != "hard_neg":
            raise CFTError(f"--columns: {key}= needs a column name (only hard_neg may be empty, for pairs)")
        mapping[names[key]] = value.strip() or None
    return mapping


def run(args: argparse.Namespace) -> int:
    from cft.config import DataConfig
    from cft.data.triplets import load_triplets, output_format, write_triplets

    if args.limit is not None and args.limit < 1:
        raise CFTError(f"--limit must be >= 1 (got {args.limit})")
    if args.out and Path(args.out).is_dir():
        raise CFTError(f"--out {args.out}: is a folder; name a file such as clean.jsonl or clean.csv")
    if args.out:
        try:
            output_format(args.out)  # before reading a large input
        except CFTError as error:
            raise CFTError(f"--out {error}") from None
    config = DataConfig(train_file=args.input, limit=args.limit, **parse_columns(args.columns))
    triplets, report = load_triplets(config)
    print(report.summary())
    if args.out:
        write_triplets(triplets, args.out)
        print(f"wrote {len(triplets)} triplets to {args.out} ({output_format(args.out)})")
    return 0
