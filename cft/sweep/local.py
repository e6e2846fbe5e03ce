"""`cft sweep launch --local`: the members one after another on this machine, as the pipeline runs them on a node.

Each member is `cft train` then `cft eval` (when --tasks is not `none`) in a child process with the member's run
id and `--set` pairs, writing the same run folders, the same sweep record and the same ended markers as a cloud
sweep, so `cft sweep status` reads both alike. A child process, not a call: each member starts from a clean
interpreter (memory, logging, CUDA state), exactly as on a node. Members that already succeeded are skipped, so
running the command again resumes the sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys

from cft.storage.bucket import Bucket
from cft.sweep import record as records
from cft.sweep.announce import member_ended
from cft.sweep.grid import Member, SweepSpec
from cft.sweep.launcher import Say, open_record
from cft.sweep.status import member_status
from notify.run_layout import RunPaths


def _cft(args: list[str], env: dict[str, str]) -> int:
    return subprocess.run([sys.executable, "-m", "cft", *args], env=env).returncode


def run_local(bucket: Bucket, spec: SweepSpec, members: list[Member], *, tasks: str, data_dir: str | None,
              say: Say) -> int:
    record = open_record(bucket, spec, members, max_parallel=1)
    failed = 0
    for member in record.members:
        markers = records.ended_markers(bucket, spec.name)
        if member_status(bucket, member, None, markers.get(member.run_id)).state == "succeeded":
            say(f"{member.run_id} ({member.label()}): already succeeded; skipped")
            continue
        records.forget_end(bucket, spec.name, member.run_id)
        current, etag = records.require(bucket, spec.name)
        entry = current.member(member.run_id)
        assert entry is not None
        entry.local, entry.launches, entry.launched_at = True, entry.launches + 1, records.now_text()
        records.save(bucket, current, etag)
        say(f"{member.run_id} ({member.label()}): training")
        # The run id and bucket travel as cft train's own environment defaults (RUN_ID, BUCKET).
        env = dict(os.environ, RUN_ID=member.run_id, BUCKET=bucket.uri)
        sets = [arg for pair in [*record.sets, *member.pairs()] for arg in ("--set", pair)]
        task, code = "train", _cft(["train", "--config", record.config, *sets], env)
        if code == 0 and tasks.strip().lower() != "none":
            say(f"{member.run_id}: evaluating on {tasks}")
            adapter = bucket.join(RunPaths(member.run_id).adapter)
            extra = ["--data-dir", data_dir] if data_dir else []
            task, code = "eval", _cft(["eval", "--adapter", adapter, "--tasks", tasks, *extra], env)
        failed += code != 0
        say(f"{member.run_id}: {task} {'succeeded' if code == 0 else f'failed (exit {code})'}; "
            + member_ended(bucket, spec.name, member.run_id, task, code, restarts=0))
    return 1 if failed else 0
