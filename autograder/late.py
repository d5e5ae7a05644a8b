"""Late submissions, as nbgrader's LateSubmissionPlugin treats them."""

from __future__ import annotations

import datetime


def parse_time(text: str) -> datetime.datetime:
    """A timestamp as nbgrader writes it (``2026-12-01 17:00:00.000000 UTC``) or ISO 8601; naive means UTC."""
    from nbgrader.utils import parse_utc

    return parse_utc(text.strip())


def apply_late_penalty(record: dict, due: datetime.datetime | None, method: str) -> None:
    """nbgrader's LateSubmissionPlugin: ``none`` records lateness only, ``zero`` scores a late
    submission 0."""
    seconds = 0.0
    if due is not None and record.get("timestamp"):
        seconds = max(0.0, (parse_time(record["timestamp"]) - due).total_seconds())
    penalty = record["raw_total"] if (seconds > 0 and method == "zero") else 0.0
    record.update(late_seconds=seconds, penalty=penalty, total=record["raw_total"] - penalty)
    if seconds > 0:
        record["notes"].append(f"submitted {datetime.timedelta(seconds=round(seconds))} after the due date"
                               + (": scored 0 (late penalty)" if penalty else ""))
