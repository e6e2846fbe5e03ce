"""A client for ntfy's publish API (ntfy.sh or self-hosted) that can never hurt the job it reports on.

A notification is a courtesy: it must not raise, must not hang on a dead or silent server, and must not leak
a secret. So every publish runs under a hard total deadline (``NTFY_DEADLINE``, default 5 s) in a daemon
thread, retries only what may succeed on retry (network errors, 429, 5xx) with backoff, redacts all text, and
reports a failure as one line on stderr.

Configuration (environment): ``NTFY_TOPIC`` (required; a full ``https://host/topic`` URL also works),
``NTFY_SERVER`` (default https://ntfy.sh), ``NTFY_TOKEN`` (Bearer) or ``NTFY_USER``/``NTFY_PASSWORD``
(basic auth), ``NTFY_DEADLINE`` (seconds).
"""

from __future__ import annotations

import base64
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

import requests

from notify.redact import text_redactor

DEFAULT_SERVER = "https://ntfy.sh"
DEFAULT_DEADLINE_S = 5.0
MAX_ATTEMPTS = 4
MAX_MESSAGE_BYTES = 4000  # ntfy turns longer messages into attachments
PRIORITIES = {"min": 1, "low": 2, "default": 3, "high": 4, "urgent": 5, "max": 5}
_RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}


def parse_priority(value: int | str | None) -> int | None:
    """1-5 or min/low/default/high/urgent (as ntfy names them) -> 1-5; ``None`` stays ``None``."""
    if value is None or value == "":
        return None
    text = str(value).strip().lower()
    if text in PRIORITIES:
        return PRIORITIES[text]
    if text.isdigit() and 1 <= int(text) <= 5:
        return int(text)
    raise ValueError(f"priority must be 1-5 or one of {', '.join(PRIORITIES)} (got {value!r})")


def _header_value(text: str) -> str:
    """HTTP headers are Latin-1 and one line; ntfy decodes RFC 2047 for anything else (emoji, accents)."""
    text = " ".join(text.split())  # a newline (say, in a job name) would make the header, and the send, invalid
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def truncate(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """At most ``limit`` bytes of UTF-8 (ntfy turns longer messages into attachments), cut on a character."""
    data = message.encode("utf-8")
    if len(data) <= limit:
        return message
    return data[: limit - 4].decode("utf-8", "ignore") + "\n…"


def deadline_from(env: Mapping[str, str]) -> float:
    """``NTFY_DEADLINE`` in seconds: the most one notification may take, on every channel."""
    try:
        value = float(env.get("NTFY_DEADLINE", "") or DEFAULT_DEADLINE_S)
    except ValueError:
        return DEFAULT_DEADLINE_S
    return value if value > 0 else DEFAULT_DEADLINE_S


def say(line: str, env: Mapping[str, str], stderr: TextIO | None = None) -> None:
    """One redacted `notify: ...` line on stderr; a delivery problem is reported, never raised (a closed stderr
    must not matter either)."""
    try:
        print(text_redactor(env)(f"notify: {line}"), file=stderr or sys.stderr, flush=True)
    except Exception:
        pass


@dataclass
class _Outcome:
    ok: bool = False
    error: str = "no attempt finished"
    attempts: int = 0


@dataclass
class NtfyClient:
    """Publishes to one ntfy topic. Build it with :meth:`from_env`; :meth:`publish` never raises."""

    topic: str | None
    server: str = DEFAULT_SERVER
    token: str | None = None
    user: str | None = None
    password: str | None = None
    deadline: float = DEFAULT_DEADLINE_S
    env: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    stderr: TextIO | None = field(default=None, repr=False)
    _disabled_reported: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, stderr: TextIO | None = None) -> NtfyClient:
        """Configure from ``NTFY_*`` variables in ``env``."""
        return cls(
            topic=(env.get("NTFY_TOPIC") or "").strip() or None,
            server=(env.get("NTFY_SERVER") or "").strip() or DEFAULT_SERVER,
            token=env.get("NTFY_TOKEN") or None,
            user=env.get("NTFY_USER") or None,
            password=env.get("NTFY_PASSWORD") or None,
            deadline=deadline_from(env),
            env=env,
            stderr=stderr,
        )

    @property
    def enabled(self) -> bool:
        return bool(self.topic)

    @property
    def url(self) -> str:
        assert self.topic
        if self.topic.startswith(("http://", "https://")):
            return self.topic
        server = self.server if "://" in self.server else f"https://{self.server}"
        return f"{server.rstrip('/')}/{self.topic.lstrip('/')}"

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
        """Send one notification; True when ntfy accepted it. Bounded by ``deadline`` seconds in total."""
        try:
            if not self.enabled:
                if not self._disabled_reported:  # once per client, not once per event
                    self._disabled_reported = True
                    self._say("NTFY_TOPIC is not set; notifications are disabled")
                return False
            request = self._build_request(message, title, priority, tags, click, markdown)
        except Exception as exc:  # never raise into the caller
            self._say(f"notification not sent: {exc}")
            return False
        return self._send_bounded(*request)

    def _build_request(
        self,
        message: str,
        title: str | None,
        priority: int | str | None,
        tags: Iterable[str] | str | None,
        click: str | None,
        markdown: bool,
    ) -> tuple[dict[str, str], bytes]:
        redact = text_redactor(self.env)
        headers: dict[str, str] = {}
        if title:
            headers["Title"] = _header_value(redact(title))
        try:
            level = parse_priority(priority)
        except ValueError as exc:
            self._say(f"{exc}; using the default priority")
            level = None
        if level is not None:
            headers["Priority"] = str(level)
        if isinstance(tags, str):
            tags = tags.split(",")
        tag_list = [t.strip() for t in tags or () if t and t.strip()]
        if tag_list:
            headers["Tags"] = _header_value(redact(",".join(tag_list)))
        if click:
            headers["Click"] = _header_value(redact(click))
        if markdown:
            headers["Markdown"] = "yes"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.user and self.password:
            basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
        body = truncate(redact(message or "")).encode("utf-8")
        return headers, body

    def _send_bounded(self, headers: dict[str, str], body: bytes) -> bool:
        # requests' timeouts cover connect and each read, not DNS or a server trickling bytes; a daemon
        # thread joined with the deadline bounds everything, and is simply abandoned if still stuck.
        start = time.monotonic()
        outcome = _Outcome()
        worker = threading.Thread(
            target=self._attempts, args=(headers, body, start + self.deadline, outcome), daemon=True
        )
        worker.start()
        worker.join(self.deadline + 0.25)
        if outcome.ok:
            return True
        elapsed = time.monotonic() - start
        server = self.url.rsplit("/", 1)[0]  # the topic is a capability: keep it out of logs
        reason = "no answer before the deadline" if worker.is_alive() else outcome.error
        self._say(
            f"notification not sent to {server}: {reason} "
            f"({outcome.attempts} attempt(s), {elapsed:.1f}s; NTFY_DEADLINE={self.deadline:g})"
        )
        return False

    def _attempts(self, headers: dict[str, str], body: bytes, deadline: float, outcome: _Outcome) -> None:
        backoff = 0.25
        with requests.Session() as session:
            session.trust_env = True
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0.05:
                    return
                outcome.attempts += 1
                try:
                    response = session.post(
                        self.url, data=body, headers=headers, timeout=(min(remaining, 3.0), remaining)
                    )
                except requests.RequestException as exc:
                    outcome.error = type(exc).__name__
                else:
                    if response.status_code < 300:
                        outcome.ok = True
                        return
                    outcome.error = f"HTTP {response.status_code} {response.text.strip()[:120]}".strip()
                    if response.status_code not in _RETRY_STATUSES:
                        return
                if outcome.attempts >= MAX_ATTEMPTS:
                    return
                pause = min(backoff, deadline - time.monotonic() - 0.05)
                if pause <= 0:
                    return
                time.sleep(pause)
                backoff *= 2

