"""Grading with nbgrader alone, one submission after another (``nbgrader autograde``).

This is the baseline the course's tests and benchmarks compare against: it builds a throwaway
nbgrader course folder, generates the assignment from ``solutions/`` (which records the hidden
tests in the gradebook), places the submissions, runs ``nbgrader autograde`` and reads the
points of every graded cell back from the gradebook.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import nbformat

from autograder import ROOT


def fill_answers(notebook: nbformat.NotebookNode, answers: Mapping[str, str]) -> nbformat.NotebookNode:
    """A copy of a student notebook with the source of the cells named by ``grade_id`` replaced."""
    filled = nbformat.from_dict(notebook)  # a deep copy
    found = set()
    for cell in filled.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
            found.add(grade_id)
    missing = set(answers) - found
    if missing:
        raise ValueError(f"no cell with grade_id {sorted(missing)} in the notebook")
    return filled


def solution_answers(assignment: str, notebook: str | None = None, root: Path = ROOT) -> dict[str, str]:
    """The instructor's code of every solution cell, keyed by ``grade_id`` (markers removed)."""
    path = root / "solutions" / assignment / f"{notebook or assignment}.ipynb"
    answers = {}
    for cell in nbformat.read(path, as_version=4).cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            lines = [line for line in cell.source.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")]
            answers[meta["grade_id"]] = "\n".join(lines)
    return answers


def _nbgrader(course: Path, *args: str, timeout: float | None = None) -> None:
    # run from the course folder so that the repository's nbgrader_config.py is not picked up
    command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}", "--log-level=ERROR"]
    # nbgrader runs `alembic` for its gradebook: put this interpreter's scripts on the PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, cwd=course, check=True, timeout=timeout, env=env)


def prepare_course(assignment: str, course: Path, root: Path = ROOT) -> Path:
    """An nbgrader course in ``course`` with the assignment generated; returns the released folder."""
    course.mkdir(parents=True, exist_ok=True)
    shutil.copytree(root / "solutions" / assignment, course / "source" / assignment, dirs_exist_ok=True)
    _nbgrader(course, "generate_assignment", assignment, "--force")
    return course / "release" / assignment


def autograde(
    assignment: str,
    submissions: Mapping[str, nbformat.NotebookNode],
    course: Path,
    notebook: str | None = None,
    cell_timeout: int = 120,
) -> dict[str, dict[str, float]]:
    """Grade ``{student: notebook}`` with plain ``nbgrader autograde`` in a prepared ``course``.

    Returns ``{student: {grade_id: points}}`` from the gradebook.
    """
    from nbgrader.api import Gradebook

    notebook = notebook or assignment
    for student, nb in submissions.items():
        folder = course / "submitted" / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / f"{notebook}.ipynb")
    _nbgrader(
        course, "autograde", assignment, "--force",
        f"--ExecutePreprocessor.timeout={cell_timeout}",
    )
    scores: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for student in submissions:
            submitted = gradebook.find_submission_notebook(notebook, assignment, student)
            scores[student] = {grade.name: grade.score for grade in submitted.grades}
    return scores
