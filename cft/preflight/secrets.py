"""The secrets: every name the job YAML requires has a value, and no secret travels as a plain `envs:` entry."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cft.preflight.environment import secrets_file_mode_problem
from cft.preflight.job import JobSpec
from cft.preflight.result import CheckFailed
from notify.redact import is_secret_name


def check(job: JobSpec, values: Mapping[str, str], secrets_file: Path | None) -> str:
    where = str(secrets_file) if secrets_file else "your shell (no --secrets file: sky launch --secret NAME copies it)"
    problems = []
    missing = [name for name in job.required_secrets if not values.get(name)]
    if missing:
        absent = "empty or absent in" if secrets_file else "not set in"
        problems.append(f"{', '.join(missing)} required by {job.path} but {absent} {where}")
    in_envs = sorted({name for name in job.envs if is_secret_name(name)}
                     | {name for name in values if secrets_file and name in job.envs})
    if in_envs:
        problems.append(f"{', '.join(in_envs)} in {job.path}'s envs: (shown in plain text by SkyPilot); move "
                        f"{'it' if len(in_envs) == 1 else 'them'} to secrets:")
    if secrets_file:
        mode = secrets_file_mode_problem(secrets_file)
        if mode:
            problems.append(f"{secrets_file} {mode}")
    if problems:
        raise CheckFailed("; ".join(problems))
    given = [name for name in job.optional_secrets if values.get(name)]
    absent = [name for name in job.optional_secrets if not values.get(name)]
    line = f"{where}: {', '.join(job.required_secrets) or 'no required secrets'} set"
    if given:
        line += f"; optional {', '.join(given)} set"
    if absent:
        line += f"; optional {', '.join(absent)} empty"
    return line + "; no secret in envs:"
