"""gencore.vae's math against independent references: torch.distributions, autograd,
Monte Carlo with stated tolerances, and the chapter's hand-computed worked example."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Bernoulli, MultivariateNormal, Normal, kl_divergence

from gencore import vae


def test_gaussian_kl_worked_example():
    # mu = 2, sigma = 0.5: KL = -1/2 (1 + log 0.25 - 4 - 0.25) = 2.3181... (by hand)
    kl = vae.gaussian_kl(torch.tensor([2.0]), torch.tensor([math.log(0.25)]))
    assert kl.shape == ()
    assert kl.item() == pytest.approx(-0.5 * (1 + math.log(0.25) - 4 - 0.25), abs=1e-6)
    assert round(kl.item(), 3) == 2.318


def test_gaussian_kl_matches_torch_distributions(generator):
    mu = 2 * torch.randn(7, 5, 3, generator=generator, dtype=torch.float64)
    logvar = torch.randn(7, 5, 3, generator=generator, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    got = vae.gaussian_kl(mu, logvar)
    assert got.shape == (7, 5)
    torch.testing.assert_close(got, expected)


def test_gaussian_kl_full_matches_torch_distributions(generator):
    k = 4
    a = torch.randn(3, k, k, generator=generator, dtype=torch.float64)
    cov = a @ a.transpose(-1, -2) + 0.5 * torch.eye(k, dtype=torch.float64)
    mu = torch.randn(3, k, generator=generator, dtype=torch.float64)
    prior = MultivariateNormal(torch.zeros(k, dtype=torch.float64), torch.eye(k, dtype=torch.float64))
    expected = kl_divergence(MultivariateNormal(mu, cov), prior)
    torch.testing.assert_close(vae.gaussian_kl_full(mu, cov), expected)
    # with a diagonal covariance it agrees with the diagonal formula
    logvar = torch.randn(3, k, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(vae.gaussian_kl_full(mu, torch.diag_embed(logvar.exp())), vae.gaussian_kl(mu, logvar))


def test_gaussian_kl_monte_carlo(generator):
    # KL = E_q[log q(z) - log p(z)]; 400k samples, tolerance 5 standard errors
    mu, logvar = torch.tensor([0.7, -1.2]), torch.tensor([0.3, -0.8])
    q = Normal(mu, (0.5 * logvar).exp())
    z = q.sample((400_000,))
    terms = (q.log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(terms.mean() - vae.gaussian_kl(mu, logvar)) < 5 * se


def test_reparameterize_moments_and_gradients():
    torch.manual_seed(0)
    mu = torch.tensor([1.0, -2.0, 0.5], requires_grad=True)
    logvar = torch.tensor([math.log(4.0), math.log(0.25), 0.0], requires_grad=True)
    n = 200_000
    z = vae.reparameterize(mu.expand(n, 3), logvar.expand(n, 3))
    assert z.shape == (n, 3)
    sigma = (0.5 * logvar).exp().detach()
    # the sample mean is within 5 standard errors; the variance within 2% (SE of a variance ~ 0.3% here)
    assert ((z.mean(0) - mu).abs() < 5 * sigma / math.sqrt(n)).all()
    torch.testing.assert_close(z.var(0).detach(), sigma**2, rtol=0.02, atol=0)
    # autograd against the analytic derivatives dz/dmu = 1, dz/dlogvar = eps * sigma / 2
    eps = ((z - mu) / (0.5 * logvar).exp()).detach()
    weights = torch.randn(n, 3)
    (z * weights).sum().backward()
    torch.testing.assert_close(mu.grad, weights.sum(0))
    torch.testing.assert_close(logvar.grad, (weights * eps * sigma / 2).sum(0), rtol=1e-4, atol=1e-3)


def test_reparameterize_gradient_of_expectation_matches_closed_form():
    # d/dmu E[z^2] = 2 mu and d/dlogvar E[z^2] = sigma^2 for z ~ N(mu, sigma^2)
    torch.manual_seed(1)
    mu = torch.tensor([0.8], requires_grad=True)
    logvar = torch.tensor([math.log(1.5)], requires_grad=True)
    n = 400_000
    vae.reparameterize(mu.expand(n, 1), logvar.expand(n, 1)).pow(2).mean().backward()
    assert mu.grad.item() == pytest.approx(1.6, abs=0.02)
    assert logvar.grad.item() == pytest.approx(1.5, abs=0.03)


def test_bernoulli_nll_matches_torch_distributions(generator):
    x = torch.bernoulli(torch.full((6, 64), 0.3), generator=generator)
    logits = 4 * torch.randn(6, 64, generator=generator)
    torch.testing.assert_close(vae.bernoulli_nll(x, logits), -Bernoulli(logits=logits).log_prob(x).sum(-1))


def test_bernoulli_nll_is_normalised_on_binary_images_but_not_on_grey_levels(generator):
    # brute force over all 2^6 binary images of 6 pixels: the probabilities sum to 1
    d = 6
    images = torch.cartesian_prod(*[torch.tensor([0.0, 1.0], dtype=torch.float64)] * d)  # (64, d)
    logits = 3 * torch.randn(1, d, generator=generator, dtype=torch.float64)
    total = torch.exp(-vae.bernoulli_nll(images, logits.expand_as(images))).sum()
    assert total.item() == pytest.approx(1.0, abs=1e-12)
    # one pixel, grey levels: the trapezoidal integral over [0, 1] is (2 lambda - 1) / logit <= 1/2
    x = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]  # (G, 1)
    for logit in (-3.0, 0.7, 5.0):
        density = torch.exp(-vae.bernoulli_nll(x, torch.full_like(x, logit)))
        integral = torch.trapezoid(density, x[:, 0]).item()
        lam = 1 / (1 + math.exp(-logit))
        assert integral == pytest.approx((2 * lam - 1) / logit, abs=1e-8)
        assert integral <= 0.5


def test_gaussian_nll_matches_torch_distributions(generator):
    x, mean = torch.rand(5, 64, generator=generator), torch.rand(5, 64, generator=generator)
    expected = -Normal(mean, 0.2).log_prob(x).sum(-1)
    torch.testing.assert_close(vae.gaussian_nll(x, mean, sigma=0.2), expected)


def test_negative_elbo_is_nll_plus_beta_kl(generator):
    x = torch.rand(4, 64, generator=generator)
    logits, mu, logvar = (torch.randn(4, d, generator=generator) for d in (64, 3, 3))
    for beta in (0.0, 1.0, 4.0):
        expected = -Bernoulli(logits=logits, validate_args=False).log_prob(x).sum(-1) + beta * kl_divergence(
            Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
        ).sum(-1)
        torch.testing.assert_close(vae.negative_elbo(x, logits, mu, logvar, beta), expected)


def test_elbo_and_importance_estimate_against_exact_log_likelihood():
    # With a 2-D latent, log p(x) = log \int p(x|z) p(z) dz is computed by brute force on a grid.
    # The ELBO must lie below it and the importance-sampled estimate (k = 20000) must reach it.
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig(latent_dim=2, hidden=16))
    with torch.no_grad():
        model.decoder[-1].weight.mul_(8)  # a sharper decoder, so the posterior is far from q
    x = torch.bernoulli(torch.full((4, 64), 0.4))
    grid = torch.linspace(-7, 7, 281)
    cell = (grid[1] - grid[0]).item()
    z = torch.cartesian_prod(grid, grid)  # (G, 2)
    with torch.no_grad():
        logits = model.decode(z)
        log_px_z = torch.stack([-vae.bernoulli_nll(xi.expand(len(z), 64), logits) for xi in x])  # (4, G)
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
        exact = torch.logsumexp(log_px_z + log_pz, dim=1) + 2 * math.log(cell)
        mu, logvar = model.encode(x)
        z_q = vae.reparameterize(mu.expand(500, 4, 2), logvar.expand(500, 4, 2))  # 500 draws per x
        elbo = -vae.negative_elbo(x.repeat(500, 1), model.decode(z_q.reshape(-1, 2)), mu.repeat(500, 1), logvar.repeat(500, 1))
        elbo = elbo.view(500, 4).mean(0)
    iwae = vae.importance_log_likelihood(model, x, k=20_000)
    assert (elbo < exact - 0.5).all(), (elbo, exact)
    torch.testing.assert_close(iwae, exact, atol=0.1, rtol=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda: vae.gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 4)),
        lambda: vae.gaussian_kl(torch.zeros(3, 2), torch.zeros(2)),  # would broadcast silently
        lambda: vae.gaussian_kl(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long)),
        lambda: vae.gaussian_kl(torch.tensor(0.0), torch.tensor(0.0)),
        lambda: vae.reparameterize(torch.zeros(2, 3), torch.zeros(3, 2)),
        lambda: vae.bernoulli_nll(torch.zeros(2, 64), torch.zeros(2, 32)),
        lambda: vae.gaussian_nll(torch.zeros(2, 4), torch.zeros(2, 4), sigma=0.0),
        lambda: vae.negative_elbo(torch.zeros(2, 64), torch.zeros(2, 64), torch.zeros(3, 2), torch.zeros(3, 2)),
        lambda: vae.gaussian_kl_full(torch.zeros(3), torch.eye(2)),
    ],
)
def test_bad_input_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_value_error_names_expected_and_received():
    with pytest.raises(ValueError, match=r"same shape.*\(3, 2\).*\(3, 4\)"):
        vae.gaussian_kl(torch.zeros(3, 2), torch.zeros(3, 4))
