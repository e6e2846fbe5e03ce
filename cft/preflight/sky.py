"""SkyPilot, in its own environment, sees the clouds the job asks for: `sky check <clouds>` run there.

SkyPilot cannot live in the training environment (it pins click<8.2; see DESIGN.md, "Two environments"), so this
runs its CLI as a subprocess: `$CFT_SKY_VENV/bin/sky` when that is set (as the tests' SkyPilot venv is found), else
`sky` on PATH (`uv tool install`, pipx), else the repository's `.venv-sky`. `sky check` asks each cloud's API with
the laptop's credentials, so offline every cloud reads as disabled; the line says so when that may be the cause.
It may also start SkyPilot's local API server, as any `sky` command does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from cft.preflight.job import CLOUD_ALIASES, JobSpec
from cft.preflight.result import CheckFailed

TIMEOUT_VARIABLE = "CFT_SKY_CHECK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 90.0
INSTALL = "uv tool install 'skypilot[lambda,aws]==0.14.1' (or a venv of its own, named by CFT_SKY_VENV)"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_STATE = re.compile(r"^\s{1,6}([A-Za-z][\w .()-]*?):\s+(enabled|disabled)\b", re.IGNORECASE)
_OFFLINE_HINTS = ("failed to access", "connection", "timed out", "timeout", "resolve", "network", "unreachable")


def find_sky(env: Mapping[str, str], workdir: Path) -> Path | None:
    venv = env.get("CFT_SKY_VENV")
    if venv:
        candidate = Path(venv).expanduser() / "bin" / "sky"
        return candidate if candidate.is_file() else None
    on_path = shutil.which("sky", path=env.get("PATH"))
    if on_path:
        return Path(on_path)
    candidate = workdir / ".venv-sky" / "bin" / "sky"
    return candidate if candidate.is_file() else None


def parse_states(output: str) -> dict[str, tuple[bool, str]]:
    """`sky check` output -> {cloud (lower case): (enabled, the reason lines under it)}."""
    states: dict[str, tuple[bool, str]] = {}
    current = None
    for raw in _ANSI.sub("", output).splitlines():
        match = _STATE.match(raw)
        if match:
            current = match.group(1).strip().lower()
            current = CLOUD_ALIASES.get(current, current)
            states[current] = (match.group(2).lower() == "enabled", "")
        elif current and raw.startswith("    ") and raw.strip():
            enabled, reason = states[current]
            states[current] = (enabled, (reason + " " + raw.strip()).strip())
        elif not raw.strip():
            current = None
    return states


def check(job: JobSpec, laptop_env: Mapping[str, str]) -> str:
    clouds = list(job.clouds)
    controller = job.controller_cloud(dict(laptop_env))
    asked = clouds + ([controller] if controller and controller not in clouds else [])
    if not asked:
        return f"{job.path} names no cloud: SkyPilot picks among those `sky check` enables (not checked)"
    sky = find_sky(laptop_env, job.workdir)
    if sky is None:
        where = f"CFT_SKY_VENV={laptop_env['CFT_SKY_VENV']} has no bin/sky" if laptop_env.get("CFT_SKY_VENV") else \
            "no `sky` on PATH, no .venv-sky in the repository"
        raise CheckFailed(f"SkyPilot not found ({where}): install it in its own environment: {INSTALL}")
    timeout = float(laptop_env.get(TIMEOUT_VARIABLE) or DEFAULT_TIMEOUT_S)
    try:
        done = subprocess.run([str(sky), "check", *asked], capture_output=True, text=True, timeout=timeout,
                              env=dict(laptop_env), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise CheckFailed(f"`{sky} check {' '.join(asked)}` did not finish in {timeout:.0f}s (offline? it asks each "
                          f"cloud's API; {TIMEOUT_VARIABLE} sets the limit)") from None
    except OSError as error:
        raise CheckFailed(f"cannot run {sky} ({error.strerror}); reinstall SkyPilot: {INSTALL}") from None
    states = parse_states(done.stdout + "\n" + done.stderr)
    if not states:
        tail = " ".join(_ANSI.sub("", done.stdout + done.stderr).split())[-200:]
        raise CheckFailed(f"`sky check {' '.join(asked)}` exited {done.returncode} without a cloud's state: {tail}")
    disabled = [cloud for cloud in asked if not states.get(cloud, (False, ""))[0]]
    needed = [cloud for cloud in disabled if cloud in clouds or job.pipeline]
    described = ", ".join(f"{cloud} {'enabled' if cloud not in disabled else 'disabled'}"
                          + (" (jobs controller)" if cloud == controller and cloud not in clouds else "")
                          for cloud in asked)
    if needed:
        reasons = " ".join(states.get(cloud, (False, "not in sky check's answer"))[1] for cloud in needed).lower()
        offline = (" (sky check asks each cloud's API: offline, a valid key reads as disabled)"
                   if any(hint in reasons for hint in _OFFLINE_HINTS) else "")
        raise CheckFailed(f"sky check: {described}; {job.path} needs {', '.join(needed)}: see `{sky} check "
                          f"{' '.join(needed)}` for what to set up (docs/cloud.md, Credentials){offline}")
    note = ""
    if controller and controller in disabled:
        note = f"; sky jobs launch needs {controller} for its controller (sky/config.yaml)"
    return f"sky check ({sky}): {described}{note}"
