"""Push notifications for long GPU jobs through ntfy (ntfy.sh or self-hosted), or any Apprise URL.

``notify`` needs nothing but ``requests`` (boto3 only for s3:// buckets), so it runs on a GPU node, a
researcher's laptop, or SkyPilot's jobs controller. ``python -m notify run|send|ls|logs|event`` (or
``cft notify ...``); see ``notify.cli``.
Importing the package stays stdlib-only: ``cft`` imports ``run_identity``, ``run_layout``, ``manifest``,
``redact`` and ``storage.s3_client`` from here (the run contract is defined once, on this side, because ``notify``
never imports ``cft``); the client, and with it ``requests``, loads on first use.
"""

from typing import Any

from notify.redact import redact, secret_values
from notify.run_identity import resolve_run_id, sanitize_run_id

__all__ = ["NtfyClient", "notify", "redact", "resolve_run_id", "sanitize_run_id", "secret_values"]


def __getattr__(name: str) -> Any:
    if name == "NtfyClient":
        from notify.client import NtfyClient

        return NtfyClient
    if name == "notify":
        from notify.notifier import notify

        return notify
    raise AttributeError(f"module 'notify' has no attribute {name!r}")
