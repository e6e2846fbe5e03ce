"""One check's outcome, and the two ways a check says it did not pass."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, FAIL, SKIP = "ok", "fail", "skip"


class CheckFailed(Exception):
    """The check found what the launch would trip on; the message says what is wrong and what to do."""


class CheckSkipped(Exception):
    """The check does not apply (nothing to check) or was turned off; the message says why."""


@dataclass
class CheckResult:
    name: str
    status: str  # ok, fail or skip
    detail: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != FAIL

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "seconds": round(self.seconds, 3)}
