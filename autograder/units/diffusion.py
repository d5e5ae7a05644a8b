"""The diffusion assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/diffusion/diffusion.ipynb`` from here. The visible checks mirror the notebook's
readable asserts; the hidden ones exist only here. The student's process only produces data
(``diffusion_probes.py``); every comparison below runs in the grader's process, against
references computed independently: products through logarithms, closed forms in float64, the
posterior variance formula, and the moments of the Gaussian data that the samplers must reproduce
when driven by the exact noise predictor.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gencore import diffusion as reference

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import diffusion_probes as probes
from autograder.verdicts import close, require, scalar, tensor

LIBRARY = "gencore.diffusion"
F64 = torch.float64


def product_reference(betas: torch.Tensor) -> torch.Tensor:
    """prod_{s <= t} (1 - beta_s) through a sum of logarithms (not cumprod), in float64."""
    return torch.cumsum(torch.log1p(-betas.to(F64)), 0).exp()


def schedule64():
    return reference.linear_schedule(1000, dtype=F64)


def alpha_bar_before(alpha_bar: torch.Tensor, t: int) -> torch.Tensor:
    """alpha_bar at index t, with alpha_bar before index 0 equal to 1."""
    return alpha_bar[t] if t >= 0 else torch.tensor(1.0, dtype=F64)


def q_sample_reference(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """sqrt(alpha_bar[t]) x0 + sqrt(1 - alpha_bar[t]) noise, for (B, D) inputs."""
    return alpha_bar[t].sqrt()[:, None] * x0 + (1 - alpha_bar[t]).sqrt()[:, None] * noise


# -- part 1: alpha_bar_from_betas -------------------------------------------------------------


@visible(probes.alpha_bar_visible)
def alpha_bar_visible(d: dict) -> None:
    """three betas by hand, and the last value of Ho et al.'s linear schedule"""
    three = tensor(d["three"], "alpha_bar_from_betas(betas)")
    require(three.shape == (3,), f"three betas should give three values, got shape {tuple(three.shape)}")
    require(close(three, torch.tensor([0.9, 0.72, 0.36])),
            f"betas (0.1, 0.2, 0.5) should give (0.9, 0.72, 0.36), got {three.tolist()}: alpha_bar_t is the product of (1 - beta_s) for s <= t")
    linear = tensor(d["linear"], "alpha_bar_from_betas(betas)")
    require(linear.shape == (1000,) and abs(linear[-1].item() - 4.036e-5) < 1e-7,
            f"for Ho et al.'s linear schedule alpha_bar at the last step should be about 4.04e-05, got {linear[-1].item() if linear.numel() else None}")


@hidden(probes.alpha_bar_hidden)
def alpha_bar_hidden(d: dict) -> None:
    """random, linear and cosine schedules against an independent reference, float64 kept, input unchanged"""
    got = tensor(d["random"], "alpha_bar_from_betas(betas)")
    require(close(got, product_reference(probes.random_betas()), rtol=1e-9, atol=1e-12),
            "random betas: the values differ from the cumulative product of (1 - beta)")
    require(d["unchanged"] is True, "the betas passed in were modified: compute on a new tensor")
    require(close(tensor(d["linear64"], "alpha_bar"), product_reference(torch.linspace(1e-4, 0.02, 1000, dtype=F64)), rtol=1e-9, atol=1e-14),
            "the linear schedule in float64 differs from the reference (keep the input's dtype)")
    cosine = reference.cosine_schedule(300, dtype=F64)
    require(close(tensor(d["cosine"], "alpha_bar"), product_reference(cosine.betas), rtol=1e-9, atol=1e-14),
            "the cosine schedule's alpha_bar differs from the reference")


# -- part 2: q_sample -------------------------------------------------------------------------


@visible(probes.q_sample_visible)
def q_sample_visible(d: dict) -> None:
    """the signal and the noise parts separately, one step per row"""
    alpha_bar = torch.tensor(probes.VISIBLE_ALPHA_BAR, dtype=F64)
    x0 = torch.tensor([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.0]], dtype=F64)
    signal = tensor(d["signal"], "q_sample(...)")
    require(signal.shape == (3, 2), f"x_t should have the shape of x0, (3, 2), got {tuple(signal.shape)}")
    require(close(signal, alpha_bar.sqrt()[:, None] * x0),
            "with zero noise x_t should be sqrt(alpha_bar[t]) * x0, one t per row (is the square root there?)")
    noise = tensor(d["noise"], "q_sample(...)")
    require(close(noise, (1 - alpha_bar).sqrt()[:, None].expand(3, 2)),
            "with x0 = 0 and noise = 1, x_t should be sqrt(1 - alpha_bar[t]) in every entry")


@hidden(probes.q_sample_hidden)
def q_sample_hidden(d: dict) -> None:
    """random inputs, image-shaped inputs, and the mean and variance of many draws at three steps"""
    alpha_bar = schedule64().alpha_bar
    x0, t, noise, images, image_t, image_noise = (v.to(F64) if v.is_floating_point() else v for v in probes.q_sample_inputs())
    # rtol 1e-4: the student's float32 alpha_bar is a product of up to 1000 factors, each rounded
    # (6e-8 relative): up to 6e-5 in the worst case, so the policy's 1e-5 could fail a right answer
    require(close(tensor(d["random"], "q_sample(...)"), q_sample_reference(x0, t, noise, alpha_bar), rtol=1e-4, atol=1e-5),
            "random inputs: x_t differs from the reference")
    a = alpha_bar[image_t].view(-1, 1, 1, 1)
    require(close(tensor(d["images"], "q_sample(...)"), a.sqrt() * images + (1 - a).sqrt() * image_noise, rtol=1e-4, atol=1e-5),
            "images of shape (B, 1, 8, 8): x_t differs from the reference (make alpha_bar[t] broadcast over every non-batch dimension)")
    n = 200_000
    for step, (mean, var) in d["moments"].items():
        abar = alpha_bar[int(step)].item()
        mean, var = scalar(mean, "the mean of q_sample(...)"), scalar(var, "the variance of q_sample(...)")
        require(abs(mean - math.sqrt(abar) * 1.5) < 5 * math.sqrt((1 - abar) / n),
                f"x0 = 1.5 at step {step}: the sample mean {mean:.4f} should be sqrt(alpha_bar) x0 = {math.sqrt(abar) * 1.5:.4f}")
        require(abs(var / (1 - abar) - 1) < 0.02, f"x0 = 1.5 at step {step}: the sample variance {var:.4f} should be 1 - alpha_bar = {1 - abar:.4f}")


# -- part 3: diffusion_loss -------------------------------------------------------------------


@visible(probes.loss_visible)
def loss_visible(d: dict) -> None:
    """a network that predicts zero and one that predicts the noise exactly"""
    x0, t, noise = probes.loss_inputs()
    zero = scalar(d["zero"], "diffusion_loss(...)", zero_dim=True)
    require(abs(zero - noise.double().pow(2).mean().item()) < 1e-5,
            f"a model that always predicts 0 should have loss mean(noise^2) = {noise.double().pow(2).mean().item():.4f}, "
            f"got {zero:.4f}: the mean over the batch and the dimensions")
    require(abs(scalar(d["perfect"], "diffusion_loss(...)")) < 1e-10, "a model that predicts the noise exactly should have loss 0")


@hidden(probes.loss_hidden)
def loss_hidden(d: dict) -> None:
    """the value and gradient with given steps and noise, uniform steps over {0, ..., T-1}, standard normal noise, the use of q_sample_fn"""
    alpha_bar = schedule64().alpha_bar
    x0, t, noise = (v.to(F64) if v.is_floating_point() else v for v in probes.loss_inputs())
    x_t = q_sample_reference(x0, t, noise, alpha_bar)
    expected = (noise - probes.linear_eps_model(x_t, t)).pow(2).mean().item()
    require(abs(scalar(d["value"], "diffusion_loss(...)") - expected) < 1e-4 * max(1, expected),
            "with a fixed network and given t and noise the loss differs from the reference")
    grad = d["grad"]
    require(grad is not None and abs(scalar(grad, "the gradient") - _loss_gradient_reference(x_t, noise)) < 1e-3,
            "the loss is not differentiable in the network's parameters as expected (detached?)")
    require(isinstance(d["q_sample_calls"], int) and d["q_sample_calls"] >= 1, "use q_sample_fn to make x_t")
    drawn = d["t"]
    require(isinstance(drawn, np.ndarray) and drawn.dtype.kind == "i" and drawn.shape == (20_000,),
            "when t is not given, draw one integer step per example (a (B,) int64 tensor) and pass it to eps_model")
    counts = np.bincount(drawn.astype(np.int64).clip(0, 10_000), minlength=1000)
    require(drawn.min() == 0 and drawn.max() == 999 and len(counts) == 1000,
            f"steps should be drawn from {{0, ..., T-1}} = {{0, ..., 999}}; got the range [{drawn.min()}, {drawn.max()}]")
    per_decile = counts.reshape(10, 100).sum(1)  # 2000 expected each, standard deviation about 42
    require(np.abs(per_decile - 2000).max() < 6 * 42, "steps should be uniform over {0, ..., T-1}")
    x_drawn = tensor(d["x_t"], "x_t")
    a = alpha_bar[torch.from_numpy(drawn.astype(np.int64))][:, None]
    standardized = (x_drawn - a.sqrt() * 2.0) / (1 - a).sqrt()  # the noise that was drawn
    require(abs(standardized.mean().item()) < 0.05 and abs(standardized.std().item() - 1) < 0.05,
            "when noise is not given, draw it from a standard normal, one value per entry")


def _loss_gradient_reference(x_t, noise) -> float:
    # loss(w) = mean((noise - w x_t)^2), so d loss / d w = -2 mean((noise - w x_t) x_t) at w = 0.7
    return (-2 * (noise - 0.7 * x_t) * x_t).mean().item()


# -- part 4: ddpm_step ------------------------------------------------------------------------


def _posterior(t: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, variance) of q(x_{t-1} | x_t, x_0) for the step inputs, from Eq. 6-7 written out here."""
    s = schedule64()
    x0, eps = probes.step_inputs()
    abar, abar_prev = s.alpha_bar[t], alpha_bar_before(s.alpha_bar, t - 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    mean = abar_prev.sqrt() * s.betas[t] / (1 - abar) * x0 + s.alphas[t].sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    return mean, (1 - abar_prev) / (1 - abar) * s.betas[t]


@visible(probes.ddpm_visible)
def ddpm_visible(d: dict) -> None:
    """no noise at the last step, and the posterior mean at index 500"""
    x0, _ = probes.step_inputs()
    zero, one = tensor(d["last_noise0"], "ddpm_step(...)"), tensor(d["last_noise1"], "ddpm_step(...)")
    require(zero.shape == (6, 4), f"x_{{t-1}} should have the shape of x_t, (6, 4), got {tuple(zero.shape)}")
    require(close(zero, one, atol=1e-10), "at index 0 (the last step) no noise should be added: beta-tilde is 0 there")
    require(close(zero, x0, atol=1e-8), "at index 0 with the true noise, the step should return x_0 exactly")
    mean, _ = _posterior(500)
    require(close(tensor(d["mean_500"], "ddpm_step(...)"), mean, atol=1e-8),
            "at index 500 with the true noise and noise = 0, the step should return the posterior mean mu-tilde")


@hidden(probes.ddpm_hidden)
def ddpm_hidden(d: dict) -> None:
    """the posterior mean and the posterior variance at five steps, and DDPM sampling of Gaussian data with the exact predictor"""
    for t in probes.STEP_INDICES:
        mean, var = _posterior(t)
        require(close(tensor(d["means"][str(t)], "ddpm_step(...)"), mean, rtol=1e-6, atol=1e-8),
                f"index {t}: with the true noise the mean differs from the posterior mean")
        spread = tensor(d["spreads"][str(t)], "ddpm_step(...)")
        require(close(spread, var.sqrt().expand_as(spread), rtol=1e-6, atol=1e-9),
                f"index {t}: the noise should be scaled by sqrt(beta-tilde_t) = {var.sqrt().item():.3e}, "
                f"the standard deviation of the posterior q(x_t-1 | x_t, x_0)")
    _gaussian_verdict(d["samples"], "DDPM with your step")


def _gaussian_verdict(samples, what: str) -> None:
    x = tensor(samples, what)
    require(x.shape == (probes.N_GAUSS, 2) and torch.isfinite(x).all(), f"{what}: samples should be finite, shape ({probes.N_GAUSS}, 2)")
    mean, cov = torch.tensor(probes.GAUSS_MEAN, dtype=F64), torch.tensor(probes.GAUSS_COV, dtype=F64)
    mean_error = (x.mean(0) - mean).abs()
    require((mean_error < 5 * (cov.diagonal() / probes.N_GAUSS).sqrt()).all(),
            f"{what} and the exact noise predictor of Gaussian data: the sample mean {x.mean(0).tolist()} should be {mean.tolist()}")
    cov_error = (torch.cov(x.T) - cov).abs().max().item()
    require(cov_error < 0.03, f"{what} and the exact noise predictor: the sample covariance is off by {cov_error:.3f} (more than 0.03)")


# -- part 5: ddim_step ------------------------------------------------------------------------


@visible(probes.ddim_visible)
def ddim_visible(d: dict) -> None:
    """with the true noise, deterministic jumps to the data and to index 200"""
    s = schedule64()
    x0, eps = probes.step_inputs()
    to_data = tensor(d["to_data"], "ddim_step(...)")
    require(to_data.shape == (6, 4), f"the result should have the shape of x_t, (6, 4), got {tuple(to_data.shape)}")
    require(close(to_data, x0, atol=1e-8),
            "with the true noise, a deterministic step to t_prev = -1 (the data) should return x_0 exactly (alpha_bar before index 0 is 1)")
    a = s.alpha_bar[200]
    require(close(tensor(d["to_200"], "ddim_step(...)"), a.sqrt() * x0 + (1 - a).sqrt() * eps, atol=1e-8),
            "with the true noise, a step to index 200 should give sqrt(alpha_bar[200]) x0 + sqrt(1 - alpha_bar[200]) eps")


@hidden(probes.ddim_hidden)
def ddim_hidden(d: dict) -> None:
    """stochastic steps (eta > 0) against Eq. 12, determinism, and DDIM sampling of Gaussian data with the exact predictor"""
    s = schedule64()
    x0, eps = probes.step_inputs()
    eps_guess, z = probes.ddim_noise_inputs(eps)
    for t, t_prev, eta in probes.DDIM_STOCHASTIC:
        abar, abar_prev = s.alpha_bar[t], alpha_bar_before(s.alpha_bar, t_prev)
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
        x0_pred = (x_t - (1 - abar).sqrt() * eps_guess) / abar.sqrt()
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
        expected = abar_prev.sqrt() * x0_pred + (1 - abar_prev - sigma**2).sqrt() * eps_guess + sigma * z
        require(close(tensor(d["stochastic"][f"{t},{t_prev},{eta}"], "ddim_step(...)"), expected, rtol=1e-6, atol=1e-8),
                f"t = {t}, t_prev = {t_prev}, eta = {eta}: the step differs from Song et al.'s Eq. 12 with sigma = eta sqrt(beta-tilde)")
    require(d["repeatable"] is True, "with eta = 0 the sampler should be deterministic: the same x_T gave different samples")
    _gaussian_verdict(d["samples"], "DDIM (200 steps) with your step")


# -- the unit ---------------------------------------------------------------------------------

UNIT = Unit(
    assignment="diffusion",
    library=LIBRARY,
    chapter="book/diffusion.html",
    pieces=(
        Piece("alpha_bar_from_betas", "The cumulative schedule", "the-forward-process", (alpha_bar_visible, alpha_bar_hidden),
              forbidden=(f"{LIBRARY}.alpha_bar_from_betas", f"{LIBRARY}.linear_schedule", f"{LIBRARY}.cosine_schedule")),
        Piece("q_sample", "Sampling q(x_t | x_0)", "the-forward-process", (q_sample_visible, q_sample_hidden),
              forbidden=(f"{LIBRARY}.q_sample",)),
        Piece("diffusion_loss", "The simple loss", "the-loss-a-reweighted-elbo", (loss_visible, loss_hidden),
              forbidden=(f"{LIBRARY}.diffusion_loss",)),
        Piece("ddpm_step", "The DDPM reverse step", "predicting-the-noise", (ddpm_visible, ddpm_hidden),
              forbidden=(f"{LIBRARY}.ddpm_step", f"{LIBRARY}.posterior_mean_variance", f"{LIBRARY}.ddim_step")),
        Piece("ddim_step", "The DDIM step", "ddim-fewer-steps-and-no-noise", (ddim_visible, ddim_hidden),
              forbidden=(f"{LIBRARY}.ddim_step", f"{LIBRARY}.ddpm_step")),
    ),
)
