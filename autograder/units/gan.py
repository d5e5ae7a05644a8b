"""The GAN assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/gan/gan.ipynb`` from here. The visible checks mirror the notebook's readable asserts;
the hidden ones exist only here. The student's process only produces data (``gan_probes.py``);
every comparison below runs in the grader's process against references computed independently:
scipy's ``jensenshannon`` (squared), ``scipy.stats.wasserstein_distance``, the Kantorovich linear
program solved by ``scipy.optimize.linprog``, closed-form gradients and a Monte Carlo expectation
with its standard error.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linprog
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm, wasserstein_distance

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import gan_probes as probes
from autograder.verdicts import close, require, scalar, tensor

LIBRARY = "gencore.gan"


def softplus(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.softplus(x.double())


# -- part 1: discriminator_loss ------------------------------------------------------------------


@visible(probes.discriminator_visible)
def discriminator_visible(d: dict) -> None:
    """logits 0, a confident discriminator, and real and fake the right way round"""
    at_zero = scalar(d["at_zero"], "discriminator_loss(...)", zero_dim=True)
    require(abs(at_zero - 2 * math.log(2)) < 1e-5,
            f"at logits 0 (D = 1/2 everywhere) the loss is log 2 + log 2 = {2 * math.log(2):.4f}, got {at_zero:.4f}: average over the batch, don't sum")
    confident = scalar(d["confident"], "discriminator_loss(...)", zero_dim=True)
    require(abs(confident) < 1e-6, f"a discriminator that is right with confidence should have a loss near 0, got {confident:.4g}")
    swapped = scalar(d["swapped"], "discriminator_loss(...)", zero_dim=True)
    require(abs(swapped - 2 * softplus(torch.tensor(3.0)).item()) < 1e-4,
            f"real logits -3 and fake logits +3 should give 2 log(1 + e^3) = {2 * softplus(torch.tensor(3.0)).item():.4f}, got {swapped:.4f}: are real and fake the right way round?")


def _loss_of_logits(d: dict, what: str, expected: float, gradients: dict, extreme: float, extreme_message: str) -> None:
    """The hidden check of a loss of logits: its value on random logits against ``expected``, its
    exact gradients (the data's key -> (expected, message)), and the finite value ``extreme`` at
    logits of +-200 and +-300 (``extreme_message``, whose ``{}`` shows what the student got)."""
    value = scalar(d["value"], what, zero_dim=True)
    require(abs(value - expected) < 1e-6, f"the loss on random logits is {value:.6f}, the reference {expected:.6f}")
    for key, (want, message) in gradients.items():
        require(d[key] is not None and close(tensor(d[key], "gradient"), want, atol=1e-8), message)
    got = tensor(d["extreme"], what)
    require(bool(torch.isfinite(got).all()) and abs(got.sum().item() - extreme) < 1e-3, extreme_message.format(got.flatten().tolist()))


@hidden(probes.discriminator_hidden)
def discriminator_hidden(d: dict) -> None:
    """random logits against the binary cross-entropy, the gradients in both logits, extreme logits"""
    real, fake = probes.logits_inputs()
    n = len(real)
    _loss_of_logits(d, "discriminator_loss(...)",
                    -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean()).item(),
                    {"grad_real": (-torch.sigmoid(-real) / n, "d loss / d real_logit should be -(1 - D(x)) / B"),
                     "grad_fake": (torch.sigmoid(fake) / n, "d loss / d fake_logit should be D(G(z)) / B")},
                    500.0, "logits of -200/-300 (real) and 200/300 (fake) should give a finite loss of 500, got {}: "
                           "work with logits (softplus), not log(sigmoid(.))")


# -- part 2: generator_loss_nonsaturating --------------------------------------------------------


@visible(probes.generator_visible)
def generator_visible(d: dict) -> None:
    """logit 0, and the value and gradient for confidently rejected fakes"""
    at_zero = scalar(d["at_zero"], "generator_loss_nonsaturating(...)", zero_dim=True)
    require(abs(at_zero - math.log(2)) < 1e-5, f"at logit 0 the loss is -log(1/2) = log 2 = {math.log(2):.4f}, got {at_zero:.4f}")
    value = scalar(d["value_rejected"], "generator_loss_nonsaturating(...)", zero_dim=True)
    require(abs(value - softplus(torch.tensor(10.0)).item()) < 1e-4,
            f"fakes rejected with logit -10 should cost -log sigmoid(-10) = 10.0000, got {value:.4f}")
    grad = d["grad_rejected"]
    require(grad is not None and close(tensor(grad, "gradient"), torch.full((2,), -0.5), atol=1e-4),
            "at logit -10 the gradient should be about -1/B = -0.5 per example: the non-saturating loss keeps pushing rejected fakes")


@hidden(probes.generator_hidden)
def generator_hidden(d: dict) -> None:
    """random logits against -log D, the exact gradient, extreme logits"""
    _, fake = probes.logits_inputs()
    _loss_of_logits(d, "generator_loss_nonsaturating(...)", -torch.log(torch.sigmoid(fake)).mean().item(),
                    {"grad": (-torch.sigmoid(-fake) / len(fake), "d loss / d logit should be -(1 - D(G(z))) / B")},
                    250.0, "logits -200 and -300 should give a finite loss of 250, got {}")


# -- part 3: optimal_discriminator ---------------------------------------------------------------


@visible(probes.optimal_visible)
def optimal_visible(d: dict) -> None:
    """three points by hand"""
    out = tensor(d["out"], "optimal_discriminator(...)")
    require(close(out, torch.tensor([0.5, 0.75, 1.0]), atol=1e-6),
            f"p_data = [0.2, 0.6, 0.3], p_model = [0.2, 0.2, 0] should give [0.5, 0.75, 1.0], got {out.tolist()}")


@hidden(probes.optimal_hidden)
def optimal_hidden(d: dict) -> None:
    """two Gaussian densities, random discrete distributions with zeros, V(D*) = -log 4 + 2 JS, shapes"""
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


@visible(probes.js_visible)
def js_visible(d: dict) -> None:
    """JS(p || p) = 0, a worked example, a batch"""
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


@hidden(probes.js_hidden)
def js_hidden(d: dict) -> None:
    """random vectors with zeros against scipy, symmetry, disjoint supports give log 2"""
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


@visible(probes.w1_visible)
def w1_visible(d: dict) -> None:
    """a shift, and unsorted samples"""
    shift = scalar(d["shift"], "wasserstein1_1d(...)", zero_dim=True)
    require(abs(shift - 5.0) < 1e-6, f"shifting three points by 5 costs 5, got {shift:.4f}: the mean distance, not the sum")
    unsorted = scalar(d["unsorted"], "wasserstein1_1d(...)", zero_dim=True)
    require(abs(unsorted - 1.0) < 1e-6, f"[2, 0, 1] and [1, 3, 2] are [0, 1, 2] and [1, 2, 3] sorted: W1 = 1, got {unsorted:.4f}")


@hidden(probes.w1_hidden)
def w1_hidden(d: dict) -> None:
    """random samples against scipy, the linear program of optimal transport, a reordered sample"""
    x, y = probes.w1_inputs()
    random = scalar(d["random"], "wasserstein1_1d(...)", zero_dim=True)
    require(abs(random - wasserstein_distance(x.numpy(), y.numpy())) < 1e-8, "W1 differs from scipy.stats.wasserstein_distance on random samples")
    a, b = (t.numpy() for t in probes.lp_inputs())
    n = len(a)
    cost = np.abs(a[:, None] - b[None, :]).ravel()
    constraints = np.vstack([np.kron(np.eye(n), np.ones((1, n))), np.kron(np.ones((1, n)), np.eye(n))])
    primal = linprog(cost, A_eq=constraints, b_eq=np.full(2 * n, 1 / n), bounds=(0, None), method="highs").fun
    lp = scalar(d["lp"], "wasserstein1_1d(...)", zero_dim=True)
    require(abs(lp - primal) < 1e-8, f"W1 should equal the optimal transport cost of the linear program, {primal:.6f}; got {lp:.6f}")
    same = scalar(d["same"], "wasserstein1_1d(x, x reordered)", zero_dim=True)
    require(abs(same) < 1e-12, f"a sample and a reordering of it are the same distribution (W1 = 0), got {same:.4g}: sort first")


# -- part 6: gradient_penalty --------------------------------------------------------------------


@visible(probes.gp_visible)
def gp_visible(d: dict) -> None:
    """a linear critic (exact value) and the gradient in its weights"""
    penalty = scalar(d["penalty"], "gradient_penalty(...)", zero_dim=True)
    require(abs(penalty - 16.0) < 1e-4,
            f"the critic f(x) = 3 x1 + 4 x2 has gradient norm 5 everywhere, so the penalty is (5 - 1)^2 = 16; got {penalty:.4f}")
    grad = d["grad_w"]
    require(grad is not None, "the penalty must be differentiable in the critic's parameters: torch.autograd.grad(..., create_graph=True)")
    require(close(tensor(grad, "d penalty / dw"), torch.tensor([4.8, 6.4]), atol=1e-4),
            f"d/dw (|w| - 1)^2 = 2 (|w| - 1) w / |w| = [4.8, 6.4], got {tensor(grad, 'gradient').tolist()}")


@hidden(probes.gp_hidden)
def gp_hidden(d: dict) -> None:
    """a quadratic critic, whose penalty depends on where the interpolates fall (Monte Carlo), its parameter gradient, images"""
    se = math.sqrt(16 * (1 / 5 - 1 / 9) / probes.GP_N)  # standard error of the mean of (2 u)^2, u ~ U[0, 1]
    penalty = scalar(d["penalty"], "gradient_penalty(...)", zero_dim=True)
    require(abs(penalty - 4 / 3) < 5 * se,
            f"for f(x) = |x|^2 / 2 between points of norm 3 (real) and 1 (fake) the penalty is E[(2 u)^2] = 4/3 with u ~ U[0, 1] "
            f"per example; got {penalty:.4f} (interpolates x_hat = u real + (1 - u) fake, norm of the gradient, minus 1, squared)")
    grad = d["grad_a"]
    require(grad is not None and abs(tensor(grad, "gradient").item() - 14 / 3) < 0.05,
            "the derivative of the penalty with respect to the critic's parameter differs from its expectation 14/3")
    images = scalar(d["images"], "gradient_penalty(...) on images", zero_dim=True)
    require(abs(images - 4 / 3) < 5 * se, f"on (B, 1, 8, 8) images the norm runs over all pixels: expected 4/3, got {images:.4f}")


# -- the unit ------------------------------------------------------------------------------------

UNIT = Unit(
    assignment="gan",
    library=LIBRARY,
    chapter="book/gan.html",
    pieces=(
        Piece("discriminator_loss", "The discriminator's loss", "the-two-player-game", (discriminator_visible, discriminator_hidden),
              forbidden=(f"{LIBRARY}.discriminator_loss",)),
        Piece("generator_loss_nonsaturating", "The non-saturating generator loss", "vanishing-gradients-and-the-non-saturating-loss",
              (generator_visible, generator_hidden), forbidden=(f"{LIBRARY}.generator_loss_nonsaturating",)),
        Piece("optimal_discriminator", "The optimal discriminator", "the-optimal-discriminator", (optimal_visible, optimal_hidden),
              forbidden=(f"{LIBRARY}.optimal_discriminator",)),
        Piece("js_divergence", "The Jensen-Shannon divergence", "the-jensen-shannon-divergence", (js_visible, js_hidden),
              forbidden=(f"{LIBRARY}.js_divergence", "scipy.spatial.distance.jensenshannon")),
        Piece("wasserstein1_1d", "The Wasserstein-1 distance in one dimension", "the-wasserstein-distance", (w1_visible, w1_hidden),
              forbidden=(f"{LIBRARY}.wasserstein1_1d", "scipy.stats.wasserstein_distance")),
        Piece("gradient_penalty", "The gradient penalty", "wasserstein-gans-weight-clipping-and-gradient-penalty", (gp_visible, gp_hidden),
              forbidden=(f"{LIBRARY}.gradient_penalty",)),
    ),
)
