"""How much of a graded check is written by hand: before and after checks were declared once.

For a checkout (this one, or a git revision in a worktree), per unit: where each test cell's
grade_id is written (Python files vs the nbgrader source notebook, notebooks/ excluded since it
is generated), and the repeated blocks of six or more lines under autograder/ (the `duplicates`
tool, when it is installed). Run: `.venv/bin/python bench/grader_form.py [REV ...]`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNITS = ["autoregressive", "vae", "gan", "diffusion", "lm", "post_training"]


def grade_ids(root: Path, unit: str) -> list[str]:
    notebook = json.loads((root / "solutions" / unit / f"{unit}.ipynb").read_text())
    return [c["metadata"]["nbgrader"]["grade_id"] for c in notebook["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("grade")]


def places(root: Path, unit: str) -> dict[str, float]:
    """Mean number of places per grade_id: in .py files (autograder/, tests/) and in the source notebook."""
    ids = grade_ids(root, unit)
    python = [p.read_text() for folder in ("autograder", "tests") for p in (root / folder).rglob("*.py")]
    notebook = (root / "solutions" / unit / f"{unit}.ipynb").read_text()
    count = {"python": 0, "notebook": 0}
    for grade_id in ids:
        word = re.compile(rf"\b{re.escape(grade_id)}\b")
        count["python"] += sum(len(word.findall(text)) for text in python)
        count["notebook"] += len(word.findall(notebook))
    return {kind: n / len(ids) for kind, n in count.items()}


def duplicates(root: Path) -> str:
    if shutil.which("duplicates") is None:
        return "duplicates not installed"
    out = subprocess.run(["duplicates", "--repo", str(root / "autograder"), "--most", "1"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "?"


def report(root: Path, label: str) -> None:
    print(f"\n{label}")
    print("| unit | grade_id places in .py (mean) | in the source notebook (mean) |\n| --- | --- | --- |")
    for unit in UNITS:
        p = places(root, unit)
        print(f"| {unit} | {p['python']:.1f} | {p['notebook']:.1f} |")
    print(f"\nrepeated blocks under autograder/: {duplicates(root)}")


def main() -> None:
    for rev in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["git", "worktree", "add", "--detach", tmp + "/tree", rev], cwd=ROOT, check=True, capture_output=True)
            try:
                report(Path(tmp) / "tree", f"at {rev}")
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", tmp + "/tree"], cwd=ROOT, capture_output=True)
    report(ROOT, "this checkout")


if __name__ == "__main__":
    main()
