"""gencore.metrics against independent references: scipy, closed forms, brute-force loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from gencore import data, metrics


def test_eight_gaussian_centers_match_the_sampler():
    x = data.eight_gaussians(4000, std=0.01, device="cpu")
    nearest = torch.cdist(x, data.eight_gaussian_centers()).min(dim=1).values
    assert nearest.max() < 0.06
    assert torch.allclose(data.eight_gaussian_centers().norm(dim=1), torch.full((8,), 2.0))


def test_sliced_wasserstein_equals_scipy_on_each_projection():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 2, generator=g), torch.rand(170, 2, generator=g) * 3  # unequal sizes
    # the same directions as the metric draws, projected, each distance by scipy
    theta = torch.randn(2, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    expected = np.mean([scipy.stats.wasserstein_distance((x.double() @ t).numpy(), (y.double() @ t).numpy()) for t in theta.T])
    assert metrics.sliced_wasserstein(x, y, n_projections=16, seed=7) == pytest.approx(expected, rel=1e-7)


def test_sliced_wasserstein_of_a_shift_is_its_length_times_two_over_pi():
    # translating a distribution by s moves every projection by <s, theta>: SW_1 = |s| E|cos| = 2|s|/pi
    x = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    shift = torch.tensor([3.0, 4.0])
    got = metrics.sliced_wasserstein(x, x + shift, n_projections=20_000)
    assert got == pytest.approx(5.0 * 2 / math.pi, rel=0.02)  # Monte Carlo over directions: ~0.5% s.e.
    assert metrics.sliced_wasserstein(x, x.flip(0)) == pytest.approx(0.0, abs=1e-12)


def test_mmd_matches_a_brute_force_double_loop():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(12, 2, generator=g).double(), torch.randn(9, 2, generator=g).double() + 0.5
    hs = (0.3, 1.0)

    def k(a, b):
        return sum(math.exp(-float(((a - b) ** 2).sum()) / (2 * h * h)) for h in hs)

    xx = sum(k(x[i], x[j]) for i in range(12) for j in range(12) if i != j) / (12 * 11)
    yy = sum(k(y[i], y[j]) for i in range(9) for j in range(9) if i != j) / (9 * 8)
    xy = sum(k(a, b) for a in x for b in y) / (12 * 9)
    assert metrics.mmd_rbf(x, y, bandwidths=hs) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_shift():
    a, b = data.two_moons(800, seed=1, device="cpu"), data.two_moons(800, seed=2, device="cpu")
    same, shifted = metrics.mmd_rbf(a, b), metrics.mmd_rbf(a, b + 0.5)
    assert abs(same) < 0.01 < shifted


def test_mode_coverage_counts_modes_and_quality():
    centers = data.eight_gaussian_centers()
    full = data.eight_gaussians(4000, device="cpu")
    result = metrics.mode_coverage(full)
    assert result["modes_covered"] == 8 and result["high_quality"] > 0.95 and sum(result["counts"]) <= 4000
    # samples from three modes only, plus uniform junk: three modes covered, quality = their share
    three = centers[torch.arange(3000) % 3] + 0.05 * torch.randn(3000, 2, generator=torch.Generator().manual_seed(0))
    junk = torch.full((1000, 2), 0.0)  # the origin is 2 away from every centre
    result = metrics.mode_coverage(torch.cat([three, junk]))
    assert result["modes_covered"] == 3
    assert result["high_quality"] == pytest.approx(0.75)
    assert result["counts"][:3] == [1000, 1000, 1000] and result["counts"][3:] == [0] * 5


def test_gaussian_frechet_distance_against_scipy_sqrtm_and_1d_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    cross = scipy.linalg.sqrtm(cov1 @ cov2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * cross)
    assert metrics.gaussian_frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-8)
    # one dimension: W2^2 = (m1 - m2)^2 + (s1 - s2)^2
    assert metrics.gaussian_frechet_distance([1.0], [[4.0]], [-1.0], [[0.25]]) == pytest.approx(4 + 1.5**2)


def test_frechet_distance_of_samples_converges_to_the_gaussian_value():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20_000, 3, generator=g)
    y = torch.randn(20_000, 3, generator=g) * 2 + 1
    # N(0, I) vs N(1, 4I) in 3-D: 3 * 1^2 + 3 * (2 - 1)^2 = 6
    assert metrics.frechet_distance(x, y) == pytest.approx(6.0, rel=0.03)


def test_digits_classifier_is_accurate_and_the_fid_ranks_sensibly():
    assert metrics.digits_classifier_accuracy() > 0.9
    train = data.load_digits("train", device="cpu").x
    real = metrics.digits_fid(train[:1000])
    g = torch.Generator().manual_seed(0)
    blurred = metrics.digits_fid((train[:1000] * 0.5 + 0.5 * train[:1000].mean(0)).clamp(0, 1))
    noise = metrics.digits_fid(torch.rand(1000, 64, generator=g))
    assert 0 <= real < blurred < noise
    images = train[:10].reshape(10, 1, 8, 8)
    assert torch.allclose(metrics.digit_features(images), metrics.digit_features(train[:10]))


def test_digits_fid_defaults_to_the_test_split():
    train, test = data.load_digits("train", device="cpu").x, data.load_digits("test", device="cpu").x
    assert len(test) == round(0.2 * 1797) == 359  # the docstring's "held-out test digits"
    assert metrics.digits_fid(train[:500]) == metrics.digits_fid(train[:500], reference=test)
    assert metrics.digits_fid(train[:500]) != metrics.digits_fid(train[:500], reference=train[500:1000])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: metrics.sliced_wasserstein(torch.zeros(5, 2), torch.zeros(5, 3)), "same dimension"),
        (lambda: metrics.sliced_wasserstein(torch.zeros(5), torch.zeros(5, 2)), r"\(n, d\)"),
        (lambda: metrics.mmd_rbf(torch.zeros(5, 2), torch.zeros(5, 2), bandwidths=(0.0,)), "positive"),
        (lambda: metrics.mode_coverage(torch.full((4, 2), float("nan"))), "NaN"),
        (lambda: metrics.digits_fid(torch.zeros(10, 63)), "8x8"),
        (lambda: metrics.digits_fid(torch.full((10, 64), 3.0)), r"\[0, 1\]"),
        (lambda: metrics.gaussian_frechet_distance([0.0, 1.0], np.eye(3), [0.0, 1.0], np.eye(3)), "covariances"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()
