"""Launch a sweep, or resume it: one managed job of jobs/pipeline.yaml per member, at most K at a time.

SkyPilot 0.14.1 has no cap of its own that fits: its scheduler limits jobs by the jobs controller's CPUs and memory
(`sky/jobs/scheduler.py`), and a pool's cap (`--pool`) skips `setup` and file mounts. So this command is the cap:
it launches members until K are active, then waits in the foreground (polling `sky jobs queue`) and launches the
next one when a slot frees, until every member is launched. Stopping it (Ctrl-C, a closed laptop) loses nothing:
the record in the bucket holds every managed job's id, and `cft sweep launch` again resumes, launching only what is
not running or done.

On a resume, members that succeeded are left alone, running ones too, and failed or cancelled ones are launched
again under the same run id (so training resumes from their newest complete checkpoint). A member that fails while
this command runs is not relaunched by it: a failure that repeats should cost one job, not a loop of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cft.errors import CFTError
from cft.overrides import join_overrides
from cft.storage.bucket import Bucket
from cft.sweep import record as records
from cft.sweep import sky_cli as sky
from cft.sweep.grid import Member, SweepSpec
from cft.sweep.record import MemberRecord, SweepRecord
from cft.sweep.status import ACTIVE, TERMINAL, MemberStatus, sweep_status

RETRY_STATES = ("failed", "cancelled", "lost")
Say = Callable[[str], None]


def open_record(bucket: Bucket, spec: SweepSpec, members: list[Member], max_parallel: int | None) -> SweepRecord:
    """The sweep's record: created if new; if it exists it must be the same sweep (a new --name otherwise)."""
    found = records.load(bucket, spec.name)
    if found is None:
        if records.create(bucket, SweepRecord.new(spec, members, max_parallel)) is not None:
            return records.require(bucket, spec.name)[0]
        found = records.require(bucket, spec.name)  # another launcher created it a moment ago
    record, etag = found
    if not record.same_sweep(spec):
        raise CFTError(f"sweep {spec.name!r} in {bucket.join(records.record_key(spec.name))} has another recipe, "
                       f"--set or grid ({record.config}; {', '.join(record.grid)}); resume it with the same flags "
                       "or choose another --name")
    if record.cancelled_at is not None or record.max_parallel != max_parallel:
        record.cancelled_at = None  # launching again is the way to resume a cancelled sweep
        record.max_parallel = max_parallel
        records.save(bucket, record, etag)
    return record


def member_envs(record: SweepRecord, member: MemberRecord, bucket_uri: str, extra: dict[str, str]) -> dict[str, str]:
    """The `--env` values of one member's managed job (never a secret: those go in --secret-file)."""
    return {"RECIPE": record.config, "BUCKET": bucket_uri, "RUN_ID": member.run_id,
            "OVERRIDES": join_overrides([*record.sets, *member.pairs()]), "SWEEP": record.name, **extra}


def _update_member(bucket: Bucket, name: str, run_id: str, job_id: int | None) -> SweepRecord:
    record, etag = records.require(bucket, name)
    member = record.member(run_id)
    assert member is not None
    if job_id is not None:
        member.job_ids.append(job_id)
    member.launches += 1
    member.launched_at = records.now_text()
    records.save(bucket, record, etag)
    return record


def launch_member(bucket: Bucket, record: SweepRecord, member: MemberRecord, sky_path: str,
                  extra: dict[str, str], secrets_file: str | None) -> int | None:
    records.forget_end(bucket, record.name, member.run_id)  # its old end (and the sweep's) no longer counts
    args = sky.launch_args(sky_path, member.run_id, member_envs(record, member, bucket.uri, extra), secrets_file)
    job_id = sky.launch(args)
    if job_id is None:  # SkyPilot did not print it: the queue knows the newest job of that name
        job_id = sky.newest_job_named(sky.queue(sky_path), member.run_id, member.job_ids)
    _update_member(bucket, record.name, member.run_id, job_id)
    return job_id


def _queue(sky_path: str) -> dict[int, sky.Job]:
    try:
        return sky.queue(sky_path)
    except sky.SkyUnavailable as error:
        raise CFTError(f"cannot read SkyPilot's queue, so cannot tell which members run: {error}") from None


def launch_sweep(bucket: Bucket, spec: SweepSpec, members: list[Member], *, max_parallel: int | None,
                 sky_path: str, extra: dict[str, str], secrets_file: str | None, poll_s: float, say: Say) -> int:
    record = open_record(bucket, spec, members, max_parallel)
    statuses = sweep_status(bucket, record, _queue(sky_path))
    retry = {s.member.run_id for s in statuses if s.state in RETRY_STATES}
    done_here: set[str] = set()
    last_wait = ""
    while True:
        todo = [s for s in statuses if s.member.run_id not in done_here
                and (s.state == "pending" or (s.state in RETRY_STATES and s.member.run_id in retry))]
        active = [s for s in statuses if s.state not in TERMINAL and s.state != "pending"]  # a slot each
        free = len(todo) if max_parallel is None else max(0, max_parallel - len(active))
        for status in todo[:free]:
            member = status.member
            again = f" again (was {status.state})" if status.state != "pending" else ""
            job_id = launch_member(bucket, record, member, sky_path, extra, secrets_file)
            done_here.add(member.run_id)
            say(f"launched {member.run_id} ({member.label()}){again}: managed job {job_id if job_id is not None else '?'}")
        left = len(todo) - min(free, len(todo))
        if left == 0:
            say(f"sweep {spec.name}: every member is launched or done; "
                f"watch it with: cft sweep status {spec.name} --bucket {bucket.uri}")
            return 0
        wait = (f"{len(active) + min(free, len(todo))} active, {left} waiting for a free slot (--max-parallel "
                f"{max_parallel}); checking every {poll_s:g}s (Ctrl-C stops; cft sweep launch again resumes)")
        if wait != last_wait:
            say(wait)
            last_wait = wait
        try:
            time.sleep(poll_s)
        except KeyboardInterrupt:
            say(f"stopped waiting; {left} member(s) not launched yet: cft sweep launch with the same flags resumes")
            raise
        record, _ = records.require(bucket, spec.name)
        if record.cancelled_at is not None:
            say(f"sweep {spec.name} was cancelled at {record.cancelled_at}; {left} member(s) not launched")
            return 0
        statuses = sweep_status(bucket, record, _queue(sky_path))


def cancel_sweep(bucket: Bucket, name: str, sky_path: str, say: Say) -> int:
    """Marks the sweep cancelled (a waiting launcher stops) and cancels its members' active managed jobs."""
    record, etag = records.require(bucket, name)
    record.cancelled_at = records.now_text()
    records.save(bucket, record, etag)
    statuses: list[MemberStatus] = sweep_status(bucket, record, _queue(sky_path))
    active = [s for s in statuses if s.state in ACTIVE and s.job_id is not None]
    if not active:
        say(f"sweep {name}: no member has an active managed job; nothing more will be launched")
        return 0
    sky.cancel(sky_path, [s.job_id for s in active if s.job_id is not None])
    for s in active:
        say(f"cancelled {s.member.run_id}: managed job {s.job_id} (was {s.state})")
    say(f"sweep {name}: {len(active)} managed job(s) cancelled; cft sweep launch resumes it")
    return 0
