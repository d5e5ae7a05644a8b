"""The student edition (``python -m autograder publish``): no answers in it, and a self-check
that works in it. Its book is built by tests/test_book.py."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import ROOT
from autograder.edition import publish
from autograder.plain import HIDDEN
from autograder.plain_nbgrader import fill_answers, solution_answers
from autograder.release import assignments
from autograder.units import load_unit, names
from tests.test_gan_assignment import WRONG


@pytest.fixture(scope="module")
def edition(tmp_path_factory) -> Path:
    return publish(tmp_path_factory.mktemp("student") / "course")


def _texts(folder: Path) -> dict[Path, str]:
    texts = {}
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix not in (".pt", ".png"):
            texts[path] = path.read_text(errors="replace")
    return texts


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def public() -> str:
    """What the course publishes on purpose: the book, gencore, and the source notebooks without
    their solutions and hidden tests. A line found there too is not a secret."""
    texts = [text for folder in ("book", "gencore") for text in _texts(ROOT / folder).values()]
    for assignment in assignments():
        source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        texts += [HIDDEN.sub("", cell.source) for cell in source.cells if not cell.metadata.get("nbgrader", {}).get("solution")]
    return _squash("\n".join(texts))


def secrets() -> dict[str, str]:
    """What a student must not find: every solution body, and every line of a hidden check (its
    probe and verdict, or a plain assignment's hidden tests) that is long enough to be its own
    and is not published anyway (``public``)."""
    found = {}
    for assignment in assignments():
        for grade_id, body in solution_answers(assignment).items():
            found[f"{assignment} solution {grade_id}"] = body
        source = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
        for cell in source.cells:
            for block in HIDDEN.findall(cell.source):
                for line in block.splitlines():
                    if len(line.strip()) >= 30 and "HIDDEN TESTS" not in line:
                        found[f"{assignment} hidden: {line.strip()[:50]}"] = line.strip()
    for name in names():
        for check in load_unit(name).checks():
            if check.visible:
                continue
            for function in (check.probe, check.verdict):
                for line in inspect.getsource(function).splitlines():
                    line = line.strip()
                    if len(line) >= 30 and not line.startswith(("#", '"""', "def ", "@")):
                        found[f"{name} {check.grade_id}: {line[:50]}"] = line
    published = public()
    return {k: v for k, v in found.items() if v.strip() and _squash(v) not in published}


def test_the_edition_holds_the_course_and_no_instructor_files(edition):
    for name in ("README.md", "Makefile", "requirements.txt", "pyproject.toml", "_config.yml", "_toc.yml", "book",
                 "gencore/checkpoints", "notebooks/gan/gan.ipynb"):
        assert (edition / name).exists(), name
    for name in ("solutions", "autograder", "tests", "bench", ".ci", "nbgrader_config.py"):
        assert not (edition / name).exists(), name
    requirements = (edition / "requirements.txt").read_text()
    assert "nbgrader" not in requirements and "pytest" not in requirements and "autograder" not in requirements
    assert "jupyterlab==" in requirements and "torch==" in requirements
    assert "release" not in (edition / "Makefile").read_text()
    assert '"autograder"' not in (edition / "pyproject.toml").read_text()


def test_no_solution_and_no_hidden_check_in_the_edition(edition):
    texts = {path: _squash(text) for path, text in _texts(edition).items()}
    wanted = secrets()
    assert len(wanted) > 100  # every unit's hidden checks and every solution are looked for
    leaks = {name: [str(p.relative_to(edition)) for p, text in texts.items() if _squash(secret) in text]
             for name, secret in wanted.items()}
    assert not {name: where for name, where in leaks.items() if where}


def test_the_leak_search_finds_a_planted_solution(tmp_path):
    planted = publish(tmp_path / "course")
    body = solution_answers("vae")["gaussian_kl"]
    (planted / "notebooks" / "vae" / "notes.py").write_text(body)
    texts = [_squash(text) for text in _texts(planted).values()]
    assert any(_squash(body) in text for text in texts)


def _check(edition: Path, notebook: Path) -> subprocess.CompletedProcess:
    """The student's command, with the environment not activated (PATH without .venv/bin)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = "/usr/bin:/bin"
    return subprocess.run([sys.executable, "-m", "gencore.check", str(notebook.relative_to(edition))], cwd=edition,
                          capture_output=True, text=True, env=env, timeout=600)


def test_the_self_check_on_a_released_a_half_done_and_a_finished_notebook(edition):
    released = edition / "notebooks" / "gan" / "gan.ipynb"
    done = _check(edition, released)
    assert done.returncode == 1 and done.stdout.count("to do") == 6, done.stdout + done.stderr
    assert "discriminator_loss() is not written yet (cell 4)" in done.stdout

    answers = solution_answers("gan")
    half = fill_answers(nbformat.read(released, as_version=4), {
        "discriminator_loss": answers["discriminator_loss"],
        "generator_loss_nonsaturating": WRONG["g_loss_minimax"][1].strip(),  # the minimax loss: visible test fails
    })
    nbformat.write(half, edition / "notebooks" / "gan" / "half.ipynb")
    done = _check(edition, edition / "notebooks" / "gan" / "half.ipynb")
    lines = {line.split()[2]: line for line in done.stdout.splitlines() if line.strip().startswith("part ")}
    assert done.returncode == 1
    assert " pass" in lines["discriminator_loss"]
    fail = lines["generator_loss_nonsaturating"]
    assert "FAIL" in fail and re.search(r"cell 9, line \d+: AssertionError: \S", fail), fail
    assert "to do" in lines["optimal_discriminator"]

    finished = fill_answers(nbformat.read(released, as_version=4), answers)
    nbformat.write(finished, edition / "notebooks" / "gan" / "finished.ipynb")
    done = _check(edition, edition / "notebooks" / "gan" / "finished.ipynb")
    assert done.returncode == 0 and "6 of 6 parts pass" in done.stdout, done.stdout + done.stderr

    typo = _check(edition, edition / "notebooks" / "gan" / "gna.ipynb")
    assert typo.returncode != 0 and "notebooks/gan/gan.ipynb" in typo.stderr and "Traceback" not in typo.stderr


def test_a_finished_notebook_runs_to_the_end_in_the_edition(edition):
    """The whole notebook, training section included, with only what the edition holds."""
    from nbclient import NotebookClient

    released = nbformat.read(edition / "notebooks" / "foundations" / "foundations.ipynb", as_version=4)
    finished = fill_answers(released, solution_answers("foundations"))
    NotebookClient(finished, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(edition / "notebooks" / "foundations")}}).execute()
    errors = [o for c in finished.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    training = next(c for c in finished.cells if "fit_class_gaussians(train.x" in c.source)  # Part 6
    assert not errors and "test accuracy" in str(training.get("outputs", "")), errors
