"""The nbgrader gradebook: the assignment's cells from the declaration, one commit per submission.

Any SQLAlchemy URL works (SQLite by default, PostgreSQL for a shared course), and ``nbgrader
export`` reads the result like any nbgrader gradebook.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from autograder.spec import Unit


def open_gradebook(url: str, unit: Unit):
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
            gradebook.update_or_create_grade_cell(check.grade_id, unit.notebook, unit.assignment, max_score=check.points, cell_type="code")
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
    for check in unit.checks():
        grade = gradebook.find_grade(check.grade_id, unit.notebook, unit.assignment, student)
        grade.auto_score = float(points.get(check.grade_id, 0.0))
    gradebook.db.commit()


def gradebook_scores(url: str, unit: Unit) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(url) as gradebook:
        scores = {}
        for submission in gradebook.find_assignment(unit.assignment).submissions:
            notebook = gradebook.find_submission_notebook(unit.notebook, unit.assignment, submission.student.id)
            scores[submission.student.id] = {g.name: g.score for g in notebook.grades}
    return scores
