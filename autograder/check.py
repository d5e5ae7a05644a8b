"""``python -m autograder check NOTEBOOK``: what the grader reports for the visible tests.

It runs the same pipeline as ``grade`` on one notebook (code found by the functions it
defines, run in a fresh sandboxed process, verdicts outside it) with the visible checks only:
the hidden checks' points are left for the real grading. Without bubblewrap it runs unsandboxed
(it is the student's own code on the student's own machine) and says so.
"""

from __future__ import annotations

from pathlib import Path

from autograder.grade import Job
from autograder.unit_grader import UnitGrader
from autograder.sandbox import Limits, Slot, sandbox_problem
from autograder.units import load_unit


def check(assignment: str, notebook: Path, sandbox: bool = True, limits: Limits | None = None) -> int:
    unit = load_unit(assignment)
    if sandbox and (problem := sandbox_problem()):
        print(f"note: {problem}; running without a sandbox")
        sandbox = False
    grader = UnitGrader(unit, limits or Limits(), sandbox, visible_only=True)
    slot = Slot(0, unit.probes, unit.library, grader.limits, sandbox, grader.scale)
    try:
        record = grader.grade_one(slot, Job(notebook.stem, {unit.notebook: notebook}))
    finally:
        slot.close()
    hidden = sum(c.points for c in unit.checks() if not c.visible)
    print(f"{notebook}: status {record['status']}")
    for note in record["notes"]:
        print(f"  note: {note}")
    rows = [(piece.name, entry) for piece in unit.pieces for entry in record["pieces"][piece.name]["checks"]]
    wide = max([len("piece")] + [len(name) for name, _ in rows])  # columns as wide as the longest name
    wide_check = max([len("check")] + [len(entry["name"]) for _, entry in rows])
    print(f"{'piece':<{wide}} {'check':<{wide_check}} {'result':<6} {'points':>7}  message")
    for name, entry in rows:
        verdict = "pass" if entry["passed"] else "FAIL"
        print(f"{name:<{wide}} {entry['name']:<{wide_check}} {verdict:<6} {entry['points']:>3g} / {entry['max']:g}  {entry.get('message', '')}")
    print(f"visible tests: {record['total']:g} / {record['max']:g}; hidden tests ({hidden:g} points) are run when you submit")
    return 0 if record["total"] == record["max"] else 1
