"""`cft sweep launch|status|cancel`: a grid of runs as managed SkyPilot jobs (or on this machine), one table, one
notification. Wiring only: the work is in `cft.sweep`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cft.cli.options import add_bucket, add_json, add_recipe, default_bucket
from cft.errors import CFTError

DEFAULT_POLL_S = 30.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep", help="a grid of runs: launch, status, cancel",
        description="A grid of recipe overrides, one member per combination, each a managed SkyPilot job of "
                    "jobs/pipeline.yaml (train, then eval), or run one after another here with --local.",
        epilog="examples:\n"
               "  cft sweep launch -c recipes/qwen2.5-0.5b.yaml --grid train.learning_rate=1e-5,5e-5,1e-4 \\\n"
               "      --grid lora.r=8,16 --name lr-rank --bucket s3://my-bucket/cft --max-parallel 2 \\\n"
               "      --secrets ~/.config/cft/secrets.env\n"
               "  cft sweep status lr-rank --sort test\n"
               "  cft sweep cancel lr-rank",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="sweep_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    launch = actions.add_parser("launch", help="launch a sweep, or resume it (same flags)",
                                description="Launches one managed job per member; with --max-parallel K, waits in "
                                            "the foreground for free slots. Launching again resumes: succeeded and "
                                            "running members are left alone, failed and cancelled ones relaunched.")
    add_recipe(launch, required=False)
    launch.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a setting to vary and its values (repeatable; one member per combination)")
    launch.add_argument("--grid-file", metavar="FILE", help="a sweep YAML with grid: (and config:, set:) for grids "
                                                           "that do not fit a command line")
    launch.add_argument("--name", required=True, metavar="NAME",
                        help="the sweep's name: names its record, runs and managed jobs")
    add_bucket(launch)
    launch.add_argument("--max-parallel", type=int, default=None, metavar="K",
                        help="at most K members at once; the command waits for free slots (default: all at once)")
    launch.add_argument("--secrets", metavar="FILE", help="dotenv file of secrets for the jobs (passed to SkyPilot as "
                                                          "--secret-file; never printed)")
    launch.add_argument("--tasks", default="sts", metavar="LIST",
                        help="evaluation tasks after training (default: sts; none: skip evaluation with --local)")
    launch.add_argument("--data-dir", metavar="DIR", help="evaluation data from local files (see cft eval)")
    launch.add_argument("--local", action="store_true", help="run the members one after another on this machine")
    launch.add_argument("--dry-run", action="store_true",
                        help="print the members, the launch commands and the hourly price; launch nothing")
    launch.set_defaults(func=run_launch)

    status = actions.add_parser("status", help="one row per member: settings, state, steps, loss, scores")
    status.add_argument("name", metavar="NAME")
    add_bucket(status)
    status.add_argument("--sort", choices=("test", "dev", "best_dev", "loss"), help="order the rows by a score")
    add_json(status)
    status.set_defaults(func=run_status)

    cancel = actions.add_parser("cancel", help="cancel the members' managed jobs and stop launching")
    cancel.add_argument("name", metavar="NAME")
    add_bucket(cancel)
    cancel.set_defaults(func=run_cancel)

    ended = actions.add_parser("ended", help="(run by the pipeline job on a member's node) record that the "
                                             "member's last task ended; tell the sweep's end if it was the last")
    ended.add_argument("name", metavar="NAME")
    add_bucket(ended)
    ended.add_argument("--run-id", required=True, metavar="ID")
    ended.add_argument("--task", required=True, choices=("train", "eval"))
    ended.add_argument("--exit-code", type=int, required=True, metavar="N")
    ended.set_defaults(func=run_ended)


def _say(line: str) -> None:
    print(line, flush=True)


def _root(flag: str | None) -> str:
    return flag or default_bucket()


def _check_recipe_in_workdir(config: str) -> str:
    """A member reads its recipe on the node, from the synced workdir (this folder): a relative path inside it."""
    path = Path(config)
    if not path.is_file():
        raise CFTError(f"--config {config}: recipe file not found")
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        raise CFTError(f"--config {config}: outside {Path.cwd()}, the workdir SkyPilot syncs to the nodes; put the "
                       "recipe under recipes/") from None
    return relative.as_posix()


def _extra_envs(args: argparse.Namespace) -> dict[str, str]:
    extra = {"TASKS": args.tasks}
    if args.data_dir:
        extra["DATA_DIR"] = args.data_dir
    for name in ("NTFY_TOPIC", "NTFY_SERVER", "AWS_ENDPOINT_URL"):  # settings, not secrets (tokens go in --secrets)
        if os.environ.get(name):
            extra[name] = os.environ[name]
    return extra


def run_launch(args: argparse.Namespace) -> int:
    from cft.storage.bucket import open_bucket
    from cft.sweep.grid import build_spec, check_members

    if args.max_parallel is not None and args.max_parallel < 1:
        raise CFTError(f"--max-parallel {args.max_parallel}: must be at least 1")
    spec = build_spec(args.name, args.config, args.overrides, args.grid, args.grid_file)
    members = check_members(spec)  # every member's recipe loads, before anything is launched
    bucket = open_bucket(_root(args.bucket))
    if args.local:
        if args.dry_run:
            for member in members:
                _say(f"{member.run_id}: cft train --config {spec.config} "
                     + " ".join(f"--set {p}" for p in [*spec.sets, *member.pairs()]))
            return 0
        from cft.sweep.local import run_local

        return run_local(bucket, spec, members, tasks=args.tasks, data_dir=args.data_dir, say=_say)

    from cft.sweep import sky_cli as sky

    if not bucket.uri.startswith("s3://"):
        raise CFTError(f"--bucket {bucket.uri}: members run on cloud nodes, which cannot reach a local folder; give "
                       "an s3:// bucket (or run the grid here with --local)")
    spec.config = _check_recipe_in_workdir(spec.config)
    sky.pipeline_yaml()
    if args.secrets and not Path(args.secrets).is_file():
        raise CFTError(f"--secrets {args.secrets}: file not found (docs/cloud.md shows how to write it)")
    extra = _extra_envs(args)
    if args.dry_run:
        from cft.sweep.plan import print_plan

        return print_plan(bucket, spec, members, args.max_parallel, extra, args.secrets, say=_say)
    from cft.sweep.launcher import launch_sweep

    poll = float(os.environ.get("CFT_SWEEP_POLL_S") or DEFAULT_POLL_S)
    return launch_sweep(bucket, spec, members, max_parallel=args.max_parallel, sky_path=sky.find_sky(),
                        extra=extra, secrets_file=args.secrets, poll_s=poll, say=_say)


def run_status(args: argparse.Namespace) -> int:
    from cft.storage.bucket import open_bucket
    from cft.sweep import record as records
    from cft.sweep import sky_cli as sky
    from cft.sweep.announce import announce_if_ended
    from cft.sweep.status import draw_plot, format_status, sweep_status

    bucket = open_bucket(_root(args.bucket))
    record, _ = records.require(bucket, args.name)
    jobs, why = None, None
    if any(m.job_ids for m in record.members):
        try:
            jobs = sky.queue(sky.find_sky())
        except (sky.SkyUnavailable, CFTError) as error:
            why = str(error)
    statuses = sweep_status(bucket, record, jobs)
    plot = draw_plot(bucket, record, statuses)
    told = announce_if_ended(bucket, record, statuses, by="cft sweep status")
    if args.json:
        print(json.dumps({"name": record.name, "members": [s.to_dict() for s in statuses], "plot": plot,
                          "announcement": told, "sky_queue": "read" if jobs is not None else why},
                         indent=2, default=str))
        return 0
    print(format_status(record, statuses, args.sort, bucket.join(records.record_key(record.name))))
    if why:
        print(f"SkyPilot's queue not read ({why}); states from the bucket only", file=sys.stderr)
    if plot:
        print(f"plot: {plot}")
    if told != "not ended":
        print(f"end of sweep: {told}")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from cft.storage.bucket import open_bucket
    from cft.sweep import sky_cli as sky
    from cft.sweep.launcher import cancel_sweep

    return cancel_sweep(open_bucket(_root(args.bucket)), args.name, sky.find_sky(), say=_say)


def run_ended(args: argparse.Namespace) -> int:
    from cft.storage.bucket import open_bucket
    from cft.sweep.announce import member_ended

    print(f"cft sweep: {member_ended(open_bucket(_root(args.bucket)), args.name, args.run_id, args.task, args.exit_code)}")
    return 0
