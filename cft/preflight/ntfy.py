"""The ntfy topic: one test notification through notify's own client, so the phone shows what the job would send."""

from __future__ import annotations

import io
import os
import socket

from cft.preflight.result import CheckFailed, CheckSkipped
from notify.client import NtfyClient


def check(job_name: str) -> str:
    env = dict(os.environ)
    if not (env.get("NTFY_TOPIC") or "").strip():
        raise CheckSkipped(f"NTFY_TOPIC is not set: {job_name} will not notify (give --env NTFY_TOPIC=<topic> here "
                           "and to sky launch)")
    said = io.StringIO()
    client = NtfyClient.from_env(env, stderr=said)
    server = client.url.rsplit("/", 1)[0]  # the topic is a capability: never shown
    sent = client.publish(f"cft check from {socket.gethostname()}: notifications for {job_name} work.",
                          title="cft check", tags="white_check_mark", priority="default")
    if sent:
        return f"a test notification went to {server} (topic not shown): look at your phone"
    reason = said.getvalue().strip().removeprefix("notify: ")
    if "HTTP 401" in reason or "HTTP 403" in reason:
        token = "NTFY_TOKEN is refused" if client.token else "no NTFY_TOKEN is given"
        raise CheckFailed(f"{server} refused the test notification ({'403' if 'HTTP 403' in reason else '401'}): the "
                          f"topic is protected and {token}; put a token with write access in the secrets file")
    if "HTTP" not in reason:
        raise CheckFailed(f"cannot reach {server} ({reason}); check NTFY_SERVER (the job gets it with --env)")
    raise CheckFailed(reason)
