"""Sample-quality measures shared by the units, so that models of different families are compared
on the same scale.

- 2-D toys: the sliced Wasserstein-1 distance and the (unbiased) kernel MMD between samples and
  data, and the mode coverage of the eight-Gaussians ring.
- 8x8 digits: a Fréchet distance between feature statistics (the idea of the FID of Heusel et
  al. 2017), where the features come from a small digits classifier trained here, on the
  training split, in a few seconds. Its numbers are comparable with each other, not with
  published FIDs (those use Inception features of 299x299 images).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gencore import data as datasets

# ---------------------------------------------------------------------------------------------
# 2-D samples
# ---------------------------------------------------------------------------------------------


def _points(name: str, x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must be a (n, d) batch of at least 2 points, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x.detach().double().cpu()


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _points("x", x), _points("y", y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    return x, y


def _quantiles(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The empirical quantile function of each column of ``values`` (n, k) at ``levels`` (m,)."""
    ordered = values.sort(dim=0).values
    index = (levels * values.shape[0]).floor().long().clamp_max(values.shape[0] - 1)
    return ordered[index]


def sliced_wasserstein(x, y, n_projections: int = 256, seed: int = 0) -> float:
    """The sliced Wasserstein-1 distance between the empirical distributions of ``x`` and ``y``.

    SW_1(P, Q) = E_theta[ W_1(theta . P, theta . Q) ], theta uniform on the unit sphere: the
    average, over random directions, of the 1-D earth mover's distance between the projected
    samples (Rabin et al. 2011; Bonneel et al. 2015). The 1-D distance is the integral of the gap
    between the two quantile functions, exact for samples of any sizes. The directions are drawn
    from ``seed``, so two calls with the same seed use the same directions.
    """
    x, y = _pair(x, y)
    if n_projections < 1:
        raise ValueError(f"n_projections must be at least 1, got {n_projections}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = x @ theta, y @ theta  # (n, k), (m, k)
    # the quantile functions are step functions with jumps at multiples of 1/n and 1/m:
    # integrate |F_x^-1 - F_y^-1| exactly over the merged breakpoints
    levels = torch.cat([torch.arange(x.shape[0] + 1) / x.shape[0], torch.arange(y.shape[0] + 1) / y.shape[0]]).double()
    levels = torch.unique(levels)
    widths, middles = levels[1:] - levels[:-1], (levels[1:] + levels[:-1]) / 2
    gap = (_quantiles(px, middles) - _quantiles(py, middles)).abs()  # (m, k)
    return float((widths[:, None] * gap).sum(0).mean())


def mmd_rbf(x, y, bandwidths=(0.05, 0.2, 0.5, 1.0, 2.0)) -> float:
    """The unbiased estimate of the squared maximum mean discrepancy (Gretton et al. 2012).

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y), with k the sum of Gaussian kernels
    exp(-|a - b|^2 / (2 h^2)) over the ``bandwidths`` h; the within-sample means leave out the
    diagonal, so the estimate is unbiased and can be slightly negative when P = Q.
    """
    x, y = _pair(x, y)
    if not bandwidths or any(h <= 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be positive numbers, got {bandwidths!r}")

    def kernel(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    n, m = x.shape[0], y.shape[0]
    kxx, kyy = kernel(x, x), kernel(y, y)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within_x + within_y - 2 * kernel(x, y).mean())


def mode_coverage(samples, centers=None, radius: float = 0.3, min_fraction: float = 0.25) -> dict:
    """How many modes of a mixture the samples cover, and how many samples land near any mode.

    Each sample is assigned to its nearest centre (default: the eight-Gaussians ring of
    :func:`gencore.data.eight_gaussian_centers`) and counts for it if it lies within ``radius``
    (default 0.3: three standard deviations of that toy). A mode is covered when it holds at
    least ``min_fraction`` of its fair share (the number of samples divided by the number of
    centres): a quarter by default, so that a handful of stray points does not count as coverage.

    Returns ``modes_covered`` (int), ``high_quality`` (the fraction of samples within ``radius``
    of some centre) and ``counts`` (samples near each centre, a list of one int per centre).
    """
    samples = _points("samples", samples)
    centers = _points("centers", datasets.eight_gaussian_centers() if centers is None else centers)
    if samples.shape[1] != centers.shape[1]:
        raise ValueError(f"samples and centers must have the same dimension, got {samples.shape[1]} and {centers.shape[1]}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    distance, nearest = torch.cdist(samples, centers).min(dim=1)
    near = distance <= radius
    counts = torch.bincount(nearest[near], minlength=centers.shape[0])
    fair_share = samples.shape[0] / centers.shape[0]
    return {
        "modes_covered": int((counts >= min_fraction * fair_share).sum()),
        "high_quality": float(near.double().mean()),
        "counts": counts.tolist(),
    }


# ---------------------------------------------------------------------------------------------
# Fréchet distance, and a feature space for 8x8 digits
# ---------------------------------------------------------------------------------------------


def gaussian_frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """The squared 2-Wasserstein (Fréchet) distance between N(mu1, cov1) and N(mu2, cov2):

    |mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^{1/2} cov2 cov1^{1/2})^{1/2})   (Dowson & Landau 1982).

    The matrix square roots are taken by symmetric eigendecompositions in float64, with the
    (round-off) negative eigenvalues of a covariance clipped to zero.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, dtype=np.float64)), np.atleast_2d(np.asarray(cov2, dtype=np.float64))
    if mu1.shape != mu2.shape or mu1.ndim != 1 or cov1.shape != (mu1.size, mu1.size) or cov2.shape != cov1.shape:
        raise ValueError(f"expected means (d,) and covariances (d, d), got {mu1.shape}, {cov1.shape}, {mu2.shape}, {cov2.shape}")

    def sqrt_psd(matrix):
        values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
        return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T

    root1 = sqrt_psd(cov1)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root1 @ cov2 @ root1), 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross)


def frechet_distance(features_a, features_b) -> float:
    """The Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets."""
    a, b = _pair(features_a, features_b)
    a, b = a.numpy(), b.numpy()
    return gaussian_frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


FEATURE_DIM = 32


class DigitsClassifier(nn.Module):
    """An MLP 64 -> 128 -> 32 -> 10; ``features`` is the 32-dimensional layer before the logits."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, FEATURE_DIM), nn.SiLU())
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@lru_cache(maxsize=1)
def digits_classifier(steps: int = 300, seed: int = 0) -> DigitsClassifier:
    """The feature network of :func:`digits_fid`: trained on the training split of the digits by
    full-batch Adam with weight decay, on the CPU with a fixed seed, so that every machine gets
    the same network up to round-off (a few seconds; cached for the process). It is returned
    in float64, in which the features are computed."""
    train = datasets.load_digits("train", device="cpu")
    x, y = train.x, train.y
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsClassifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.double().eval().requires_grad_(False)


def _digit_images(name: str, x) -> torch.Tensor:
    x = torch.as_tensor(x).detach().cpu().double()
    if x.ndim == 4 and x.shape[1:] == (1, 8, 8):
        x = x.reshape(x.shape[0], 64)
    if x.ndim != 2 or x.shape[1] != 64 or x.shape[0] < 2:
        raise ValueError(f"{name} must be 8x8 digits as (N, 64) or (N, 1, 8, 8) with N >= 2, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.min() < -1e-3 or x.max() > 1 + 1e-3:
        raise ValueError(f"{name} must have pixels in [0, 1] (got [{x.min():.3g}, {x.max():.3g}]): map logits through a sigmoid")
    return x


def digit_features(x) -> torch.Tensor:
    """The classifier's 32-dimensional features of digits (N, 64) or (N, 1, 8, 8) in [0, 1]."""
    return digits_classifier().features(_digit_images("x", x))


def digits_fid(samples, reference=None) -> float:
    """A Fréchet distance for 8x8 digits: between the classifier features of ``samples`` and of
    ``reference`` (by default the held-out test digits, ``gencore.data.load_digits("test")``).

    Like every FID it is biased upwards at small sample sizes: compare models with the same
    number of samples (the chapters use 1,000), and read it next to the floor that real digits
    reach, ``digits_fid(load_digits("train").x[:1000])``.
    """
    if reference is None:
        reference = datasets.load_digits("test", device="cpu").x
    return frechet_distance(digit_features(samples), digit_features(reference))


def digits_classifier_accuracy() -> float:
    """The feature network's accuracy on the test digits (a check that its features mean something)."""
    test = datasets.load_digits("test", device="cpu")
    predicted = digits_classifier()(test.x.double()).argmax(dim=1)
    return float((predicted == test.y).double().mean())

