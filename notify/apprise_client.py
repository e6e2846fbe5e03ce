"""Notifications through Apprise (Slack, Discord, email, Telegram, Pushover, ...), for those not on ntfy.

``APPRISE_URLS`` holds one or more Apprise URLs (``slack://...``, ``discord://...``, ``mailto://...``; separated
by spaces or commas, as Apprise's own CLI reads them). The ``apprise`` package is an optional extra
(``pip install "cft[apprise]"``): ntfy needs nothing but ``requests``. The same promises as ``client.NtfyClient``
hold: the same ``NTFY_DEADLINE`` bounds every publish in total, failed attempts are retried with backoff while
time remains, all text is redacted, a failure is one line on stderr, and nothing raises. The URLs carry their
services' tokens, so only a URL's scheme is ever printed (and ``redact`` masks the URLs in logs).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

from notify.client import MAX_ATTEMPTS, say, truncate
from notify.redact import text_redactor

ENV_NAME = "APPRISE_URLS"
# Apprise has no priorities of ntfy's kind; its four types set a colour or an icon. The wrapper's tags say which.
_TYPES = {"x": "failure", "warning": "warning", "white_check_mark": "success", "tada": "success"}


def urls_from_env(env: Mapping[str, str]) -> list[str]:
    return [u for u in re.split(r"[\s,]+", env.get(ENV_NAME, "")) if u]


def scheme(url: str) -> str:
    return url.split("://", 1)[0] + "://…" if "://" in url else "an Apprise URL"


class _LastWarning(logging.Handler):
    """Keeps Apprise's last warning (why a send failed) for our one line; Apprise logs, it does not raise."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.message: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.message = record.getMessage()


@dataclass
class AppriseClient:
    """Publishes to one Apprise URL; :meth:`publish` never raises."""

    url: str
    deadline: float
    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    stderr: TextIO | None = field(default=None, repr=False)

    enabled = True

    def _say(self, line: str) -> None:
        say(line, self.env, self.stderr)

    def publish(
        self,
        message: str,
        title: str | None = None,
        priority: int | str | None = None,
        tags: Iterable[str] | str | None = None,
        click: str | None = None,
        markdown: bool = True,
    ) -> bool:
        """Send one notification; True when the service accepted it. Bounded by ``deadline`` seconds in total."""
        where = scheme(self.url)
        try:
            import apprise
        except ImportError:
            self._say(f"notification not sent to {where}: the apprise package is not installed "
                      '(pip install "cft[apprise]" or pip install apprise)')
            return False
        redact = text_redactor(self.env)
        if isinstance(tags, str):
            tags = tags.split(",")
        kind = next((_TYPES[t.strip()] for t in tags or () if t.strip() in _TYPES), "info")
        body = truncate(redact(message or "") + (f"\n\n{redact(click)}" if click else ""))
        sender = apprise.Apprise()
        if not sender.add(self.url):
            self._say(f"notification not sent to {where}: not a URL the installed apprise understands")
            return False
        fmt = apprise.NotifyFormat.MARKDOWN if markdown else apprise.NotifyFormat.TEXT
        outcome: dict[str, Any] = {"ok": False, "attempts": 0, "error": "no attempt finished"}
        start = time.monotonic()
        worker = threading.Thread(
            target=self._attempts, args=(sender, body, redact(title or ""), kind, fmt, start + self.deadline, outcome),
            daemon=True,
        )
        worker.start()
        worker.join(self.deadline + 0.25)
        if outcome["ok"]:
            return True
        reason = "no answer before the deadline" if worker.is_alive() else redact(outcome["error"])
        self._say(f"notification not sent to {where}: {reason} ({outcome['attempts']} attempt(s), "
                  f"{time.monotonic() - start:.1f}s; NTFY_DEADLINE={self.deadline:g})")
        return False

    def _attempts(self, sender: Any, body: str, title: str, kind: str, fmt: Any, deadline: float,
                  outcome: dict[str, Any]) -> None:
        backoff = 0.25
        while outcome["attempts"] < MAX_ATTEMPTS and (remaining := deadline - time.monotonic()) > 0.05:
            outcome["attempts"] += 1
            for service in sender:  # Apprise's worker threads are joined at exit: bound them, not only us
                service.socket_connect_timeout = min(remaining, 3.0)
                service.socket_read_timeout = remaining
            capture = _LastWarning()
            logging.getLogger("apprise").addHandler(capture)
            try:
                ok = bool(sender.notify(body=body, title=title, notify_type=kind, body_format=fmt))
            except Exception as exc:  # a plugin bug must not reach the job
                ok, capture.message = False, f"{type(exc).__name__}: {exc}"
            finally:
                logging.getLogger("apprise").removeHandler(capture)
            if ok:
                outcome["ok"] = True
                return
            outcome["error"] = " ".join((capture.message or "the service refused it").split())[:200]
            pause = min(backoff, deadline - time.monotonic() - 0.05)
            if pause <= 0:
                return
            time.sleep(pause)
            backoff *= 2
