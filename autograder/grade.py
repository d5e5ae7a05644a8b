"""``python -m autograder grade``: grade a folder (or zip) of submissions, in parallel, resumably.

This module orchestrates; each step lives in its own module:

1. ``submissions``: read each submission's code cells, whatever the file, and keep the student's
   definitions of the functions the unit grades.
2. ``sandbox`` and ``worker``: for each graded piece, a sandboxed child forked from a warm worker
   runs those definitions and the piece's probes and sends back plain data (``wire``).
3. ``judge``: outside the student's process, each declared check's verdict turns that data into
   points (``units/<unit>.py``, declared as ``spec`` describes).
4. ``gradebook`` then ``journal``: each finished submission is committed to the nbgrader
   gradebook and then appended to the journal; a re-run skips what the journal holds.
5. ``output``: ``grades.csv``, ``feedback/<student>/<notebook>.html`` and ``report.html``.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from autograder import output
from autograder import submissions as subs
from autograder.assignment import read_source, setup_source, sync_test_cells
from autograder.gradebook import open_gradebook, record_grades
from autograder.journal import append_journal, read_journal
from autograder.judge import piece_result, submission_status
from autograder.sandbox import Limits, SandboxUnavailable, Slot, sandbox_problem
from autograder.spec import Unit
from autograder.units import load_unit
from autograder.wire import split_frames


@dataclass
class Job:
    student: str
    path: Path | None


@dataclass
class Grader:
    unit: Unit
    limits: Limits = field(default_factory=Limits)
    sandbox: bool = True
    scale: str = "smoke"
    visible_only: bool = False

    def __post_init__(self):
        self.setup = setup_source(self.unit)
        self.probe_names = {check.grade_id: check.probe.__name__ for check in self.unit.checks()}

    def grade_one(self, slot: Slot | None, job: Job) -> dict:
        started = time.perf_counter()
        record = {"student": job.student, "file": job.path.name if job.path else None, "notes": [], "pieces": {}}
        if job.path is None:
            source = subs.Source([], "missing", [f"no file found for {self.unit.notebook}.ipynb"])
        else:
            source = subs.read_submission(job.path)
            if job.path.name != f"{self.unit.notebook}.ipynb" and source.status == "ok":
                source.notes.append(f"expected {self.unit.notebook}.ipynb, graded {job.path.name}")
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
        record.update(status=submission_status(source.status, [p["status"] for p in record["pieces"].values()]), total=sum(p["points"] for p in record["pieces"].values()),
                      max=sum(c["max"] for p in record["pieces"].values() for c in p["checks"]),
                      seconds=time.perf_counter() - started)
        return record


def grade(  # noqa: PLR0913
    assignment: str, submissions: Path, out: Path, workers: int | None = None, db: str | None = None,
    limits: Limits | None = None, sandbox: bool = True, scale: str = "smoke", progress: bool = True,
    book_url: str | None = None,
) -> dict[str, dict]:
    """Grade every submission not yet in ``out``'s journal; returns ``{student: record}``."""
    from tqdm import tqdm

    # nbgrader's add_submission trips SQLAlchemy's autoflush warnings: harmless, and noise here
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", message=".*not in session.*")

    unit = load_unit(assignment)
    sync_test_cells(unit, read_source(unit))  # raises when solutions/ and the declaration disagree
    if sandbox and (problem := sandbox_problem()):
        raise SandboxUnavailable(f"{problem}. Refusing to grade without a sandbox (pass --no-sandbox to run student code unprotected).")
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "journal.jsonl"
    url = db or f"sqlite:///{(out / 'gradebook.db').resolve()}"
    with tempfile.TemporaryDirectory(prefix="autograder-") as scratch:
        folder = submissions
        if submissions.is_file():
            folder = subs.unpack(submissions, Path(scratch))
        found = {student: Job(student, path) for student, path in subs.discover(folder, unit.notebook).items()}
        done = read_journal(journal)
        gradebook = open_gradebook(url, unit)
        try:
            for student in sorted(set(done) & set(found)):  # journal ahead of the gradebook (e.g. a new --db)
                record_grades(gradebook, unit, done[student])
            todo = [job for student, job in found.items() if student not in done]
            grader = Grader(unit, limits or Limits(), sandbox, scale)
            workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
            jobs: queue.Queue = queue.Queue()
            for job in todo:
                jobs.put(job)
            results: queue.Queue = queue.Queue()
            stop = threading.Event()

            def work(index: int) -> None:
                slot = Slot(index, unit.probes, unit.library, grader.limits, sandbox, scale)
                try:
                    while not stop.is_set():
                        try:
                            job = jobs.get_nowait()
                        except queue.Empty:
                            return
                        try:
                            results.put(grader.grade_one(slot, job))
                        except Exception as error:  # noqa: BLE001 (a grader bug must not stop the others)
                            results.put(error)
                finally:
                    slot.close()

            threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
            for thread in threads:
                thread.start()
            bar = tqdm(total=len(found), initial=len(found) - len(todo), unit="sub", desc=f"grading {assignment}",
                       disable=not progress, dynamic_ncols=True)
            try:
                for _ in todo:
                    record = results.get()
                    if isinstance(record, Exception):
                        raise record
                    record_grades(gradebook, unit, record)  # the gradebook first, then the journal
                    append_journal(journal, record)
                    done[record["student"]] = record
                    bar.update(1)
            finally:
                stop.set()
                bar.close()
                for thread in threads:
                    thread.join(timeout=5)
        finally:
            gradebook.close()
    records = {student: done[student] for student in sorted(found) if student in done}
    output.write_outputs(unit, records, out, book_url=book_url)
    return records
