"""The autoregressive assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/autoregressive/autoregressive.ipynb`` from here. The visible checks mirror the
notebook's readable asserts; the hidden ones exist only here. The student's process only produces
data (``autoregressive_probes.py``); every comparison below runs in the grader's process, against
references independent of the student's code and of the library's: ``torch.distributions``,
closed-form gradients, numpy, a raster-order enumeration of the mask, and the Jacobian of a
PixelCNN built here with the student's masks.
"""

from __future__ import annotations

import math

import torch
from gencore import autoregressive as reference

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import autoregressive_probes as probes
from autograder.verdicts import close, require, scalar, tensor

LIBRARY = "gencore.autoregressive"
FOUNDATIONS = "gencore.foundations"


# -- part 1: gaussian_nll ----------------------------------------------------------------------


@visible(probes.nll_visible)
def nll_visible(d: dict) -> None:
    """the chapter's worked example (2, 3, 5) at its maximum-likelihood fit, and x = 0 under N(0, 1)"""
    got = scalar(d["worked"], "gaussian_nll(x, mu, var)")
    expected = 0.5 * (math.log(2 * math.pi * 14 / 9) + 1)
    require(abs(got - expected) < 1e-5,
            f"expected {expected:.5f} for the data (2, 3, 5) at mu = 10/3, var = 14/9, got {got:.5f}: the mean over points of 1/2 [log(2 pi var) + (x - mu)^2 / var]")
    got = scalar(d["standard"], "gaussian_nll(x, mu, var)")
    require(abs(got - 0.5 * math.log(2 * math.pi)) < 1e-5, f"x = 0 under N(0, 1) should give log(2 pi) / 2 = 0.91894, got {got:.5f}")


@hidden(probes.nll_hidden)
def nll_hidden(d: dict) -> None:
    """random data at several (mu, var) against torch.distributions, and the gradients in mu and var"""
    x = probes.nll_hidden_inputs().double()
    require(isinstance(d["values"], list) and len(d["values"]) == len(probes.NLL_PARAMETERS), "gaussian_nll returned nothing")
    for (mu, var), got, grads in zip(probes.NLL_PARAMETERS, d["values"], d["grads"]):
        expected = -torch.distributions.Normal(mu, math.sqrt(var)).log_prob(x).mean().item()
        got = scalar(got, "gaussian_nll(x, mu, var)")
        require(abs(got - expected) < 1e-4 * max(1.0, abs(expected)),
                f"at mu = {mu}, var = {var} the NLL of 50 random points should be {expected:.5f}, got {got:.5f}")
        # the closed-form gradients of the mean NLL
        d_mu = -((x - mu).mean() / var).item()
        d_var = (0.5 / var - 0.5 * (x - mu).pow(2).mean() / var**2).item()
        require(grads[0] is not None and grads[1] is not None, "no gradient reached mu or var: keep the computation in torch")
        require(abs(scalar(grads[0], "dNLL/dmu") - d_mu) < 1e-4, f"dNLL/dmu should be -(mean(x) - mu) / var = {d_mu:.5f}")
        require(abs(scalar(grads[1], "dNLL/dvar") - d_var) < 1e-4, f"dNLL/dvar should be 1/(2 var) - mean((x - mu)^2) / (2 var^2) = {d_var:.5f}")


# -- part 2: gaussian_mle ----------------------------------------------------------------------


@visible(probes.mle_visible)
def mle_visible(d: dict) -> None:
    """the worked example: mu = 10/3, sigma^2 = 14/9"""
    mu, var = scalar(d["mu"], "mu"), scalar(d["var"], "var")
    require(abs(mu - 10 / 3) < 1e-5, f"the mean of (2, 3, 5) is 10/3 = 3.33333, got {mu:.5f}")
    require(abs(var - 14 / 9) < 1e-5,
            f"the maximum-likelihood variance of (2, 3, 5) is 14/9 = 1.55556, got {var:.5f}: divide by N, not N - 1, and return the variance, not sigma")


@hidden(probes.mle_hidden)
def mle_hidden(d: dict) -> None:
    """1000 random points against numpy, a zero NLL gradient at the estimate, constant data, two points"""
    x, constant = probes.mle_hidden_inputs()
    array = x.double().numpy()
    mu, var = scalar(d["mu"], "mu"), scalar(d["var"], "var")
    require(abs(mu - array.mean()) < 1e-4 and abs(var - array.var(ddof=0)) < 1e-3 * array.var(),
            f"on 1000 random points expected mu = {array.mean():.4f}, var = {array.var():.4f}; got {mu:.4f}, {var:.4f}")
    # the estimate is where the mean NLL is stationary: its gradient there is zero (autograd)
    mu_t, var_t = torch.tensor(mu, dtype=torch.float64, requires_grad=True), torch.tensor(var, dtype=torch.float64, requires_grad=True)
    (-torch.distributions.Normal(mu_t, var_t.sqrt()).log_prob(x.double()).mean()).backward()
    require(abs(mu_t.grad.item()) < 1e-4 and abs(var_t.grad.item()) < 1e-4, "the NLL's gradient at your estimate is not zero")
    require(abs(scalar(d["mu_constant"], "mu") - constant[0].item()) < 1e-5 and abs(scalar(d["var_constant"], "var")) < 1e-6,
            "five equal points should give their value as mu and a variance of 0")
    two = x[:2].double().numpy()
    require(abs(scalar(d["mu_two"], "mu") - two.mean()) < 1e-5 and abs(scalar(d["var_two"], "var") - two.var()) < 1e-4,
            "two points: the variance is ((x1 - x2) / 2)^2")


# -- part 3: causal_conv_mask ------------------------------------------------------------------


def raster_mask(k: int, mask_type: str) -> torch.Tensor:
    """The reference mask by enumeration: position (i, j) is kept when it comes before the centre
    in raster order (or is the centre, for type B)."""
    c = k // 2
    keep = [[(i * k + j < c * k + c) or (mask_type == "B" and (i, j) == (c, c)) for j in range(k)] for i in range(k)]
    return torch.tensor(keep, dtype=torch.float64)


def _mask_tensor(value, k: int, mask_type: str) -> torch.Tensor:
    mask = tensor(value, f"causal_conv_mask({k}, {mask_type!r})")
    require(mask.shape == (k, k), f"causal_conv_mask({k}, {mask_type!r}) should have shape ({k}, {k}), got {tuple(mask.shape)}")
    return mask


def leaks(masks: dict, image_size: int = 6) -> tuple[int, int] | None:
    """Build a PixelCNN with these masks (random weights, float64) and look for an output pixel whose
    gradient reaches an input pixel at or after it in raster order; returns (output, input) or None."""
    config = reference.PixelCNNConfig(image_size=image_size, channels=4, first_kernel=5, n_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = reference.PixelCNN(config, mask_fn=lambda k, t: masks[(k, t)].float()).double()
    d = image_size * image_size
    x = torch.bernoulli(torch.full((1, 1, image_size, image_size), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    jacobian = torch.autograd.functional.jacobian(lambda inp: model(inp).flatten(), x).reshape(d, d)  # [output i, input j]
    for i in range(d):
        after = jacobian[i, i:].abs()
        if (after > 0).any():
            return i, i + int(after.nonzero()[0])
    return None


@visible(probes.mask_visible)
def mask_visible(d: dict) -> None:
    """the 3x3 masks of type A and B"""
    for mask_type in ("A", "B"):
        mask = _mask_tensor(d[mask_type], 3, mask_type)
        expected = raster_mask(3, mask_type)
        require(torch.equal(mask, expected),
                f"the 3x3 mask of type {mask_type} should be {expected.int().tolist()}, got {mask.tolist()}")


@hidden(probes.mask_hidden)
def mask_hidden(d: dict) -> None:
    """both types at kernel sizes 1 to 7 against the raster-order rule, and no information leak in a PixelCNN built with your masks"""
    masks = d["masks"]
    require(isinstance(masks, list) and len(masks) == len(probes.MASK_CASES), "causal_conv_mask returned nothing")
    got = {(k, mask_type): _mask_tensor(value, k, mask_type) for (k, mask_type), value in zip(probes.MASK_CASES, masks)}
    leak = leaks(got)
    require(leak is None, f"a PixelCNN with your masks leaks: output pixel {leak and leak[0]} depends on input pixel "
                          f"{leak and leak[1]} (raster order), which it must not see")
    for (k, mask_type), mask in got.items():
        expected = raster_mask(k, mask_type)
        require(torch.equal(mask, expected), f"the {k}x{k} mask of type {mask_type} differs from the raster-order rule: expected {expected.int().tolist()}")


# -- part 4: bits_per_dim ----------------------------------------------------------------------


def reference_bits(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log2 p(x) / D per image from torch.distributions (an independent computation)."""
    log_p = torch.distributions.Bernoulli(logits=logits.double()).log_prob(x.double()).flatten(1).sum(1)
    return -log_p / (x[0].numel() * math.log(2))


@visible(probes.bits_visible)
def bits_visible(d: dict) -> None:
    """a fair coin per pixel costs 1 bit, and a 2x2 example"""
    coin = tensor(d["coin"], "bits_per_dim(logits, x)")
    require(coin.shape == (3,), f"one value per image expected, shape (3,); got {tuple(coin.shape)}")
    require(close(coin, torch.ones(3)), f"logits 0 (a fair coin per pixel) cost exactly 1 bit per pixel, got {coin.tolist()}: convert nats to bits")
    small = tensor(d["small"], "bits_per_dim(logits, x)")
    expected = -(3 * math.log2(0.8) + math.log2(0.2)) / 4
    require(small.numel() == 1 and abs(small.sum().item() - expected) < 1e-5,
            f"a 2x2 image, p = 0.8 per pixel, three pixels on: expected {expected:.5f} bits/dim, got {small.flatten().tolist()}")


@hidden(probes.bits_hidden)
def bits_hidden(d: dict) -> None:
    """random logits against an independent computation, images of another size, numerical safety at large logits"""
    logits, x, small_logits, small_x = probes.bits_hidden_inputs()
    got = tensor(d["random"], "bits_per_dim(logits, x)")
    require(got.shape == (5,), f"a batch of 5 images should give shape (5,), got {tuple(got.shape)}")
    require(close(got, reference_bits(logits, x), rtol=1e-4, atol=1e-5), "bits/dim differ from an independent computation on random logits")
    got = tensor(d["small"], "bits_per_dim(logits, x)")
    require(close(got, reference_bits(small_logits, small_x), rtol=1e-4, atol=1e-5),
            "4x4 images give the wrong value: divide by the number of pixels of the images you get, not by 64")
    big = tensor(d["big"], "bits_per_dim(logits, x)")
    require(bool(torch.isfinite(big).all()) and big.numel() == 1 and abs(big.sum().item() - 200 / (4 * math.log(2))) < 1e-3,
            f"logits of +-100 should give a finite {200 / (4 * math.log(2)):.3f} bits/dim, got {big.flatten().tolist()}: use a stable log-sigmoid")


# -- the unit ----------------------------------------------------------------------------------

UNIT = Unit(
    assignment="autoregressive",
    library=LIBRARY,
    chapter="book/autoregressive.html",
    pieces=(
        Piece("gaussian_nll", "The Gaussian negative log-likelihood", "book/foundations.html#maximum-likelihood",
              (nll_visible, nll_hidden), forbidden=(f"{FOUNDATIONS}.gaussian_nll", f"{FOUNDATIONS}.gaussian_log_prob")),
        Piece("gaussian_mle", "The Gaussian maximum-likelihood fit", "book/foundations.html#worked-example-a-gaussian-fitted-to-three-points",
              (mle_visible, mle_hidden), forbidden=(f"{FOUNDATIONS}.gaussian_mle",)),
        Piece("causal_conv_mask", "The mask of a masked convolution", "pixelcnn-masked-convolutions", (mask_visible, mask_hidden),
              forbidden=(f"{LIBRARY}.causal_conv_mask",)),
        Piece("bits_per_dim", "Bits per dimension", "likelihood-on-held-out-digits-and-samples", (bits_visible, bits_hidden),
              forbidden=(f"{LIBRARY}.bits_per_dim", f"{LIBRARY}.negative_log_likelihood")),
    ),
)
