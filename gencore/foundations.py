"""Learning to generate: maximum likelihood, densities, and the Bayes connection, top to bottom.

1. maximum likelihood for a Gaussian: ``gaussian_mle`` (closed form), ``gaussian_nll``,
   ``fit_gaussian_by_gradient_descent``;
2. a 1-D density explorer: a known mixture to sample from, and three fitted densities (one
   Gaussian, a Gaussian mixture fitted by EM, a kernel density estimate), with ``plot_densities``;
3. a generative classifier: class-conditional diagonal Gaussians p(x|y) and a prior p(y),
   turned into p(y|x) by Bayes' rule;
4. an idea that does not work: gradient ascent on a classifier's class score from noise.

Shapes: 1-D data ``x`` is (N,); digits are (N, D) with D = 64 and labels (N,) of ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from torch.nn import functional as F

from gencore.nn import mlp

LOG_2PI = math.log(2 * math.pi)


def _check_1d(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if x.dim() != 1 or len(x) == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of shape (N,), got shape {tuple(x.shape)}")


def _check_xy(x, y) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2:
        raise ValueError(f"x must be a floating-point tensor of shape (N, D), got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.long or y.shape != x.shape[:1]:
        raise ValueError(f"y must be an int64 tensor of shape ({x.shape[0]},), got "
                         f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}")


# ---------------------------------------------------------------------------------------------
# 1. Maximum likelihood for a Gaussian
# ---------------------------------------------------------------------------------------------


def gaussian_mle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The maximum-likelihood mean and variance of N(mu, var) for data ``x`` of shape (N,).

    Setting the derivatives of sum_i log N(x_i; mu, var) to zero gives mu = (1/N) sum_i x_i and
    var = (1/N) sum_i (x_i - mu)^2: the sample mean and the *biased* (1/N) sample variance.
    """
    _check_1d("x", x)
    mu = x.mean()
    return mu, (x - mu).pow(2).mean()


def gaussian_log_prob(x: torch.Tensor, mu, var) -> torch.Tensor:
    """log N(x; mu, var) = -1/2 [log(2 pi var) + (x - mu)^2 / var], elementwise."""
    var = torch.as_tensor(var, dtype=x.dtype)
    if (var <= 0).any():
        raise ValueError("var must be positive")
    return -0.5 * (LOG_2PI + torch.log(var) + (x - mu).pow(2) / var)


def gaussian_nll(x: torch.Tensor, mu, var) -> torch.Tensor:
    """The mean negative log-likelihood -(1/N) sum_i log N(x_i; mu, var) of data ``x`` (N,)."""
    _check_1d("x", x)
    return -gaussian_log_prob(x, mu, var).mean()


def fit_gaussian_by_gradient_descent(x: torch.Tensor, steps: int = 200, lr: float = 0.5) -> dict[str, list[float]]:
    """Minimise ``gaussian_nll`` by plain gradient descent from mu = 0, var = 1.

    The variance is parameterised by its logarithm, so every step keeps it positive. Returns the
    trajectory: ``mu``, ``var`` and ``nll`` after 0, 1, ..., ``steps`` steps.
    """
    _check_1d("x", x)
    if not isinstance(steps, int) or steps < 1 or lr <= 0:
        raise ValueError(f"steps must be a positive int and lr positive, got {steps!r} and {lr!r}")
    mu = torch.zeros((), dtype=x.dtype, requires_grad=True)
    log_var = torch.zeros((), dtype=x.dtype, requires_grad=True)
    history: dict[str, list[float]] = {"mu": [], "var": [], "nll": []}
    for step in range(steps + 1):
        nll = gaussian_nll(x, mu, log_var.exp())
        history["mu"].append(mu.item())
        history["var"].append(log_var.exp().item())
        history["nll"].append(nll.item())
        if step == steps:
            break
        grad_mu, grad_log_var = torch.autograd.grad(nll, (mu, log_var))
        with torch.no_grad():
            mu -= lr * grad_mu
            log_var -= lr * grad_log_var
    return history


# ---------------------------------------------------------------------------------------------
# 2. A 1-D density explorer
# ---------------------------------------------------------------------------------------------


def mixture_log_prob(x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
    """log p(x) for the 1-D mixture sum_k w_k N(x; m_k, v_k), elementwise for ``x`` (N,)."""
    _check_1d("x", x)
    if not (weights.shape == means.shape == variances.shape) or weights.dim() != 1:
        raise ValueError(f"weights, means, variances must be vectors of one shape, got "
                         f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(variances.shape)}")
    components = gaussian_log_prob(x[:, None], means, variances)  # (N, K)
    return torch.logsumexp(components + torch.log(weights), dim=1)


def sample_mixture(n: int, weights, means, variances, seed: int = 0) -> torch.Tensor:
    """n draws (float64) from sum_k w_k N(m_k, v_k): pick a component, then draw from it."""
    g = torch.Generator().manual_seed(seed)
    weights, means, variances = (torch.as_tensor(a, dtype=torch.float64) for a in (weights, means, variances))
    k = torch.multinomial(weights, n, replacement=True, generator=g)
    return means[k] + variances[k].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)


def fit_gaussian_mixture_em(x: torch.Tensor, k: int, steps: int = 200, seed: int = 0):
    """Maximum-likelihood mixture of ``k`` Gaussians by expectation-maximisation (Dempster et al. 1977).

    E-step: responsibilities r_ik = p(component k | x_i); M-step: each component's weighted
    Gaussian MLE. Each step cannot lower the log-likelihood. Returns (weights, means, variances).
    """
    _check_1d("x", x)
    g = torch.Generator().manual_seed(seed)
    means = x[torch.randperm(len(x), generator=g)[:k]].clone()  # start at k data points
    variances = torch.full((k,), x.var().item(), dtype=x.dtype)
    weights = torch.full((k,), 1.0 / k, dtype=x.dtype)
    for _ in range(steps):
        # 1. E-step: posterior over components for every point, (N, K)
        r = torch.softmax(gaussian_log_prob(x[:, None], means, variances) + torch.log(weights), dim=1)
        # 2. M-step: weighted counts, means and (biased) variances
        n_k = r.sum(0)
        weights = n_k / len(x)
        means = (r * x[:, None]).sum(0) / n_k
        variances = (r * (x[:, None] - means).pow(2)).sum(0) / n_k + 1e-6
    return weights, means, variances


def kde_log_prob(x: torch.Tensor, data: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """log of the Gaussian kernel density estimate (1/M) sum_j N(x; data_j, bandwidth^2), for ``x`` (N,)."""
    _check_1d("x", x)
    _check_1d("data", data)
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}")
    components = gaussian_log_prob(x[:, None], data[None, :], bandwidth**2)  # (N, M)
    return torch.logsumexp(components, dim=1) - math.log(len(data))


def plot_densities(data: torch.Tensor, densities: dict, grid: torch.Tensor, ax=None, title: str | None = None):
    """A histogram of 1-D ``data`` with density curves ``{label: p(grid)}`` over it."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    ax.hist(data.cpu().numpy(), bins=40, density=True, color="0.85", label="data (histogram)")
    for label, values in densities.items():
        ax.plot(grid.cpu().numpy(), values.detach().cpu().numpy(), label=label)
    ax.set_xlabel("$x$")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------------------
# 3. A generative classifier: p(y | x) from p(x | y) p(y) by Bayes' rule
# ---------------------------------------------------------------------------------------------


@dataclass
class ClassConditionalGaussian:
    """p(y) = prior[y] and p(x | y) = N(x; mean[y], diag var[y]); fitted by maximum likelihood."""

    log_prior: torch.Tensor  # (C,)
    mean: torch.Tensor  # (C, D)
    var: torch.Tensor  # (C, D)

    def class_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x | y) for every class, shape (N, C): a sum of D univariate Gaussian log-densities."""
        if x.dim() != 2 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"x must have shape (N, {self.mean.shape[1]}), got {tuple(x.shape)}")
        return gaussian_log_prob(x[:, None, :], self.mean, self.var).sum(-1)  # (N, C)

    def log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x, y) = log p(x | y) + log p(y), shape (N, C)."""
        return self.class_log_likelihood(x) + self.log_prior

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log sum_y p(x | y) p(y), shape (N,): the model is also a density over x."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def posterior(self, x: torch.Tensor) -> torch.Tensor:
        """p(y | x) = p(x | y) p(y) / sum_y' p(x | y') p(y') (Bayes' rule), shape (N, C)."""
        return torch.softmax(self.log_joint(x), dim=1)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The Bayes decision argmax_y p(x | y) p(y), shape (N,)."""
        return self.log_joint(x).argmax(dim=1)


def fit_class_conditional_gaussian(x: torch.Tensor, y: torch.Tensor, n_classes: int, var_floor: float = 1e-2):
    """Per class the Gaussian MLE of every pixel and the class frequency as the prior.

    A pixel that never varies within a class (the digits' blank border) has MLE variance 0 and
    an infinite density; ``var_floor`` is added to every variance to keep the density finite.
    """
    _check_xy(x, y)
    counts = torch.bincount(y, minlength=n_classes).to(x.dtype)
    if (counts == 0).any():
        raise ValueError(f"every class needs at least one example; counts {counts.tolist()}")
    one_hot = F.one_hot(y, n_classes).to(x.dtype)  # (N, C)
    mean = one_hot.T @ x / counts[:, None]  # (C, D)
    var = one_hot.T @ x.pow(2) / counts[:, None] - mean.pow(2)
    return ClassConditionalGaussian(torch.log(counts / counts.sum()), mean, var.clamp_min(0) + var_floor)


def accuracy(predicted: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of ``predicted`` labels equal to ``y`` (same shape)."""
    if predicted.shape != y.shape:
        raise ValueError(f"predicted and y must have one shape, got {tuple(predicted.shape)} and {tuple(y.shape)}")
    return (predicted == y).float().mean().item()


# ---------------------------------------------------------------------------------------------
# 4. An idea that does not work: ascend a classifier's class score
# ---------------------------------------------------------------------------------------------


def train_digit_classifier(x: torch.Tensor, y: torch.Tensor, hidden: int = 128, steps: int = 500,
                           lr: float = 3e-3, seed: int = 0) -> torch.nn.Module:
    """A small MLP p(y | x) trained by full-batch Adam on the cross-entropy (maximum likelihood of y)."""
    _check_xy(x, y)
    torch.manual_seed(seed)
    model = mlp([x.shape[1], hidden, hidden, int(y.max()) + 1]).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def class_score_ascent(classifier: torch.nn.Module, target: int, data_dim: int = 64, steps: int = 200,
                       lr: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Gradient ascent on the logit of class ``target`` from a uniform random image in [0, 1]^D.

    Pixels are clipped to [0, 1] after every step. Returns the image (D,) and the classifier's
    confidence p(target | image) (the "fooling images" of Nguyen et al. 2015).
    """
    device = next(classifier.parameters()).device
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(data_dim, generator=g).to(device).requires_grad_(True)
    for _ in range(steps):
        score = classifier(image[None])[0, target]  # unnormalised log-probability of the class
        (grad,) = torch.autograd.grad(score, image)
        with torch.no_grad():
            image += lr * grad.sign()  # a sign step: the same move in every pixel, as in FGSM
            image.clamp_(0.0, 1.0)
    with torch.no_grad():
        confidence = torch.softmax(classifier(image[None]), dim=1)[0, target].item()
    return image.detach(), confidence
