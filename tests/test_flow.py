"""gencore.flow against independent references: closed forms, Gaussian conditioning on an explicit
joint covariance, autograd of log-densities built by torch.distributions (the score), a
high-accuracy ODE solution from scipy.integrate.solve_ivp, Monte Carlo with tolerances in standard
errors, and measured convergence orders of the samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad, solve_ivp
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal, Normal

from gencore import flow as f
from gencore.diffusion import DiffusionConfig

F64 = dict(dtype=torch.float64)
MEAN = torch.tensor([1.0, -0.5], **F64)
COV = torch.tensor([[0.36, 0.24], [0.24, 0.25]], **F64)
MIX_MEANS = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]], **F64)
MIX_STDS = torch.tensor([0.3, 0.2, 0.45], **F64)
MIX_WEIGHTS = torch.tensor([0.5, 0.3, 0.2], **F64)


def mixture_at(t: float) -> MixtureSameFamily:
    """The law of x_t = (1 - t) x_0 + t x_1 for the mixture data, built by torch.distributions."""
    scale = ((1 - t) ** 2 + t**2 * MIX_STDS**2).sqrt()[:, None].expand(3, 2)
    return MixtureSameFamily(Categorical(MIX_WEIGHTS), Independent(Normal(t * MIX_MEANS, scale), 1))


def ode_reference(velocity, x0: torch.Tensor, t1: float = 1.0) -> torch.Tensor:
    """x(t1) for dx/dt = velocity(x, t), x(0) = x0, by scipy's DOP853 (order 8) at rtol 1e-12."""
    shape = x0.shape

    def rhs(t, y):
        x = torch.from_numpy(y).reshape(shape)
        return velocity(x, float(t)).reshape(-1).numpy()

    solution = solve_ivp(rhs, (0.0, t1), x0.reshape(-1).numpy(), method="DOP853", rtol=1e-12, atol=1e-12)
    assert solution.success
    return torch.from_numpy(solution.y[:, -1]).reshape(shape)


def fitted_order(steps, errors) -> float:
    """The slope of log(error) against log(1 / steps), by least squares."""
    return float(np.polyfit(np.log(1 / np.asarray(steps, float)), np.log(np.asarray(errors)), 1)[0])


# ---------------------------------------------------------------------------- interpolant and target


def test_interpolant_is_the_straight_line_per_example():
    g = torch.Generator().manual_seed(0)
    x0, x1, t = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g), torch.rand(6, generator=g)
    expected = torch.stack([(1 - t[i]) * x0[i] + t[i] * x1[i] for i in range(6)])  # row by row
    torch.testing.assert_close(f.interpolant(x0, x1, t), expected)
    torch.testing.assert_close(f.interpolant(x0, x1, torch.zeros(6)), x0)  # t = 0: the noise
    torch.testing.assert_close(f.interpolant(x0, x1, torch.ones(6)), x1)  # t = 1: the data
    images0, images1 = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    out = f.interpolant(images0, images1, torch.tensor([0.0, 0.5, 1.0]))
    assert out.shape == (3, 1, 8, 8)
    torch.testing.assert_close(out[1], (images0[1] + images1[1]) / 2)


def test_the_velocity_target_is_the_time_derivative_of_the_interpolant():
    """autograd: d x_t / dt, example by example, equals x_1 - x_0."""
    g = torch.Generator().manual_seed(1)
    x0, x1 = torch.randn(5, 4, generator=g, **F64), torch.randn(5, 4, generator=g, **F64)
    t = torch.rand(5, generator=g, **F64).requires_grad_()
    x_t = f.interpolant(x0, x1, t)
    columns = [torch.autograd.grad(x_t[:, j].sum(), t, retain_graph=True)[0] for j in range(4)]
    torch.testing.assert_close(torch.stack(columns, 1), f.velocity_target(x0, x1))


def test_bad_inputs_raise():
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="one time per example"):
        f.interpolant(x, x, torch.rand(1))
    with pytest.raises(ValueError, match="one time per example"):
        f.interpolant(x, x, torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        f.interpolant(x, x, torch.full((4,), 1.5))
    with pytest.raises(ValueError, match="same shape"):
        f.interpolant(x, torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match="x1"):
        f.flow_matching_loss(lambda x, t: x, torch.randn(4))
    with pytest.raises(ValueError, match="steps"):
        f.integrate(lambda x, t: x, x, 0)
    with pytest.raises(ValueError, match="positive definite"):
        f.gaussian_velocity(torch.zeros(2), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        f.gaussian_velocity(torch.zeros(2), torch.eye(2))(torch.randn(4, 3), 0.5)
    with pytest.raises(ValueError, match=r"cov \(d, d\)"):
        f.gaussian_flow_map(torch.zeros(2), torch.eye(3), torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        f.gaussian_flow_map(torch.zeros(2), torch.eye(2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="weights"):
        f.mixture_velocity(MIX_MEANS, 0.3, weights=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="path"):
        f.straightness(torch.randn(5, 2))
    with pytest.raises(ValueError, match="denoiser"):
        f.make_velocity_net(f.FlowConfig(data_dim=2, denoiser="unet"), device="cpu")


# ---------------------------------------------------------------------------- the loss


def test_loss_is_the_mean_squared_velocity_error_over_batch_and_dimensions():
    g = torch.Generator().manual_seed(2)
    x1, x0, t = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g), torch.rand(8, generator=g)

    def model(x_t, t):
        return 0.3 * x_t - t[:, None]

    loss = f.flow_matching_loss(model, x1, t=t, x0=x0)
    x_t = (1 - t[:, None]) * x0 + t[:, None] * x1
    expected = sum(((0.3 * x_t[i, j] - t[i]) - (x1[i, j] - x0[i, j])) ** 2 for i in range(8) for j in range(3)) / 24
    assert loss.shape == () and loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert f.flow_matching_loss(lambda x_t, t: x1 - x0, x1, t=t, x0=x0).item() == 0.0


def test_loss_draws_uniform_times_and_standard_normal_noise_and_uses_the_interpolant():
    n, seen, calls = 40_000, [], []

    def recording_model(x_t, t):
        seen.append((x_t, t))
        return torch.zeros_like(x_t)

    def recording_interpolant(x0, x1, t):
        calls.append(1)
        return f.interpolant(x0, x1, t)

    torch.manual_seed(3)
    x1 = torch.full((n, 1), 2.0)
    f.flow_matching_loss(recording_model, x1, interpolant_fn=recording_interpolant)
    x_t, t = seen[0]
    assert calls == [1] and t.shape == (n,)
    # U[0, 1]: mean 1/2 (SE sqrt(1/12 / n)), variance 1/12 (SE sqrt(1/180 / n)), 5 standard errors
    assert abs(t.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(t.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)
    x0 = (x_t[:, 0] - t * 2.0) / (1 - t)  # the noise it drew, recovered from x_t
    assert abs(x0.mean().item()) < 5 / math.sqrt(n) and abs(x0.var().item() - 1) < 5 * math.sqrt(2 / n)


def test_the_minimiser_of_the_loss_is_the_conditional_expectation(generator):
    """L(u + delta) - L(u) = E |delta(x_t, t)|^2 when u = E[x_1 - x_0 | x_t]: the cross term
    2 E[delta . (u - (x_1 - x_0))] vanishes. Common random numbers, 5 standard errors."""
    n = 200_000
    u = f.gaussian_velocity(MEAN, COV)
    x1 = MEAN + torch.randn(n, 2, generator=generator, **F64) @ torch.linalg.cholesky(COV).T
    x0, t = torch.randn(n, 2, generator=generator, **F64), torch.rand(n, generator=generator, **F64)
    x_t = f.interpolant(x0, x1, t)

    def delta(x, s):
        return torch.stack([torch.sin(x[:, 0]) * s, 0.3 * x[:, 1] ** 2 - s], 1)

    residual = u(x_t, t) - (x1 - x0)
    cross = 2 * (delta(x_t, t) * residual).sum(1)  # per example: L(u + delta) - L(u) - |delta|^2
    assert abs(cross.mean().item()) < 5 * cross.std().item() / math.sqrt(n)
    # a wrong field loses: u + delta pays E|delta|^2 more, far beyond the noise
    gain = delta(x_t, t).pow(2).sum(1)
    assert gain.mean() > 20 * cross.std() / math.sqrt(n)
    # the loss function sees the same: per-dimension means, so divide by d = 2
    plain = f.flow_matching_loss(lambda x, s: u(x, s), x1, t=t, x0=x0).item()
    shifted = f.flow_matching_loss(lambda x, s: u(x, s) + delta(x, s), x1, t=t, x0=x0).item()
    assert shifted - plain == pytest.approx((gain + cross).mean().item() / 2, rel=1e-9)


# ---------------------------------------------------------------------------- exact fields


def test_gaussian_velocity_is_gaussian_conditioning_on_the_joint_covariance():
    """E[x_1 - x_0 | x_t] from the explicit 4x4 joint covariance of (x_1 - x_0, x_t)."""
    u = f.gaussian_velocity(MEAN, COV)
    eye = torch.eye(2, **F64)
    x = torch.randn(7, 2, **F64)
    for t in (0.0, 0.2, 0.5, 0.9, 1.0):
        # x_1 - x_0 = A z and x_t = t m + B z, z = (x_1 - m, x_0): a linear map of independent parts
        a, b = torch.cat([eye, -eye], 1), torch.cat([t * eye, (1 - t) * eye], 1)
        z_cov = torch.block_diag(COV, eye)
        cross, marginal = a @ z_cov @ b.T, b @ z_cov @ b.T
        expected = MEAN + (x - t * MEAN) @ torch.linalg.solve(marginal, cross.T)
        torch.testing.assert_close(u(x, t), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(u(x, torch.full((7,), 0.3, **F64)), u(x, 0.3))


def test_velocity_is_x_plus_one_minus_t_score_over_t_for_the_gaussian_and_the_mixture():
    """u(x, t) = (x + (1 - t) grad log p_t(x)) / t, with p_t from torch.distributions and autograd."""
    gauss, mixture = f.gaussian_velocity(MEAN, COV), f.mixture_velocity(MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
    x = (2 * torch.randn(9, 2, **F64)).requires_grad_()
    for t in (0.1, 0.5, 0.8, 1.0):
        law = MultivariateNormal(t * MEAN, (1 - t) ** 2 * torch.eye(2, **F64) + t**2 * COV)
        for field, p_t in ((gauss, law), (mixture, mixture_at(t))):
            (score,) = torch.autograd.grad(p_t.log_prob(x).sum(), x)
            torch.testing.assert_close(field(x.detach(), t), (x.detach() + (1 - t) * score) / t, rtol=1e-9, atol=1e-10)


def test_a_one_component_mixture_is_the_isotropic_gaussian():
    x, t = torch.randn(6, 2, **F64), torch.rand(6, **F64)
    one = f.mixture_velocity(MEAN[None], 0.7)
    torch.testing.assert_close(one(x, t), f.gaussian_velocity(MEAN, 0.49 * torch.eye(2, **F64))(x, t))


def test_the_mixture_velocity_satisfies_the_continuity_equation():
    """d p_t / dt + div(p_t u_t) = 0 at random points: p_t from torch.distributions, every
    derivative by autograd. This is what makes the flow carry N(0, I) to the data."""
    velocity = f.mixture_velocity(MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
    points = 1.5 * torch.randn(12, 2, **F64)
    for t0 in (0.15, 0.5, 0.85):
        t = torch.full((12,), t0, **F64, requires_grad=True)  # one time per point: d/dt point by point
        scale = ((1 - t[:, None]) ** 2 + t[:, None] ** 2 * MIX_STDS**2).sqrt()[..., None].expand(12, 3, 2)
        law = MixtureSameFamily(Categorical(MIX_WEIGHTS.expand(12, 3)),
                                Independent(Normal(t[:, None, None] * MIX_MEANS, scale), 1))
        (dp_dt,) = torch.autograd.grad(law.log_prob(points).exp().sum(), t)
        x = points.clone().requires_grad_()
        flux = mixture_at(t0).log_prob(x).exp()[:, None] * velocity(x, t0)  # (B, 2): p_t u_t
        divergence = sum(torch.autograd.grad(flux[:, j].sum(), x, retain_graph=True)[0][:, j] for j in range(2))
        torch.testing.assert_close(dp_dt, -divergence, rtol=1e-9, atol=1e-12)
        assert dp_dt.abs().max() > 1e-3  # the check is not trivially 0 = 0


def test_gaussian_flow_map_is_the_solution_of_the_ode():
    u = f.gaussian_velocity(MEAN, COV)
    x0 = torch.randn(4, 2, **F64)
    for t in (0.5, 1.0):
        torch.testing.assert_close(f.gaussian_flow_map(MEAN, COV, x0, t), ode_reference(u, x0, t), rtol=1e-8, atol=1e-9)
    # at t = 1 it is the symmetric square root: x_0 -> m + Sigma^{1/2} x_0
    root = torch.tensor(np.real(__import__("scipy").linalg.sqrtm(COV.numpy())), **F64)
    torch.testing.assert_close(f.gaussian_flow_map(MEAN, COV, x0), MEAN + x0 @ root.T)


# ---------------------------------------------------------------------------- samplers


def test_single_steps_against_closed_forms():
    x = torch.randn(5, 3, **F64)
    # Euler is exact for a constant field
    torch.testing.assert_close(f.euler_step(lambda y, t: torch.ones_like(y), x, 0.2, 0.1), x + 0.1)
    # ... and takes the slope at the start of the step
    torch.testing.assert_close(f.euler_step(lambda y, t: t * torch.ones_like(y), x, 0.2, 0.1), x + 0.2 * 0.1)
    # Heun is exact when v depends on t only linearly: int_t^{t+dt} s ds = t dt + dt^2 / 2
    torch.testing.assert_close(f.heun_step(lambda y, t: t * torch.ones_like(y), x, 0.2, 0.1), x + 0.2 * 0.1 + 0.1**2 / 2)
    # on dx/dt = a x, Euler gives x (1 + a dt) and Heun x (1 + a dt + (a dt)^2 / 2)
    a, dt = -1.3, 0.05
    torch.testing.assert_close(f.euler_step(lambda y, t: a * y, x, 0.0, dt), x * (1 + a * dt))
    torch.testing.assert_close(f.heun_step(lambda y, t: a * y, x, 0.0, dt), x * (1 + a * dt + (a * dt) ** 2 / 2))


def test_integrate_passes_per_example_times_and_keeps_the_path():
    seen = []

    def velocity(x, t):
        seen.append(t)
        return torch.ones_like(x)

    x1, path = f.integrate(velocity, torch.zeros(3, 2, **F64), 4, keep_path=True)
    assert path.shape == (5, 3, 2) and torch.equal(path[-1], x1)
    torch.testing.assert_close(x1, torch.ones(3, 2, **F64))
    assert [s.shape for s in seen] == [(3,)] * 4
    assert [s[0].item() for s in seen] == [0.0, 0.25, 0.5, 0.75] and seen[0].dtype == torch.float64
    f.heun_sample(velocity, torch.zeros(3, 2, **F64), 4)
    assert len(seen) == 12  # two calls per Heun step


def test_euler_is_first_order_and_heun_second_order_on_the_gaussian():
    """Errors at t = 1 against the closed-form flow map: slopes of log error against log(1 / steps)."""
    u = f.gaussian_velocity(MEAN, COV)
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(5), **F64)
    exact = f.gaussian_flow_map(MEAN, COV, x0)
    steps = (16, 32, 64, 128)
    euler = [(f.euler_sample(u, x0, k) - exact).abs().max().item() for k in steps]
    heun = [(f.heun_sample(u, x0, k) - exact).abs().max().item() for k in steps]
    assert 0.9 < fitted_order(steps, euler) < 1.1
    assert 1.85 < fitted_order(steps, heun) < 2.15


def test_orders_on_the_mixture_against_solve_ivp():
    velocity = f.mixture_velocity(MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(6), **F64)
    reference = ode_reference(velocity, x0)
    steps = (32, 64, 128, 256)
    euler = [(f.euler_sample(velocity, x0, k) - reference).abs().max().item() for k in steps]
    heun = [(f.heun_sample(velocity, x0, k) - reference).abs().max().item() for k in steps]
    assert 0.85 < fitted_order(steps, euler) < 1.15
    assert 1.8 < fitted_order(steps, heun) < 2.2
    assert heun[-1] < 1e-4


def test_the_exact_flow_carries_noise_to_the_mixture_with_its_weights():
    """Transported N(0, I) samples: component fractions, mean and covariance against the mixture's
    closed forms, within 5 standard errors."""
    n = 10_000
    velocity = f.mixture_velocity(MIX_MEANS, MIX_STDS, MIX_WEIGHTS)
    x = f.heun_sample(velocity, torch.randn(n, 2, generator=torch.Generator().manual_seed(7), **F64), 50)
    nearest = torch.cdist(x, MIX_MEANS).argmin(1)  # every mean is > 3 of its stds from the nearest boundary
    fractions = torch.bincount(nearest, minlength=3).double() / n
    assert ((fractions - MIX_WEIGHTS).abs() < 5 * (MIX_WEIGHTS * (1 - MIX_WEIGHTS) / n).sqrt()).all()
    mean = MIX_WEIGHTS @ MIX_MEANS
    cov = sum(w * (s**2 * torch.eye(2, **F64) + torch.outer(m, m)) for w, m, s in zip(MIX_WEIGHTS, MIX_MEANS, MIX_STDS))
    cov = cov - torch.outer(mean, mean)
    assert ((x.mean(0) - mean).abs() < 5 * (cov.diagonal() / n).sqrt()).all()
    torch.testing.assert_close(torch.cov(x.T), cov, rtol=0.05, atol=0.05)  # SE of an entry about 0.015


def test_straightness_of_lines_and_of_the_exact_gaussian_flow():
    # a constant field moves on straight lines: S = 0
    x0 = torch.randn(10, 2, **F64)
    _, path = f.euler_sample(lambda x, t: torch.ones_like(x) * torch.tensor([1.0, -2.0], **F64), x0, 8, keep_path=True)
    assert f.straightness(path) < 1e-20
    # the exact Gaussian flow: x_t = t m + C_t^{1/2} x_0, so S = int_0^1 |Sigma^{1/2} - I - dC_t^{1/2}/dt|_F^2 dt
    lam = torch.linalg.eigvalsh(COV).numpy()

    def integrand(t):
        slope = (-(1 - t) + t * lam) / np.sqrt((1 - t) ** 2 + t**2 * lam)  # eigenvalues of d/dt C_t^{1/2}
        return float(((np.sqrt(lam) - 1 - slope) ** 2).sum())

    exact, _ = quad(integrand, 0, 1, epsabs=1e-12)
    # the flow is linear in x_0 and the mean cancels in (x_1 - x_0) - dx_t/dt, so E over x_0 ~ N(0, I)
    # of the squared gap equals its average over the two starting points sqrt(2) e_1, sqrt(2) e_2
    start = math.sqrt(2) * torch.eye(2, **F64)
    _, path = f.heun_sample(f.gaussian_velocity(MEAN, COV), start, 400, keep_path=True)
    assert f.straightness(path) == pytest.approx(exact, rel=1e-3)
    assert exact > 0.01  # the exact flow is curved: its paths are not the straight lines of the interpolant


# ---------------------------------------------------------------------------- network and training


def test_flow_config_has_the_diffusion_budget_and_the_net_takes_continuous_time():
    for data in ("toy", "digits"):
        flow, diffusion = f.FlowConfig.for_scale(data, "small"), DiffusionConfig.for_scale(data, "small")
        assert (flow.steps, flow.batch_size, flow.hidden, flow.lr) == (diffusion.steps, diffusion.batch_size, diffusion.hidden, diffusion.lr)
    net = f.make_velocity_net(f.FlowConfig(data_dim=64, denoiser="unet", hidden=32), device="cpu")
    assert net(torch.randn(3, 64), torch.rand(3)).shape == (3, 64)
    net = f.make_velocity_net(f.FlowConfig(data_dim=2, hidden=16), device="cpu")
    t = torch.tensor([0.2, 0.7])
    torch.testing.assert_close(net(torch.ones(2, 2), t), net.net(torch.ones(2, 2), 1000 * t))


def test_train_flow_pairs_noise_with_data_row_by_row():
    config = f.FlowConfig(data_dim=2, hidden=8, steps=3, batch_size=16)
    x1 = torch.arange(40.0).reshape(20, 2)
    seen = []

    def loss_fn(model, x1_batch, x0=None):
        seen.append((x1_batch, x0))
        return f.flow_matching_loss(model, x1_batch, x0=x0)

    model = f.make_velocity_net(config, device="cpu")
    history, _ = f.train_flow(model, x1, x0_train=-x1, config=config, loss_fn=loss_fn, progress=False)
    assert len(seen) == 3 and len(history["loss"]) == 3
    assert all(torch.equal(x0, -batch) for batch, x0 in seen)
    f.train_flow(model, x1, config=config, loss_fn=loss_fn, progress=False)
    assert seen[-1][1] is None
    with pytest.raises(ValueError, match="pair"):
        f.train_flow(model, x1, x0_train=torch.zeros(5, 2), config=config)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        f.train_flow(model, torch.zeros(5, 3), config=config)


def test_reflow_trains_on_the_flows_own_pairs():
    config = f.FlowConfig(data_dim=2, hidden=8, steps=2, batch_size=8)
    model = f.make_velocity_net(config, device="cpu")
    _, new_model, (x0, x1) = f.reflow(model, 50, config=config, sample_steps=3, init=model, seed=4, progress=False)
    torch.testing.assert_close(x1, f.heun_sample(model, x0, 3))
    assert x0.shape == (50, 2) and new_model is not model


@pytest.mark.slow
def test_training_moves_towards_the_exact_velocity():
    """Train on 1-D Gaussian data N(0.5, 0.2^2) and compare with the exact E[x_1 - x_0 | x_t]."""
    config = f.FlowConfig(data_dim=1, hidden=32, steps=800, batch_size=256, lr=3e-3, ema_decay=0.9)
    torch.manual_seed(0)
    x = 0.5 + 0.2 * torch.randn(4000, 1)
    model = f.make_velocity_net(config, device="cpu")
    f.train_flow(model, x, config=config, progress=False)
    exact = f.gaussian_velocity(torch.tensor([0.5]), torch.tensor([[0.04]]))
    grid = torch.linspace(-1.5, 1.5, 13)[:, None]
    with torch.no_grad():
        for t in (0.1, 0.5, 0.9):
            scale = exact(grid, t).abs().max()
            error = (model(grid, torch.full((13,), t)) - exact(grid, t)).abs().max()
            assert error < 0.15 * scale, (t, error, scale)
