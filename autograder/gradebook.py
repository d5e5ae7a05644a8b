"""The nbgrader gradebook: the assignment's cells, one commit per graded submission.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL for a shared course), and ``nbgrader
export`` reads the result like any nbgrader gradebook: the submission's timestamp, the
assignment's due date and each notebook's late penalty are where nbgrader keeps them. When the
assignment's checks change (one added, one removed), the notebook's cells are rebuilt and every
submission is recorded again; nothing stale is left to look up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _layout(target) -> dict[str, list]:
    """notebook -> its pieces, for a declared unit (one notebook) or a plain assignment."""
    layout: dict[str, list] = {nb: [] for nb in target.notebooks}
    for piece in target.pieces:
        layout[getattr(piece, "notebook", target.notebook)].append(piece)
    return layout


def open_gradebook(url: str, target, duedate=None):
    from nbgrader.api import Gradebook, MissingEntry

    # nbgrader runs `alembic` to check the gradebook's schema: put this interpreter's scripts on the PATH
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    gradebook = Gradebook(url)
    gradebook.update_or_create_assignment(target.assignment, **({"duedate": duedate} if duedate else {}))
    for notebook, pieces in _layout(target).items():
        wanted = {check.grade_id: check.points for piece in pieces for check in piece.checks}
        try:
            have = {cell.name: cell.max_score for cell in gradebook.find_notebook(notebook, target.assignment).grade_cells}
        except MissingEntry:
            have = None
        if have is not None and have != wanted:  # checks added, removed or re-weighted: rebuild this notebook
            gradebook.remove_notebook(notebook, target.assignment)
        gradebook.update_or_create_notebook(notebook, target.assignment)
        for piece in pieces:
            gradebook.update_or_create_solution_cell(piece.name, notebook, target.assignment)
            for check in piece.checks:
                gradebook.update_or_create_grade_cell(check.grade_id, notebook, target.assignment, max_score=check.points,
                                                      cell_type="code")
    return gradebook


def record_grades(gradebook, target, record: dict) -> None:
    """One commit per submission: the student, the submission (created afresh, so that it has a
    grade for every current cell), every check's points and each notebook's late penalty."""
    from nbgrader.api import MissingEntry

    student = record["student"]
    gradebook.update_or_create_student(student)
    try:
        gradebook.remove_submission(target.assignment, student)
    except MissingEntry:
        pass
    kwargs = {"timestamp": record["timestamp"]} if record.get("timestamp") else {}
    gradebook.add_submission(target.assignment, student, **kwargs)
    points = {c["name"]: c["points"] for p in record["pieces"].values() for c in p["checks"]}
    penalty_left = float(record.get("penalty", 0.0))
    for notebook, pieces in _layout(target).items():
        scored = 0.0
        for piece in pieces:
            for check in piece.checks:
                grade = gradebook.find_grade(check.grade_id, notebook, target.assignment, student)
                grade.auto_score = float(points.get(check.grade_id, 0.0))
                scored += grade.auto_score
        if penalty_left:
            taken = min(penalty_left, scored)
            gradebook.find_submission_notebook(notebook, target.assignment, student).late_submission_penalty = taken
            penalty_left -= taken
    gradebook.db.commit()


def gradebook_scores(url: str, target) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(url) as gradebook:
        scores = {}
        for submission in gradebook.find_assignment(target.assignment).submissions:
            cells = {}
            for notebook in target.notebooks:
                found = gradebook.find_submission_notebook(notebook, target.assignment, submission.student.id)
                cells.update({g.name: g.score for g in found.grades})
            scores[submission.student.id] = cells
    return scores
