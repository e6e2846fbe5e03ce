"""Stop a training run at a chosen moment of its storage traffic, in-process or with a real SIGKILL.

    download:N          just before the N-th file of a checkpoint download
    marker:NAME         after checkpoint NAME's data, just before its _COMPLETE marker is written
    delete:NAME         at each deletion of something under checkpoint NAME (retention)

In-process (fast), `arm(moment, kill, patch=monkeypatch.setattr)` with a `kill` that raises a BaseException, which
skips the run's `except Exception` failure handling as a kill would. As a process that SIGKILLs itself at the
moment (nothing of Python's cleanup runs):

    python tests/kill_points.py MOMENT train --config ... --bucket ... --run-id ...
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cft.storage.bucket import LocalBucket, S3Bucket


class Killed(BaseException):
    """What an in-process kill raises: not an Exception, so only `finally` blocks run."""


def _wrap(patch: Callable[..., Any], name: str, should_kill: Callable[..., bool], kill: Callable[[], None]) -> None:
    for cls in (LocalBucket, S3Bucket):
        original = getattr(cls, name)

        def wrapped(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if should_kill(self, *args):
                kill()
            return _original(self, *args, **kwargs)

        patch(cls, name, wrapped)


def arm(moment: str, kill: Callable[[], None], patch: Callable[..., Any] = setattr) -> None:
    kind, _, arg = moment.partition(":")
    if kind == "download":
        calls = {"n": 0}

        def nth_download(bucket: Any, key: str, local: Path) -> bool:
            calls["n"] += 1
            return calls["n"] == int(arg)

        _wrap(patch, "download_file", nth_download, kill)
    elif kind == "marker":
        _wrap(patch, "write_text", lambda bucket, key, text: key.endswith(f"/{arg}/_COMPLETE"), kill)
    elif kind == "delete":
        def deletes_there(bucket: Any, prefix: str) -> bool:
            return f"/{arg}/" in f"{prefix.rstrip('/')}/" and bool(bucket.list_keys(prefix))

        _wrap(patch, "delete_prefix", deletes_there, kill)
    else:
        raise ValueError(f"unknown kill moment {moment!r}")


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    from cft.cli.main import main

    arm(sys.argv[1], _sigkill)
    sys.exit(main(sys.argv[2:]))
