"""The VAE assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/vae/vae.ipynb`` from here. The visible checks mirror the notebook's readable asserts;
the hidden ones exist only here. The student's process only produces data (``vae_probes.py``);
every comparison below runs in the grader's process on numpy arrays, against references computed
independently (``torch.distributions``, autograd, a hand-written SGD step).
"""

from __future__ import annotations

import math

import torch
from gencore import vae as reference

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import vae_probes as probes
from autograder.verdicts import close, require, tensor

LIBRARY = "gencore.vae"


# -- part 1: gaussian_kl -----------------------------------------------------------------------


@visible(probes.kl_visible)
def kl_visible(d: dict) -> None:
    """the chapter's worked example (mu = 2, sigma = 0.5), a sum over latent dimensions, a batch at the prior"""
    kl = tensor(d["one"], "gaussian_kl(mu, logvar)")
    require(kl.shape == (), f"one 1-D Gaussian should give a single number (sum over the last dimension); got shape {tuple(kl.shape)}")
    require(abs(kl.item() - 2.318) < 1e-3, f"expected 2.318 for mu=2, sigma=0.5, got {kl.item():.4f}")
    kl = tensor(d["two"], "gaussian_kl(mu, logvar)")
    require(kl.numel() == 1 and abs(kl.sum().item() - 2.318) < 1e-3,
            f"expected 2.318 (2.318 + 0), got {kl.sum().item():.4f}: sum over dimensions, don't average")
    kl = tensor(d["batch"], "gaussian_kl(mu, logvar)")
    require(kl.shape == (5,), f"a (5, 3) batch should give shape (5,), got {tuple(kl.shape)}")
    require(close(kl, torch.zeros(5)), "q equal to the prior should give KL = 0")


@hidden(probes.kl_hidden)
def kl_hidden(d: dict) -> None:
    """random batches against an independent reference, the gradients in mu and logvar, extra leading dimensions"""
    mu, logvar = probes.kl_hidden_inputs()
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * logvar).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    got = tensor(d["out"], "gaussian_kl(mu, logvar)")
    require(got.shape == (16,), f"a (16, 4) batch gave shape {tuple(got.shape)}, expected (16,)")
    require(close(got, expected, rtol=1e-4, atol=1e-5), "KL differs from the reference on random inputs")
    require(d["grad_mu"] is not None and close(tensor(d["grad_mu"], "dKL/dmu"), mu, atol=1e-5), "dKL/dmu should equal mu")
    require(d["grad_logvar"] is not None and close(tensor(d["grad_logvar"], "dKL/dlogvar"), 0.5 * (logvar.exp() - 1), atol=1e-5),
            "dKL/dlogvar should equal (exp(logvar) - 1) / 2")
    require(tensor(d["leading"], "gaussian_kl(mu, logvar)").shape == (2, 3), "leading batch dimensions should be kept: (2, 3, 5) -> (2, 3)")


# -- part 2: reparameterize --------------------------------------------------------------------


@visible(probes.reparam_visible)
def reparam_visible(d: dict) -> None:
    """the sample's mean and variance, and that gradients reach mu and logvar"""
    z = tensor(d["z"], "z")
    mu, logvar = torch.tensor([1.0, -2.0]).double(), torch.tensor([4.0, 0.25]).log().double()
    require(z.shape == (200_000, 2), f"z should have the shape of mu, got {tuple(z.shape)}")
    mean_se = (logvar.exp() / 200_000).sqrt()
    require(((z.mean(0) - mu).abs() < 5 * mean_se).all(), f"sample mean {z.mean(0).tolist()} should be close to mu = {mu.tolist()}")
    require(torch.allclose(z.var(0), logvar.exp(), rtol=0.02),
            f"sample variance {z.var(0).tolist()} should be close to {logvar.exp().tolist()}: is sigma = exp(logvar / 2)?")
    require(d["grad_mu"] is not None and close(tensor(d["grad_mu"], "dz/dmu"), torch.ones(3)), "dz/dmu should be 1")
    require(d["grad_logvar"] is not None and tensor(d["grad_logvar"], "dz/dlogvar").abs().sum() > 0, "no gradient reached logvar")


@hidden(probes.reparam_hidden)
def reparam_hidden(d: dict) -> None:
    """the exact gradients in mu and logvar for the noise that was drawn, fresh noise per entry, 3-D inputs"""
    mu, logvar, w = (t.double() for t in probes.reparam_hidden_inputs())
    z = tensor(d["z"], "z")
    require(z.shape == (64, 5), f"z should have the shape of mu (64, 5), got {tuple(z.shape)}")
    eps = (z - mu) / (0.5 * logvar).exp()  # the noise that was drawn
    require(d["grad_mu"] is not None and close(tensor(d["grad_mu"], "dz/dmu"), w, atol=1e-5), "dz/dmu should be the identity")
    require(d["grad_logvar"] is not None and close(tensor(d["grad_logvar"], "dz/dlogvar"), w * 0.5 * (0.5 * logvar).exp() * eps, atol=1e-4),
            "dz/dlogvar should be eps * exp(logvar / 2) / 2")
    require(eps.std() > 0.5 and eps[0].std() > 0.1, "the noise should differ between entries")
    z3 = tensor(d["z3"], "z")
    require(z3.shape == (100, 100, 4), f"z should have the shape of mu (100, 100, 4), got {tuple(z3.shape)}")
    s = (z3 - 3.0) / 3.0
    require(abs(s.mean().item()) < 0.02 and abs(s.std().item() - 1) < 0.02, "z should be distributed as N(mu, exp(logvar))")


# -- part 3: negative_elbo ---------------------------------------------------------------------


@visible(probes.elbo_visible)
def elbo_visible(d: dict) -> None:
    """two pixels at logit 0, and beta weighting the KL term only"""
    loss = tensor(d["loss"], "negative_elbo(...)")
    require(loss.shape == (1,), f"one value per example expected, shape (1,); got {tuple(loss.shape)}")
    require(abs(loss.item() - 2 * math.log(2)) < 1e-5, f"expected 2 log 2 = {2 * math.log(2):.4f}, got {loss.item():.4f}: sum over pixels")
    loss3 = tensor(d["loss_beta3"], "negative_elbo(...)")
    require(loss3.numel() == 1 and abs(loss3.sum().item() - (2 * math.log(2) + 3 * 2.318)) < 1e-3,
            f"expected 2 log 2 + 3 * 2.318, got {loss3.sum().item():.4f}")


@hidden(probes.elbo_hidden)
def elbo_hidden(d: dict) -> None:
    """random batches at several beta against a reference, the use of kl_fn, numerical safety at large logits"""
    x, logits, mu, logvar = probes.elbo_hidden_inputs()
    nll = -torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1)
    require(isinstance(d["by_beta"], list) and len(d["by_beta"]) == len(probes.ELBO_BETAS), "negative_elbo did not return a value")
    for beta, got in zip(probes.ELBO_BETAS, d["by_beta"]):
        got = tensor(got, "negative_elbo(...)")
        require(got.shape == (8,), f"shape {tuple(got.shape)}, expected (8,)")
        require(close(got, nll + beta * reference.gaussian_kl(mu, logvar), rtol=1e-4, atol=1e-4),
                f"negative ELBO differs from the reference at beta={beta}")
    require(close(tensor(d["kl_seven"], "negative_elbo(...)"), nll + 7.0, atol=1e-4), "use kl_fn for the KL term")
    big = tensor(d["big_logits"], "negative_elbo(...)")
    require(torch.isfinite(big).all() and big.numel() == 1 and abs(big.sum().item() - 100.0) < 1e-3,
            f"logits of +-100 should give a finite loss of 100, got {big.flatten().tolist()}")


# -- part 4: train_step ------------------------------------------------------------------------


def _params(d: dict, count: int) -> list[torch.Tensor]:
    params = d["params"]
    require(isinstance(params, list) and len(params) == count, "the model's parameters could not be read back")
    return [tensor(p, "a parameter") for p in params]


@visible(probes.step_visible)
def step_visible(d: dict) -> None:
    """the returned loss is a float, the batch mean before the step, and the parameters move"""
    model, x = probes.train_visible_setup(reference)
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        mu, logvar = model.encode(x)
        expected = reference.negative_elbo(x, model.decode(mu), mu, logvar).mean().item()
    require(d["is_float"] is True, f"return the loss as a Python float (loss.item()), got {d['type']}")
    loss = d["loss"]
    require(isinstance(loss, float) and abs(loss - expected) < 1e-4,
            f"the returned loss {loss} should be the batch mean of loss_fn before the step, {expected:.4f}")
    after = _params(d, len(before))
    require(any(not torch.equal(b.double(), a) for b, a in zip(before, after)), "the parameters did not change: call optimizer.step()")


def _manual_sgd_step(model, x, beta, lr) -> None:
    # reference: gradients of the batch-mean loss by autograd, then p <- p - lr * grad
    params = list(model.parameters())
    mu, logvar = model.encode(x)
    loss = reference.negative_elbo(x, model.decode(mu), mu, logvar, beta=beta).mean()
    grads = torch.autograd.grad(loss, params)
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * g


@hidden(probes.step_hidden)
def step_hidden(d: dict) -> None:
    """two steps against a reference SGD step, and the use of reparam_fn"""
    model, xs = probes.train_hidden_setup(reference)
    for batch in (xs[:20], xs[20:]):
        _manual_sgd_step(model, batch, 2.5, 0.05)
    expected = list(model.parameters())
    for got, want in zip(_params(d, len(expected)), expected):
        require(close(got, want.detach(), atol=1e-5), "parameters after two steps differ from the reference (zero_grad? beta? the batch mean?)")
    require(isinstance(d["reparam_calls"], int) and d["reparam_calls"] > 0, "train_step must draw z with reparam_fn")


# -- the unit ----------------------------------------------------------------------------------

UNIT = Unit(
    assignment="vae",
    library=LIBRARY,
    chapter="book/vae.html",
    pieces=(
        Piece("gaussian_kl", "The KL divergence to the prior", "the-kl-term-in-closed-form", (kl_visible, kl_hidden),
              forbidden=(f"{LIBRARY}.gaussian_kl", f"{LIBRARY}.gaussian_kl_full", "torch.distributions.kl_divergence",
                         "torch.distributions.kl.kl_divergence")),
        Piece("reparameterize", "The reparameterization trick", "the-reparameterization-trick", (reparam_visible, reparam_hidden),
              forbidden=(f"{LIBRARY}.reparameterize",)),
        Piece("negative_elbo", "The negative ELBO", "the-evidence-lower-bound", (elbo_visible, elbo_hidden),
              forbidden=(f"{LIBRARY}.negative_elbo", f"{LIBRARY}.bernoulli_nll")),
        Piece("train_step", "One training step", "training-a-vae-on-the-digits", (step_visible, step_hidden),
              forbidden=(f"{LIBRARY}.train_step", f"{LIBRARY}.train_vae")),
    ),
)
