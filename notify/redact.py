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


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name marks its value as a secret."""
    upper = name.upper()
    return any(part in upper for part in SECRET_NAME_PARTS)


def secret_values(env: Mapping[str, str] = os.environ) -> list[str]:
    """Values (>= 4 chars) of env vars whose name contains a secret marker, longest first.

    Longest first so that a secret containing another one is masked whole.
    """
    values = {v for k, v in env.items() if is_secret_name(k) and v and len(v) >= MIN_SECRET_LENGTH}
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


def bytes_redactor(env: Mapping[str, str] = os.environ) -> Callable[[bytes], bytes]:
    """Like :func:`text_redactor` for raw output bytes (a command's output need not be valid UTF-8)."""
    values = [v.encode("utf-8", "surrogateescape") for v in secret_values(env)]
    if not values:
        return lambda data: data
    pattern = re.compile(b"|".join(re.escape(v) for v in values))
    mask = MASK.encode()
    return lambda data: pattern.sub(mask, data)
