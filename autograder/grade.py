"""``python -m autograder grade``: grade a folder (or zip) of submissions, in parallel, resumably.

This module orchestrates; each step lives in its own module:

1. ``submissions``: read each submission's code cells, whatever the file, and keep the student's
   definitions of the functions the unit grades.
2. ``sandbox`` and ``worker``: for each graded piece, a sandboxed child forked from a warm worker
   runs those definitions and the piece's probes and sends back plain data (``wire``).
3. ``judge``: outside the student's process, each declared check's verdict turns that data into
   points (``units/<unit>.py``, declared as ``spec`` describes). An assignment with no
   declaration is a plain nbgrader exercise (``plain``): each notebook runs whole in the sandbox
   and its test cells score as nbgrader scores them.
4. ``gradebook`` then ``journal``: each finished submission is committed to the nbgrader
   gradebook and then appended to the journal; a re-run grades again only the submissions whose
   files, or the assignment's checks, changed since their journal entry.
5. ``output``: ``grades.csv``, ``feedback/<student>/<notebook>.html`` and ``report.html``.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path


from autograder import ROOT, output
from autograder import submissions as subs
from autograder.assignment import read_source, sync_test_cells
from autograder.gradebook import open_gradebook, record_grades
from autograder.journal import append_journal, read_journal
from autograder.late import apply_late_penalty, parse_time
from autograder.plain import NotebookGrader, load_plain
from autograder.sandbox import Limits, SandboxUnavailable, sandbox_problem
from autograder.spec import Unit
from autograder.unit_grader import UnitGrader
from autograder.units import load_unit, names


@dataclass
class Job:
    student: str
    paths: dict[str, Path | None]  # notebook name -> the student's file for it
    timestamp: str | None = None  # when it was submitted (nbgrader's timestamp.txt)

    @property
    def path(self) -> Path | None:
        return next(iter(self.paths.values()), None)

    def digest(self) -> str:
        """The submitted files' content (and submission time): a change means grading again."""
        digest = hashlib.sha256((self.timestamp or "").encode())
        for name, path in sorted(self.paths.items()):
            digest.update(name.encode())
            try:
                digest.update(path.read_bytes() if path is not None else b"<none>")
            except OSError:
                digest.update(b"<unreadable>")
        return digest.hexdigest()


def load_target(assignment: str, root: Path = ROOT):
    """The declared unit, or else the plain nbgrader assignment in ``solutions/<assignment>/``."""
    if assignment in names():
        unit = load_unit(assignment)
        sync_test_cells(unit, read_source(unit, root))  # raises when solutions/ and the declaration disagree
        return unit
    if (root / "solutions" / assignment).is_dir():
        return load_plain(assignment, root)
    known = sorted({*names(), *(p.name for p in (root / "solutions").glob("*") if p.is_dir())})
    raise ValueError(f"no assignment {assignment!r}: neither solutions/{assignment}/ nor autograder/units/{assignment}.py "
                     f"exists; the assignments are {', '.join(known)}")


def make_grader(target, limits: Limits, sandbox: bool, scale: str):
    return UnitGrader(target, limits, sandbox, scale) if isinstance(target, Unit) else NotebookGrader(target, limits, sandbox, scale)


def grade(  # noqa: PLR0913
    assignment: str, submissions: Path, out: Path, workers: int | None = None, db: str | None = None,
    limits: Limits | None = None, sandbox: bool = True, scale: str = "smoke", progress: bool = True,
    book_url: str | None = None, due: str | None = None, late_penalty: str = "none", summary: dict | None = None,
    root: Path = ROOT,
) -> dict[str, dict]:
    """Grade what is new or changed in ``submissions`` since ``out``'s journal; returns
    ``{student: record}``. ``summary``, if given, receives the counts of graded, re-graded and
    skipped submissions."""
    from tqdm import tqdm

    # nbgrader's add_submission trips SQLAlchemy's autoflush warnings: harmless, and noise here
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", message=".*not in session.*")

    target = load_target(assignment, root)
    if late_penalty not in ("none", "zero"):
        raise ValueError(f"--late-penalty is none or zero (nbgrader's two methods), not {late_penalty!r}")
    deadline = parse_time(due) if due else None
    if sandbox and (problem := sandbox_problem()):
        raise SandboxUnavailable(f"{problem}. Refusing to grade without a sandbox (pass --no-sandbox to run student code unprotected).")
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "journal.jsonl"
    url = db or f"sqlite:///{(out / 'gradebook.db').resolve()}"
    grader = make_grader(target, limits or Limits(), sandbox, scale)
    with tempfile.TemporaryDirectory(prefix="autograder-") as scratch:
        folder = submissions
        if submissions.is_file():
            folder = subs.unpack(submissions, Path(scratch))
        found = {student: Job(student, paths, timestamp)
                 for student, (paths, timestamp) in subs.discover_all(folder, assignment, target.notebooks).items()}
        digests = {student: job.digest() for student, job in found.items()}
        done = read_journal(journal)
        # what a record depends on besides the file: the checks, and the due date and its penalty
        checks = hashlib.sha256(f"{grader.digest} {deadline} {late_penalty}".encode()).hexdigest()
        fresh = {s for s in found if s in done and done[s].get("digest") == digests[s] and done[s].get("checks") == checks}
        counts = {"graded": 0, "regraded": 0, "skipped": len(fresh)}
        gradebook = open_gradebook(url, target, duedate=deadline)
        try:
            for student in sorted(fresh):  # journal ahead of the gradebook (e.g. a new --db)
                record_grades(gradebook, target, done[student])
            todo = [job for student, job in found.items() if student not in fresh]
            workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
            jobs: queue.Queue = queue.Queue()
            for job in todo:
                jobs.put(job)
            results: queue.Queue = queue.Queue()
            stop = threading.Event()

            def work(index: int) -> None:
                slot = grader.slot(index)
                try:
                    while not stop.is_set():
                        try:
                            job = jobs.get_nowait()
                        except queue.Empty:
                            return
                        try:
                            record = grader.grade_one(slot, job)
                            record.update(digest=digests[job.student], checks=checks, timestamp=job.timestamp,
                                          raw_total=record["total"])
                            apply_late_penalty(record, deadline, late_penalty)
                            results.put(record)
                        except Exception as error:  # noqa: BLE001 (a grader bug must not stop the others)
                            results.put(error)
                finally:
                    slot.close()

            threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
            for thread in threads:
                thread.start()
            bar = tqdm(total=len(found), initial=len(fresh), unit="sub", desc=f"grading {assignment}",
                       disable=not progress, dynamic_ncols=True)
            try:
                for _ in todo:
                    record = results.get()
                    if isinstance(record, Exception):
                        raise record
                    record_grades(gradebook, target, record)  # the gradebook first, then the journal
                    append_journal(journal, record)
                    counts["regraded" if record["student"] in done else "graded"] += 1
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
    output.write_outputs(target, records, out, book_url=book_url)
    if summary is not None:
        summary.update(counts)
    return records
