"""The VAE assignment, graded by nbgrader as an instructor would.

One nbgrader course is built in a temporary folder; the solution, the untouched student
notebook and plausible wrong answers are submitted and autograded together. Each wrong answer
must lose the points of its own piece and only those.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from autograder.plain_nbgrader import autograde, fill_answers, prepare_course, solution_answers
from autograder.release import ROOT, release

PIECES = {  # grade_id of the solution cell -> the test cells that grade it (visible, hidden)
    "gaussian_kl": ("test_gaussian_kl_visible", "test_gaussian_kl_hidden"),
    "reparameterize": ("test_reparameterize_visible", "test_reparameterize_hidden"),
    "negative_elbo": ("test_negative_elbo_visible", "test_negative_elbo_hidden"),
    "train_step": ("test_train_step_visible", "test_train_step_hidden"),
}
POINTS = {"visible": 1.0, "hidden": 2.0}

TRAIN_STEP_BODY = '''
def train_step(model, optimizer, x, beta=1.0, loss_fn=negative_elbo, reparam_fn=reparameterize):
    {zero_grad}
    mu, logvar = model.encode(x)
    z = reparam_fn(mu, logvar)
    loss = loss_fn(x, model.decode(z), mu, logvar, beta).{reduce}()
    loss.backward()
    optimizer.step()
    return loss.item()
'''

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "kl_without_half": ("gaussian_kl", '''
def gaussian_kl(mu, logvar):
    return (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)
''', 0.0),
    "kl_logvar_as_log_sigma": ("gaussian_kl", '''
def gaussian_kl(mu, logvar):
    return 0.5 * ((2 * logvar).exp() + mu.pow(2) - 1.0 - 2 * logvar).sum(dim=-1)
''', 0.0),
    "kl_averaged_over_latents": ("gaussian_kl", '''
def gaussian_kl(mu, logvar):
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).mean(dim=-1)
''', 0.0),
    "reparam_logvar_as_log_sigma": ("reparameterize", '''
def reparameterize(mu, logvar):
    return mu + torch.exp(logvar) * torch.randn_like(mu)
''', 0.0),
    "reparam_detaches_mu": ("reparameterize", '''
def reparameterize(mu, logvar):
    return mu.detach() + torch.exp(0.5 * logvar) * torch.randn_like(mu)
''', 0.0),
    "elbo_mean_over_pixels": ("negative_elbo", '''
def negative_elbo(x, x_logits, mu, logvar, beta=1.0, kl_fn=gaussian_kl):
    return F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").mean(-1) + beta * kl_fn(mu, logvar)
''', 0.0),
    "elbo_unstable_log_sigmoid": ("negative_elbo", '''
def negative_elbo(x, x_logits, mu, logvar, beta=1.0, kl_fn=gaussian_kl):
    p = torch.sigmoid(x_logits)
    return -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(-1) + beta * kl_fn(mu, logvar)
''', 1.0),  # right at moderate logits (visible tests pass), inf at logits of 100 (hidden fail)
    "step_without_zero_grad": ("train_step", TRAIN_STEP_BODY.format(zero_grad="pass", reduce="mean"), 1.0),
    "step_sums_the_batch": ("train_step", TRAIN_STEP_BODY.format(zero_grad="optimizer.zero_grad()", reduce="sum"), 0.0),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    released = nbformat.read(prepare_course("vae", course) / "vae.ipynb", as_version=4)
    solution = solution_answers("vae")
    submissions = {"solution": fill_answers(released, solution), "released": released}
    for name, (piece, code, _) in WRONG.items():
        submissions[name] = fill_answers(released, {**solution, piece: code.strip()})
    return autograde("vae", submissions, course)


def piece_points(scores: dict[str, float], piece: str) -> float:
    return sum(scores[cell] for cell in PIECES[piece])


def test_solution_gets_full_marks(graded):
    assert graded["solution"] == {
        cell: POINTS[kind] for visible, hidden in PIECES.values() for cell, kind in ((visible, "visible"), (hidden, "hidden"))
    }


def test_released_notebook_gets_zero(graded):
    assert sum(graded["released"].values()) == 0
    assert len(graded["released"]) == 2 * len(PIECES)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_loses_its_own_piece_only(graded, name):
    broken, _, kept = WRONG[name]
    scores = graded[name]
    for piece in PIECES:
        expected = kept if piece == broken else POINTS["visible"] + POINTS["hidden"]
        assert piece_points(scores, piece) == expected, f"{name}: piece {piece} got {piece_points(scores, piece)}"


def test_student_notebook_is_generated_from_the_solution(tmp_path):
    """notebooks/ must be what `make release` makes from solutions/ now (it is never hand-edited)."""
    fresh = release("vae", release_directory=str(tmp_path))
    committed = ROOT / "notebooks" / "vae"
    for path in sorted(fresh.glob("*.ipynb")):
        ours = json.loads((committed / path.name).read_text())
        theirs = json.loads(path.read_text())
        assert ours == theirs, f"notebooks/vae/{path.name} is stale: run `make release` and commit"


def test_student_notebook_hides_solutions_and_hidden_tests():
    notebook = nbformat.read(ROOT / "notebooks" / "vae" / "vae.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    for secret in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "kl_divergence(", "_manual_sgd_step", "binary_cross_entropy_with_logits(x_logits, x"):
        assert secret not in code, secret
    assert code.count("raise NotImplementedError()") == len(PIECES)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
