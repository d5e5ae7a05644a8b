"""Grader side of the GAN assignment: references and verdicts. Never copied into the sandbox.

The checks are the test cells of ``solutions/gan/gan.ipynb`` (same grade_ids, same points). The
visible checks repeat, as verdicts, the asserts the students see in their notebook; the hidden
checks exist only here (the notebook's hidden cells call ``run_in_notebook``). The student's
process only produces data (``gan_probes.py``); every comparison below runs in the grader's
process against references computed independently: scipy's ``jensenshannon`` (squared),
``scipy.stats.wasserstein_distance``, the Kantorovich linear program solved by
``scipy.optimize.linprog``, closed-form gradients and a Monte Carlo expectation with its
standard error.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linprog
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm, wasserstein_distance

from autograder.units import Check, CheckFailed, Piece, Unit, require
from autograder.units import gan_probes as probes


def tensor(value, what: str) -> torch.Tensor:
    """The student's array as a float64 tensor; anything that is not an array fails the check."""
    if isinstance(value, float):
        return torch.tensor(value, dtype=torch.float64)
    if not isinstance(value, np.ndarray):
        raise CheckFailed(f"{what} should be a tensor, got {_kind(value)}")
    return torch.from_numpy(np.array(value, dtype=np.float64))


def scalar(value, what: str) -> float:
    t = tensor(value, what)
    require(t.numel() == 1 and t.dim() == 0, f"{what} should be a single number (a 0-d tensor: the batch mean), got shape {tuple(t.shape)}")
    return t.item()


def _kind(value) -> str:
    if isinstance(value, dict) and "__object__" in value:
        return f"an object of type {value['__object__']}"
    return "None" if value is None else type(value).__name__


def close(got: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-8) -> bool:
    return got.shape == expected.shape and bool(torch.allclose(got, expected.double(), rtol=rtol, atol=atol))


def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x.double())


# -- part 1: discriminator_loss ------------------------------------------------------------------


def discriminator_visible(d: dict) -> None:
    at_zero = scalar(d["at_zero"], "discriminator_loss(...)")
    require(abs(at_zero - 2 * math.log(2)) < 1e-5,
            f"at logits 0 (D = 1/2 everywhere) the loss is log 2 + log 2 = {2 * math.log(2):.4f}, got {at_zero:.4f}: average over the batch, don't sum")
    confident = scalar(d["confident"], "discriminator_loss(...)")
    require(abs(confident) < 1e-6, f"a discriminator that is right with confidence should have a loss near 0, got {confident:.4g}")
    swapped = scalar(d["swapped"], "discriminator_loss(...)")
    require(abs(swapped - 2 * softplus(torch.tensor(3.0)).item()) < 1e-4,
            f"real logits -3 and fake logits +3 should give 2 log(1 + e^3) = {2 * softplus(torch.tensor(3.0)).item():.4f}, got {swapped:.4f}: are real and fake the right way round?")


def discriminator_hidden(d: dict) -> None:
    real, fake = probes.logits_inputs()
    expected = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    value = scalar(d["value"], "discriminator_loss(...)")
    require(abs(value - expected.item()) < 1e-6, f"the loss on random logits is {value:.6f}, the reference {expected.item():.6f}")
    n = len(real)
    require(d["grad_real"] is not None and close(tensor(d["grad_real"], "gradient"), -torch.sigmoid(-real) / n, atol=1e-8),
            "d loss / d real_logit should be -(1 - D(x)) / B")
    require(d["grad_fake"] is not None and close(tensor(d["grad_fake"], "gradient"), torch.sigmoid(fake) / n, atol=1e-8),
            "d loss / d fake_logit should be D(G(z)) / B")
    extreme = tensor(d["extreme"], "discriminator_loss(...)")
    require(bool(torch.isfinite(extreme).all()) and abs(extreme.sum().item() - 500.0) < 1e-3,
            f"logits of -200/-300 (real) and 200/300 (fake) should give a finite loss of 500, got {extreme.flatten().tolist()}: work with logits (softplus), not log(sigmoid(.))")


# -- part 2: generator_loss_nonsaturating --------------------------------------------------------


def generator_visible(d: dict) -> None:
    at_zero = scalar(d["at_zero"], "generator_loss_nonsaturating(...)")
    require(abs(at_zero - math.log(2)) < 1e-5, f"at logit 0 the loss is -log(1/2) = log 2 = {math.log(2):.4f}, got {at_zero:.4f}")
    value = scalar(d["value_rejected"], "generator_loss_nonsaturating(...)")
    require(abs(value - softplus(torch.tensor(10.0)).item()) < 1e-4,
            f"fakes rejected with logit -10 should cost -log sigmoid(-10) = 10.0000, got {value:.4f}")
    grad = d["grad_rejected"]
    require(grad is not None and close(tensor(grad, "gradient"), torch.full((2,), -0.5), atol=1e-4),
            "at logit -10 the gradient should be about -1/B = -0.5 per example: the non-saturating loss keeps pushing rejected fakes")


def generator_hidden(d: dict) -> None:
    _, fake = probes.logits_inputs()
    value = scalar(d["value"], "generator_loss_nonsaturating(...)")
    expected = -torch.log(torch.sigmoid(fake)).mean().item()
    require(abs(value - expected) < 1e-6, f"the loss on random logits is {value:.6f}, the reference {expected:.6f}")
    require(d["grad"] is not None and close(tensor(d["grad"], "gradient"), -torch.sigmoid(-fake) / len(fake), atol=1e-8),
            "d loss / d logit should be -(1 - D(G(z))) / B")
    extreme = tensor(d["extreme"], "generator_loss_nonsaturating(...)")
    require(bool(torch.isfinite(extreme).all()) and abs(extreme.sum().item() - 250.0) < 1e-3,
            f"logits -200 and -300 should give a finite loss of 250, got {extreme.flatten().tolist()}")


# -- part 3: optimal_discriminator ---------------------------------------------------------------


def optimal_visible(d: dict) -> None:
    out = tensor(d["out"], "optimal_discriminator(...)")
    require(close(out, torch.tensor([0.5, 0.75, 1.0]), atol=1e-6),
            f"p_data = [0.2, 0.6, 0.3], p_model = [0.2, 0.2, 0] should give [0.5, 0.75, 1.0], got {out.tolist()}")


def optimal_hidden(d: dict) -> None:
    x = probes.density_grid().numpy()
    expected = torch.from_numpy(1 / (1 + norm.pdf(x, 1.5, 0.5) / norm.pdf(x, -1.0, 1.0)))
    require(close(tensor(d["gaussians"], "optimal_discriminator(...)"), expected, rtol=1e-6, atol=1e-9),
            "D* for N(-1, 1) (data) against N(1.5, 0.5^2) (model) differs from p_data / (p_data + p_model)")
    p, q = probes.js_inputs()
    got = tensor(d["discrete"], "optimal_discriminator(...)")
    require(got.shape == p.shape, f"the output should keep the input's shape {tuple(p.shape)}, got {tuple(got.shape)}")
    defined = (p + q) > 0
    require(bool(torch.isfinite(got[defined]).all()) and close(got[defined], (p / (p + q))[defined], atol=1e-9),
            "D* differs from p_data / (p_data + p_model) where one of them is positive")
    # at D*, V = sum p log D* + q log(1 - D*) = -log 4 + 2 JS, with JS from scipy
    value = (torch.xlogy(p, got.where(defined, 0.5)) + torch.xlogy(q, 1 - got.where(defined, 0.5))).sum(-1)
    js = torch.tensor([jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())])
    require(close(value, -math.log(4) + 2 * js, atol=1e-8), "V(D*, G) should equal -log 4 + 2 JS(p_data || p_model)")
    require(d["shape"] == [3, 5], f"a (3, 5) input should give a (3, 5) output, got {d['shape']}")


# -- part 4: js_divergence -----------------------------------------------------------------------

JS_EXAMPLE = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)  # p = (1/4, 3/4), q = (3/4, 1/4), m = (1/2, 1/2)


def js_visible(d: dict) -> None:
    same = tensor(d["same"], "js_divergence(p, p)")
    require(same.numel() == 1 and abs(same.sum().item()) < 1e-6, f"JS(p || p) should be 0, got {same.flatten().tolist()}")
    example = tensor(d["example"], "js_divergence(...)")
    require(example.shape == (), f"two probability vectors should give one number (sum over the last dimension), got shape {tuple(example.shape)}")
    require(abs(example.item() - JS_EXAMPLE) < 1e-5,
            f"JS((1/4, 3/4) || (3/4, 1/4)) = {JS_EXAMPLE:.4f} nats, got {example.item():.4f}: natural log, mixture m = (p + q) / 2")
    batch = tensor(d["batch"], "js_divergence(...)")
    expected = jensenshannon([0.25] * 4, [0.1, 0.2, 0.3, 0.4]) ** 2
    require(batch.shape == (3,), f"a batch (3, 4) should give shape (3,), got {tuple(batch.shape)}")
    require(close(batch, torch.full((3,), expected), atol=1e-6), f"expected {expected:.5f} for each row, got {batch.tolist()}")


def js_hidden(d: dict) -> None:
    p, q = probes.js_inputs()
    expected = torch.tensor([jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())])
    got = tensor(d["random"], "js_divergence(...)")
    require(got.shape == (10,), f"a (10, 7) batch should give shape (10,), got {tuple(got.shape)}")
    require(bool(torch.isfinite(got).all()), "JS is NaN where some probabilities are 0: a term with p_i = 0 contributes 0 (0 log 0 = 0)")
    require(close(got, expected, atol=1e-8), "JS differs from scipy's jensenshannon(p, q)**2 on random vectors with zeros")
    require(close(tensor(d["swapped"], "js_divergence(q, p)"), expected, atol=1e-8), "JS should be symmetric")
    disjoint = tensor(d["disjoint"], "js_divergence(...)")
    require(disjoint.numel() == 1 and abs(disjoint.sum().item() - math.log(2)) < 1e-8,
            f"distributions with disjoint supports have JS = log 2 = {math.log(2):.6f}, got {disjoint.flatten().tolist()}")


# -- part 5: wasserstein1_1d ---------------------------------------------------------------------


def w1_visible(d: dict) -> None:
    shift = scalar(d["shift"], "wasserstein1_1d(...)")
    require(abs(shift - 5.0) < 1e-6, f"shifting three points by 5 costs 5, got {shift:.4f}: the mean distance, not the sum")
    unsorted = scalar(d["unsorted"], "wasserstein1_1d(...)")
    require(abs(unsorted - 1.0) < 1e-6, f"[2, 0, 1] and [1, 3, 2] are [0, 1, 2] and [1, 2, 3] sorted: W1 = 1, got {unsorted:.4f}")


def w1_hidden(d: dict) -> None:
    x, y = probes.w1_inputs()
    random = scalar(d["random"], "wasserstein1_1d(...)")
    require(abs(random - wasserstein_distance(x.numpy(), y.numpy())) < 1e-8, "W1 differs from scipy.stats.wasserstein_distance on random samples")
    a, b = (t.numpy() for t in probes.lp_inputs())
    n = len(a)
    cost = np.abs(a[:, None] - b[None, :]).ravel()
    constraints = np.vstack([np.kron(np.eye(n), np.ones((1, n))), np.kron(np.ones((1, n)), np.eye(n))])
    primal = linprog(cost, A_eq=constraints, b_eq=np.full(2 * n, 1 / n), bounds=(0, None), method="highs").fun
    lp = scalar(d["lp"], "wasserstein1_1d(...)")
    require(abs(lp - primal) < 1e-8, f"W1 should equal the optimal transport cost of the linear program, {primal:.6f}; got {lp:.6f}")
    same = scalar(d["same"], "wasserstein1_1d(x, x reordered)")
    require(abs(same) < 1e-12, f"a sample and a reordering of it are the same distribution (W1 = 0), got {same:.4g}: sort first")


# -- part 6: gradient_penalty --------------------------------------------------------------------


def gp_visible(d: dict) -> None:
    penalty = scalar(d["penalty"], "gradient_penalty(...)")
    require(abs(penalty - 16.0) < 1e-4,
            f"the critic f(x) = 3 x1 + 4 x2 has gradient norm 5 everywhere, so the penalty is (5 - 1)^2 = 16; got {penalty:.4f}")
    grad = d["grad_w"]
    require(grad is not None, "the penalty must be differentiable in the critic's parameters: torch.autograd.grad(..., create_graph=True)")
    require(close(tensor(grad, "d penalty / dw"), torch.tensor([4.8, 6.4]), atol=1e-4),
            f"d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w| = [4.8, 6.4], got {tensor(grad, 'gradient').tolist()}")


def gp_hidden(d: dict) -> None:
    se = math.sqrt(16 * (1 / 5 - 1 / 9) / probes.GP_N)  # standard error of the mean of (2 u)^2, u ~ U[0, 1]
    penalty = scalar(d["penalty"], "gradient_penalty(...)")
    require(abs(penalty - 4 / 3) < 5 * se,
            f"for f(x) = |x|^2 / 2 between points of norm 3 (real) and 1 (fake) the penalty is E[(2 u)^2] = 4/3 with u ~ U[0, 1] "
            f"per example; got {penalty:.4f} (interpolates x_hat = u real + (1 - u) fake, norm of the gradient, minus 1, squared)")
    grad = d["grad_a"]
    require(grad is not None and abs(tensor(grad, "gradient").item() - 14 / 3) < 0.05,
            "the derivative of the penalty with respect to the critic's parameter differs from its expectation 14/3")
    images = scalar(d["images"], "gradient_penalty(...) on images")
    require(abs(images - 4 / 3) < 5 * se, f"on (B, 1, 8, 8) images the norm runs over all pixels: expected 4/3, got {images:.4f}")


# -- the unit ------------------------------------------------------------------------------------

LIBRARY = probes.LIBRARY

UNIT = Unit(
    assignment="gan",
    notebook="gan",
    chapter="book/gan.html",
    probes=Path(probes.__file__),
    pieces=(
        Piece("discriminator_loss", "The discriminator's loss", "the-two-player-game", (
            Check("test_discriminator_loss_visible", 1, True, discriminator_visible,
                  "logits 0, a confident discriminator, and real and fake the right way round"),
            Check("test_discriminator_loss_hidden", 2, False, discriminator_hidden,
                  "random logits against the binary cross-entropy, the gradients in both logits, extreme logits"),
        ), forbidden=(f"{LIBRARY}.discriminator_loss",)),
        Piece("generator_loss_nonsaturating", "The non-saturating generator loss", "vanishing-gradients-and-the-non-saturating-loss", (
            Check("test_generator_loss_nonsaturating_visible", 1, True, generator_visible,
                  "logit 0, and the value and gradient for confidently rejected fakes"),
            Check("test_generator_loss_nonsaturating_hidden", 2, False, generator_hidden,
                  "random logits against -log D, the exact gradient, extreme logits"),
        ), forbidden=(f"{LIBRARY}.generator_loss_nonsaturating",)),
        Piece("optimal_discriminator", "The optimal discriminator", "the-optimal-discriminator", (
            Check("test_optimal_discriminator_visible", 1, True, optimal_visible, "three points by hand"),
            Check("test_optimal_discriminator_hidden", 2, False, optimal_hidden,
                  "two Gaussian densities, random discrete distributions with zeros, V(D*) = -log 4 + 2 JS, shapes"),
        ), forbidden=(f"{LIBRARY}.optimal_discriminator",)),
        Piece("js_divergence", "The Jensen-Shannon divergence", "the-jensen-shannon-divergence", (
            Check("test_js_divergence_visible", 1, True, js_visible, "JS(p || p) = 0, a worked example, a batch"),
            Check("test_js_divergence_hidden", 2, False, js_hidden,
                  "random vectors with zeros against scipy, symmetry, disjoint supports give log 2"),
        ), forbidden=(f"{LIBRARY}.js_divergence", "scipy.spatial.distance.jensenshannon")),
        Piece("wasserstein1_1d", "The Wasserstein-1 distance in one dimension", "the-wasserstein-distance", (
            Check("test_wasserstein1_1d_visible", 1, True, w1_visible, "a shift, and unsorted samples"),
            Check("test_wasserstein1_1d_hidden", 2, False, w1_hidden,
                  "random samples against scipy, the linear program of optimal transport, a reordered sample"),
        ), forbidden=(f"{LIBRARY}.wasserstein1_1d", "scipy.stats.wasserstein_distance")),
        Piece("gradient_penalty", "The gradient penalty", "wasserstein-gans-weight-clipping-and-gradient-penalty", (
            Check("test_gradient_penalty_visible", 1, True, gp_visible,
                  "a linear critic (exact value) and the gradient in its weights"),
            Check("test_gradient_penalty_hidden", 2, False, gp_hidden,
                  "a quadratic critic, whose penalty depends on where the interpolates fall (Monte Carlo), its parameter gradient, images"),
        ), forbidden=(f"{LIBRARY}.gradient_penalty",)),
    ),
)
