"""``python -m autograder grade``: grade a folder (or zip) of submissions, in parallel, resumably.

1. Read each submission's code cells, whatever the file (``submissions.py``), and keep the
   student's definitions of the functions the unit grades.
2. For each graded piece, a sandboxed child forked from a warm worker (``sandbox.py``,
   ``worker.py``) runs those definitions and the piece's probes, and sends back plain data.
3. Here, outside the student's process, each check turns that data into a verdict and points
   (``units/<unit>.py``).
4. Each finished submission goes to the nbgrader gradebook (one commit) and then to the journal
   (one appended line); a re-run skips what the journal holds, so an interrupted run resumes.
5. At the end: ``grades.csv``, ``feedback/<student>/<notebook>.html`` and ``report.html``.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import queue
import struct
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from autograder import submissions as subs
from autograder.release import ROOT
from autograder.sandbox import Limits, SandboxUnavailable, Slot, sandbox_problem
from autograder.units import CheckFailed, Unit, load_unit

# the worst status of a piece wins the submission's status, in this order
SEVERITY = ["crashed", "memory", "timeout"]
_ALLOWED_DTYPES = {"<f2", "<f4", "<f8", "<i1", "<i2", "<i4", "<i8", "|u1", "|b1", "|i1"}


# ----------------------------------------------------------------------------------------------
# decoding what came out of the sandbox (untrusted bytes)
# ----------------------------------------------------------------------------------------------


def _decode_value(value):
    if isinstance(value, dict):
        if "__array__" in value:
            dtype, shape = value.get("__array__"), value.get("shape")
            if dtype not in _ALLOWED_DTYPES or not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
                return {"__object__": "malformed array"}
            buffer = base64.b64decode(value.get("data", ""), validate=False)
            array = np.frombuffer(buffer, dtype=np.dtype(dtype))
            if array.size != int(np.prod(shape, dtype=np.int64)):
                return {"__object__": "malformed array"}
            return array.reshape(shape)
        if "__float__" in value:
            return float(value["__float__"]) if value["__float__"] in ("nan", "inf", "-inf") else None
        return {k: _decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    return value


def decode_frames(raw: bytes) -> list[dict]:
    messages, offset = [], 0
    while offset + 4 <= len(raw):
        (length,) = struct.unpack(">I", raw[offset:offset + 4])
        payload = raw[offset + 4:offset + 4 + length]
        offset += 4 + length
        if len(payload) < length:
            break
        try:
            message = json.loads(payload)
        except (ValueError, RecursionError):
            continue
        if isinstance(message, dict):
            messages.append(message)
    return messages


# ----------------------------------------------------------------------------------------------
# one submission
# ----------------------------------------------------------------------------------------------


def setup_source(unit: Unit, root: Path = ROOT) -> str:
    """The instructor's setup cells (locked code before the first solution cell): imports the
    student's functions may rely on, run from the grader's copy, never the student's."""
    notebook = nbformat.read(root / "solutions" / unit.assignment / f"{unit.notebook}.ipynb", as_version=4)
    cells = []
    for cell in notebook.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") or meta.get("grade"):
            break
        if cell.cell_type == "code":
            cells.append(cell.source)
    return "\n\n".join(cells)


def grade_cells(unit: Unit, root: Path = ROOT) -> dict[str, float]:
    notebook = nbformat.read(root / "solutions" / unit.assignment / f"{unit.notebook}.ipynb", as_version=4)
    return {
        cell.metadata.nbgrader.grade_id: float(cell.metadata.nbgrader.get("points", 0))
        for cell in notebook.cells
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade")
    }


def _check_unit(unit: Unit, root: Path = ROOT) -> None:
    ours = {check.name: float(check.points) for check in unit.checks()}
    theirs = grade_cells(unit, root)
    if ours != theirs:
        raise ValueError(f"autograder/units/{unit.assignment}.py does not match the test cells of solutions/{unit.assignment}: {ours} vs {theirs}")


_VERDICT_LOCK = threading.Lock()


def _is_memory_error(error: str) -> bool:
    """Python's MemoryError, or torch's allocator failing ("can't allocate memory")."""
    return "MemoryError" in error or "can't allocate memory" in error


def _piece_result(unit, piece, code, header, messages, static) -> dict:
    checks = {m["check"]: m for m in messages if isinstance(m.get("check"), str)}
    done = any(m.get("done") is True for m in messages)
    called = next((m.get("forbidden_called") for m in messages if "forbidden_called" in m), None)
    fatal = next((m.get("fatal") for m in messages if "fatal" in m), None)
    status, message = "ok", ""
    ran = bool(messages) or header.get("timed_out") or "exit_code" in header
    errors = " ".join(str(m.get("error", "")) for m in checks.values())
    if _is_memory_error(errors):
        status, message = "memory", "ran out of memory (the limit is per piece)"
    elif header.get("timed_out"):
        status, message = "timeout", f"stopped after {header.get('limit', '?')} s (the time limit of a piece): an endless loop?"
    elif header.get("overflow"):
        status, message = "crashed", "sent back more data than a piece may"
    elif header.get("worker_lost"):
        status, message = "crashed", "the grading worker was lost while running this piece"
    elif ran and not done:
        if "MemoryError" in errors or "allocate" in errors:
            status, message = "memory", "ran out of memory (the limit is per piece)"
        elif header.get("signal") == 9:
            status, message = "crashed", "the process was killed (signal 9): out of memory, or it killed itself"
        elif header.get("signal"):
            status, message = "crashed", f"the process died of signal {header['signal']} (it killed itself or crashed)"
        else:
            status, message = "crashed", f"the process ended early (exit code {header.get('exit_code')}): os._exit()?"
        if fatal:
            message = "the grader's worker failed on this piece"
    elif any(str(m.get("error", "")).startswith(("SystemExit", "KeyboardInterrupt")) for m in checks.values()):
        status, message = "crashed", "the code called sys.exit() (or raised SystemExit)"
    forbidden = sorted(set(static) | set(called or []))
    results = []
    for check in piece.checks:
        entry = {"name": check.name, "max": check.points, "visible": check.visible, "points": 0.0, "passed": False}
        got = checks.get(check.name)
        if piece.name not in code.defined:
            entry["message"] = f"no function {piece.name}() was found in the notebook"
        elif forbidden:
            entry["message"] = f"calls {', '.join(forbidden)}, which earns no credit for this piece"
        elif got is None:
            entry["message"] = message or "not run"
        elif "error" in got:
            where = f" ({got['where'].replace('<', '').replace('>', '')})" if got.get("where") else ""
            if status == "memory" and _is_memory_error(got["error"]):  # not torch's allocator internals
                entry["message"] = f"your code {message}{where}"
            else:
                entry["message"] = f"your code raised {got['error']}{where}"
        elif not done and not (status in ("timeout", "memory", "crashed")):
            entry["message"] = "the grader could not confirm which functions your code called"
        else:
            try:
                # one verdict at a time: a verdict may seed torch's global generator and build a
                # reference model, and two grading threads doing that at once draw each other's numbers
                with _VERDICT_LOCK:
                    check.verdict(_decode_value(got.get("data")))
                entry.update(points=float(check.points), passed=True, message="passed")
            except CheckFailed as failure:
                entry["message"] = str(failure)
            except Exception as error:  # noqa: BLE001 (the data had an unexpected shape or type)
                entry["message"] = f"the result could not be checked ({type(error).__name__}): does the function return what the exercise asks?"
        results.append(entry)
    if piece.name not in code.defined:
        status = "missing"
    elif forbidden and status == "ok":
        status = "forbidden"
    return {"points": sum(e["points"] for e in results), "max": piece.points, "status": status, "message": message,
            "forbidden": forbidden, "checks": results, "seconds": header.get("seconds", 0.0)}


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
                    request = {"setup": self.setup, "statements": code.statements, "checks": [c.name for c in checks],
                               "forbidden": list(piece.forbidden), "seconds": seconds}
                    header, raw = slot.run(request)
                    header["limit"] = round(seconds)
                    messages = decode_frames(raw)
            result = _piece_result(self.unit, piece, code, header, messages, static)
            result["checks"] = [c for c in result["checks"] if c["name"] in {x.name for x in checks}]
            result["points"] = sum(c["points"] for c in result["checks"])
            record["pieces"][piece.name] = result
        statuses = [p["status"] for p in record["pieces"].values()]
        status = source.status
        if status == "ok":
            status = next((s for s in SEVERITY[::-1] if s in statuses), "ok")
        record.update(status=status, total=sum(p["points"] for p in record["pieces"].values()),
                      max=sum(c["max"] for p in record["pieces"].values() for c in p["checks"]),
                      seconds=time.perf_counter() - started)
        return record


# ----------------------------------------------------------------------------------------------
# the journal and the gradebook
# ----------------------------------------------------------------------------------------------


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


def open_gradebook(url: str, unit: Unit):
    import sys

    from nbgrader.api import Gradebook

    # nbgrader runs `alembic` to check the gradebook's schema: put this interpreter's scripts on the PATH
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    gradebook = Gradebook(url)
    gradebook.update_or_create_assignment(unit.assignment)
    gradebook.update_or_create_notebook(unit.notebook, unit.assignment)
    for piece in unit.pieces:
        gradebook.update_or_create_solution_cell(piece.name, unit.notebook, unit.assignment)
        for check in piece.checks:
            gradebook.update_or_create_grade_cell(check.name, unit.notebook, unit.assignment, max_score=check.points, cell_type="code")
    return gradebook


def record_grades(gradebook, unit: Unit, record: dict) -> None:
    """One commit per submission: the student, the submission and every check's points."""
    from nbgrader.api import MissingEntry

    student = record["student"]
    gradebook.update_or_create_student(student)
    try:
        gradebook.find_submission(unit.assignment, student)
    except MissingEntry:
        gradebook.add_submission(unit.assignment, student)
    points = {c["name"]: c["points"] for p in record["pieces"].values() for c in p["checks"]}
    for piece in unit.pieces:
        for check in piece.checks:
            grade = gradebook.find_grade(check.name, unit.notebook, unit.assignment, student)
            grade.auto_score = float(points.get(check.name, 0.0))
    gradebook.db.commit()


def gradebook_scores(url: str, unit: Unit) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(url) as gradebook:
        scores = {}
        for submission in gradebook.find_assignment(unit.assignment).submissions:
            notebook = gradebook.find_submission_notebook(unit.notebook, unit.assignment, submission.student.id)
            scores[submission.student.id] = {g.name: g.score for g in notebook.grades}
    return scores


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------


def grade(  # noqa: PLR0913
    assignment: str, submissions: Path, out: Path, workers: int | None = None, db: str | None = None,
    limits: Limits | None = None, sandbox: bool = True, scale: str = "smoke", progress: bool = True,
    book_url: str | None = None,
) -> dict[str, dict]:
    """Grade every submission not yet in ``out``'s journal; returns ``{student: record}``."""
    import warnings

    from tqdm import tqdm

    # nbgrader's add_submission trips SQLAlchemy's autoflush warnings: harmless, and noise here
    warnings.filterwarnings("ignore", module="nbgrader")
    warnings.filterwarnings("ignore", message=".*not in session.*")

    from autograder import feedback

    unit = load_unit(assignment)
    _check_unit(unit)
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
                slot = Slot(index, unit.probes, grader.limits, sandbox, scale)
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
    feedback.write_outputs(unit, records, out, book_url=book_url)
    return records


def write_csv(unit: Unit, records: dict[str, dict], path: Path) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *[p.name for p in unit.pieces], "total", "max", "status", "notes"])
    for student, record in records.items():
        pieces = [f"{record['pieces'].get(p.name, {}).get('points', 0.0):g}" for p in unit.pieces]
        writer.writerow([student, *pieces, f"{record['total']:g}", f"{record['max']:g}", record["status"], "; ".join(record["notes"])])
    atomic_write(path, buffer.getvalue())


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
