"""How long a run took, compact enough for a table column: `cft runs` lists, details and heartbeat ages.

The notifier has its own longer form (`notify.report.format_duration`, ``1h 02m 03s``) for a sentence on a phone.
"""

from __future__ import annotations


def format_duration(seconds: float | None) -> str:
    """42s, 3m05s, 1h02m, 2d03h: two units at most, enough to tell runs apart."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
