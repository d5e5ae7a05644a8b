"""The diffusion assignment, graded two ways: by plain nbgrader, as an instructor would, and by the
sandboxed grader (``autograder.grade``).

Each plausible wrong answer is submitted alone, in an otherwise correct notebook, to the sandboxed
grader: it must lose the points of its own piece and only those. Plain nbgrader executes whole
notebooks (training included), so to keep this file quick it grades the solution, the untouched
student notebook and three notebooks that each carry at most one wrong answer per piece; on those
five, both graders must give the same points for every test cell.
"""

from __future__ import annotations

import json
import os
import re

import nbformat
import pytest

from autograder.grade import grade
from autograder.plain_nbgrader import autograde, fill_answers, prepare_course, solution_answers
from autograder.release import ROOT, release
from autograder.sandbox import Limits, sandbox_problem

pytestmark = pytest.mark.slow

PIECES = {  # grade_id of the solution cell -> the test cells that grade it (visible, hidden)
    "alpha_bar_from_betas": ("test_alpha_bar_from_betas_visible", "test_alpha_bar_from_betas_hidden"),
    "q_sample": ("test_q_sample_visible", "test_q_sample_hidden"),
    "diffusion_loss": ("test_diffusion_loss_visible", "test_diffusion_loss_hidden"),
    "ddpm_step": ("test_ddpm_step_visible", "test_ddpm_step_hidden"),
    "ddim_step": ("test_ddim_step_visible", "test_ddim_step_hidden"),
}
POINTS = {"visible": 1.0, "hidden": 2.0}

DDPM_STEP = '''
def ddpm_step(x_t, t, eps, schedule, noise):
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
    abar_prev = schedule.alpha_bar[t - 1] if t > 0 else torch.ones_like(abar)
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    variance = {variance}
    return mean + {scale} * noise
'''

DDIM_STEP = '''
def ddim_step(x_t, t, t_prev, eps, alpha_bar, eta=0.0, noise=None):
    abar = alpha_bar[t]
    abar_prev = {abar_prev}
    x0_pred = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    sigma = {sigma}
    x_prev = abar_prev.sqrt() * x0_pred + (1 - abar_prev - sigma**2).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev
'''
RIGHT_PREV = "alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(abar)"
RIGHT_SIGMA = "eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "alpha_bar_exclusive_product": ("alpha_bar_from_betas", '''
def alpha_bar_from_betas(betas):
    # off by one: starts the product at 1, so entry t holds the product up to t - 1
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1.0 - betas, dim=0)[:-1]])
''', 0.0),
    "alpha_bar_one_minus_sum": ("alpha_bar_from_betas", '''
def alpha_bar_from_betas(betas):
    return 1.0 - torch.cumsum(betas, dim=0)
''', 0.0),
    "alpha_bar_float32": ("alpha_bar_from_betas", '''
def alpha_bar_from_betas(betas):
    return torch.cumprod(1.0 - betas.float(), dim=0)
''', 1.0),  # right values in float32 (visible passes); loses precision for float64 schedules
    "q_sample_sqrt_missing": ("q_sample", '''
def q_sample(x0, t, noise, alpha_bar):
    a = alpha_bar[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return a * x0 + (1 - a) * noise
''', 0.0),
    "q_sample_off_by_one": ("q_sample", '''
def q_sample(x0, t, noise, alpha_bar):
    a = alpha_bar[t - 1].reshape(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
''', 0.0),
    "q_sample_two_dimensional_only": ("q_sample", '''
def q_sample(x0, t, noise, alpha_bar):
    a = alpha_bar[t][:, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
''', 1.0),  # right for (B, D) (visible passes); fails on images (B, 1, 8, 8)
    "loss_t_off_by_one": ("diffusion_loss", '''
def diffusion_loss(eps_model, x0, alpha_bar, t=None, noise=None, q_sample_fn=q_sample):
    if t is None:
        t = torch.randint(1, len(alpha_bar), (x0.shape[0],))  # never draws the first step
    if noise is None:
        noise = torch.randn_like(x0)
    return (noise - eps_model(q_sample_fn(x0, t, noise, alpha_bar), t)).pow(2).mean()
''', 1.0),
    "loss_sums_dimensions": ("diffusion_loss", '''
def diffusion_loss(eps_model, x0, alpha_bar, t=None, noise=None, q_sample_fn=q_sample):
    if t is None:
        t = torch.randint(0, len(alpha_bar), (x0.shape[0],))
    if noise is None:
        noise = torch.randn_like(x0)
    return (noise - eps_model(q_sample_fn(x0, t, noise, alpha_bar), t)).pow(2).sum(-1).mean()
''', 0.0),
    "ddpm_beta_where_beta_tilde_belongs": ("ddpm_step", DDPM_STEP.format(variance="beta", scale="variance.sqrt()"), 0.0),
    "ddpm_variance_not_its_square_root": (
        "ddpm_step", DDPM_STEP.format(variance="(1 - abar_prev) / (1 - abar) * beta", scale="variance"), 1.0),
    "ddim_data_index_wraps_around": ("ddim_step", DDIM_STEP.format(abar_prev="alpha_bar[t_prev]", sigma=RIGHT_SIGMA), 0.0),
    "ddim_sigma_without_eta_formula": ("ddim_step", DDIM_STEP.format(abar_prev=RIGHT_PREV, sigma="eta * (1 - abar_prev).sqrt()"), 1.0),
}


def combined() -> dict[str, dict[str, str]]:
    """Three notebooks, ``mixed_<k>``, each with the k-th wrong answer of every piece that has one."""
    by_piece: dict[str, list[str]] = {}
    for name, (piece, _, _) in WRONG.items():
        by_piece.setdefault(piece, []).append(name)
    rounds = max(len(names) for names in by_piece.values())
    return {f"mixed_{k}": {piece: names[k] for piece, names in by_piece.items() if k < len(names)} for k in range(rounds)}


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    released = nbformat.read(prepare_course("diffusion", course) / "diffusion.ipynb", as_version=4)
    solution = solution_answers("diffusion")
    notebooks = {"solution": fill_answers(released, solution), "released": released}
    for name, (piece, code, _) in WRONG.items():
        notebooks[name] = fill_answers(released, {**solution, piece: code.strip()})
    for student, wrong in combined().items():
        notebooks[student] = fill_answers(released, {**solution, **{piece: WRONG[name][1].strip() for piece, name in wrong.items()}})
    return course, notebooks


PROBLEM = sandbox_problem()
needs_sandbox = pytest.mark.skipif(PROBLEM is not None and not os.environ.get("CI"), reason=f"no sandbox here: {PROBLEM}")


@pytest.fixture(scope="module")
def sandboxed(submissions, tmp_path_factory):
    """Every submission graded by ``autograder.grade``: {student: {grade_id: points}}."""
    _, notebooks = submissions
    folder, out = tmp_path_factory.mktemp("submitted"), tmp_path_factory.mktemp("graded")
    for student, notebook in notebooks.items():
        (folder / student).mkdir(parents=True)
        nbformat.write(notebook, folder / student / "diffusion.ipynb")
    records = grade("diffusion", folder, out, workers=2, limits=Limits(piece_seconds=60, notebook_seconds=240), progress=False)
    return {student: {check["name"]: check["points"] for piece in record["pieces"].values() for check in piece["checks"]}
            for student, record in records.items()}


@pytest.fixture(scope="module")
def nbgraded(submissions):
    """The solution, the released notebook and the mixed notebooks graded by plain nbgrader."""
    course, notebooks = submissions
    chosen = ["solution", "released", *combined()]
    return autograde("diffusion", {student: notebooks[student] for student in chosen}, course)


def piece_points(scores: dict[str, float], piece: str) -> float:
    return sum(scores[cell] for cell in PIECES[piece])


def expected_points(student: str, piece: str) -> float:
    if student == "released":
        return 0.0
    wrong = combined().get(student, {piece: student} if student in WRONG and WRONG[student][0] == piece else {})
    return WRONG[wrong[piece]][2] if piece in wrong else POINTS["visible"] + POINTS["hidden"]


def test_solution_gets_full_marks(nbgraded):
    assert nbgraded["solution"] == {
        cell: POINTS[kind] for visible, hidden in PIECES.values() for cell, kind in ((visible, "visible"), (hidden, "hidden"))
    }


def test_released_notebook_gets_zero(nbgraded):
    assert sum(nbgraded["released"].values()) == 0
    assert len(nbgraded["released"]) == 2 * len(PIECES)


def test_nbgrader_takes_each_wrong_answer_from_its_piece(nbgraded):
    for student in combined():
        for piece in PIECES:
            got = piece_points(nbgraded[student], piece)
            assert got == expected_points(student, piece), f"{student}: piece {piece} got {got}"


@needs_sandbox
@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_loses_its_own_piece_only(sandboxed, name):
    for piece in PIECES:
        got = piece_points(sandboxed[name], piece)
        assert got == expected_points(name, piece), f"{name}: piece {piece} got {got}"


@needs_sandbox
def test_sandboxed_grader_agrees_with_nbgrader(sandboxed, nbgraded):
    for student, scores in nbgraded.items():
        assert sandboxed[student] == scores, student


def test_student_notebook_is_generated_from_the_solution(tmp_path):
    """notebooks/ must be what `make release` makes from solutions/ now (it is never hand-edited)."""
    fresh = release("diffusion", release_directory=str(tmp_path))
    committed = ROOT / "notebooks" / "diffusion"
    for path in sorted(fresh.glob("*.ipynb")):
        ours = json.loads((committed / path.name).read_text())
        theirs = json.loads(path.read_text())
        assert ours == theirs, f"notebooks/diffusion/{path.name} is stale: run `make release` and commit"


def test_student_notebook_hides_solutions_and_hidden_tests():
    notebook = nbformat.read(ROOT / "notebooks" / "diffusion" / "diffusion.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "run_in_notebook", "torch.cumprod", "beta_tilde = "):
        assert secret not in code, secret
    assert code.count("raise NotImplementedError()") == len(PIECES)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def test_assignment_links_point_to_chapter_sections():
    """The assignment's links to the book (../../book/diffusion.md#heading) name headings that exist."""
    notebook = nbformat.read(ROOT / "solutions" / "diffusion" / "diffusion.ipynb", as_version=4)
    text = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    links = re.findall(r"book/(\w+)\.md#([\w-]+)", text)
    assert len(links) == len(PIECES)
    for page, anchor in links:
        headings = re.findall(r"^#+ (.+)$", (ROOT / "book" / f"{page}.md").read_text(), flags=re.M)
        slugs = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
        assert anchor in slugs, f"{page}.md has no heading with anchor {anchor}"
    # the grader's feedback links to the same sections
    from autograder.units import load_unit

    assert {piece.anchor for piece in load_unit("diffusion").pieces} <= {anchor for _, anchor in links}
