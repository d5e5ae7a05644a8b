"""Grading an assignment's typical mistakes both ways: plain nbgrader and the sandboxed grader.

A unit's test module lists its plausible wrong answers as ``WRONG = {name: (piece, code, kept)}``
(``kept``: the points that answer keeps on its own piece) and calls :func:`grade_both`. Each
wrong answer must lose points on its own piece only, and the two graders must agree cell by
cell. A piece's checks call that piece's function only, so wrong answers to different pieces can
share a notebook: :func:`pack` puts at most one wrong answer per piece in each submission, which
cuts the notebook runs from one per wrong answer to one per wrong answer of the most-tested
piece, while every other piece of the submission must keep its full marks.

A unit's test module subclasses :class:`AssignmentTests` (every unit after the VAE, whose tests
predate it) and sets ``ASSIGNMENT``, ``WRONG`` and ``SECRETS`` (solution fragments the released
notebook must not contain); the checks themselves live here, once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from autograder import ROOT
from autograder.assignment import sync_source
from autograder.grade import grade, load_target
from autograder.plain_nbgrader import autograde, fill_answers, prepare_course, solution_answers
from autograder.release import release
from autograder.sandbox import Limits, sandbox_problem
from autograder.units import load_unit, names

LIMITS = Limits(piece_seconds=60, notebook_seconds=240, memory_mb=2048)  # generous: a loaded machine is slow


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
    unit = load_target(assignment)
    full = {piece.name: piece.points for piece in unit.pieces}
    expected = {"solution": full, "released": dict.fromkeys(full, 0.0)}
    for student, broken in pack(wrong).items():
        expected[student] = {**full, **{piece: wrong[name][2] for piece, name in broken.items()}}
    return expected


def piece_scores(assignment: str, cells: dict[str, float]) -> dict[str, float]:
    """Points per piece from points per nbgrader test cell."""
    unit = load_target(assignment)
    return {piece.name: sum(cells.get(check.grade_id, 0.0) for check in piece.checks) for piece in unit.pieces}


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


def assert_student_notebook_hides(assignment: str, secrets: tuple[str, ...], n_stubs: int) -> None:
    """The released notebook has no solution, no hidden test, none of ``secrets``, a stub per
    function to write and no outputs."""
    notebook = nbformat.read(ROOT / "notebooks" / assignment / f"{assignment}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "run_in_notebook", *secrets):
        assert secret not in code, secret
    assert code.count("raise NotImplementedError()") == n_stubs
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def assert_source_matches_declaration(assignment: str) -> None:
    """The nbgrader source's test cells are what ``autograder/units/<assignment>.py`` declares:
    every declared check has its cell with its grade_id and points, every hidden cell is the one
    ``run_in_notebook`` call, and no graded cell is undeclared (``release`` writes them so)."""
    changes = sync_source(load_unit(assignment), write=False)
    assert changes == [], f"solutions/{assignment} drifted from its declaration: {changes}; run `make release`"


def heading_slugs(page: str) -> set[str]:
    """The anchors MyST gives the headings of ``book/<page>.md``."""
    headings = re.findall(r"^#+ (.+)$", (ROOT / "book" / f"{page}.md").read_text(), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def assert_links_point_to_chapter_sections(assignment: str) -> None:
    """The notebook's links into the book (``../../book/<page>.md#<heading>``) and the grader's
    feedback links (each piece's anchor) name headings that exist."""
    unit = load_target(assignment)
    notebook = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    links = re.findall(r"book/(\w+)\.md#([\w-]+)", text)
    assert len(links) >= len(unit.pieces)
    for page, anchor in links:
        assert anchor in heading_slugs(page), f"book/{page}.md has no heading with anchor {anchor}"
    chapter = Path(unit.chapter).stem
    for piece in unit.pieces:
        page, _, anchor = piece.anchor.rpartition("#") if "#" in piece.anchor else (chapter, "", piece.anchor)
        page = Path(page).stem if page else chapter
        assert anchor in heading_slugs(page), f"{piece.name}: book/{page}.md has no heading with anchor {anchor}"


class AssignmentTests:
    """The tests every assignment gets; a unit's module subclasses this as ``Test<Unit>Assignment``."""

    ASSIGNMENT: str
    WRONG: dict  # name -> (the piece it breaks, its code, the points it keeps on that piece)
    SECRETS: tuple[str, ...] = ()  # solution fragments that must not appear in the released notebook
    STUBS: int | None = None  # functions the student writes, when not one per piece

    @pytest.fixture(scope="class")
    @classmethod
    def graded(cls, tmp_path_factory):
        return grade_both(cls.ASSIGNMENT, cls.WRONG, tmp_path_factory.mktemp(cls.ASSIGNMENT))

    def test_every_submission_scores_as_expected_per_piece(self, graded):
        assert_expected_scores(self.ASSIGNMENT, self.WRONG, graded[0])

    def test_the_sandboxed_grader_agrees_with_nbgrader_cell_by_cell(self, graded):
        assert_graders_agree(*graded)

    def test_every_piece_has_a_wrong_answer(self):
        assert {piece for piece, _, _ in self.WRONG.values()} == {p.name for p in load_target(self.ASSIGNMENT).pieces}

    def test_student_notebook_is_generated_from_the_solution(self, tmp_path):
        assert stale_notebooks(self.ASSIGNMENT, tmp_path) == [], \
            f"notebooks/{self.ASSIGNMENT} is stale: run `make release` and commit"

    def test_student_notebook_hides_solutions_and_hidden_tests(self):
        assert_student_notebook_hides(self.ASSIGNMENT, self.SECRETS,
                                      n_stubs=self.STUBS or len(load_target(self.ASSIGNMENT).pieces))

    def test_test_cells_match_the_declaration(self):
        if self.ASSIGNMENT not in names():
            pytest.skip("a plain nbgrader assignment: its test cells are its own declaration")
        assert_source_matches_declaration(self.ASSIGNMENT)

    def test_links_point_to_chapter_sections(self):
        assert_links_point_to_chapter_sections(self.ASSIGNMENT)
