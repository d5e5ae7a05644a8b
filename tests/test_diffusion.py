"""gencore.diffusion against independent references: the simulated forward chain (Monte Carlo
with stated tolerances), Bayes' rule on jointly Gaussian variables, autograd of a Gaussian
log-density (the score), explicit loops, and samplers driven by the exact noise predictor."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import MultivariateNormal

from gencore import diffusion as d

F64 = dict(dtype=torch.float64)


def schedule64(T=1000):  # noqa: N803
    return d.linear_schedule(T, dtype=torch.float64)


# ---------------------------------------------------------------------------- schedules


def test_alpha_bar_is_the_product_of_alphas():
    betas = torch.linspace(1e-4, 0.02, 1000, **F64)
    product, expected = 1.0, []
    for beta in betas.tolist():  # an explicit loop, no cumprod
        product *= 1.0 - beta
        expected.append(product)
    torch.testing.assert_close(d.alpha_bar_from_betas(betas), torch.tensor(expected, **F64))
    # Ho et al.'s linear schedule keeps almost no signal at the end: abar_T = exp(sum log(1 - beta))
    assert d.linear_schedule(1000).alpha_bar[-1].item() == pytest.approx(math.exp(sum(math.log(1 - b) for b in betas.tolist())), rel=1e-4)


def test_cosine_schedule_follows_its_formula():
    T, s = 200, 0.008  # noqa: N806
    schedule = d.cosine_schedule(T, s=s, dtype=torch.float64)
    f = [math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2 for k in range(T + 1)]
    expected = torch.tensor([f[k] / f[0] for k in range(1, T + 1)], **F64)
    # equal where no beta was clipped at 0.999 (only the very last step can be)
    torch.testing.assert_close(schedule.alpha_bar[:-1], expected[:-1], rtol=1e-10, atol=1e-12)
    assert (schedule.betas <= 0.999).all() and (schedule.betas > 0).all()
    torch.testing.assert_close(schedule.alphas, 1 - schedule.betas)


def test_bad_schedules_and_steps_raise():
    with pytest.raises(ValueError, match="beta"):
        d.NoiseSchedule.from_betas(torch.tensor([0.1, 0.0, 0.2]))
    with pytest.raises(ValueError, match="beta"):
        d.NoiseSchedule.from_betas(torch.tensor([0.1, 1.2]))
    with pytest.raises(ValueError, match="1-D"):
        d.alpha_bar_from_betas(torch.full((2, 3), 0.1))
    with pytest.raises(ValueError, match="T must"):
        d.linear_schedule(0)
    with pytest.raises(ValueError, match="steps"):
        d.ddim_timesteps(100, 101)


# ---------------------------------------------------------------------------- forward process


def test_q_sample_matches_the_simulated_chain(generator):
    """Run z_t = sqrt(1 - beta_t) z_{t-1} + sqrt(beta_t) eps_t step by step and compare moments."""
    schedule = d.linear_schedule(1000)
    n, x0 = 200_000, torch.tensor([1.5, -0.7])
    z = x0.expand(n, 2).clone()
    checked = {}
    for t in range(600):
        z = (1 - schedule.betas[t]).sqrt() * z + schedule.betas[t].sqrt() * torch.randn(n, 2, generator=generator)
        if t in (0, 99, 599):
            checked[t] = z.clone()
    for t, chain in checked.items():
        closed = d.q_sample(x0.expand(n, 2), torch.full((n,), t), torch.randn(n, 2, generator=generator), schedule.alpha_bar)
        abar = schedule.alpha_bar[t]
        var = 1 - abar
        # means within 5 standard errors of sqrt(abar) x0; variances within 2% (SE of a variance ~ 0.3%)
        for sample in (chain, closed):
            assert ((sample.mean(0) - abar.sqrt() * x0).abs() < 5 * (var / n).sqrt()).all(), t
            torch.testing.assert_close(sample.var(0), var.expand(2), rtol=0.02, atol=0)


def test_q_sample_per_example_steps_and_errors():
    schedule = d.linear_schedule(10)
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    t = torch.tensor([0, 5, 9])
    out = d.q_sample(x0, t, noise, schedule.alpha_bar)
    for i in range(3):  # one example at a time, by hand
        a = schedule.alpha_bar[t[i]].item()
        torch.testing.assert_close(out[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i])
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        d.q_sample(x0, torch.tensor([0, 5, 10]), noise, schedule.alpha_bar)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        d.q_sample(x0, torch.tensor([-1, 5, 9]), noise, schedule.alpha_bar)
    with pytest.raises(ValueError, match="same shape"):
        d.q_sample(x0, t, torch.randn(3, 5), schedule.alpha_bar)
    with pytest.raises(ValueError, match="one step per example"):
        d.q_sample(x0, torch.tensor([0, 5]), noise, schedule.alpha_bar)


def test_diffusion_loss_is_the_mean_squared_noise_error():
    schedule = d.linear_schedule(50)
    x0, noise, t = torch.randn(6, 3), torch.randn(6, 3), torch.randint(0, 50, (6,))

    def model(x_t, t):
        return 0.5 * x_t + t[:, None].float() / 50

    loss = d.diffusion_loss(model, x0, schedule.alpha_bar, t=t, noise=noise)
    total = 0.0
    for i in range(6):
        a = schedule.alpha_bar[t[i]].item()
        x_t = math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i]
        total += ((noise[i] - (0.5 * x_t + t[i].item() / 50)) ** 2).sum().item()
    assert loss.item() == pytest.approx(total / 18, rel=1e-5)
    # the perfect predictor (it knows the noise) has zero loss; random steps cover {0, ..., T-1}
    assert d.diffusion_loss(lambda x_t, t: noise, x0, schedule.alpha_bar, t=t, noise=noise).item() == 0
    seen = []
    torch.manual_seed(0)
    d.diffusion_loss(lambda x_t, t: seen.append(t) or x_t, torch.randn(5000, 1), schedule.alpha_bar)
    counts = torch.bincount(seen[0], minlength=50)
    assert len(counts) == 50 and counts.min() > 50  # every step drawn (expected 100 each)


# ---------------------------------------------------------------------------- the reverse step


def test_posterior_matches_bayes_rule_on_gaussians():
    """q(x_{t-1} | x_t, x_0) by conditioning the joint Gaussian of (x_{t-1}, x_t) given x_0."""
    schedule = schedule64()
    x0, x_t = torch.tensor([0.8], **F64), torch.tensor([-0.3], **F64)
    for t in (1, 10, 500, 999):
        abar_prev, alpha = schedule.alpha_bar[t - 1], schedule.alphas[t]
        # x_{t-1} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) e1 ; x_t = sqrt(alpha) x_{t-1} + sqrt(1 - alpha) e2
        mean = torch.stack([abar_prev.sqrt(), abar_prev.sqrt() * alpha.sqrt()]) * x0
        v = 1 - abar_prev
        cov = torch.stack([torch.stack([v, alpha.sqrt() * v]), torch.stack([alpha.sqrt() * v, alpha * v + 1 - alpha])])
        cond_mean = mean[0] + cov[0, 1] / cov[1, 1] * (x_t - mean[1])  # Schur complement
        cond_var = cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1]
        got_mean, got_var = d.posterior_mean_variance(x0, x_t, t, schedule)
        torch.testing.assert_close(got_mean, cond_mean, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(got_var, cond_var, rtol=1e-9, atol=1e-14)
    # at index 0 the data are known exactly: variance 0, mean x_0
    mean0, var0 = d.posterior_mean_variance(x0, x_t, 0, schedule)
    assert var0.item() == 0
    torch.testing.assert_close(mean0, x0)


def test_ddpm_step_with_the_true_noise_is_the_posterior(generator):
    schedule = schedule64()
    x0, eps = torch.randn(4, 3, generator=generator, **F64), torch.randn(4, 3, generator=generator, **F64)
    for t in (0, 1, 300, 999):
        x_t = d.q_sample(x0, torch.full((4,), t), eps, schedule.alpha_bar)
        mean, var = d.posterior_mean_variance(x0, x_t, t, schedule)
        z = torch.randn(4, 3, generator=generator, **F64)
        torch.testing.assert_close(d.ddpm_step(x_t, t, eps, schedule, torch.zeros_like(z)), mean)
        torch.testing.assert_close(d.ddpm_step(x_t, t, eps, schedule, z), mean + var.sqrt() * z)
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        d.ddpm_step(x_t, 1000, eps, schedule, z)
    with pytest.raises(ValueError, match="same shape"):
        d.ddpm_step(x_t, 5, eps[:, :2], schedule, z)


def test_ddim_step_special_cases(generator):
    schedule = schedule64()
    x0, eps = torch.randn(5, 2, generator=generator, **F64), torch.randn(5, 2, generator=generator, **F64)
    for t in (1, 40, 700):
        x_t = d.q_sample(x0, torch.full((5,), t), eps, schedule.alpha_bar)
        z = torch.randn(5, 2, generator=generator, **F64)
        # eta = 1 with consecutive steps is the DDPM step (Song et al. 2021, Sec. 4.1)
        torch.testing.assert_close(d.ddim_step(x_t, t, t - 1, eps, schedule.alpha_bar, eta=1.0, noise=z),
                                   d.ddpm_step(x_t, t, eps, schedule, z))
        # eta = 0 with the true noise keeps the same noise: x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps
        for s in (t - 1, t // 2, 0):
            expected = schedule.alpha_bar[s].sqrt() * x0 + (1 - schedule.alpha_bar[s]).sqrt() * eps
            torch.testing.assert_close(d.ddim_step(x_t, t, s, eps, schedule.alpha_bar), expected)
        torch.testing.assert_close(d.ddim_step(x_t, t, -1, eps, schedule.alpha_bar), x0)
    with pytest.raises(ValueError, match="t_prev"):
        d.ddim_step(x_t, 5, 5, eps, schedule.alpha_bar)
    with pytest.raises(ValueError, match="noise"):
        d.ddim_step(x_t, 5, 4, eps, schedule.alpha_bar, eta=0.5)


def test_ddim_timesteps():
    times = d.ddim_timesteps(1000, 50)
    assert len(times) == 50 and times[0] == 999 and times[-1] == 0
    assert all(a > b for a, b in zip(times, times[1:]))
    assert d.ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    assert d.ddim_timesteps(1000, 1) == [999] and d.ddim_timesteps(1000, 2) == [999, 0]


def test_one_step_ddim_jumps_from_pure_noise_to_the_posterior_mean():
    """One DDIM step from x_T with the exact predictor of Gaussian data returns E[x_0 | x_T], computed
    here by Gaussian conditioning on x_0 (not through the noise): m + sqrt(abar) Sigma C^{-1} (x_T - sqrt(abar) m)."""
    schedule = schedule64()
    x_T = torch.randn(6, 2, generator=torch.Generator().manual_seed(4), **F64)  # noqa: N806
    one_step = d.ddim_sample(d.gaussian_eps_model(MEAN, COV, schedule.alpha_bar), (6, 2), schedule, 1,
                             x_T=x_T, dtype=torch.float64, progress=False)
    a = schedule.alpha_bar[-1]
    C = a * COV + (1 - a) * torch.eye(2, **F64)  # noqa: N806 (covariance of x_T)
    posterior_mean = MEAN + (x_T - a.sqrt() * MEAN) @ torch.linalg.solve(C, a.sqrt() * COV)  # C, COV symmetric
    torch.testing.assert_close(one_step, posterior_mean)


# ---------------------------------------------------------------------------- Gaussian data: exact predictor


MEAN = torch.tensor([1.0, -0.5], **F64)
COV = torch.tensor([[0.36, 0.24], [0.24, 0.25]], **F64)


def test_gaussian_eps_model_is_the_scaled_score():
    """E[eps | x_t] = -sqrt(1 - abar) grad log p_t(x_t) (Tweedie), p_t by torch.distributions + autograd."""
    schedule = schedule64()
    eps_model = d.gaussian_eps_model(MEAN, COV, schedule.alpha_bar)
    x_t = torch.randn(7, 2, **F64).requires_grad_()
    for t in (0, 50, 400, 999):
        a = schedule.alpha_bar[t]
        p_t = MultivariateNormal(a.sqrt() * MEAN, a * COV + (1 - a) * torch.eye(2, **F64))
        (score,) = torch.autograd.grad(p_t.log_prob(x_t).sum(), x_t)
        torch.testing.assert_close(eps_model(x_t.detach(), t), -(1 - a).sqrt() * score)


def test_gaussian_eps_model_is_the_regression_of_noise_on_x_t(generator):
    """Monte Carlo: the least-squares linear predictor of eps from x_t (exact here) matches."""
    schedule = schedule64()
    t, n = 300, 400_000
    a = schedule.alpha_bar[t]
    x0 = MEAN + torch.randn(n, 2, generator=generator, **F64) @ torch.linalg.cholesky(COV).T
    eps = torch.randn(n, 2, generator=generator, **F64)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
    features = torch.cat([x_t, torch.ones(n, 1, **F64)], 1)
    coef = torch.linalg.lstsq(features, eps).solution  # (3, 2)
    probe = torch.tensor([[0.3, -0.2], [1.5, 0.4]], **F64)
    fitted = torch.cat([probe, torch.ones(2, 1, **F64)], 1) @ coef
    torch.testing.assert_close(d.gaussian_eps_model(MEAN, COV, schedule.alpha_bar)(probe, t), fitted, atol=0.01, rtol=0)


def test_samplers_with_the_exact_predictor_reproduce_gaussian_data():
    schedule = d.linear_schedule(1000)
    eps_model = d.gaussian_eps_model(MEAN.float(), COV.float(), schedule.alpha_bar)
    n = 20_000
    se = (COV.diagonal().float() / n).sqrt()
    samples = {
        "ddpm": d.ddpm_sample(eps_model, (n, 2), schedule, generator=torch.Generator().manual_seed(0), progress=False),
        "ddim": d.ddim_sample(eps_model, (n, 2), schedule, 1000, generator=torch.Generator().manual_seed(0), progress=False),
        "ddim_eta1": d.ddim_sample(eps_model, (n, 2), schedule, 1000, eta=1.0, generator=torch.Generator().manual_seed(0), progress=False),
    }
    for name, x in samples.items():
        assert ((x.mean(0) - MEAN.float()).abs() < 5 * se).all(), name
        # covariance entries within 0.02 (their sampling SE is about 0.003; discretisation adds ~0.005)
        assert (torch.cov(x.T) - COV.float()).abs().max() < 0.02, (name, torch.cov(x.T))


def test_ddim_with_the_exact_predictor_is_deterministic():
    schedule = d.linear_schedule(1000)
    eps_model = d.gaussian_eps_model(MEAN.float(), COV.float(), schedule.alpha_bar)
    x_T = torch.randn(100, 2)  # noqa: N806
    a = d.ddim_sample(eps_model, (100, 2), schedule, 50, x_T=x_T, progress=False)
    b = d.ddim_sample(eps_model, (100, 2), schedule, 50, x_T=x_T.clone(), generator=torch.Generator().manual_seed(9), progress=False)
    assert torch.equal(a, b)
    c = d.ddpm_sample(eps_model, (100, 2), schedule, x_T=x_T, generator=torch.Generator().manual_seed(1), progress=False)
    e = d.ddpm_sample(eps_model, (100, 2), schedule, x_T=x_T, generator=torch.Generator().manual_seed(2), progress=False)
    assert not torch.allclose(c, e)  # DDPM adds fresh noise at every step


def test_sampler_keeps_requested_states():
    schedule = d.linear_schedule(100)
    x, kept = d.ddpm_sample(lambda x_t, t: torch.zeros_like(x_t), (8, 2), schedule, keep=(100, 50, 0), progress=False)
    assert set(kept) == {100, 50, 0} and torch.equal(kept[0], x)


# ---------------------------------------------------------------------------- networks and training


@pytest.mark.parametrize("denoiser, data_dim", [("mlp", 2), ("mlp", 64), ("unet", 64)])
def test_denoisers_map_x_t_and_t_to_noise_of_the_same_shape(denoiser, data_dim):
    config = d.DiffusionConfig(data_dim=data_dim, denoiser=denoiser, hidden=32)
    model = d.make_denoiser(config, device="cpu")
    x_t = torch.randn(5, data_dim)
    out_early, out_late = model(x_t, torch.zeros(5, dtype=torch.long)), model(x_t, torch.full((5,), 900))
    assert out_early.shape == (5, data_dim)
    assert not torch.allclose(out_early, out_late)  # the step is an input


def test_bad_denoiser_config_raises():
    with pytest.raises(ValueError, match="unet"):
        d.make_denoiser(d.DiffusionConfig(data_dim=2, denoiser="unet"), device="cpu")
    with pytest.raises(ValueError, match="toy"):
        d.DiffusionConfig.for_scale("faces")


def test_ema_is_the_exponential_average():
    model = torch.nn.Linear(3, 2)
    ema = d.EMA(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for average, p0 in zip(ema.model.parameters(), start):
        torch.testing.assert_close(average, 0.9 * p0 + 0.1 * (p0 + 1.0))
    with pytest.raises(ValueError):
        d.EMA(model, decay=1.0)


def test_training_uses_the_given_loss_and_moves_towards_the_exact_predictor():
    """Train on 1-D Gaussian data N(0.5, 0.2^2) and compare with the exact E[eps | x_t]."""
    config = d.DiffusionConfig(data_dim=1, hidden=32, steps=600, batch_size=256, lr=3e-3, T=100, ema_decay=0.9)
    schedule = d.linear_schedule(100, beta_T=0.2)
    torch.manual_seed(0)
    x = 0.5 + 0.2 * torch.randn(4000, 1)
    calls = []

    def loss_fn(model, x0, alpha_bar):
        calls.append(1)
        return d.diffusion_loss(model, x0, alpha_bar)

    model = d.make_denoiser(config, device="cpu")
    history, ema_model = d.train_diffusion(model, x, schedule, config=config, loss_fn=loss_fn, progress=False)
    assert len(calls) == config.steps and len(history["loss"]) == config.steps
    exact = d.gaussian_eps_model(torch.tensor([0.5]), torch.tensor([[0.04]]), schedule.alpha_bar)
    grid = torch.linspace(-1, 1.5, 11)[:, None]
    with torch.no_grad():
        for t in (20, 60, 99):
            error = (model(grid, torch.full((11,), t)) - exact(grid, t)).abs().max()
            assert error < 0.15, (t, error)
    with pytest.raises(ValueError, match=r"\(N, 1\)"):
        d.train_diffusion(model, torch.randn(10, 2), schedule, config=config)


def test_mixture_denoiser_matches_the_score_of_the_mixture():
    """For a Gaussian mixture, E[eps | x_t] = -sqrt(1 - abar) grad log p_t(x_t), with p_t built by
    torch.distributions (MixtureSameFamily) and differentiated by autograd."""
    from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

    schedule = schedule64()
    means, std = torch.tensor([[2.0, 0.0], [-1.0, 1.0], [0.0, -2.0]], **F64), 0.3
    weights = torch.tensor([0.5, 0.3, 0.2], **F64)
    x0_model, eps_model = d.mixture_denoiser(means, std, schedule.alpha_bar, weights)
    x_t = 2 * torch.randn(9, 2, **F64)
    for t in (0, 100, 400, 999):
        a = schedule.alpha_bar[t]
        p_t = MixtureSameFamily(Categorical(weights), Independent(Normal(a.sqrt() * means, (a * std**2 + 1 - a).sqrt()), 1))
        x = x_t.clone().requires_grad_()
        (score,) = torch.autograd.grad(p_t.log_prob(x).sum(), x)
        torch.testing.assert_close(eps_model(x_t, t), -(1 - a).sqrt() * score)
        # Tweedie: E[x_0 | x_t] = (x_t + (1 - abar) score) / sqrt(abar)
        torch.testing.assert_close(x0_model(x_t, t), (x_t + (1 - a) * score) / a.sqrt())
