"""gencore.foundations against independent references: closed forms, scipy.stats, scikit-learn,
brute-force Bayes' rule, and the chapter's hand-computed worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from gencore import foundations as fd

WORKED = torch.tensor([2.0, 3.0, 5.0], dtype=torch.float64)


def test_gaussian_mle_worked_example_exact():
    # by hand: mu = 10/3, var = ((2-10/3)^2 + (3-10/3)^2 + (5-10/3)^2) / 3 = (16 + 1 + 25) / 27 = 14/9
    mu, var = fd.gaussian_mle(WORKED)
    assert mu.item() == pytest.approx(10 / 3, abs=1e-14)
    assert var.item() == pytest.approx(14 / 9, abs=1e-14)


def test_gaussian_mle_matches_numpy_and_maximises(generator):
    x = 3 + 2 * torch.randn(500, generator=generator, dtype=torch.float64)
    mu, var = fd.gaussian_mle(x)
    assert mu.item() == pytest.approx(np.mean(x.numpy()), abs=1e-12)
    assert var.item() == pytest.approx(np.var(x.numpy(), ddof=0), abs=1e-12)  # the biased 1/N variance
    # scipy's own maximum-likelihood fit of a normal
    loc, scale = stats.norm.fit(x.numpy())
    assert mu.item() == pytest.approx(loc, abs=1e-9) and var.item() == pytest.approx(scale**2, rel=1e-9)
    best = fd.gaussian_nll(x, mu, var)
    for d_mu, d_var in [(0.05, 0), (-0.05, 0), (0, 0.1), (0, -0.1)]:
        assert fd.gaussian_nll(x, mu + d_mu, var + d_var) > best


def test_gaussian_nll_matches_scipy(generator):
    x = torch.randn(50, generator=generator, dtype=torch.float64)
    expected = -stats.norm.logpdf(x.numpy(), loc=0.7, scale=math.sqrt(2.5)).mean()
    assert fd.gaussian_nll(x, 0.7, 2.5).item() == pytest.approx(expected, abs=1e-12)


def test_gradient_descent_reaches_the_closed_form():
    history = fd.fit_gaussian_by_gradient_descent(WORKED, steps=300, lr=0.5)
    assert len(history["mu"]) == 301
    assert history["mu"][-1] == pytest.approx(10 / 3, abs=1e-8)
    assert history["var"][-1] == pytest.approx(14 / 9, abs=1e-8)
    assert history["nll"][-1] == pytest.approx(fd.gaussian_nll(WORKED, 10 / 3, 14 / 9).item(), abs=1e-12)


def test_mixture_and_kde_match_scipy_and_integrate_to_one():
    weights, means, variances = (torch.tensor(v, dtype=torch.float64) for v in ([0.3, 0.7], [-2.0, 1.0], [0.25, 1.0]))
    x = torch.linspace(-4, 4, 9, dtype=torch.float64)
    expected = np.log(0.3 * stats.norm.pdf(x.numpy(), -2, 0.5) + 0.7 * stats.norm.pdf(x.numpy(), 1, 1))
    np.testing.assert_allclose(fd.mixture_log_prob(x, weights, means, variances).numpy(), expected, atol=1e-12)
    data = fd.sample_mixture(200, weights, means, variances, seed=1)
    kde = lambda t: fd.kde_log_prob(torch.tensor([t], dtype=torch.float64), data, 0.3).exp().item()  # noqa: E731
    brute = np.mean([stats.norm.pdf(0.5, d, 0.3) for d in data.numpy()])
    assert kde(0.5) == pytest.approx(brute, rel=1e-10)
    assert integrate.quad(kde, -10, 10, limit=200)[0] == pytest.approx(1.0, abs=1e-6)


def test_sample_mixture_moments():
    x = fd.sample_mixture(200_000, [0.3, 0.7], [-2.0, 1.0], [0.25, 1.0], seed=0)
    mean = 0.3 * -2 + 0.7 * 1  # 0.1
    var = 0.3 * (0.25 + 4) + 0.7 * (1 + 1) - mean**2  # E[x^2] - E[x]^2
    assert abs(x.mean().item() - mean) < 5 * math.sqrt(var / len(x))
    assert x.var().item() == pytest.approx(var, rel=0.02)


def test_em_matches_scikit_learn():
    from sklearn.mixture import GaussianMixture

    x = fd.sample_mixture(2000, [0.4, 0.6], [-2.0, 2.0], [0.5, 1.0], seed=3)
    weights, means, variances = fd.fit_gaussian_mixture_em(x, 2, steps=300)
    reference = GaussianMixture(2, tol=1e-10, max_iter=1000, reg_covar=1e-6, random_state=0).fit(x.numpy()[:, None])
    order = torch.argsort(means)
    ref_order = np.argsort(reference.means_[:, 0])
    np.testing.assert_allclose(means[order].numpy(), reference.means_[ref_order, 0], atol=1e-4)
    np.testing.assert_allclose(weights[order].numpy(), reference.weights_[ref_order], atol=1e-4)
    np.testing.assert_allclose(variances[order].numpy(), reference.covariances_[ref_order, 0, 0], atol=1e-4)
    ll = fd.mixture_log_prob(x, weights, means, variances).mean().item()
    assert ll == pytest.approx(reference.score(x.numpy()[:, None]), abs=1e-6)


def test_generative_classifier_is_bayes_rule_by_hand():
    # two classes in 1-D, three and one examples: prior (3/4, 1/4); class 0 ~ N(1, 2/3 + floor), class 1 ~ N(4, floor)
    x = torch.tensor([[0.0], [1.0], [2.0], [4.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    model = fd.fit_class_conditional_gaussian(x, y, 2, var_floor=0.5)
    query = torch.tensor([[2.5]], dtype=torch.float64)
    joint = [0.75 * stats.norm.pdf(2.5, 1.0, math.sqrt(2 / 3 + 0.5)), 0.25 * stats.norm.pdf(2.5, 4.0, math.sqrt(0.5))]
    expected = np.array(joint) / sum(joint)
    posterior = model.posterior(query)
    np.testing.assert_allclose(posterior.numpy()[0], expected, atol=1e-12)
    assert model.log_prob(query).item() == pytest.approx(math.log(sum(joint)), abs=1e-12)
    assert model.predict(query).item() == int(np.argmax(expected))


def test_generative_classifier_on_digits_matches_scikit_learn():
    from sklearn.naive_bayes import GaussianNB

    from gencore.data import load_digits

    train, test = load_digits("train", device="cpu"), load_digits("test", device="cpu")
    x, y = train.x.double(), train.y
    model = fd.fit_class_conditional_gaussian(x, y, 10, var_floor=1e-2)
    posterior = model.posterior(test.x.double())
    torch.testing.assert_close(posterior.sum(1), torch.ones(len(test), dtype=torch.float64))
    # GaussianNB adds var_smoothing * (largest pixel variance) to every variance: match that floor
    reference = GaussianNB(var_smoothing=1e-2 / x.var(0, unbiased=False).max().item()).fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(posterior.numpy(), reference.predict_proba(test.x.double().numpy()), atol=1e-6)
    assert fd.accuracy(model.predict(test.x.double()), test.y) > 0.85


def test_class_score_ascent_fools_a_classifier():
    torch.manual_seed(0)
    classifier = torch.nn.Linear(64, 10)
    image, confidence = fd.class_score_ascent(classifier, target=3, steps=50, lr=0.05)
    assert image.shape == (64,) and image.min() >= 0 and image.max() <= 1
    probs = torch.softmax(classifier(image[None]), 1)[0]
    assert confidence == pytest.approx(probs[3].item()) and probs.argmax().item() == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda: fd.gaussian_mle(torch.tensor([[1.0, 2.0]])),  # 2-D
        lambda: fd.gaussian_mle(torch.tensor([1, 2, 3])),  # integer dtype
        lambda: fd.gaussian_mle(torch.tensor([])),  # empty
        lambda: fd.gaussian_nll(torch.tensor([1.0]), 0.0, -1.0),  # negative variance
        lambda: fd.fit_gaussian_by_gradient_descent(WORKED, steps=0),
        lambda: fd.kde_log_prob(WORKED, WORKED, bandwidth=0.0),
        lambda: fd.mixture_log_prob(WORKED, torch.ones(2), torch.ones(3), torch.ones(2)),
        lambda: fd.fit_class_conditional_gaussian(torch.zeros(4, 2), torch.tensor([0.0, 1.0, 0.0, 1.0]), 2),  # float labels
        lambda: fd.fit_class_conditional_gaussian(torch.zeros(4, 2), torch.tensor([0, 0, 0, 0]), 2),  # an empty class
        lambda: fd.accuracy(torch.zeros(3), torch.zeros(4)),
    ],
)
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()
