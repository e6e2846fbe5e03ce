"""Secret redaction for every line ``notify`` writes (notifications, logs, stderr).

A job's environment carries tokens (HF_TOKEN, AWS keys, NTFY_TOKEN, ...); a command that echoes one, or a
traceback that prints it, must not push it to a phone or a bucket. The rule is by variable *name*, so it covers
secrets this code has never heard of.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

SECRET_NAME_PARTS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")
MIN_SECRET_LENGTH = 4  # shorter values ("1", "yes") would shred ordinary text
MASK = "***"
# Values that are settings, not secrets, whatever the name (TOKENIZERS_PARALLELISM=false is in most HF jobs' env).
NOT_SECRET_VALUES = frozenset({"true", "false", "none", "null", "auto", "disabled", "enabled"})
# Secrets whose name says nothing: Apprise URLs carry their services' tokens (slack://T.../B.../...).
SECRET_NAMES = frozenset({"APPRISE_URLS"})


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name marks its value as a secret."""
    upper = name.upper()
    return upper in SECRET_NAMES or any(part in upper for part in SECRET_NAME_PARTS)


def secret_values(env: Mapping[str, str] = os.environ) -> list[str]:
    """Values (>= 4 chars) of env vars whose name contains a secret marker, longest first.

    Longest first so that a secret containing another one is masked whole.
    """
    values = {v for k, v in env.items()
              if is_secret_name(k) and v and len(v) >= MIN_SECRET_LENGTH and v.lower() not in NOT_SECRET_VALUES}
    values |= {url for k in SECRET_NAMES for url in re.split(r"[\s,]+", env.get(k) or "")
               if len(url) >= MIN_SECRET_LENGTH}  # each URL of a list on its own
    return sorted(values, key=lambda v: (-len(v), v))


def redact(text: str, env: Mapping[str, str] = os.environ) -> str:
    """``text`` with every secret value from ``env`` replaced by ``***``."""
    return text_redactor(env)(text)


def text_redactor(env: Mapping[str, str] = os.environ) -> Callable[[str], str]:
    """A redact function with the secrets looked up once (for redacting many lines)."""
    values = secret_values(env)
    if not values:
        return lambda text: text
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return lambda text: pattern.sub(MASK, text)



class StreamRedactor:
    """Redacts a byte stream that arrives in arbitrary pieces: a secret split across two writes is still masked.

    Each piece is redacted together with what was held back from the previous one. The tail that could still
    grow into a secret (a proper prefix of one, or a match that a longer secret could extend) is held back until
    the next piece or :meth:`flush`, so what is emitted is final. Only that tail waits: ordinary text is never
    delayed, and the held tail is shorter than the longest secret. Bytes, because output need not be UTF-8.
    """

    def __init__(self, env: Mapping[str, str] = os.environ) -> None:
        self._secrets = [v.encode("utf-8", "surrogateescape") for v in secret_values(env)]
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self._secrets)) if self._secrets else None
        self._held = b""

    def _cut(self, data: bytes) -> int:
        """Where the part that is safe to emit ends: before the earliest suffix that could still become a secret."""
        assert self._pattern is not None
        longest = max(len(s) for s in self._secrets)
        cut = len(data)
        for start in range(max(0, len(data) - longest + 1), len(data)):
            tail = data[start:]
            if any(len(s) > len(tail) and s.startswith(tail) for s in self._secrets):
                cut = start
                break
        for match in self._pattern.finditer(data):  # never split a match: hold all of it
            if match.start() < cut < match.end():
                return match.start()
        return cut

    def feed(self, data: bytes) -> bytes:
        """The redacted output that is final so far (may be shorter than ``data``: a possible secret waits)."""
        if self._pattern is None:
            return data
        data = self._held + data
        cut = self._cut(data)
        self._held = data[cut:]
        return self._pattern.sub(MASK.encode(), data[:cut])

    def flush(self) -> bytes:
        """Whatever is held back, redacted: the stream has ended, so it can no longer grow into a secret."""
        data, self._held = self._held, b""
        return self._pattern.sub(MASK.encode(), data) if self._pattern is not None else data
