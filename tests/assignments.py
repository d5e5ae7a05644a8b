"""Grading an assignment's typical mistakes both ways: plain nbgrader and the sandboxed grader.

A unit's test module lists its plausible wrong answers as ``WRONG = {name: (piece, code, kept)}``
(``kept``: the points that answer keeps on its own piece) and calls :func:`grade_both`. Each
wrong answer must lose points on its own piece only, and the two graders must agree cell by
cell. A piece's checks call that piece's function only, so wrong answers to different pieces can
share a notebook: :func:`pack` puts at most one wrong answer per piece in each submission, which
cuts the notebook runs from one per wrong answer to one per wrong answer of the most-tested
piece, while every other piece of the submission must keep its full marks. Used by the
assignment tests of the units after the VAE (whose tests predate it).
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from autograder.grade import grade
from autograder.plain_nbgrader import autograde, fill_answers, prepare_course, solution_answers
from autograder.release import ROOT, release
from autograder.sandbox import Limits, sandbox_problem
from autograder.units import load_unit

LIMITS = Limits(piece_seconds=30, notebook_seconds=120, memory_mb=2048)


def pack(wrong: dict) -> dict[str, dict[str, str]]:
    """Submissions holding at most one wrong answer per piece: ``{submission: {piece: wrong name}}``."""
    by_piece: dict[str, list[str]] = {}
    for name, (piece, _, _) in wrong.items():
        by_piece.setdefault(piece, []).append(name)
    rounds = max((len(names) for names in by_piece.values()), default=0)
    return {f"mixed_{i + 1}": {piece: names[i] for piece, names in by_piece.items() if i < len(names)}
            for i in range(rounds)}


def submissions(assignment: str, wrong: dict, released: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The solution, the untouched released notebook and the packed wrong answers (``pack``)."""
    solution = solution_answers(assignment)
    subs = {"solution": fill_answers(released, solution), "released": released}
    for student, broken in pack(wrong).items():
        subs[student] = fill_answers(released, {**solution, **{piece: wrong[name][1].strip() for piece, name in broken.items()}})
    return subs


def grade_both(assignment: str, wrong: dict, tmp: Path) -> tuple[dict, dict]:
    """Grade every submission with plain nbgrader and with the sandboxed grader.

    Returns ``(nbgrader, ours)``, each ``{student: {grade_id: points}}``.
    """
    course = tmp / "course"
    released = nbformat.read(prepare_course(assignment, course) / f"{assignment}.ipynb", as_version=4)
    subs = submissions(assignment, wrong, released)
    nbgrader_scores = autograde(assignment, subs, course)
    folder, out = tmp / "submissions", tmp / "graded"
    for student, notebook in subs.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(notebook, folder / student / f"{assignment}.ipynb")
    records = grade(assignment, folder, out, workers=2, limits=LIMITS, progress=False, sandbox=sandbox_problem() is None)
    ours = {
        student: {check["name"]: check["points"] for piece in record["pieces"].values() for check in piece["checks"]}
        for student, record in records.items()
    }
    return nbgrader_scores, ours


def expected_scores(assignment: str, wrong: dict) -> dict[str, dict[str, float]]:
    """Per piece: full points everywhere, except ``kept`` on each piece a submission breaks."""
    unit = load_unit(assignment)
    full = {piece.name: piece.points for piece in unit.pieces}
    expected = {"solution": full, "released": dict.fromkeys(full, 0.0)}
    for student, broken in pack(wrong).items():
        expected[student] = {**full, **{piece: wrong[name][2] for piece, name in broken.items()}}
    return expected


def piece_scores(assignment: str, cells: dict[str, float]) -> dict[str, float]:
    """Points per piece from points per nbgrader test cell."""
    unit = load_unit(assignment)
    return {piece.name: sum(cells.get(check.name, 0.0) for check in piece.checks) for piece in unit.pieces}


def stale_notebooks(assignment: str, tmp: Path) -> list[str]:
    """The notebooks of ``notebooks/<assignment>/`` that differ from a fresh ``release``."""
    fresh = release(assignment, release_directory=str(tmp))
    committed = ROOT / "notebooks" / assignment
    return [path.name for path in sorted(fresh.glob("*.ipynb"))
            if json.loads((committed / path.name).read_text()) != json.loads(path.read_text())]


# -- the checks every assignment's test module makes -------------------------------------------


def assert_expected_scores(assignment: str, wrong: dict, nbgrader_scores: dict) -> None:
    """Each submission's points per piece under plain nbgrader are what ``expected_scores`` says."""
    expected = expected_scores(assignment, wrong)
    got = {name: piece_scores(assignment, cells) for name, cells in nbgrader_scores.items()}
    packed = pack(wrong)
    mismatched = {f"{name} {packed.get(name, '')}": {piece: (got.get(name, {}).get(piece), points) for piece, points in want.items()
                                                     if got.get(name, {}).get(piece) != points}
                  for name, want in expected.items() if got.get(name) != want}
    assert not mismatched, f"(got, expected) per piece, with the wrong answers each submission holds: {mismatched}"


def assert_graders_agree(nbgrader_scores: dict, ours: dict) -> None:
    """The sandboxed grader gives every submission nbgrader's points, cell by cell."""
    assert set(ours) == set(nbgrader_scores)
    for student, cells in nbgrader_scores.items():
        assert ours[student] == cells, student


def assert_student_notebook_hides(assignment: str, secrets: tuple[str, ...], n_pieces: int) -> None:
    """The released notebook has no solution, no hidden test, none of ``secrets``, one stub per
    piece and no outputs."""
    notebook = nbformat.read(ROOT / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "run_in_notebook", *secrets):
        assert secret not in code, secret
    assert code.count("raise NotImplementedError()") == n_pieces
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
