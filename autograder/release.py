"""Generate student notebooks (``notebooks/<unit>/``) from nbgrader sources (``solutions/<unit>/``).

First the source notebook's test cells are brought in line with the unit's declaration
(``assignment.sync_source``: grade_ids, points, the hidden cells' ``run_in_notebook`` calls);
then nbgrader's ``generate_assignment`` does the rest: it replaces each solution region with a
stub, strips hidden tests, clears outputs and records checksums. The result is written straight
into ``notebooks/`` and never edited by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from autograder import ROOT
from autograder.assignment import sync_source
from autograder.units import load_unit, names


def assignments(root: Path = ROOT) -> list[str]:
    """The units that have an nbgrader source: every ``solutions/<unit>/`` with a notebook."""
    folder = root / "solutions"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if folder.is_dir() else []


def release(assignment: str, root: Path = ROOT, release_directory: str = "notebooks", log=print) -> Path:
    """Sync the source's test cells with the declaration, then run ``nbgrader generate_assignment``
    for one unit; returns the folder written."""
    if assignment not in assignments(root):
        raise ValueError(f"no nbgrader source for {assignment!r}; expected one of {', '.join(assignments(root))}")
    if assignment in names():  # a plain nbgrader exercise has no declaration to sync with
        for change in sync_source(load_unit(assignment), root):
            log(f"solutions/{assignment}: {change}")
    command = [
        sys.executable, "-m", "nbgrader", "generate_assignment", assignment,
        "--force", "--no-db", "--log-level=WARN",
        f"--CourseDirectory.root={root}",
        f"--CourseDirectory.release_directory={release_directory}",
    ]
    subprocess.run(command, check=True, cwd=root)
    return root / release_directory / assignment
