"""The journal of a grading run (``OUT/journal.jsonl``): one line per finished submission.

A line is appended (and synced) only after the submission is in the gradebook, so a run killed
at any moment is resumed by re-running it: what the journal holds is skipped. A line cut short
by the kill is ignored, and that submission is graded again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_journal(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill: that submission is graded again
            done[record["student"]] = record
    return done


def append_journal(path: Path, record: dict) -> None:
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
