"""What an instructor does with a grading run, on the plain nbgrader assignment ``foundations``:
grade nbgrader's exchange folder with a due date, re-grade after a notebook and the checks
changed, read the report and follow its links, export with nbgrader."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import ROOT
from autograder.gradebook import gradebook_scores
from autograder.grade import grade, load_target
from autograder.plain_nbgrader import fill_answers, solution_answers
from autograder.sandbox import Limits, sandbox_problem
from tests.test_foundations_assignment import WRONG

pytestmark = pytest.mark.slow
SANDBOX = sandbox_problem() is None
LIMITS = Limits(notebook_seconds=240)


def _course(tmp: Path) -> Path:
    """A copy of the course's foundations source, so that a test can change its checks."""
    (tmp / "solutions").mkdir(parents=True)
    shutil.copytree(ROOT / "solutions" / "foundations", tmp / "solutions" / "foundations")
    shutil.copy(ROOT / "_config.yml", tmp / "_config.yml")
    return tmp


def _submissions(root: Path) -> dict[str, nbformat.NotebookNode]:
    released = nbformat.read(ROOT / "notebooks" / "foundations" / "foundations.ipynb", as_version=4)
    solution = solution_answers("foundations")
    piece, code, _ = WRONG["mle_covariance_unbiased"]
    return {"ada": fill_answers(released, solution), "bo": fill_answers(released, {**solution, piece: code.strip()}),
            "cy": released}


def _exchange(folder: Path, notebooks: dict, stamps: dict[str, str]) -> None:
    for student, notebook in notebooks.items():
        where = folder / "submitted" / student / "foundations"
        where.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, where / "foundations.ipynb")
        (where / "timestamp.txt").write_text(stamps[student])


def _totals(out: Path) -> dict[str, float]:
    return {row["student"]: float(row["total"]) for row in csv.DictReader((out / "grades.csv").open())}


def test_exchange_late_penalty_regrading_and_changed_checks(tmp_path):
    root, course, out = _course(tmp_path / "course"), tmp_path / "exchange", tmp_path / "graded"
    notebooks = _submissions(root)
    stamps = {"ada": "2026-12-01 16:59:00.000000 UTC", "bo": "2026-12-01 18:30:00.000000 UTC", "cy": "2026-12-01 10:00:00 UTC"}
    _exchange(course, notebooks, stamps)
    summary: dict = {}
    records = grade("foundations", course, out, workers=2, limits=LIMITS, progress=False, sandbox=SANDBOX, root=root,
                    due="2026-12-01 17:00:00 UTC", late_penalty="zero", summary=summary)
    assert summary == {"graded": 3, "regraded": 0, "skipped": 0}
    assert records["ada"]["total"] == 15 and records["cy"]["total"] == 0
    assert records["bo"]["raw_total"] == 12 and records["bo"]["total"] == 0 and records["bo"]["late_seconds"] == 5400
    assert any("after the due date" in note for note in records["bo"]["notes"])
    assert _totals(out) == {"ada": 15.0, "bo": 0.0, "cy": 0.0}

    # the same run again: nothing changed, nothing is graded
    summary.clear()
    grade("foundations", course, out, workers=2, limits=LIMITS, progress=False, sandbox=SANDBOX, root=root,
          due="2026-12-01 17:00:00 UTC", late_penalty="zero", summary=summary)
    assert summary == {"graded": 0, "regraded": 0, "skipped": 3}

    # cy hands in a solution (on time): only cy is graded again, and gets the new score
    notebooks["cy"] = notebooks["ada"]
    _exchange(course, {"cy": notebooks["cy"]}, stamps)
    summary.clear()
    records = grade("foundations", course, out, workers=2, limits=LIMITS, progress=False, sandbox=SANDBOX, root=root,
                    due="2026-12-01 17:00:00 UTC", late_penalty="zero", summary=summary)
    assert summary == {"graded": 0, "regraded": 1, "skipped": 2}
    assert records["cy"]["total"] == 15

    # the instructor adds a test cell (1 point) to part 1: every submission is graded again, no crash
    source = root / "solutions" / "foundations" / "foundations.ipynb"
    notebook = nbformat.read(source, as_version=4)
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in notebook.cells]
    extra = nbformat.v4.new_code_cell("assert gaussian_mle(torch.ones(4, 2))[1].abs().sum() == 0")
    extra.metadata["nbgrader"] = {"grade": True, "grade_id": "test_gaussian_mle_constant", "locked": True, "points": 1,
                                  "schema_version": 3, "solution": False, "task": False}
    notebook.cells.insert(ids.index("test_gaussian_mle_hidden") + 1, extra)
    nbformat.write(notebook, source)
    summary.clear()
    records = grade("foundations", course, out, workers=2, limits=LIMITS, progress=False, sandbox=SANDBOX, root=root,
                    due="2026-12-01 17:00:00 UTC", late_penalty="zero", summary=summary)
    assert summary == {"graded": 0, "regraded": 3, "skipped": 0}
    assert records["ada"]["total"] == 16 and records["ada"]["max"] == 16
    scores = gradebook_scores(f"sqlite:///{out / 'gradebook.db'}", load_target("foundations", root))
    assert scores["ada"]["test_gaussian_mle_constant"] == 1.0 and sum(scores["ada"].values()) == 16

    # nbgrader's own export reads the gradebook, late penalty included
    export = tmp_path / "grades_export.csv"
    subprocess.run([sys.executable, "-m", "nbgrader", "export", f"--CourseDirectory.db_url=sqlite:///{out / 'gradebook.db'}",
                    f"--CsvExportPlugin.to={export}"], check=True, cwd=tmp_path, capture_output=True)
    rows = {row["student_id"]: row for row in csv.DictReader(export.open())}
    assert float(rows["ada"]["score"]) == 16 and float(rows["bo"]["late_submission_penalty"]) == 13


def test_report_links_feedback_and_the_published_book(tmp_path):
    folder, out = tmp_path / "submissions", tmp_path / "graded"
    notebooks = _submissions(ROOT)
    deleted = nbformat.from_dict(notebooks["bo"])
    deleted.cells = [c for c in deleted.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "test_kl_categorical_visible"]
    notebooks["bo"] = deleted
    for student, notebook in notebooks.items():  # a flat LMS export: <student>_<id>_<name>
        folder.mkdir(exist_ok=True)
        nbformat.write(notebook, folder / f"{student}_1001_foundations.ipynb")
    records = grade("foundations", folder, out, workers=2, limits=LIMITS, progress=False, sandbox=SANDBOX)
    assert not any("expected foundations.ipynb" in n for r in records.values() for n in r["notes"])
    assert any("test_kl_categorical_visible was missing" in n for n in records["bo"]["notes"])
    assert records["bo"]["pieces"]["kl_categorical"]["points"] == 3  # restored and run, as nbgrader would
    report = (out / "report.html").read_text()
    for student in notebooks:
        link = f"feedback/{student}/foundations.html"
        assert f"href='{link}'" in report and (out / link).is_file()
    assert "None: every submission ran to the end." in report
    page = (out / "feedback" / "bo" / "foundations.html").read_text()
    links = re.findall(r"href='([^']+)'", page)
    assert links and all(link.startswith("https://") and "book/foundations.html#" in link for link in links)
    assert "file://" not in page and "file://" not in report and "test_kl_categorical_visible was missing" in page


def _cell(kind: str, source: str, **nbgrader):
    cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
    if nbgrader:
        cell.metadata["nbgrader"] = {"schema_version": 3, "task": False, "locked": False, "solution": False, "grade": False,
                                     **nbgrader}
    return cell


def _two_notebooks(root: Path) -> None:
    """A plain assignment of two notebooks: test cells with hidden tests, nbgrader's partial
    credit (a cell that displays a number) and a cell that writes to stderr."""
    folder = root / "solutions" / "two"
    folder.mkdir(parents=True)
    one = nbformat.v4.new_notebook(cells=[
        _cell("markdown", "## Part 1: f (4.5 points)", grade_id="intro", locked=True),
        _cell("code", "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION", grade_id="f", solution=True),
        _cell("code", "assert f(1) == 2, 'f(1) should be 2'", grade_id="test_f", grade=True, locked=True, points=1),
        _cell("code", "### BEGIN HIDDEN TESTS\nassert f(-1) == 0, 'f(-1) should be 0'\n### END HIDDEN TESTS",
              grade_id="test_f_hidden", grade=True, locked=True, points=2),
        _cell("code", "0.5 + f(0)", grade_id="test_f_partial", grade=True, locked=True, points=2),
    ])
    two = nbformat.v4.new_notebook(cells=[
        _cell("code", "def g(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", grade_id="g", solution=True),
        _cell("code", "assert g(2) == 4", grade_id="test_g", grade=True, locked=True, points=1),
        _cell("code", "import sys\nsys.stderr.write('careful')\nassert g(0) == 0", grade_id="test_g_stderr", grade=True,
              locked=True, points=1),
    ])
    for name, notebook in (("one", one), ("two", two)):
        for index, cell in enumerate(notebook.cells):
            cell.id = f"{name}{index}"
        nbformat.write(notebook, folder / f"{name}.ipynb")


def test_a_plain_assignment_of_two_notebooks_partial_credit_stderr_timeouts_and_a_missing_notebook(tmp_path):
    root, folder = tmp_path / "course", tmp_path / "submissions"
    _two_notebooks(root)
    source = {name: nbformat.read(root / "solutions" / "two" / f"{name}.ipynb", as_version=4) for name in ("one", "two")}

    def hand_in(student: str, names=("one", "two"), f_body: str | None = None) -> None:
        (folder / student).mkdir(parents=True)
        for name in names:
            notebook = nbformat.from_dict(source[name])
            for cell in notebook.cells:
                if f_body and cell.metadata.get("nbgrader", {}).get("grade_id") == "f":
                    cell.source = f"def f(x):\n    {f_body}"
            nbformat.write(notebook, folder / student / f"{name}.ipynb")

    hand_in("ok")
    hand_in("endless", f_body="while True:\n        pass")
    hand_in("one_only", names=("one",))
    records = grade("two", folder, tmp_path / "graded", workers=2, limits=Limits(notebook_seconds=8), progress=False,
                    sandbox=SANDBOX, root=root)
    cells = {s: {c["name"]: c["points"] for p in r["pieces"].values() for c in p["checks"]} for s, r in records.items()}
    assert cells["ok"] == {"test_f": 1, "test_f_hidden": 2, "test_f_partial": 1.5, "test_g": 1, "test_g_stderr": 0}
    assert cells["endless"] == {"test_f": 0, "test_f_hidden": 0, "test_f_partial": 0, "test_g": 1, "test_g_stderr": 0}
    assert records["endless"]["status"] == "timeout"
    assert cells["one_only"] == {**cells["ok"], "test_g": 0, "test_g_stderr": 0}
    assert "no file found for two.ipynb" in records["one_only"]["notes"]
    stderr = next(c for p in records["ok"]["pieces"].values() for c in p["checks"] if c["name"] == "test_g_stderr")
    assert "careful" in stderr["message"]
    scores = gradebook_scores(f"sqlite:///{tmp_path / 'graded' / 'gradebook.db'}", load_target("two", root))
    assert scores["ok"] == cells["ok"]
