"""The GAN assignment, graded as an instructor would: by plain nbgrader and by the sandboxed grader.

The solution, the untouched student notebook and plausible wrong answers are graded both ways.
Each wrong answer must lose points on its own piece only (and keep what the table says); the two
graders must agree piece by piece. To keep the notebook runs few, wrong answers to different
pieces share a submission: each submission below breaks some pieces and keeps the solution for
the others, which must keep their full marks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from autograder.plain_nbgrader import autograde, fill_answers, prepare_course, solution_answers
from autograder.release import ROOT, release
from autograder.sandbox import Limits, sandbox_problem

pytestmark = pytest.mark.slow

PIECES = {  # grade_id of the solution cell -> the test cells that grade it (visible, hidden)
    name: (f"test_{name}_visible", f"test_{name}_hidden")
    for name in ("discriminator_loss", "generator_loss_nonsaturating", "optimal_discriminator",
                 "js_divergence", "wasserstein1_1d", "gradient_penalty")
}
POINTS = {"visible": 1.0, "hidden": 2.0}
FULL = (POINTS["visible"] + POINTS["hidden"]) * len(PIECES)

GP_BODY = '''
def gradient_penalty(critic, real, fake):
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), dtype=real.dtype)
    x_hat = ({mix}).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph={graph})
    norms = grad.flatten(start_dim=1).norm(dim=1)
    return {penalty}
'''
JS_BODY = '''
def js_divergence(p, q):
    m = {mixture}
    kl = lambda a: {term}.sum(dim=-1)
    return 0.5 * (kl(p) + kl(q))
'''

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "d_loss_log_of_sigmoid": ("discriminator_loss", '''
def discriminator_loss(real_logits, fake_logits):
    return -(torch.log(torch.sigmoid(real_logits)).mean() + torch.log(1 - torch.sigmoid(fake_logits)).mean())
''', 1.0),  # right at moderate logits (visible passes), inf at logits of 200 (hidden fails)
    "d_loss_labels_swapped": ("discriminator_loss", '''
def discriminator_loss(real_logits, fake_logits):
    return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()
''', 0.0),
    "g_loss_minimax": ("generator_loss_nonsaturating", '''
def generator_loss_nonsaturating(fake_logits):
    return -F.softplus(fake_logits).mean()
''', 0.0),
    "optimal_discriminator_inverted": ("optimal_discriminator", '''
def optimal_discriminator(p_data, p_model):
    return p_model / (p_data + p_model)
''', 0.0),
    "js_log_base_2": ("js_divergence", JS_BODY.format(
        mixture="0.5 * (p + q)", term="(torch.special.xlogy(a, a) - torch.special.xlogy(a, m)) / math.log(2)"), 0.0),
    "js_without_half_mixture": ("js_divergence", JS_BODY.format(
        mixture="p + q", term="(torch.special.xlogy(a, a) - torch.special.xlogy(a, m))"), 0.0),
    "js_nan_at_zeros": ("js_divergence", JS_BODY.format(mixture="0.5 * (p + q)", term="(a * torch.log(a / m))"), 1.0),
    "w1_unsorted": ("wasserstein1_1d", '''
def wasserstein1_1d(x, y):
    return (x - y).abs().mean()
''', 0.0),
    "gp_on_real_points_only": ("gradient_penalty", GP_BODY.format(
        mix="real.detach().clone()", graph="True", penalty="(norms - 1).pow(2).mean()"), 1.0),  # exact for a linear critic
    "gp_norm_squared_without_minus_one": ("gradient_penalty", GP_BODY.format(
        mix="eps * real + (1 - eps) * fake", graph="True", penalty="norms.pow(2).mean()"), 0.0),
    "gp_without_create_graph": ("gradient_penalty", GP_BODY.format(
        mix="eps * real + (1 - eps) * fake", graph="False", penalty="(norms - 1).pow(2).mean()"), 0.0),
}
# submissions: each breaks pieces that do not overlap, so each piece's score shows one mistake
SUBMISSIONS = {
    "wrong_a": ["d_loss_log_of_sigmoid", "optimal_discriminator_inverted", "js_log_base_2", "gp_on_real_points_only"],
    "wrong_b": ["d_loss_labels_swapped", "g_loss_minimax", "js_without_half_mixture", "w1_unsorted",
                "gp_norm_squared_without_minus_one"],
    "wrong_c": ["js_nan_at_zeros", "gp_without_create_graph"],
}


def test_submissions_cover_every_wrong_answer_once():
    listed = [name for names in SUBMISSIONS.values() for name in names]
    assert sorted(listed) == sorted(WRONG)
    for names in SUBMISSIONS.values():
        pieces = [WRONG[name][0] for name in names]
        assert len(pieces) == len(set(pieces))


def expected_piece_points(student: str) -> dict[str, float]:
    broken = {WRONG[name][0]: WRONG[name][2] for name in SUBMISSIONS.get(student, [])}
    if student == "released":
        return {piece: 0.0 for piece in PIECES}
    return {piece: broken.get(piece, FULL / len(PIECES)) for piece in PIECES}


def submissions(released: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    solution = solution_answers("gan")
    notebooks = {"solution": fill_answers(released, solution), "released": released}
    for student, names in SUBMISSIONS.items():
        notebooks[student] = fill_answers(released, {**solution, **{WRONG[n][0]: WRONG[n][1].strip() for n in names}})
    return notebooks


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    released = nbformat.read(prepare_course("gan", course) / "gan.ipynb", as_version=4)
    scores = autograde("gan", submissions(released), course)
    return {student: {piece: sum(cells[c] for c in PIECES[piece]) for piece in PIECES} for student, cells in scores.items()}


PROBLEM = sandbox_problem()
needs_sandbox = pytest.mark.skipif(PROBLEM is not None and not os.environ.get("CI"), reason=f"no sandbox here: {PROBLEM}")


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    from autograder.grade import grade

    folder, out = tmp_path_factory.mktemp("submissions"), tmp_path_factory.mktemp("graded")
    released = nbformat.read(ROOT / "notebooks" / "gan" / "gan.ipynb", as_version=4)
    for student, nb in submissions(released).items():
        (folder / student).mkdir()
        nbformat.write(nb, folder / student / "gan.ipynb")
    limits = Limits(piece_seconds=20, notebook_seconds=120, memory_mb=2048)
    records = grade("gan", folder, out, workers=2, limits=limits, progress=False)
    return records


STUDENTS = ["solution", "released", *SUBMISSIONS]


@pytest.mark.parametrize("student", STUDENTS)
def test_plain_nbgrader_scores_each_piece(plain, student):
    assert plain[student] == expected_piece_points(student)


@needs_sandbox
@pytest.mark.parametrize("student", STUDENTS)
def test_sandboxed_grader_scores_each_piece_like_nbgrader(sandboxed, plain, student):
    record = sandboxed[student]
    got = {piece: record["pieces"][piece]["points"] for piece in PIECES}
    assert got == expected_piece_points(student) == plain[student]
    if student != "released":
        assert record["status"] == "ok", record


@needs_sandbox
def test_sandboxed_checks_split_visible_and_hidden_like_the_table(sandboxed):
    # a mistake that keeps 1 point passes the visible check and fails the hidden one
    for student, names in SUBMISSIONS.items():
        for name in names:
            piece, _, kept = WRONG[name]
            passed = [check["passed"] for check in sandboxed[student]["pieces"][piece]["checks"]]
            assert passed == ([True, False] if kept == 1.0 else [False, False]), (name, passed)


def test_student_notebook_is_generated_from_the_solution(tmp_path):
    """notebooks/ must be what `make release` makes from solutions/ now (it is never hand-edited)."""
    fresh = release("gan", release_directory=str(tmp_path))
    committed = ROOT / "notebooks" / "gan"
    for path in sorted(fresh.glob("*.ipynb")):
        ours = json.loads((committed / path.name).read_text())
        theirs = json.loads(path.read_text())
        assert ours == theirs, f"notebooks/gan/{path.name} is stale: run `make release` and commit"


def test_student_notebook_hides_solutions_and_hidden_tests():
    notebook = nbformat.read(ROOT / "notebooks" / "gan" / "gan.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "run_in_notebook", "softplus(-real_logits)", "xlogy(p, m)", "create_graph=True)\n"):
        assert secret not in code, secret
    assert code.count("raise NotImplementedError()") == len(PIECES)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_hidden_cells_are_one_call_into_the_grader():
    """The hidden tests have one source, autograder/units/gan.py: each hidden cell only calls it."""
    solution = nbformat.read(ROOT / "solutions" / "gan" / "gan.ipynb", as_version=4)
    hidden = [cell for cell in solution.cells if "BEGIN HIDDEN TESTS" in cell.source]
    assert len(hidden) == len(PIECES)
    for cell in hidden:
        grade_id = cell.metadata.nbgrader.grade_id
        assert cell.source == ("### BEGIN HIDDEN TESTS\nfrom autograder.units import run_in_notebook\n"
                               f'run_in_notebook("gan", "{grade_id}", globals())\n### END HIDDEN TESTS')
