"""The grading pipeline (``python -m autograder grade``) against a battery of hostile submissions.

One grading run, with the sandbox on, grades the solution, the released notebook, the nine
typical mistakes of tests/test_vae_assignment.py and some thirty adversarial or malformed
submissions; each must get its expected score and status. A second test kills the grader
mid-run and checks that the re-run ends where an uninterrupted run does.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograder.grade import grade
from autograder.gradebook import gradebook_scores
from autograder.journal import read_journal
from autograder import ROOT
from autograder.sandbox import Limits, sandbox_problem
from autograder.units import load_unit
from tests import autograder_cases
from tests.test_vae_assignment import PIECES, WRONG

pytestmark = pytest.mark.slow
PROBLEM = sandbox_problem()
# skipped on a machine without bubblewrap, but never in CI, whose .ci/run installs it
needs_sandbox = pytest.mark.skipif(PROBLEM is not None and not os.environ.get("CI"), reason=f"no sandbox here: {PROBLEM}")
# short limits keep the hanging cases quick
LIMITS = Limits(piece_seconds=6, notebook_seconds=60, memory_mb=1024)


@pytest.fixture(scope="module")
def released():
    return nbformat.read(ROOT / "notebooks" / "vae" / "vae.ipynb", as_version=4)


@pytest.fixture(scope="module")
def battery(tmp_path_factory, released):
    folder, out = tmp_path_factory.mktemp("submissions"), tmp_path_factory.mktemp("graded")
    expected = autograder_cases.build(folder, released, out)
    records = grade("vae", folder, out, workers=2, limits=LIMITS, progress=False)
    return expected, records, out


@needs_sandbox
def test_battery_is_large_enough(battery):
    expected, _, _ = battery
    assert len(expected) - len(WRONG) - 2 >= 25


@needs_sandbox
def test_every_case_gets_its_score_and_status(battery):
    expected, records, _ = battery
    wrong = {s: (r["total"], r["status"], expected[s]) for s, r in records.items() if (r["total"], r["status"]) != expected[s]}
    assert not wrong, f"(got total, got status, expected): {wrong}"
    assert set(records) == set(expected)


@needs_sandbox
def test_typical_mistakes_lose_their_own_piece_like_nbgrader(battery):
    _, records, _ = battery
    unit = load_unit("vae")
    for name, (broken, _, kept) in WRONG.items():
        pieces = records[f"wrong_{name}"]["pieces"]
        for piece in PIECES:
            want = kept if piece == broken else unit.pieces[PIECES.index(piece)].points
            assert pieces[piece]["points"] == want, f"{name}: {piece}"
        # and the same per-check split as nbgrader's test cells (visible passes, hidden fails ...)
    unstable = records["wrong_elbo_unstable_log_sigmoid"]["pieces"]["negative_elbo"]["checks"]
    assert [c["passed"] for c in unstable] == [True, False]


@needs_sandbox
def test_outputs_gradebook_and_feedback(battery):
    expected, records, out = battery
    rows = {row["student"]: row for row in csv.DictReader((out / "grades.csv").open())}
    assert set(rows) == set(expected)
    assert list(next(iter(rows.values())))[:8] == ["student", *PIECES, "total", "max", "status"]
    assert rows["solution"]["total"] == "12" and rows["wrong_step_without_zero_grad"]["train_step"] == "1"
    # the gradebook holds the same points, per nbgrader test cell
    scores = gradebook_scores(f"sqlite:///{out / 'gradebook.db'}", load_unit("vae"))
    for student, record in records.items():
        assert sum(scores[student].values()) == record["total"], student
    # feedback: points, messages, a link to the book section; never a hidden test's source
    page = (out / "feedback" / "wrong_elbo_unstable_log_sigmoid" / "vae.html").read_text()
    assert "logits of +-100 should give a finite loss" in page
    assert "book/vae.html#the-evidence-lower-bound" in page
    hidden_source = "".join(c.source for c in nbformat.read(ROOT / "solutions/vae/vae.ipynb", as_version=4).cells if "HIDDEN" in c.source)
    for line in hidden_source.splitlines():
        if len(line.strip()) > 25 and "BEGIN" not in line and "END" not in line:
            assert line.strip() not in page, line
    assert "which earns no credit" in (out / "feedback" / "forbidden_library_kl" / "vae.html").read_text()
    # running out of memory reads the same whether Python or torch's allocator ran out
    for student in ("unbounded_allocation", "unbounded_tensors"):
        page = (out / "feedback" / student / "vae.html").read_text()
        assert "ran out of memory" in page and "DefaultCPUAllocator" not in page, student
    report = (out / "report.html").read_text()
    assert "data:image/png;base64," in report and "infinite_loop" in report


@needs_sandbox
def test_regrading_gives_the_same_scores(battery, tmp_path, released):
    """Determinism: a fresh run on a few of the same files gives the same points and checks."""
    expected, records, _ = battery
    folder = tmp_path / "again"
    names = ["solution", "wrong_reparam_detaches_mu", "cells_reordered", "stderr_warnings"]
    autograder_cases.build(folder, released, tmp_path / "out")
    for student in list(folder.iterdir()):
        if student.name not in names:
            for f in student.iterdir():
                f.unlink()
            student.rmdir()
    again = grade("vae", folder, tmp_path / "out", workers=2, limits=LIMITS, progress=False)
    for name in names:
        assert all(again[name]["pieces"][p]["checks"] == records[name]["pieces"][p]["checks"] for p in PIECES), name


def _grade_command(folder: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "autograder", "grade", "vae", str(folder), "--out", str(out), "--workers", "1", "--no-progress"]


@needs_sandbox
def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path, released):
    folder = tmp_path / "subs"
    expected = autograder_cases.build(folder, released, tmp_path / "out")
    keep = ["solution", "released", *[f"wrong_{n}" for n in WRONG], "renamed", "os_exit", "python_file"]
    for student in list(folder.iterdir()):
        if student.name not in keep:
            for f in student.iterdir():
                f.unlink()
            student.rmdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # an uninterrupted run
    subprocess.run(_grade_command(folder, tmp_path / "whole"), check=True, env=env, capture_output=True)
    # a run killed (kill -9) once a few submissions are done, then resumed
    killed = tmp_path / "killed"
    process = subprocess.Popen(_grade_command(folder, killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = killed / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    lines_at_kill = len(journal.read_text().splitlines())
    assert 3 <= lines_at_kill < len(keep), "the kill should land mid-run"
    subprocess.run(_grade_command(folder, killed), check=True, env=env, capture_output=True)

    whole = (tmp_path / "whole" / "grades.csv").read_text()
    assert (killed / "grades.csv").read_text() == whole
    graded = [json.loads(line)["student"] for line in journal.read_text().splitlines()]
    assert sorted(graded) == sorted(keep), "each submission graded exactly once"
    unit = load_unit("vae")
    assert gradebook_scores(f"sqlite:///{killed / 'gradebook.db'}", unit) == gradebook_scores(f"sqlite:///{tmp_path / 'whole' / 'gradebook.db'}", unit)
    assert set(read_journal(journal)) == set(keep)
    assert {s: expected[s][0] for s in keep} == {s: r["total"] for s, r in read_journal(journal).items()}


def test_grading_refuses_to_run_without_a_sandbox(tmp_path, monkeypatch):
    import autograder.grade as grade_module

    monkeypatch.setattr(grade_module, "sandbox_problem", lambda: "bwrap is not installed")
    (tmp_path / "subs").mkdir()
    with pytest.raises(Exception, match="--no-sandbox"):
        grade("vae", tmp_path / "subs", tmp_path / "out", progress=False)


def test_check_command_reports_visible_tests(tmp_path, released):
    from autograder.plain_nbgrader import fill_answers, solution_answers

    path = tmp_path / "vae.ipynb"
    nbformat.write(fill_answers(released, {**solution_answers("vae"), "gaussian_kl": WRONG["kl_without_half"][1].strip()}), path)
    result = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--assignment", "vae"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stderr
    assert "test_gaussian_kl_visible" in result.stdout and "FAIL" in result.stdout
    assert "visible tests: 3 / 4" in result.stdout and "hidden" in result.stdout


@needs_sandbox
@pytest.mark.parametrize("layout", ["folders", "flat"])
def test_lms_zip_is_graded_like_a_folder(tmp_path, released, layout):
    """A zip as a learning-management system exports it: one folder per student, or flat files
    named ``<student>_<submission id>_<original name>``; both give each student their grade."""
    import zipfile

    from autograder.plain_nbgrader import fill_answers, solution_answers

    solution = solution_answers("vae")
    piece, code, _ = WRONG["kl_without_half"]
    notebooks = {"alice": fill_answers(released, solution), "bob": fill_answers(released, {**solution, piece: code.strip()})}
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for student, nb in notebooks.items():
            name = f"submissions/{student}/vae.ipynb" if layout == "folders" else f"{student}_4711_vae.ipynb"
            zf.writestr(name, nbformat.writes(nb))
    records = grade("vae", archive, tmp_path / "out", workers=2, limits=LIMITS, progress=False)
    assert {s: (r["total"], r["status"]) for s, r in records.items()} == {"alice": (12, "ok"), "bob": (9, "ok")}
