"""gencore.gan's math against independent references: scipy (Jensen-Shannon distance, the 1-D
Wasserstein distance, the Kantorovich linear program), closed forms, autograd and Monte Carlo
with stated tolerances."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from scipy.spatial.distance import jensenshannon
from scipy.stats import norm, wasserstein_distance
from torch.nn import functional as F

from gencore import gan
from gencore.data import eight_gaussian_centers, eight_gaussians

f64 = dict(dtype=torch.float64)


def random_simplex(generator, *shape, zeros: bool = False) -> torch.Tensor:
    p = torch.rand(*shape, generator=generator, **f64) ** 3
    if zeros:
        p = p * (torch.rand(*shape, generator=generator, **f64) > 0.4)
        p[..., 0] += 1e-3  # keep at least one positive entry per row
    return p / p.sum(-1, keepdim=True)


# -- Jensen-Shannon ------------------------------------------------------------------------------


@pytest.mark.parametrize("zeros", [False, True])
def test_js_divergence_matches_scipy(generator, zeros):
    p, q = random_simplex(generator, 6, 9, zeros=zeros), random_simplex(generator, 6, 9, zeros=zeros)
    got = gan.js_divergence(p, q)
    # scipy returns the Jensen-Shannon *distance*, the square root of the divergence (natural log)
    expected = torch.tensor([jensenshannon(a, b) ** 2 for a, b in zip(p.numpy(), q.numpy())], **f64)
    assert got.shape == (6,)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_js_divergence_bounds_symmetry_and_disjoint_supports(generator):
    p, q = random_simplex(generator, 50, 5), random_simplex(generator, 50, 5)
    js = gan.js_divergence(p, q)
    assert (js >= 0).all() and (js <= math.log(2)).all()
    torch.testing.assert_close(js, gan.js_divergence(q, p))
    assert gan.js_divergence(p, p).abs().max() < 1e-12
    disjoint = gan.js_divergence(torch.tensor([0.3, 0.7, 0.0, 0.0], **f64), torch.tensor([0.0, 0.0, 0.5, 0.5], **f64))
    assert disjoint.item() == pytest.approx(math.log(2), abs=1e-12)  # no NaN from 0 log 0


def test_value_at_optimal_discriminator_is_minus_log4_plus_twice_js(generator):
    # V(D, G) = sum_x p_data log D + p_g log(1 - D), evaluated at D* = p_data / (p_data + p_g)
    p_data, p_g = random_simplex(generator, 4, 12, zeros=True), random_simplex(generator, 4, 12, zeros=True)
    d_star = gan.optimal_discriminator(p_data, p_g)
    value = (torch.xlogy(p_data, d_star) + torch.xlogy(p_g, 1 - d_star)).sum(-1)
    js = torch.tensor([jensenshannon(a, b) ** 2 for a, b in zip(p_data.numpy(), p_g.numpy())], **f64)
    torch.testing.assert_close(value, -math.log(4) + 2 * js)
    # and D* is the best discriminator: any perturbation lowers V
    for _ in range(20):
        d = (d_star + 0.05 * torch.randn(d_star.shape, generator=generator, **f64)).clamp(1e-6, 1 - 1e-6)
        v = (torch.xlogy(p_data, d) + torch.xlogy(p_g, 1 - d)).sum(-1)
        assert (v <= value + 1e-12).all()


def test_optimal_discriminator_closed_form_for_two_gaussians():
    x = torch.linspace(-6, 6, 101, **f64)
    p_data, p_model = (torch.from_numpy(norm.pdf(x.numpy(), m, 1.0)) for m in (-1.0, 1.0))
    # log p_data - log p_model = -2x, so D* = sigmoid(-2x)
    torch.testing.assert_close(gan.optimal_discriminator(p_data, p_model), torch.sigmoid(-2 * x))
    both_zero = gan.optimal_discriminator(torch.tensor([0.0, 0.2]), torch.tensor([0.0, 0.0]))
    assert both_zero.tolist() == [0.5, 1.0]


# -- Wasserstein-1 -------------------------------------------------------------------------------


def test_wasserstein1_1d_matches_scipy(generator):
    x = torch.randn(500, generator=generator, **f64)
    y = 2.0 * torch.rand(500, generator=generator, **f64) + 0.3
    got = gan.wasserstein1_1d(x, y).item()
    assert got == pytest.approx(wasserstein_distance(x.numpy(), y.numpy()), rel=1e-12)
    assert gan.wasserstein1_1d(x, x + 1.7).item() == pytest.approx(1.7, rel=1e-12)  # a shift costs its length


def test_wasserstein1_1d_equals_the_kantorovich_linear_program(generator):
    # primal: min_gamma sum_ij gamma_ij |x_i - y_j|, gamma >= 0, rows sum to 1/n, columns to 1/n
    n = 7
    x, y = torch.randn(n, generator=generator, **f64), torch.randn(n, generator=generator, **f64) + 1
    cost = np.abs(x.numpy()[:, None] - y.numpy()[None, :]).ravel()
    rows = np.kron(np.eye(n), np.ones((1, n)))
    cols = np.kron(np.ones((1, n)), np.eye(n))
    result = linprog(cost, A_eq=np.vstack([rows, cols]), b_eq=np.full(2 * n, 1 / n), bounds=(0, None), method="highs")
    assert result.status == 0
    assert gan.wasserstein1_1d(x, y).item() == pytest.approx(result.fun, abs=1e-9)


# -- losses --------------------------------------------------------------------------------------


def test_gan_losses_match_binary_cross_entropy(generator):
    real, fake = 4 * torch.randn(32, generator=generator, **f64), 4 * torch.randn(32, generator=generator, **f64)
    bce = F.binary_cross_entropy(torch.sigmoid(real), torch.ones_like(real)) + F.binary_cross_entropy(
        torch.sigmoid(fake), torch.zeros_like(fake))
    torch.testing.assert_close(gan.discriminator_loss(real, fake), bce)
    torch.testing.assert_close(gan.generator_loss_nonsaturating(fake), -torch.log(torch.sigmoid(fake)).mean())
    torch.testing.assert_close(gan.generator_loss_minimax(fake), torch.log(1 - torch.sigmoid(fake)).mean())
    # finite where the probabilities underflow
    big = torch.tensor([200.0, 300.0])
    assert gan.discriminator_loss(-big, big).item() == pytest.approx(500.0) and gan.discriminator_loss(big, -big).item() < 1e-30


def test_minimax_generator_loss_saturates_and_nonsaturating_does_not():
    # d/dl of mean log(1 - sigmoid(l)) is -sigmoid(l)/B -> 0 for l << 0; of -mean log sigmoid(l), -(1 - sigmoid(l))/B
    logits = torch.tensor([-8.0, -4.0, 0.0, 3.0], **f64, requires_grad=True)
    (g_minimax,) = torch.autograd.grad(gan.generator_loss_minimax(logits), logits)
    (g_ns,) = torch.autograd.grad(gan.generator_loss_nonsaturating(logits), logits)
    torch.testing.assert_close(g_minimax, -torch.sigmoid(logits.detach()) / 4)
    torch.testing.assert_close(g_ns, -(1 - torch.sigmoid(logits.detach())) / 4)
    assert abs(g_minimax[0]) < 1e-3 * abs(g_ns[0])


def test_wasserstein_losses():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert gan.critic_loss_wasserstein(real, fake).item() == pytest.approx(-1.0 - 2.0)
    assert gan.generator_loss_wasserstein(fake).item() == pytest.approx(1.0)


# -- gradient penalty ----------------------------------------------------------------------------


def test_gradient_penalty_of_a_linear_critic_is_exact_and_differentiable(generator):
    # f(x) = w . x has gradient w everywhere: the penalty is (|w| - 1)^2 whatever the interpolates
    w = torch.tensor([0.6, 2.0, -1.0], **f64, requires_grad=True)
    real, fake = torch.randn(16, 3, generator=generator, **f64), torch.randn(16, 3, generator=generator, **f64)
    penalty = gan.gradient_penalty(lambda x: x @ w, real, fake)
    norm_w = w.detach().norm()
    assert penalty.item() == pytest.approx((norm_w.item() - 1) ** 2, rel=1e-12)
    (grad_w,) = torch.autograd.grad(penalty, w)
    torch.testing.assert_close(grad_w, 2 * (norm_w - 1) * w.detach() / norm_w)  # d/dw (|w| - 1)^2


def test_gradient_penalty_samples_uniform_interpolates_monte_carlo():
    # f(x) = a/2 |x|^2 has gradient a x. real = 3u, fake = u (|u| = 1): |x_hat| = 1 + 2 eps, so with
    # a = 1 the penalty is E[(2 eps)^2] = 4/3 and d/da = E[2 (|x_hat| - 1) |x_hat|] = 14/3, eps ~ U[0, 1]
    torch.manual_seed(0)
    n = 40_000
    u = torch.tensor([0.6, 0.8], **f64)
    a = torch.tensor(1.0, **f64, requires_grad=True)
    penalty = gan.gradient_penalty(lambda x: 0.5 * a * x.pow(2).sum(-1), (3 * u).expand(n, 2), u.expand(n, 2))
    (grad_a,) = torch.autograd.grad(penalty, a)
    se_penalty = math.sqrt(16 * (1 / 5 - 1 / 9) / n)  # sd of 4 eps^2
    assert abs(penalty.item() - 4 / 3) < 5 * se_penalty
    assert abs(grad_a.item() - 14 / 3) < 0.05
    # images: the norm runs over all pixels. 64 pixels of 3/8 have norm 3, of 1/8 norm 1
    images = gan.gradient_penalty(lambda x: 0.5 * x.pow(2).sum((1, 2, 3)), torch.full((n, 1, 8, 8), 3 / 8, **f64),
                                  torch.full((n, 1, 8, 8), 1 / 8, **f64))
    assert abs(images.item() - 4 / 3) < 5 * se_penalty


def test_clip_weights_and_gradient_norms():
    torch.manual_seed(0)
    critic = gan.MLPCritic(gan.GANConfig(hidden=8))
    gan.clip_weights(critic, 0.01)
    assert all(p.abs().max() <= 0.01 for p in critic.parameters())
    w = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(gan.gradient_norms(lambda x: x @ w, torch.randn(5, 2)), torch.full((5,), 5.0))


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda: gan.js_divergence(torch.tensor([0.5, 0.6]), torch.tensor([0.5, 0.5])), "sum to 1"),
    (lambda: gan.js_divergence(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5])), "negative"),
    (lambda: gan.js_divergence(torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.3, 0.5])), "same shape"),
    (lambda: gan.optimal_discriminator(torch.tensor([-0.1]), torch.tensor([0.1])), "non-negative"),
    (lambda: gan.wasserstein1_1d(torch.randn(5), torch.randn(6)), "same"),
    (lambda: gan.wasserstein1_1d(torch.randn(5, 2), torch.randn(5, 2)), "1-D"),
    (lambda: gan.gradient_penalty(lambda x: x.sum(-1), torch.randn(4, 2), torch.randn(5, 2)), "same shape"),
    (lambda: gan.train_gan_2d(torch.randn(10, 3)), "(N, 2)"),
    (lambda: gan.train_gan_2d(torch.randn(10, 2), variant="lsgan"), "unknown variant"),
])
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


# -- training ------------------------------------------------------------------------------------


def test_train_gan_uses_the_losses_it_is_given():
    config = gan.GANConfig(hidden=8, steps=3, n_critic=2, batch_size=16, gp_weight=1.0)
    g, c = gan.make_gan(config, device="cpu")
    calls = {"d": 0, "g": 0, "penalty": 0}

    def d_loss(real, fake):
        calls["d"] += 1
        return gan.critic_loss_wasserstein(real, fake)

    def g_loss(fake):
        calls["g"] += 1
        return gan.generator_loss_wasserstein(fake)

    def penalty(critic, real, fake):
        calls["penalty"] += 1
        return gan.gradient_penalty(critic, real, fake)

    history = gan.train_gan(g, c, eight_gaussians(100, device="cpu"), config=config, d_loss_fn=d_loss, g_loss_fn=g_loss,
                            penalty_fn=penalty, eval_fn=lambda g: {"mean": g.sample(10).mean().item()}, eval_every=2,
                            progress=False)
    assert calls == {"d": 6, "g": 3, "penalty": 6}
    assert history["step"] == [1, 2, 3] and history["eval_step"] == [2, 3] and len(history["mean"]) == 2


def test_train_gan_gives_both_optimisers_adams_decay_rates(monkeypatch):
    seen = []
    adam = torch.optim.Adam

    def recording_adam(params, **options):
        seen.append(options["betas"])
        return adam(params, **options)

    monkeypatch.setattr(torch.optim, "Adam", recording_adam)
    config = gan.GANConfig(hidden=8, steps=1, batch_size=16, adam_betas=(0.1, 0.7))
    g, c = gan.make_gan(config, device="cpu")
    gan.train_gan(g, c, eight_gaussians(100, device="cpu"), config=config, progress=False)
    assert seen == [(0.1, 0.7), (0.1, 0.7)]
    assert gan.GANConfig.wgan_gp().adam_betas == gan.GANConfig.digits().adam_betas == (0.0, 0.9)  # Gulrajani et al.
    assert "betas" not in {f.name for f in dataclasses.fields(gan.GANConfig)}  # renamed: adam_betas


@pytest.mark.parametrize("variant", gan.VARIANTS)
def test_train_gan_2d_returns_a_generator_and_a_history(variant):
    config = gan.GANConfig(hidden=8, steps=4, batch_size=16, n_critic=2 if variant.startswith("wgan") else 1,
                           gp_weight=10.0 if variant == "wgan-gp" else 0.0, clip=0.01 if variant == "wgan-clip" else None)
    generator, history = gan.train_gan_2d(eight_gaussians(200, device="cpu"), config, variant=variant,
                                          centers=eight_gaussian_centers(), eval_every=2, progress=False)
    assert generator.sample(50).shape == (50, 2)
    assert history["eval_step"] == [2, 4] and set(history) >= {"sliced_w1", "modes", "high_quality", "d_loss"}


def test_conv_pair_shapes():
    config = gan.GANConfig.digits(scale="smoke")
    g, c = gan.make_gan(config, device="cpu")
    x = g.sample(5)
    assert x.shape == (5, 64) and (x >= 0).all() and (x <= 1).all()
    assert c(x).shape == (5,)


@pytest.mark.slow
def test_trained_discriminator_approaches_the_optimal_one():
    # two known 1-D densities, N(-1, 1) and N(1, 1): D* = sigmoid(-2x); a trained discriminator
    # should match it within 0.06 where both densities have mass
    torch.manual_seed(0)
    real, fake = torch.randn(20_000, 1) - 1, torch.randn(20_000, 1) + 1
    d = gan.MLPCritic(gan.GANConfig(data_dim=1, hidden=32))
    gan.train_critic(d, real, fake, loss_fn=gan.discriminator_loss, steps=800, batch_size=512, lr=3e-3, progress=False)
    x = torch.linspace(-2, 2, 41)[:, None]
    with torch.no_grad():
        learned = torch.sigmoid(d(x))
    assert (learned - torch.sigmoid(-2 * x[:, 0])).abs().max() < 0.06


@pytest.mark.slow
def test_critic_with_gradient_penalty_recovers_w1_by_duality():
    # Kantorovich-Rubinstein: W1 = sup_{|f|_L <= 1} E_p f - E_q f. N(0, 1) vs N(2, 0.5^2), W1 by scipy.
    # The penalty is soft, so the trained critic is only about 1-Lipschitz (its optimum has slope
    # 1 + W1 / (2 lambda) = 1.1 here) and its gap E_p f - E_q f overshoots W1 by about 10%; divided
    # by its measured Lipschitz constant it is a lower bound, which cannot exceed W1.
    torch.manual_seed(1)
    p, q = torch.randn(4000, 1), 2 + 0.5 * torch.randn(4000, 1)
    critic = gan.MLPCritic(gan.GANConfig(data_dim=1, hidden=32))
    gan.train_critic(critic, p, q, gp_weight=10.0, steps=400, batch_size=512, lr=3e-3, seed=1, progress=False)
    with torch.no_grad():
        dual = (critic(p).mean() - critic(q).mean()).item()
    lipschitz = gan.gradient_norms(critic, torch.linspace(-4, 4, 801)[:, None]).max().item()
    primal = wasserstein_distance(p[:, 0].numpy(), q[:, 0].numpy())
    assert abs(dual - primal) < 0.15 * primal
    assert 0.8 * primal < dual / lipschitz <= primal * (1 + 1e-3)
    assert lipschitz < 1.5
