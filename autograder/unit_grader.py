"""Grading one submission of a declared unit, piece by piece.

For each piece the student's definitions (found by ``submissions``) and the piece's probes run
in a sandboxed child forked from a warm worker; the declared verdicts then judge what came back
(``judge``), in this process. A piece that cannot run (no function, a forbidden call, the time
left used up) is judged without running.
"""

from __future__ import annotations

import hashlib
import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder import submissions as subs
from autograder.assignment import read_source, setup_source
from autograder.judge import piece_result, submission_status
from autograder.plain import merge, read_notebook
from autograder.sandbox import Limits, Slot
from autograder.spec import Unit
from autograder.wire import split_frames


def _expected_name(path: Path, notebook: str) -> bool:
    """The file is the notebook, as named or as an LMS export names it (``<student>_..._<name>``)."""
    return path.name == f"{notebook}.ipynb" or path.name.endswith(f"_{notebook}.ipynb")


@dataclass
class UnitGrader:
    """Grades one submission of a declared unit: each piece's probes in a sandboxed child."""

    unit: Unit
    limits: Limits = field(default_factory=Limits)
    sandbox: bool = True
    scale: str = "smoke"
    visible_only: bool = False

    def __post_init__(self):
        self.setup = setup_source(self.unit)
        self.source = read_source(self.unit)
        self.probe_names = {check.grade_id: check.probe.__name__ for check in self.unit.checks()}
        digest = hashlib.sha256(self.setup.encode())
        for module in (inspect.getmodule(self.unit.checks()[0].verdict), inspect.getmodule(self.unit.checks()[0].probe)):
            digest.update(Path(module.__file__).read_bytes())
        digest.update(Path(__file__).with_name("verdicts.py").read_bytes())
        self.digest = digest.hexdigest()

    def slot(self, index: int) -> Slot:
        return Slot(index, self.unit.probes, self.unit.library, self.limits, self.sandbox, self.scale)

    def grade_one(self, slot: Slot | None, job: Job) -> dict:
        started = time.perf_counter()
        path = job.paths.get(self.unit.notebook)
        record = {"student": job.student, "file": path.name if path else None, "notes": [], "pieces": {}}
        if path is None:
            source = subs.Source([], "missing", [f"no file found for {self.unit.notebook}.ipynb"])
        else:
            source = subs.read_submission(path)
            if not _expected_name(path, self.unit.notebook) and source.status == "ok":
                source.notes.append(f"expected {self.unit.notebook}.ipynb, graded {path.name}")
            if source.status == "ok" and path.suffix == ".ipynb":
                notebook, _ = read_notebook(path)
                if notebook is not None:  # deleted or edited test cells: the grader ran its own
                    source.notes += [n for n in merge(self.source, notebook)[1] if n.startswith("the test cell")]
        record["notes"] += source.notes
        code = subs.extract(source.cells, [p.name for p in self.unit.pieces])
        if source.status == "ok":
            record["notes"] += code.notes
        deadline = started + self.limits.notebook_seconds
        for piece in self.unit.pieces:
            checks = [c for c in piece.checks if c.visible or not self.visible_only]
            header, messages = {"seconds": 0.0}, []
            static = subs.static_forbidden(code, piece.name, piece.forbidden)
            left = deadline - time.perf_counter()
            if source.status == "ok" and piece.name in code.defined and not static:
                if left <= 1:
                    header = {"timed_out": True, "limit": self.limits.notebook_seconds}
                else:
                    seconds = min(self.limits.piece_seconds, left)
                    request = {"setup": self.setup, "statements": code.statements,
                               "checks": [[c.grade_id, self.probe_names[c.grade_id]] for c in checks],
                               "forbidden": list(piece.forbidden), "seconds": seconds}
                    header, raw = slot.run(request)
                    header["limit"] = round(seconds)
                    messages = split_frames(raw)
            result = piece_result(piece, code, header, messages, static)
            result["checks"] = [c for c in result["checks"] if c["name"] in {x.grade_id for x in checks}]
            result["points"] = sum(c["points"] for c in result["checks"])
            record["pieces"][piece.name] = result
        record.update(status=submission_status(source.status, [p["status"] for p in record["pieces"].values()]),
                      total=sum(p["points"] for p in record["pieces"].values()),
                      max=sum(c["max"] for p in record["pieces"].values() for c in p["checks"]),
                      seconds=time.perf_counter() - started)
        return record
