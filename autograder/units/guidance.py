"""The guidance assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/guidance/guidance.ipynb`` from here. The student's process only produces data
(``guidance_probes.py``); every comparison below runs in the grader's process, against references
computed here: binomial standard errors for label dropout, the guidance formulas written out in
float64, the exact scores and classifier of a Gaussian mixture from torch.distributions and
autograd, and attention from ``torch.nn.functional.scaled_dot_product_attention``.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    Normal,
)
from torch.nn import functional as F

import gencore.guidance as library
from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import guidance_probes as probes
from autograder.verdicts import close, require, tensor

LIBRARY = "gencore.guidance"
F64 = torch.float64


def _mixture_scores(x: torch.Tensor, t: torch.Tensor, k: int):
    """Per example: (score of p_t(x | k), grad log p_t(k | x), sqrt(1 - abar_t)) by autograd of
    torch.distributions log-densities; class k of the probes' equal-weight mixture."""
    means = torch.tensor(probes.MIX_MEANS, dtype=F64)
    cond_scores, classifier_grads, factors = [], [], []
    for i in range(len(x)):
        a = probes.MIX_ALPHA_BAR[int(t[i])]
        scale = math.sqrt(a * probes.MIX_STD**2 + 1 - a)
        components = Independent(Normal(math.sqrt(a) * means, torch.full_like(means, scale)), 1)
        mixture = MixtureSameFamily(Categorical(torch.full((3,), 1 / 3, dtype=F64)), components)
        point = x[i : i + 1].clone().requires_grad_()
        log_cond = Independent(Normal(math.sqrt(a) * means[k], torch.full((2,), scale, dtype=F64)), 1).log_prob(point)
        (cond,) = torch.autograd.grad(log_cond.sum(), point, retain_graph=True)
        log_posterior = log_cond + math.log(1 / 3) - mixture.log_prob(point)
        (post,) = torch.autograd.grad(log_posterior.sum(), point)
        cond_scores.append(cond[0])
        classifier_grads.append(post[0])
        factors.append(math.sqrt(1 - a))
    return torch.stack(cond_scores), torch.stack(classifier_grads), torch.tensor(factors, dtype=F64)[:, None]


# -- part 1: label_dropout ----------------------------------------------------------------------


@visible(probes.dropout_visible)
def dropout_visible(d: dict) -> None:
    """p_uncond = 0 keeps every label; p_uncond = 1 replaces every label by the null label"""
    labels = torch.arange(12) % 10
    none = tensor(d["none"], "label_dropout(labels, 0.0, 10)")
    require(none.shape == (12,), f"the result should have the shape of labels, (12,), got {tuple(none.shape)}")
    require(close(none, labels.double()), "with p_uncond = 0 no label should be dropped")
    require(close(tensor(d["all"], "label_dropout(labels, 1.0, 10)"), torch.full((12,), 10.0)),
            "with p_uncond = 1 every label should become the null label 10")


@hidden(probes.dropout_hidden)
def dropout_hidden(d: dict) -> None:
    """20,000 labels: the rate of dropped labels, each label dropped on its own coin, the kept ones unchanged, the input left unchanged, and whole rows of (B, L) condition tokens"""
    labels = probes.labels_input().double()
    out = tensor(d["out"], "label_dropout(labels, 0.3, 10)")
    require(out.shape == labels.shape, f"the result should have the shape of labels, {tuple(labels.shape)}, got {tuple(out.shape)}")
    dropped = out == 10
    require(bool(((out == labels) | dropped).all()), "a label should either stay as it is or become the null label")
    n, p = probes.N_LABELS, probes.P_UNCOND
    rate = dropped.double().mean().item()
    require(abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n),
            f"with p_uncond = {p} a fraction {p} of the labels should be dropped, got {rate:.3f} (drop when a uniform draw is below p_uncond)")
    blocks = dropped.double().reshape(200, 100).mean(1)  # 200 blocks of 100 labels: binomial spread, not all-or-none
    require(0.5 * p * (1 - p) / 100 < blocks.var().item() < 2 * p * (1 - p) / 100,
            "draw one coin per example (torch.rand(B) < p_uncond), not one for the whole batch")
    require(d["unchanged"] is True, "label_dropout modified the labels in place: return a new tensor (the data set keeps its labels)")
    second = tensor(d["second"], "a second call")
    require(not torch.equal(second == 10, dropped), "two calls dropped the same labels: draw fresh random coins at each call")
    rows = tensor(d["rows"], "label_dropout(tokens (600, 2), 0.5, tensor([10, 3]))")
    tokens, null = probes.token_input().double(), torch.tensor([10.0, 3.0], dtype=F64)
    require(rows.shape == (600, 2), f"for condition tokens (B, L) the result should be (B, L), got {tuple(rows.shape)}")
    whole_null, whole_kept = (rows == null).all(1), (rows == tokens).all(1)
    require(bool((whole_null | whole_kept).all()), "for condition tokens (B, L) drop whole rows: every token of a dropped example becomes its null token")
    require(0.35 < whole_null.double().mean().item() < 0.65, "with p_uncond = 0.5 about half of the rows should be dropped")


# -- part 2: cfg_prediction ---------------------------------------------------------------------


def cfg_reference(cond: torch.Tensor, uncond: torch.Tensor, w: float) -> torch.Tensor:
    return (1 + w) * cond.to(F64) - w * uncond.to(F64)


@visible(probes.cfg_visible)
def cfg_visible(d: dict) -> None:
    """w = 0 is the conditional prediction; w = 1 by hand, 2 cond - uncond"""
    w0 = tensor(d["w0"], "cfg_prediction(cond, uncond, 0.0)")
    require(close(w0, torch.tensor([[1.0, 2.0]])), f"with w = 0 the guided prediction should be the conditional one (1, 2), got {w0.tolist()} (is the weight on the wrong branch?)")
    w1 = tensor(d["w1"], "cfg_prediction(cond, uncond, 1.0)")
    require(close(w1, torch.tensor([[1.5, 1.0]])), f"with w = 1 expected 2 cond - uncond = (1.5, 1), got {w1.tolist()} (is the sign of the guidance flipped?)")


@hidden(probes.cfg_hidden)
def cfg_hidden(d: dict) -> None:
    """random predictions over a sweep of w, images, inputs left unchanged, and the guided prediction of an exact Gaussian mixture against -sqrt(1 - abar) (score(x | c) + w grad log p(c | x))"""
    cond, uncond = probes.prediction_inputs()
    for w in probes.GUIDANCE_WEIGHTS:
        got = tensor(d["sweep"][str(w)], f"cfg_prediction(cond, uncond, {w})")
        require(got.shape == cond.shape and close(got, cfg_reference(cond, uncond, w)),
                f"with w = {w} the prediction differs from (1 + w) cond - w uncond")
    require(d["unchanged"] is True, "cfg_prediction modified its inputs in place: compute a new tensor")
    images_c, images_u = probes.image_prediction_inputs()
    images = tensor(d["images"], "cfg_prediction on images")
    require(images.shape == (3, 1, 8, 8) and close(images, cfg_reference(images_c, images_u, 3.0)),
            "on images (3, 1, 8, 8) the guided prediction should have the same shape and the same formula")
    x, t = probes.mixture_points(), probes.mixture_steps()
    cond_score, classifier_grad, factor = _mixture_scores(x, t, 1)
    expected = -factor * (cond_score + 2.0 * classifier_grad)
    require(close(tensor(d["mixture"], "the guided mixture predictor"), expected, rtol=1e-6, atol=1e-8),
            "with the exact predictors of a Gaussian mixture, the guided prediction should be -sqrt(1 - abar) times "
            "(the conditional score + w times the gradient of log p_t(c | x))")


# -- part 3: classifier_guided_eps --------------------------------------------------------------


@visible(probes.classifier_visible)
def classifier_visible(d: dict) -> None:
    """scale 0 leaves eps unchanged; abar = 0.64 and scale 1 give eps - 0.6 grad"""
    require(close(tensor(d["scale0"], "classifier_guided_eps(eps, grad, 0.64, 0.0)"), torch.tensor([[1.0, -1.0]])),
            "with scale 0 the noise prediction should be unchanged")
    got = tensor(d["scale1"], "classifier_guided_eps(eps, grad, 0.64, 1.0)")
    require(close(got, torch.tensor([[1.0 - 1.2, -1.0 - 0.3]])),
            f"with abar = 0.64 and scale 1 expected eps - sqrt(1 - 0.64) grad = (-0.2, -1.3), got {got.tolist()}: "
            "eps = -sqrt(1 - abar) score, so the classifier's gradient enters eps with the factor -sqrt(1 - abar)")


@hidden(probes.classifier_hidden)
def classifier_hidden(d: dict) -> None:
    """one abar per example, images, inputs left unchanged, and the unconditional predictor of an exact mixture guided by its exact classifier with scale 1, which must give the conditional predictor"""
    eps, grad, abar = probes.eps_grad_inputs()
    got = tensor(d["per_example"], "classifier_guided_eps(eps, grad, abar (4,), 2.5)")
    require(got.shape == eps.shape, f"the result should have the shape of eps, {tuple(eps.shape)}, got {tuple(got.shape)}")
    require(close(got, eps - 2.5 * (1 - abar).sqrt()[:, None] * grad),
            "with one abar per example, each row should use its own sqrt(1 - abar_i): reshape abar to (B, 1, ..., 1)")
    require(d["unchanged"] is True, "classifier_guided_eps modified its inputs in place: compute a new tensor")
    images_e, images_g = probes.image_prediction_inputs()
    factor = (1 - torch.tensor([0.9, 0.5, 0.1], dtype=F64)).sqrt().reshape(3, 1, 1, 1)
    images = tensor(d["images"], "classifier_guided_eps on images")
    require(images.shape == (3, 1, 8, 8) and close(images, images_e.double() - 1.5 * factor * images_g.double()),
            "on images (3, 1, 8, 8) with one abar per image the result should keep the shape (3, 1, 8, 8)")
    x, t = probes.mixture_points(), probes.mixture_steps()
    cond_score, _, sqrt_one_minus = _mixture_scores(x, t, 1)
    require(close(tensor(d["mixture"], "the classifier-guided mixture predictor"), -sqrt_one_minus * cond_score, rtol=1e-6, atol=1e-8),
            "guiding the exact unconditional predictor by the exact classifier with scale 1 should give the exact conditional "
            "predictor -sqrt(1 - abar) grad log p_t(x | c) (Bayes' rule on the scores)")


# -- part 4: cross_attention --------------------------------------------------------------------


def attention_reference(x, context, w_q, w_k, w_v, w_o) -> torch.Tensor:
    return F.scaled_dot_product_attention(x @ w_q, context @ w_k, context @ w_v) @ w_o


@visible(probes.attention_visible)
def attention_visible(d: dict) -> None:
    """a batch of one against torch.nn.functional.scaled_dot_product_attention"""
    out = tensor(d["out"], "cross_attention(...)")
    expected = attention_reference(*probes.attention_inputs(lq=2, lk=3, d_x=4, d_c=4, d=4, o=4, batch=1, seed=37))
    require(out.shape == expected.shape, f"the output should have shape (B, Lq, d_out) = {tuple(expected.shape)}, got {tuple(out.shape)}")
    require(close(out, expected), "the output differs from softmax(Q K^T / sqrt(d)) V W_o: check the 1/sqrt(d) scale and "
                                  "that the softmax runs over the context tokens (the last axis of Q K^T)")


@hidden(probes.attention_hidden)
def attention_hidden(d: dict) -> None:
    """a batch with different widths for x, the context, the projections and the output; one context token; inputs left unchanged; and the library's cross-attention denoiser run with your attention"""
    inputs = probes.attention_inputs()
    out = tensor(d["out"], "cross_attention(...)")
    expected = attention_reference(*inputs)
    require(out.shape == expected.shape, f"the output should have shape {tuple(expected.shape)}, got {tuple(out.shape)}")
    require(close(out, expected), "with x of width 6, context of width 4 and projections of width 7 the output differs from "
                                  "scaled_dot_product_attention: the scale is 1/sqrt of the width of Q and K (here 7)")
    require(d["unchanged"] is True, "cross_attention modified its inputs in place")
    require(close(tensor(d["one_token"], "cross_attention with one context token"), attention_reference(*probes.attention_inputs(lk=1, seed=38))),
            "with a single context token every query should get that token's value (its weights sum to 1 over the context)")
    network = tensor(d["network"], "the cross-attention denoiser with your attention")
    x, t, c = probes.network_inputs()
    with torch.no_grad():
        library_network = probes.attention_network(library, attention_reference)(x, t, c)
    require(network.shape == library_network.shape and close(network, library_network),
            "the library's CrossAttentionDenoiser gives a different output with your attention than with the reference")


# -- the unit -----------------------------------------------------------------------------------

UNIT = Unit(
    assignment="guidance",
    library=LIBRARY,
    chapter="book/guidance.html",
    pieces=(
        Piece("label_dropout", "Label dropout", "classifier-free-guidance", (dropout_visible, dropout_hidden),
              forbidden=(f"{LIBRARY}.label_dropout",)),
        Piece("cfg_prediction", "The classifier-free guided prediction", "classifier-free-guidance", (cfg_visible, cfg_hidden),
              forbidden=(f"{LIBRARY}.cfg_prediction",)),
        Piece("classifier_guided_eps", "Classifier guidance of a noise prediction", "classifier-guidance",
              (classifier_visible, classifier_hidden), forbidden=(f"{LIBRARY}.classifier_guided_eps",)),
        Piece("cross_attention", "A cross-attention block", "conditioning-mechanisms-on-the-digits", (attention_visible, attention_hidden),
              forbidden=(f"{LIBRARY}.cross_attention",)),
    ),
)
