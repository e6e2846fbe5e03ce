"""`cft train`: fine-tune a base model into an embedding model from a recipe."""

from __future__ import annotations

import argparse
import logging
import sys

from cft.cli.options import add_bucket, add_recipe, default_bucket


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="contrastive fine-tuning from a recipe",
        description="Trains a LoRA adapter with InfoNCE. Resumes from the newest complete checkpoint of the same run id.",
        epilog="examples:\n  cft train --config recipes/smollm2-135m.yaml\n"
               "  cft train --config recipes/minicpm-2b.yaml --set train.learning_rate=1e-4 --bucket s3://bucket/cft\n"
               "  accelerate launch -m cft train --config ...   (several GPUs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_recipe(parser, required=True)
    add_bucket(parser, deprecated=("--output", "-o"))
    parser.add_argument("--run-id", metavar="ID", default=None,
                        help="run id (default: $RUN_ID, $SKYPILOT_TASK_ID, or a timestamp)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cft.config import load_recipe
    from cft.training.interrupt import RunInterrupted, sigterm_interrupts
    from cft.training.run import train
    from notify.report import dev_summary

    from cft.errors import CFTError

    if not args.config.strip():
        raise CFTError("--config is empty; give a recipe file, e.g. --config recipes/smollm2-135m.yaml")
    recipe = load_recipe(args.config, args.overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    output = args.bucket or default_bucket()
    try:
        with sigterm_interrupts():  # a preemption's SIGTERM is recorded as an interruption, then exit 143
            result = train(recipe, args.config, output=output, run_id=args.run_id)
    except RunInterrupted as interrupted:
        print(f"cft: {interrupted}; the next start with the same run id resumes from its newest complete checkpoint",
              file=sys.stderr)
        return interrupted.exit_code
    if result.manifest:
        metrics = result.manifest.metrics
        loss = (f", loss {metrics['first_loss']} -> {metrics['final_loss']}" if metrics.get("first_loss") is not None
                else "")  # no loss is logged before train.logging_steps
        dev = dev_summary(result.manifest, emphasis="")
        print(f"run {result.run_id}: {result.status}, {result.manifest.steps} steps{loss}; "
              f"{dev + '; ' if dev else ''}adapter: {result.adapter_uri}")
    return 0
