"""Plain nbgrader assignments: graded by running the notebook, as ``nbgrader autograde`` does.

An assignment in ``solutions/<name>/`` with no declaration in ``autograder/units/`` is an
ordinary nbgrader exercise: its test cells are asserts (visible ones, and hidden ones between
``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``), and it may have several notebooks.
The grader treats it as nbgrader would, in the same sandbox, limits, parallel workers, journal,
gradebook and outputs as a declared unit:

- the notebook that runs is the student's, with every locked cell of the source (setup cells,
  test cells with their hidden tests) restored over the student's copy, deleted test cells put
  back where the source has them, and the student's own extra cells kept where they were;
- every code cell runs in order, in one IPython shell in a sandboxed process;
- a test cell earns its points when it runs without an error and writes nothing to stderr,
  or the number it displays as its result (nbgrader's partial credit); a cell that was not
  reached (time limit, memory, a crash) earns nothing.

The honest caveat: here the tests run in the student's process, so a determined student can
defeat them (redefine ``assert``-checked helpers, patch the test's imports). A unit module,
whose verdicts run outside that process, is what to write when the grade matters
(``autograder/README.md``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import ROOT
from autograder.judge import notebook_pieces, submission_status
from autograder.sandbox import Limits, Slot
from autograder.wire import split_frames

HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", flags=re.M | re.S)


@dataclass(frozen=True)
class CellCheck:
    grade_id: str
    points: float
    visible: bool
    description: str

    @property
    def name(self) -> str:
        return self.grade_id


@dataclass(frozen=True)
class CellPiece:
    name: str  # the grade_id of the solution cell (or of a test cell with no solution above it)
    title: str
    anchor: str  # "book/<page>.html#<section>" from the part's first link into the book, or ""
    checks: tuple[CellCheck, ...]
    notebook: str
    forbidden: tuple[str, ...] = ()

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)


@dataclass(frozen=True)
class PlainAssignment:
    assignment: str
    notebooks: tuple[str, ...]
    pieces: tuple[CellPiece, ...]
    chapter: str  # the book page the intro links to, or ""
    sources: dict = field(compare=False, repr=False)  # notebook -> the nbgrader source NotebookNode

    @property
    def notebook(self) -> str:
        return self.notebooks[0]

    @property
    def points(self) -> float:
        return sum(piece.points for piece in self.pieces)

    def checks(self) -> list[CellCheck]:
        return [check for piece in self.pieces for check in piece.checks]

    def notebook_of(self, piece: CellPiece) -> str:
        return piece.notebook


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_test(cell) -> bool:
    return cell.cell_type == "code" and bool(_meta(cell).get("grade")) and not _meta(cell).get("solution")


def released_source(source: str) -> str:
    """A test cell as the student sees it: nbgrader's generate_assignment strips hidden tests."""
    return HIDDEN.sub("", source)


def _title_and_anchor(markdown: str) -> tuple[str, str]:
    heading = re.search(r"^#+\s+(.+)$", markdown, flags=re.M)
    title = heading.group(1) if heading else ""
    title = re.sub(r"^Part\s+\d+\s*:\s*", "", re.sub(r"\s*\(\d+(\.\d+)? points?\)\s*$", "", title)).strip()
    link = re.search(r"book/(\w+)\.md#([\w-]+)", markdown)
    return title, (f"book/{link.group(1)}.html#{link.group(2)}" if link else "")


def _description(cell) -> str:
    if "BEGIN HIDDEN TESTS" in cell.source:
        return "hidden tests"
    comment = next((line.lstrip("# ").strip() for line in cell.source.splitlines() if line.strip().startswith("#")), "")
    return comment or "visible tests"


def load_plain(assignment: str, root: Path = ROOT) -> PlainAssignment:
    folder = root / "solutions" / assignment
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"no nbgrader source notebook in {folder}")
    sources, pieces, chapter = {}, [], ""
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        sources[path.stem] = notebook
        markdown, current = "", None
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                markdown = cell.source
                if not chapter and (link := re.search(r"book/(\w+)\.md", cell.source)):
                    chapter = f"book/{link.group(1)}.html"
            elif _meta(cell).get("solution"):
                title, anchor = _title_and_anchor(markdown)
                current = CellPiece(_meta(cell)["grade_id"], title or _meta(cell)["grade_id"], anchor, (), path.stem)
                pieces.append(current)
            elif _is_test(cell):
                check = CellCheck(_meta(cell)["grade_id"], float(_meta(cell).get("points", 0)),
                                  "BEGIN HIDDEN TESTS" not in cell.source, _description(cell))
                if current is None or current.notebook != path.stem:
                    title, anchor = _title_and_anchor(markdown)
                    current = CellPiece(check.grade_id, title or check.grade_id, anchor, (), path.stem)
                    pieces.append(current)
                pieces[-1] = current = CellPiece(current.name, current.title, current.anchor, (*current.checks, check),
                                                 current.notebook)
    names = [piece.name for piece in pieces]
    if len(names) != len(set(names)):  # several notebooks may reuse a grade_id: name pieces by notebook
        pieces = [CellPiece(f"{p.notebook}:{p.name}", p.title, p.anchor, p.checks, p.notebook) for p in pieces]
    return PlainAssignment(assignment, tuple(sources), tuple(p for p in pieces if p.checks), chapter, sources)


def checks_digest(target: PlainAssignment) -> str:
    """What grading depends on: every locked cell and every test cell of the sources."""
    digest = hashlib.sha256()
    for name, notebook in sorted(target.sources.items()):
        digest.update(name.encode())
        for cell in notebook.cells:
            if _meta(cell).get("locked") or _is_test(cell):
                digest.update(json.dumps([_meta(cell).get("grade_id"), cell.source, _meta(cell).get("points")]).encode())
    return digest.hexdigest()


def merge(source: nbformat.NotebookNode, student: nbformat.NotebookNode) -> tuple[list[dict], list[str]]:
    """The code cells to run, in order (``{"source", "grade_id", "where"}``), and notes for the
    student: the source's locked cells over the student's copies, deleted ones put back, the
    student's solutions and extra cells kept. ``where`` numbers every cell, as JupyterLab does."""
    known = {_meta(c).get("grade_id"): c for c in source.cells if _meta(c).get("grade_id")}
    theirs, extras, previous = {}, {None: []}, None
    for cell in student.cells:
        grade_id = _meta(cell).get("grade_id")
        if grade_id in known and grade_id not in theirs:
            theirs[grade_id] = cell
            previous = grade_id
            extras.setdefault(previous, [])
        else:
            extras.setdefault(previous, []).append(cell)
    notes, merged = [], list(extras[None])
    for cell in source.cells:
        meta, grade_id = _meta(cell), _meta(cell).get("grade_id")
        mine = theirs.get(grade_id)
        if meta.get("solution"):
            merged.append(mine if mine is not None else cell)
            if mine is None:
                notes.append(f"the answer cell {grade_id} was not found: graded as handed out")
        else:
            merged.append(cell)
            if _is_test(cell) and mine is None:
                notes.append(f"the test cell {grade_id} was missing (deleted?): the original was put back and run")
            elif _is_test(cell) and mine.source.strip() not in (released_source(cell.source).strip(), cell.source.strip()):
                notes.append(f"the test cell {grade_id} had been edited: the original was run")
        merged += extras.get(grade_id, [])
    cells = [{"source": cell.source, "grade_id": _meta(cell).get("grade_id") if _is_test(cell) else None,
              "where": f"Cell {index}"}
             for index, cell in enumerate(merged, start=1) if cell.cell_type == "code"]
    return cells, notes


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str]:
    try:
        raw = path.read_bytes()
    except OSError as error:
        return None, f"cannot read {path.name}: {error.strerror}"
    if raw.startswith(b"%PDF"):
        return None, f"{path.name} is a PDF, not a notebook: submit the .ipynb file"
    try:
        return nbformat.reads(raw.decode("utf-8", errors="replace"), as_version=4), ""
    except Exception:  # noqa: BLE001 (any malformed file)
        return None, f"{path.name} is not a notebook that can be read: a plain nbgrader assignment is graded from the notebook"


class NotebookGrader:
    """Grades one submission of a plain assignment: each notebook run whole in a sandboxed child."""

    def __init__(self, target: PlainAssignment, limits: Limits, sandbox: bool, scale: str):
        self.target, self.limits, self.sandbox, self.scale = target, limits, sandbox, scale
        self.digest = checks_digest(target)

    def slot(self, index: int) -> Slot:
        return Slot(index, None, None, self.limits, self.sandbox, self.scale)

    def grade_one(self, slot: Slot, job) -> dict:
        started = time.perf_counter()
        record = {"student": job.student, "file": None, "notes": [], "pieces": {}}
        statuses = []
        for notebook in self.target.notebooks:
            path = job.paths.get(notebook)
            pieces = [p for p in self.target.pieces if p.notebook == notebook]
            header, messages, cells = {}, [], []
            if path is None:
                record["notes"].append(f"no file found for {notebook}.ipynb")
                statuses.append("missing")
            else:
                record["file"] = record["file"] or path.name
                student, problem = read_notebook(path)
                if student is None:
                    record["notes"].append(problem)
                    statuses.append("invalid")
                else:
                    cells, notes = merge(self.target.sources[notebook], student)
                    record["notes"] += notes
                    header, raw = slot.run({"mode": "notebook", "cells": cells, "seconds": self.limits.notebook_seconds})
                    header["limit"] = round(self.limits.notebook_seconds)
                    messages = split_frames(raw)
            record["pieces"].update(notebook_pieces(pieces, cells, header, messages, ran=bool(cells)))
        source_status = next((s for s in ("invalid", "missing") if s in statuses), "ok")
        if source_status == "missing" and len(statuses) < len(self.target.notebooks):
            source_status = "ok"  # one notebook of several is missing: its cells earn nothing
        record.update(status=submission_status(source_status, [p["status"] for p in record["pieces"].values()]),
                      total=sum(p["points"] for p in record["pieces"].values()),
                      max=sum(c["max"] for p in record["pieces"].values() for c in p["checks"]),
                      seconds=time.perf_counter() - started)
        return record
