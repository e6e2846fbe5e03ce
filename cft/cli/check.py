"""`cft check`: a preflight, on the laptop, of what a SkyPilot launch of a cft job would need."""

from __future__ import annotations

import argparse
import json
import time

EXAMPLE = ("cft check --bucket s3://my-bucket/cft --config recipes/minicpm-2b.yaml "
           "--secrets ~/.config/cft/secrets.env --env NTFY_TOPIC=my-hard-to-guess-topic")


def register(subparsers: argparse._SubParsersAction) -> None:
    from cft.cli.options import add_json, add_recipe
    from cft.preflight.runner import CHECK_NAMES, DEFAULT_JOB  # light: no torch, no boto3

    parser = subparsers.add_parser(
        "check",
        help="preflight: prove in seconds what a cloud launch will need (bucket, model, data, secrets, ntfy, sky)",
        description="Checks, with the job's own credentials and settings, what a launch of a cft job would otherwise\n"
                    "find out on paid GPUs: secrets (every name the job YAML requires, none in envs:), bucket\n"
                    "(write, read back, delete a probe; the lease's conditional writes), recipe (loads with every\n"
                    "--set), model (embedded, in the workdir, or on the Hub: listed, gated licence accepted; for an\n"
                    "eval job, the adapter in the bucket and its base model), data\n"
                    "(reachable; first rows parse with the recipe's columns), ntfy (a test notification: look at\n"
                    "your phone), sky (SkyPilot, in its own environment, enables the job's clouds). One line per\n"
                    "check; exit status 0 only when none fails (1 otherwise, 2 for a bad flag or file).\n"
                    "Give the same --env and secrets file as to sky launch: --env NAME=VALUE (or NAME, from your\n"
                    "shell) overrides the job's envs: (RECIPE, BUCKET, NTFY_TOPIC, AWS_ENDPOINT_URL, ...).",
        epilog="examples:\n"
               f"  {EXAMPLE}\n"
               "  cft check --job jobs/pipeline.yaml --bucket s3://my-bucket/cft --secrets ~/.config/cft/secrets.env\n"
               "  cft check ... --skip sky --json           for scripts; --skip leaves a check out",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--job", default=DEFAULT_JOB, metavar="FILE",
                        help=f"the SkyPilot task YAML to be launched (default: {DEFAULT_JOB})")
    parser.add_argument("--bucket", "-b", default=None, metavar="ROOT",
                        help="the run store the job gets as BUCKET: s3://bucket/prefix "
                             "(default: --env BUCKET, $BUCKET)")
    add_recipe(parser, required=False)  # default: --env RECIPE, $RECIPE, else the job's own RECIPE
    parser.add_argument("--secrets", default=None, metavar="FILE",
                        help="the dotenv file given to sky launch --secret-file (values are never printed)")
    parser.add_argument("--env", dest="env_pairs", action="append", default=[], metavar="NAME[=VALUE]",
                        help="an env given to sky launch --env (repeatable)")
    parser.add_argument("--skip", action="append", default=[], choices=CHECK_NAMES, metavar="CHECK",
                        help=f"leave a check out (repeatable): {', '.join(CHECK_NAMES)}")
    add_json(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cft.preflight.runner import PreflightOptions, run_checks, summary

    options = PreflightOptions(job=args.job, bucket=args.bucket, config=args.config, overrides=args.overrides,
                               secrets_file=args.secrets, env_pairs=args.env_pairs, skip=args.skip)
    start = time.monotonic()
    results = []
    for result in run_checks(options):
        results.append(result)
        if not args.json:
            print(f"{result.status:<4}  {result.name:<7}  {result.detail}  ({result.seconds:.1f}s)", flush=True)
    seconds = time.monotonic() - start
    passed = all(result.passed for result in results)
    if args.json:
        print(json.dumps({"ok": passed, "seconds": round(seconds, 3), "job": args.job,
                          "checks": [result.to_dict() for result in results]}, indent=2))
    else:
        print(f"cft check: {summary(results, seconds)}")
    return 0 if passed else 1
