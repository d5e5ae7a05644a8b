"""The nbgrader source notebook of an assignment (``solutions/<unit>/<notebook>.ipynb``), read
and kept in step with the unit's declaration.

``sync_test_cells`` makes the notebook's test cells agree with ``autograder/units/<unit>.py``:
each declared check has its test cell with that grade_id and points; each hidden cell is the one
``run_in_notebook`` call (written here, inserted after the piece's last cell when missing); the
points the text states (the parts' headings, the overview table) are the declared ones; a
graded cell that nothing declares, or a declared visible check without its cell (visible tests
are readable asserts, written by hand), is an error that names the cell. ``release`` applies it
before nbgrader generates the student notebook; the tests run it without writing, so a drift
fails a test.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import nbformat

from autograder import ROOT
from autograder.spec import Check, DeclarationError, Unit


def source_path(unit: Unit, root: Path = ROOT) -> Path:
    return root / "solutions" / unit.assignment / f"{unit.notebook}.ipynb"


def read_source(unit: Unit, root: Path = ROOT) -> nbformat.NotebookNode:
    path = source_path(unit, root)
    if not path.exists():
        raise FileNotFoundError(f"the nbgrader source of {unit.assignment} is not here: {path} "
                                "(grading needs the instructor's copy of the course, with solutions/)")
    return nbformat.read(path, as_version=4)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def setup_source(unit: Unit, root: Path = ROOT) -> str:
    """The instructor's setup cells (locked code before the first solution cell): imports the
    student's functions may rely on, run from the grader's copy, never the student's."""
    cells = []
    for cell in read_source(unit, root).cells:
        if _meta(cell).get("solution") or _meta(cell).get("grade"):
            break
        if cell.cell_type == "code":
            cells.append(cell.source)
    return "\n\n".join(cells)


def hidden_cell_source(unit: Unit, check: Check) -> str:
    return ("### BEGIN HIDDEN TESTS\nfrom autograder.notebook import run_in_notebook\n"
            f'run_in_notebook("{unit.assignment}", "{check.grade_id}", globals())\n### END HIDDEN TESTS')


def _test_cell(unit: Unit, check: Check):
    cell = nbformat.v4.new_code_cell(hidden_cell_source(unit, check))
    cell.id = uuid.uuid4().hex[:8]
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": check.grade_id, "locked": True, "points": _points(check.points),
                                 "schema_version": 3, "solution": False, "task": False}
    return cell


def _points(value: float):
    return int(value) if float(value).is_integer() else value


def sync_test_cells(unit: Unit, notebook: nbformat.NotebookNode) -> list[str]:
    """Bring ``notebook``'s test cells in line with ``unit`` (in place); returns what changed.
    Raises :class:`DeclarationError` for what only a person can fix."""
    changes, problems = [], []
    declared = {check.grade_id: check for check in unit.checks()}
    cells = {_meta(c).get("grade_id"): c for c in notebook.cells if _meta(c).get("grade") and c.cell_type == "code"}
    for grade_id in cells.keys() - declared.keys():
        problems.append(f"the test cell {grade_id} is declared nowhere: declare its check in autograder/units/{unit.assignment}.py "
                        "(the grade_id follows from the piece, see autograder/README.md) or delete the cell")
    solution_ids = {_meta(c).get("grade_id") for c in notebook.cells if _meta(c).get("solution")}
    for piece in unit.pieces:
        if piece.name not in solution_ids:
            problems.append(f"no solution cell with grade_id {piece.name!r} (the function the piece grades)")
            continue
        for check in piece.checks:
            cell = cells.get(check.grade_id)
            if cell is None and check.visible:
                problems.append(f"no visible test cell {check.grade_id}: write one (readable asserts) after the {piece.name} cell")
                continue
            if cell is None:
                ids = [_meta(c).get("grade_id") for c in notebook.cells]
                mine = {piece.name, *(c.grade_id for c in piece.checks)}
                after = max(i for i, grade_id in enumerate(ids) if grade_id in mine)
                notebook.cells.insert(after + 1, _test_cell(unit, check))
                changes.append(f"added the hidden test cell {check.grade_id} ({check.points:g} points)")
                continue
            meta = _meta(cell)
            if float(meta.get("points", 0)) != check.points:
                changes.append(f"{check.grade_id}: points {meta.get('points', 0)} -> {check.points:g}")
                meta["points"] = _points(check.points)
            if not check.visible and cell.source != hidden_cell_source(unit, check):
                changes.append(f"{check.grade_id}: the hidden cell is the run_in_notebook call")
                cell.source = hidden_cell_source(unit, check)
            if check.visible and "BEGIN HIDDEN TESTS" in cell.source:
                problems.append(f"{check.grade_id} is declared visible but its cell holds hidden tests")
            for key, value in (("locked", True), ("solution", False)):
                if meta.get(key) is not value:
                    changes.append(f"{check.grade_id}: {key} -> {value}")
                    meta[key] = value
    if problems:
        raise DeclarationError(f"solutions/{unit.assignment}/{unit.notebook}.ipynb does not match "
                               f"autograder/units/{unit.assignment}.py:\n  - " + "\n  - ".join(problems))
    return changes + _stated_points(unit, notebook)


def _stated_points(unit: Unit, notebook: nbformat.NotebookNode) -> list[str]:
    """The points the text states: a part's heading ("## Part 2: ... (3 points)") above each
    piece's solution cell, and the overview table's rows (``| 2 | `piece(...)` ... | 3 | ...``).
    They are written from the declaration too; returns what changed."""
    changes, heading = [], None
    pieces = {piece.name: piece for piece in unit.pieces}
    row = re.compile(r"^(\|\s*\d+\s*\|\s*`(\w+)\([^|]*\|\s*)(\d+(?:\.\d+)?)(\s*\|.*)$", flags=re.M)
    for cell in notebook.cells:
        if cell.cell_type == "markdown":

            def table(match):
                piece = pieces.get(match.group(2))
                if piece is None or float(match.group(3)) == piece.points:
                    return match.group(0)
                changes.append(f"the overview table gives {match.group(2)} {piece.points:g} points (was {match.group(3)})")
                return f"{match.group(1)}{piece.points:g}{match.group(4)}"

            cell.source = row.sub(table, cell.source)
            if re.search(r"^#+ ", cell.source, flags=re.M):
                heading = cell
        name = _meta(cell).get("grade_id")
        if _meta(cell).get("solution") and name in pieces and heading is not None:
            stated = re.compile(r"^(#+ .*\()(\d+(?:\.\d+)?)( points?\))", flags=re.M)
            found = stated.search(heading.source)
            if found and float(found.group(2)) != pieces[name].points:
                changes.append(f"the heading above {name} says {pieces[name].points:g} points (was {found.group(2)})")
                heading.source = stated.sub(lambda m: f"{m.group(1)}{pieces[name].points:g}{m.group(3)}", heading.source, count=1)
            heading = None
    return changes


def sync_source(unit: Unit, root: Path = ROOT, write: bool = True) -> list[str]:
    """``sync_test_cells`` on the unit's source notebook, written back when it changed."""
    notebook = read_source(unit, root)
    changes = sync_test_cells(unit, notebook)
    if changes and write:
        nbformat.write(notebook, source_path(unit, root))
    return changes
