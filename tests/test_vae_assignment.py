"""The VAE assignment, graded as an instructor would: by plain nbgrader and by the sandboxed
grader, which must agree cell by cell. Each plausible wrong answer loses the points of its own
piece and only those.

``PIECES`` and ``WRONG`` are also the reference points of the grader's battery of
hostile submissions (tests/autograder_cases.py), which submits each wrong answer on its own.
"""

from __future__ import annotations

import pytest

from autograder.units import load_unit
from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "vae"

PIECES = ("gaussian_kl", "reparameterize", "negative_elbo", "train_step")  # the graded functions, in order

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


class TestVAEAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("kl_divergence(", "_manual_sgd_step", "binary_cross_entropy_with_logits(x_logits, x")

    def test_points_per_cell(self, graded):
        """Plain nbgrader gives the solution every declared check's points, cell by cell; the
        released notebook earns none of them."""
        nbgrader_scores, _ = graded
        unit = load_unit(ASSIGNMENT)
        assert [p.name for p in unit.pieces] == list(PIECES)
        assert nbgrader_scores["solution"] == {check.grade_id: check.points for check in unit.checks()}
        assert nbgrader_scores["released"] == dict.fromkeys(nbgrader_scores["solution"], 0.0)
