"""``python -m autograder publish OUT``: the student edition, a self-contained tree without answers.

It holds the book's sources (chapters and assignment pages), the released notebooks, ``gencore``
with its checkpoint, a student README and Makefile (set-up, JupyterLab, the self-check
``python -m gencore.check``, the book) and requirements without the instructor's tools (no
nbgrader, whose JupyterLab extensions are for instructors, no test tools). It holds none of
``solutions/``, ``autograder/`` (the hidden checks and the grader), ``tests/``, ``bench/`` or
``make release``. ``tests/test_book.py`` builds the book from it and searches it for every
solution and every hidden check.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from autograder import ROOT

HERE = Path(__file__).resolve().parent / "edition"
COPIED = ("book", "notebooks", "gencore", "scripts", "_config.yml", "_toc.yml", ".gitignore")
# format_code.py formats the course's own sources (ruff.toml, `make format`): an instructor's tool
IGNORED = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.egg-info", "_build", "format_code.py")
INSTRUCTOR_ONLY = re.compile(r"^(nbgrader|pytest|pytest-xdist|nbval|playwright|ruff)\b|^-e \./autograder")


def student_requirements(text: str) -> str:
    lines, skip_comment = [], False
    for line in text.splitlines():
        if INSTRUCTOR_ONLY.match(line.strip()):
            continue
        if line.startswith("#") and re.search(r"grading|tests|website test|the grader", line):
            skip_comment = True
            continue
        skip_comment = False
        lines.append(line)
    return "\n".join(lines).rstrip() + "\n"


def student_pyproject(text: str) -> str:
    """The course's pyproject (the ``gencore`` distribution) without the instructor's test settings."""
    return re.sub(r"\n\[tool\.pytest\.ini_options\].*?(?=\n\[|\Z)", "\n", text, flags=re.S).rstrip() + "\n"


def publish(out: Path, root: Path = ROOT, repository: str | None = None) -> Path:
    """Write the student edition into ``out`` (which must not exist, or be empty); returns it."""
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty: give a new folder")
    if out.resolve().is_relative_to(root.resolve()) and not out.resolve().is_relative_to((root / "_build").resolve()):
        raise ValueError(f"{out} is inside the course repository: publish to a folder outside it (or under _build/)")
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=IGNORED)
        elif source.is_file():
            shutil.copy2(source, out / name)
    (out / "requirements.txt").write_text(student_requirements((root / "requirements.txt").read_text()))
    (out / "pyproject.toml").write_text(student_pyproject((root / "pyproject.toml").read_text()))
    for name in ("README.md", "Makefile"):
        shutil.copy2(HERE / name, out / name)
    if repository:  # the launch buttons and the install line name the edition's own repository
        config = out / "_config.yml"
        config.write_text(re.sub(r"(^repository:\n  url: ).*$", rf"\g<1>{repository}", config.read_text(), flags=re.M))
        intro = out / "book" / "intro.md"
        intro.write_text(re.sub(r"git\+https://[^\s\"]+", f"git+{repository}", intro.read_text()))
    return out
