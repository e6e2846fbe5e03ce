"""`cft sweep launch --dry-run`: the members, the exact `sky jobs launch` command of each, and what an hour costs.

The price is SkyPilot's, from the catalog already on this machine (see sky_price.py); where SkyPilot cannot tell it
offline it is printed as 'unknown' with the reason. Nothing is written and nothing is launched.
"""

from __future__ import annotations

import shlex
from typing import Any

from cft.errors import CFTError
from cft.storage.bucket import Bucket
from cft.sweep import sky_cli as sky
from cft.sweep.grid import Member, SweepSpec
from cft.sweep.launcher import Say, member_envs
from cft.sweep.record import MemberRecord, SweepRecord
from cft.sweep.status import format_table, short_key


def _price_lines(price: dict[str, Any], parallel: int) -> list[str]:
    if "error" in price:
        return [f"hourly price: unknown ({price['error']})"]
    lines = []
    first_hourly = None
    for task in price.get("tasks", []):
        candidates = task.get("candidates") or []
        if not candidates:
            continue
        first = candidates[0]
        nodes = int(first.get("num_nodes") or 1)
        what = f"{first.get('infra')} {first.get('accelerators')}" + (f" x {nodes} nodes" if nodes > 1 else "")
        if first.get("hourly") is None:
            lines.append(f"hourly price, {task['name']} task: unknown for {what} ({first.get('why')})")
        else:
            hourly = first["hourly"] * nodes
            first_hourly = hourly if task is price["tasks"][0] else first_hourly
            lines.append(f"hourly price, {task['name']} task: ${hourly:.2f}/h on {what} (SkyPilot's catalog; the "
                         f"first of {len(candidates)} candidates in order)")
    if first_hourly is not None:
        lines.append(f"at most {parallel} training member(s) at once: up to ${first_hourly * parallel:.2f}/h")
    return lines or ["hourly price: unknown (no resources in jobs/pipeline.yaml)"]


def print_plan(bucket: Bucket, spec: SweepSpec, members: list[Member], max_parallel: int | None,
               extra: dict[str, str], secrets_file: str | None, say: Say) -> int:
    record = SweepRecord.new(spec, members, max_parallel)
    try:
        sky_path = sky.find_sky()
    except CFTError:
        sky_path = "sky"
    parallel = max_parallel or len(members)
    wait = (f"; members beyond {max_parallel} wait for a free slot while `cft sweep launch` runs"
            if max_parallel and max_parallel < len(members) else "")
    say(f"sweep {spec.name}: {len(members)} members of {spec.config}, record {bucket.join('sweeps', spec.name + '.json')}"
        f"{wait}")
    header = ["MEMBER", *[short_key(k) for k in spec.grid]]
    say(format_table(header, [[m.run_id, *m.settings.values()] for m in members]))
    say("")
    say("launch commands (run from this folder):")
    for member in members:
        envs = member_envs(record, MemberRecord.of(member), bucket.uri, extra)
        # No secret can show here: envs hold none, and the secrets file is named, never read.
        say("  " + shlex.join(sky.launch_args(sky_path, member.run_id, envs, secrets_file)))
    if not secrets_file:
        say("note: no --secrets FILE: the jobs get no AWS keys unless SkyPilot finds them another way")
    say("")
    sample = member_envs(record, MemberRecord.of(members[0]), bucket.uri, extra)
    for line in _price_lines(sky.hourly_price(sky_path, sample) if sky_path != "sky" else
                             {"error": "SkyPilot is not installed here"}, parallel):
        say(line)
    return 0
