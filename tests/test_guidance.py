"""gencore.guidance against independent references: torch.distributions log-densities and autograd
for the exact mixture scores and classifiers, scaled_dot_product_attention for the cross-attention,
Monte Carlo for label dropout, quadrature for the tilted law, and the clear errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    Normal,
)
from torch.nn import functional as F

from gencore import guidance as G
from gencore.diffusion import ddim_sample, linear_schedule

F64 = torch.float64
MEANS = torch.tensor([[-1.0, 0.5], [1.5, 0.0], [0.0, -2.0]], dtype=F64)
STDS = torch.tensor([0.3, 0.6, 0.45], dtype=F64)
WEIGHTS = torch.tensor([0.2, 0.5, 0.3], dtype=F64)


def noisy_mixture(a: float) -> MixtureSameFamily:
    """p_t as torch.distributions: component k is N(sqrt(a) m_k, (a s_k^2 + 1 - a) I)."""
    scale = (a * STDS**2 + 1 - a).sqrt()[:, None].expand(3, 2)
    return MixtureSameFamily(Categorical(WEIGHTS), Independent(Normal(math.sqrt(a) * MEANS, scale), 1))


def component(a: float, k: int) -> Independent:
    return Independent(Normal(math.sqrt(a) * MEANS[k], (a * STDS[k] ** 2 + 1 - a).sqrt().expand(2)), 1)


def points(n=50, seed=0):
    return 2 * torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("a", [0.999, 0.5, 0.02])
def test_mixture_log_joint_and_classifier_match_torch_distributions(a):
    x = points()
    joint = G.mixture_log_joint(x, a, MEANS, STDS, WEIGHTS)
    mixture = noisy_mixture(a)
    assert torch.allclose(joint.logsumexp(-1), mixture.log_prob(x), atol=1e-10)
    for k in range(3):
        assert torch.allclose(joint[:, k], WEIGHTS[k].log() + component(a, k).log_prob(x), atol=1e-10)
    # Bayes: p(k | x) = w_k p(x | k) / p(x)
    posterior = torch.stack([WEIGHTS[k].log() + component(a, k).log_prob(x) for k in range(3)], 1) - mixture.log_prob(x)[:, None]
    _, classifier = G.mixture_predictors(MEANS, STDS, torch.full((10,), a, dtype=F64), WEIGHTS)
    assert torch.allclose(classifier(x, 3), posterior, atol=1e-10)


@pytest.mark.parametrize("a", [0.95, 0.3])
def test_mixture_scores_are_autograd_of_log_densities(a):
    x = points(seed=1).requires_grad_()
    (marginal,) = torch.autograd.grad(noisy_mixture(a).log_prob(x).sum(), x)
    score, conditional = G.mixture_scores(x.detach(), a, MEANS, STDS, WEIGHTS)
    assert torch.allclose(score, marginal, atol=1e-10)
    for k in range(3):
        (grad_k,) = torch.autograd.grad(component(a, k).log_prob(x).sum(), x)
        assert torch.allclose(conditional[:, k], grad_k, atol=1e-10)


def test_bayes_rule_on_scores_and_cfg_implied_classifier():
    """grad log p_t(x | c) = grad log p_t(x) + grad log p_t(c | x), and the CFG combination of the
    exact predictors is -sqrt(1 - abar) (score(x | c) + w grad log p_t(c | x))."""
    alpha_bar = torch.linspace(0.99, 0.01, 20, dtype=F64)
    eps_model, classifier = G.mixture_predictors(MEANS, STDS, alpha_bar, WEIGHTS)
    x, t, w = points(seed=2), torch.full((50,), 7), 2.5
    c = torch.full((50, 1), 1)
    a = alpha_bar[7].item()
    grad_classifier = G.classifier_gradient(lambda z, s: classifier(z, s), x, t, c[:, 0])
    xr = x.clone().requires_grad_()
    log_post = component(a, 1).log_prob(xr) + WEIGHTS[1].log() - noisy_mixture(a).log_prob(xr)
    (expected_grad,) = torch.autograd.grad(log_post.sum(), xr)
    assert torch.allclose(grad_classifier, expected_grad, atol=1e-10)
    score, conditional = G.mixture_scores(x, a, MEANS, STDS, WEIGHTS)
    assert torch.allclose(conditional[:, 1], score + grad_classifier, atol=1e-10)
    guided = G.cfg_predictor(eps_model, c, w, torch.tensor([3]))(x, t)
    assert torch.allclose(guided, -math.sqrt(1 - a) * (conditional[:, 1] + w * grad_classifier), atol=1e-10)
    # classifier guidance of the unconditional predictor with scale 1 + w: the same prediction
    steered = G.classifier_guided_predictor(lambda z, s: eps_model(z, s, torch.full((len(z), 1), 3)), classifier,
                                            c[:, 0], 1 + w, alpha_bar)(x, t)
    assert torch.allclose(steered, guided, atol=1e-10)


def test_cfg_prediction_convention():
    g = torch.Generator().manual_seed(3)
    cond, uncond = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    assert torch.allclose(G.cfg_prediction(cond, uncond, 0.0), cond)
    assert torch.allclose(G.cfg_prediction(cond, uncond, -1.0), uncond)
    assert torch.allclose(G.cfg_prediction(cond, uncond, 3.0), 4 * cond - 3 * uncond)
    with pytest.raises(ValueError, match="same shape"):
        G.cfg_prediction(cond, uncond[:, :4], 1.0)


def test_classifier_guided_eps_uses_the_noise_to_score_factor():
    g = torch.Generator().manual_seed(4)
    eps, grad = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    abar = torch.tensor([0.9, 0.5, 0.1])
    out = G.classifier_guided_eps(eps, grad, abar, 2.0)
    for i in range(3):  # eps = -sqrt(1 - abar) score, so score + 2 grad gives eps - 2 sqrt(1 - abar) grad
        assert torch.allclose(out[i], eps[i] - 2.0 * math.sqrt(1 - abar[i].item()) * grad[i])
    assert torch.allclose(G.classifier_guided_eps(eps, grad, 0.64, 1.0), eps - 0.6 * grad)
    with pytest.raises(ValueError, match="alpha_bar_t"):
        G.classifier_guided_eps(eps, grad, torch.tensor([0.5, 0.5]), 1.0)


def test_cross_attention_matches_scaled_dot_product_attention():
    g = torch.Generator().manual_seed(5)
    x, context = torch.randn(3, 4, 8, generator=g, dtype=F64), torch.randn(3, 2, 6, generator=g, dtype=F64)
    w_q, w_k, w_v, w_o = (torch.randn(*s, generator=g, dtype=F64) for s in ((8, 5), (6, 5), (6, 5), (5, 8)))
    expected = F.scaled_dot_product_attention(x @ w_q, context @ w_k, context @ w_v) @ w_o
    assert torch.allclose(G.cross_attention(x, context, w_q, w_k, w_v, w_o), expected, atol=1e-12)


def test_label_dropout_rate_independence_and_null():
    c = torch.stack([torch.arange(20_000) % 10, torch.arange(20_000) % 3], 1)
    before = c.clone()
    out = G.label_dropout(c, 0.2, torch.tensor([10, 3]), generator=torch.Generator().manual_seed(6))
    assert torch.equal(c, before)
    dropped = (out == torch.tensor([10, 3])).all(1)
    kept = (out == c).all(1)
    assert bool((dropped | kept).all())  # a row is dropped whole or kept whole
    assert abs(dropped.double().mean().item() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / 20_000)
    with pytest.raises(ValueError, match="p_uncond"):
        G.label_dropout(c, 1.5, 10)


def test_networks_shapes_null_and_bad_input():
    config = G.GuidanceConfig(data_dim=64, vocab_sizes=(10, 3), hidden=32, steps=2)
    x, t = torch.randn(5, 64), torch.randint(0, 1000, (5,))
    c = torch.tensor([[0, 0], [9, 2], [10, 3], [3, 3], [10, 1]])
    for kind in ("embedding", "attention"):
        model = G.make_conditional_denoiser(config, kind, device="cpu")
        assert model(x, t, c).shape == (5, 64)
        assert torch.equal(model.null, torch.tensor([10, 3]))
        with pytest.raises(ValueError, match="out of range"):
            model(x, t, torch.tensor([[11, 0]] * 5))
        with pytest.raises(ValueError, match="shape"):
            model(x, t, torch.zeros(5, 1, dtype=torch.long))
        with pytest.raises(ValueError, match="integer"):
            model(x, t, c.float())


def test_cross_attention_denoiser_calls_the_plugged_attention():
    config = G.GuidanceConfig(data_dim=2, vocab_sizes=(4,), hidden=16, queries=4)
    calls = []

    def recording(*args):
        calls.append(args[0].shape)
        return G.cross_attention(*args)

    model = G.CrossAttentionDenoiser(config, attention_fn=recording)
    model(torch.randn(3, 2), torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 4]))
    assert calls == [(3, 4, 4)]


def test_tilted_law_normalises_and_equals_conditional_at_w0():
    means, stds = torch.tensor([[-1.0], [1.0]], dtype=F64), 0.5
    grid = torch.linspace(-6, 6, 24_001, dtype=F64)[:, None]
    dx = (grid[1] - grid[0]).item()
    log_p0 = G.tilted_log_density(grid, 1, 0.0, means, stds)
    assert torch.allclose(log_p0, Normal(1.0, 0.5).log_prob(grid[:, 0]).to(F64), atol=1e-10)
    mass = (G.tilted_log_density(grid, 1, 3.0, means, stds).exp().sum() * dx).item()
    # p(x|c) p(c|x)^w / p(c)^w has mass E_{p(x|c)}[p(c|x)^w] / p(c)^w, here p(c|x) = sigmoid(8 x), p(c) = 1/2
    density = Normal(1.0, 0.5).log_prob(grid[:, 0]).exp().to(F64)
    expected = 2**3 * (density * torch.sigmoid(8 * grid[:, 0]) ** 3).sum().item() * dx
    assert mass == pytest.approx(expected, rel=1e-6) and mass > 1.5
    with pytest.raises(ValueError, match="class"):
        G.tilted_log_density(grid, 2, 1.0, means, stds)


def test_guided_ddim_with_w0_samples_the_conditional():
    """With the exact predictors and w = 0, DDIM's samples are the class's Gaussian."""
    means = torch.tensor([[-2.0], [2.0]], dtype=F64)
    schedule = linear_schedule(1000, dtype=F64)
    eps_model, _ = G.mixture_predictors(means, 0.3, schedule.alpha_bar)
    c = torch.ones(4000, 1, dtype=torch.long)
    out = ddim_sample(G.cfg_predictor(eps_model, c, 0.0, torch.tensor([2])), (4000, 1), schedule, 100,
                      generator=torch.Generator().manual_seed(7), dtype=F64)
    assert abs(out.mean().item() - 2.0) < 5 * 0.3 / math.sqrt(4000)
    assert abs(out.std().item() - 0.3) < 0.03


def test_ink_style_terciles_and_training_step():
    g = torch.Generator().manual_seed(8)
    x, labels = torch.rand(300, 64, generator=g), torch.arange(300) % 10
    styles, edges = G.ink_style(x, labels)
    assert edges.shape == (10, 2)
    counts = torch.bincount(styles, minlength=3)
    assert (counts - 100).abs().max() <= 10
    config = G.GuidanceConfig(data_dim=64, vocab_sizes=(10,), hidden=16, steps=3, batch_size=8, classifier_steps=3)
    model = G.make_conditional_denoiser(config, device="cpu")
    seen = []

    def recording_dropout(c, p, null):
        seen.append((p, null, c.shape))
        return G.label_dropout(c, p, null)

    history, _ = G.train_conditional(model, 2 * x - 1, labels, config=config, dropout_fn=recording_dropout, progress=False)
    assert len(history["loss"]) == 3 and seen == [(0.1, 10, (8,))] * 3
    _, classifier = G.train_noisy_classifier(G.NoisyClassifier(config), 2 * x - 1, labels, config=config, progress=False)
    assert classifier(x, torch.zeros(300, dtype=torch.long)).shape == (300, 10)
    with pytest.raises(ValueError, match="one condition per example"):
        G.train_conditional(model, x, labels[:5], config=config, progress=False)
