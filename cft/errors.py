"""User-facing errors, and the one place where any exception becomes the one line a user sees.

A `CFTError` is a mistake the user can fix (a bad recipe, a missing file, a wrong column). Other exceptions that
bad input is known to cause (a file in the way, a damaged file that a library refused, a document nested too deeply)
are mapped to a line by their type in `user_message`, so no command needs its own try/except for them. The CLI
prints `cft: error: <line>` and exits with status 2; anything not recognised is a bug and still gets one line
(status 1) that asks for `CFT_DEBUG=1`, which shows the traceback.
"""

from __future__ import annotations

import errno


class CFTError(Exception):
    """An error caused by the user's input; its message says what is wrong and what to do."""


class TrainingDiverged(CFTError):
    """The loss stopped being a finite number: the run stops (its last complete checkpoint is kept)."""


def one_line(text: str) -> str:
    """Messages from libraries span lines (botocore lists its regexes); a user gets them joined on one."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


_OS_HINTS = {
    errno.ENOENT: "not found",
    errno.EEXIST: "a file is in the way (a folder is needed here)",
    errno.ENOTDIR: "a file is in the way (a folder is needed here)",
    errno.EISDIR: "is a folder (a file is needed here)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "file name too long",
}


def _os_message(error: OSError) -> str | None:
    if error.errno not in _OS_HINTS:
        return None
    where = error.filename
    if error.errno in (errno.EEXIST, errno.ENOTDIR) and error.filename:
        # the path named may be a parent of the one asked for: name the file that is in the way when we can
        from pathlib import Path

        for candidate in (Path(str(error.filename)), *Path(str(error.filename)).parents):
            if candidate.exists() and not candidate.is_dir():
                where = candidate
                break
    return f"{where}: {_OS_HINTS[error.errno]}" if where else f"{_OS_HINTS[error.errno]} ({error})"


def user_message(error: BaseException) -> str | None:
    """The one line for an exception that bad input causes, or None for a bug."""
    if isinstance(error, CFTError):
        return one_line(str(error))
    if isinstance(error, RecursionError):
        return "an input file is nested too deeply to read (a damaged or hostile JSON or YAML file)"
    if isinstance(error, MemoryError):
        return ("out of memory; lower train.batch_size or model.max_length, or set train.grad_cache_chunk_size=auto "
                "(see the memory plan line at the start of training)")
    if type(error).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
        return one_line(f"out of GPU memory ({str(error).splitlines()[0] if str(error) else ''}); lower "
                        "train.batch_size or model.max_length, or set train.grad_cache_chunk_size=auto")
    if isinstance(error, OSError) and not isinstance(error, ConnectionError):
        message = _os_message(error)
        if message:
            return one_line(message)
    return None
