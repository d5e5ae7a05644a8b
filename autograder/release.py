"""Generate student notebooks (``notebooks/<unit>/``) from nbgrader sources (``solutions/<unit>/``).

nbgrader's ``generate_assignment`` does the work: it replaces each solution region with a
stub, strips hidden tests, clears outputs and records checksums. The result is written
straight into ``notebooks/`` and never edited by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assignments(root: Path = ROOT) -> list[str]:
    """The units that have an nbgrader source: every ``solutions/<unit>/`` with a notebook."""
    return sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def release(assignment: str, root: Path = ROOT, release_directory: str = "notebooks") -> Path:
    """Run ``nbgrader generate_assignment`` for one unit; returns the folder written."""
    if assignment not in assignments(root):
        raise ValueError(f"no nbgrader source for {assignment!r}; expected one of {', '.join(assignments(root))}")
    command = [
        sys.executable, "-m", "nbgrader", "generate_assignment", assignment,
        "--force", "--no-db", "--log-level=WARN",
        f"--CourseDirectory.root={root}",
        f"--CourseDirectory.release_directory={release_directory}",
    ]
    subprocess.run(command, check=True, cwd=root)
    return root / release_directory / assignment
