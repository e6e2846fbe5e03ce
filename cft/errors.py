"""User-facing errors.

A `CFTError` is a mistake the user can fix (a bad recipe, a missing file, a wrong column). The CLI prints it as
one line and exits with status 2; anything else is a bug and keeps its traceback.
"""


class CFTError(Exception):
    """An error caused by the user's input; its message says what is wrong and what to do."""
