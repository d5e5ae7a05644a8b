"""Flow matching (Lipman et al. 2023), rectified flow (Liu et al. 2023) and the linear stochastic
interpolant (Albergo & Vanden-Eijnden 2023): generation by integrating a learned velocity field.

1. the math, as pure functions: ``interpolant``, ``velocity_target``, ``flow_matching_loss``;
2. exact velocity fields: ``gaussian_velocity`` (with its flow map, ``gaussian_flow_map``) and
   ``mixture_velocity``, the best any network can do, in closed form;
3. samplers: ``euler_step``, ``heun_step`` and ``integrate`` (``euler_sample``, ``heun_sample``)
   accept any callable ``v(x, t)``; ``straightness`` of a path;
4. the network and training: ``FlowConfig``, ``VelocityNet`` (the diffusion module's ``MLPDenoiser``
   or ``UNet8`` with a continuous time), ``train_flow``, which takes the loss as an argument;
5. one round of ``reflow``.

Time runs from noise to data, as in Lipman et al. and Liu et al.: ``x0`` ~ N(0, I) is the noise,
``x1`` the data, x_t = (1 - t) x_0 + t x_1 for t in [0, 1], and the samplers integrate
dx/dt = v(x, t) from t = 0 to t = 1. The diffusion module counts the other way (its x_0 is the
data, its t the noise steps): a diffusion index near T is a flow time near 0.
A velocity callable takes ``x`` (B, ...) and ``t``, a float or a (B,) tensor, and returns (B, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gencore.device import get_device
from gencore.diffusion import DiffusionConfig, MLPDenoiser, UNet8, train_with_ema
from gencore.nn import check_same_shape

# ---------------------------------------------------------------------------------------------
# 1. The math
# ---------------------------------------------------------------------------------------------


def _times(t, x: torch.Tensor) -> torch.Tensor:
    """``t`` as a (B,) tensor of times in [0, 1], one per example of ``x`` (B, ...)."""
    if not isinstance(t, torch.Tensor) or t.shape != x.shape[:1] or not t.is_floating_point():
        raise ValueError(f"t must be a floating tensor of shape ({x.shape[0]},), one time per example, "
                         f"got {getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
    # the range is checked on the CPU only: on a GPU it would make the host wait at every step
    if t.device.type == "cpu" and t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"t must lie in [0, 1] (0: noise, 1: data), got [{t.min().item():.3g}, {t.max().item():.3g}]")
    return t


def _per_example(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), to broadcast against x of shape (B, ...)."""
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def interpolant(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t x_1, the straight line from the noise x_0 to the data x_1.

    Liu et al. 2023, Eq. 1; the optimal-transport path of Lipman et al. 2023 (Sec. 4.1) with
    sigma_min = 0. ``x0`` and ``x1`` are (B, ...), ``t`` is (B,) in [0, 1].
    """
    check_same_shape("x0", x0, "x1", x1)
    t = _per_example(_times(t, x0), x0)
    return (1 - t) * x0 + t * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """d x_t / dt = x_1 - x_0, the conditional velocity: constant along each straight line."""
    check_same_shape("x0", x0, "x1", x1)
    return x1 - x0


def flow_matching_loss(
    v_model: Callable, x1: torch.Tensor, t: torch.Tensor | None = None, x0: torch.Tensor | None = None,
    interpolant_fn: Callable = interpolant,
) -> torch.Tensor:
    """E_{t, x_0, x_1} || v(x_t, t) - (x_1 - x_0) ||^2, a scalar (Lipman et al. 2023, the conditional
    flow-matching loss with sigma_min = 0; Liu et al. 2023, Eq. 1).

    The mean runs over the batch and over the dimensions of x, as in ``diffusion_loss``. ``t``
    (uniform on [0, 1], one per example) and ``x0`` (standard normal) are drawn unless given; a
    given ``x0`` pairs noise with data (reflow), otherwise the two are independent.
    """
    if not isinstance(x1, torch.Tensor) or not x1.is_floating_point() or x1.dim() < 2:
        raise ValueError(f"x1 must be a floating (B, ...) batch, got {getattr(x1, 'shape', type(x1).__name__)}")
    if t is None:
        t = torch.rand(x1.shape[0], device=x1.device, dtype=x1.dtype)
    if x0 is None:
        x0 = torch.randn_like(x1)
    x_t = interpolant_fn(x0, x1, t)
    return (v_model(x_t, t) - velocity_target(x0, x1)).pow(2).mean()


# ---------------------------------------------------------------------------------------------
# 2. Exact velocity fields
# ---------------------------------------------------------------------------------------------


def _time_vector(t, x: torch.Tensor) -> torch.Tensor:
    """A float or a (B,) tensor of times as a (B,) tensor in the dtype of ``x`` (B, d)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.expand(x.shape[0])
    if t.shape != x.shape[:1]:
        raise ValueError(f"t must be a float or a ({x.shape[0]},) tensor, got shape {tuple(t.shape)}")
    return t


def _check_points(x: torch.Tensor, d: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != d:
        raise ValueError(f"x must be a (B, {d}) tensor, got {getattr(x, 'shape', type(x).__name__)}")


def _eigen(mean: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The eigenvalues and eigenvectors of a positive definite ``cov`` (d, d) that goes with ``mean`` (d,)."""
    if not isinstance(mean, torch.Tensor) or not isinstance(cov, torch.Tensor) or mean.dim() != 1 \
            or cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(f"need mean (d,) and cov (d, d), got {tuple(getattr(mean, 'shape', ()))} and {tuple(getattr(cov, 'shape', ()))}")
    lam, Q = torch.linalg.eigh(cov)  # noqa: N806
    if lam.min() <= 0:
        raise ValueError(f"cov must be positive definite, got eigenvalues down to {lam.min().item():.3g}")
    return lam, Q


def gaussian_velocity(mean: torch.Tensor, cov: torch.Tensor) -> Callable:
    """The marginal velocity u(x, t) = E[x_1 - x_0 | x_t = x] when the data are N(mean, cov).

    x_t is Gaussian with mean t m and covariance C_t = (1 - t)^2 I + t^2 Sigma, and
    Cov(x_1 - x_0, x_t) = t Sigma - (1 - t) I, so u = m + (t Sigma - (1 - t) I) C_t^{-1} (x - t m).
    All these matrices share Sigma's eigenvectors Q: in that basis the field is a scaling of each
    coordinate by (t lam - (1 - t)) / ((1 - t)^2 + t^2 lam). Returns ``v(x, t)`` for x (B, d).
    """
    d = mean.shape[-1]
    lam, Q = _eigen(mean, cov)  # noqa: N806 (the matrix of eigenvectors)

    def velocity(x: torch.Tensor, t) -> torch.Tensor:
        _check_points(x, d)
        tc = _time_vector(t, x)[:, None]  # (B, 1)
        m, lam_x, q = mean.to(x), lam.to(x), Q.to(x)
        scale = (tc * lam_x - (1 - tc)) / ((1 - tc) ** 2 + tc**2 * lam_x)  # (B, d), in the eigenbasis
        return m + ((x - tc * m) @ q * scale) @ q.T

    return velocity


def gaussian_flow_map(mean: torch.Tensor, cov: torch.Tensor, x0: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """Where the ODE dx/dt = u(x, t) of ``gaussian_velocity`` takes x0 by time t: t m + C_t^{1/2} x_0.

    C_t^{1/2} commutes with its derivative, so with x_0 = C_t^{-1/2} (x_t - t m),
    dx_t/dt = m + 1/2 C_t^{-1} (dC_t/dt) (x_t - t m), which is u(x_t, t). At t = 1 the map is
    x_0 -> m + Sigma^{1/2} x_0.
    """
    lam, Q = _eigen(mean, cov)  # noqa: N806
    _check_points(x0, mean.shape[0])
    lam, Q = lam.to(x0), Q.to(x0)  # noqa: N806
    root = ((1 - t) ** 2 + t**2 * lam).sqrt()  # the eigenvalues of C_t^{1/2}
    return t * mean.to(x0) + (x0 @ Q * root) @ Q.T


def mixture_velocity(means: torch.Tensor, stds, weights: torch.Tensor | None = None) -> Callable:
    """The marginal velocity when the data are the mixture sum_k w_k N(m_k, s_k^2 I).

    Given component k, x_t ~ N(t m_k, v_k I) with v_k = (1 - t)^2 + t^2 s_k^2, and
    u_k = m_k + (t s_k^2 - (1 - t)) / v_k (x - t m_k) (``gaussian_velocity`` with Sigma = s_k^2 I);
    the responsibilities p(k | x_t) weight these. ``means`` is (K, d); ``stds`` a float or (K,).
    """
    if means.dim() != 2:
        raise ValueError(f"means must be (n_modes, d), got {tuple(means.shape)}")
    k, d = means.shape
    stds = torch.as_tensor(stds, dtype=means.dtype).expand(k)
    weights = torch.full((k,), 1.0 / k, dtype=means.dtype) if weights is None else torch.as_tensor(weights, dtype=means.dtype)
    if (stds <= 0).any() or weights.shape != (k,) or (weights <= 0).any():
        raise ValueError(f"need positive stds and {k} positive weights, got {stds.tolist()} and {weights.tolist()}")
    log_weights = (weights / weights.sum()).log()

    def velocity(x: torch.Tensor, t) -> torch.Tensor:
        _check_points(x, d)
        tc = _time_vector(t, x)[:, None]  # (B, 1)
        m, s2 = means.to(x), stds.to(x) ** 2
        v = (1 - tc) ** 2 + tc**2 * s2  # (B, K): the variance of x_t given k
        diff = x[:, None, :] - tc[..., None] * m  # (B, K, d)
        logits = log_weights.to(x) - 0.5 * d * v.log() - 0.5 * diff.pow(2).sum(-1) / v  # (B, K): log p(k, x_t) + const
        u_k = m + ((tc * s2 - (1 - tc)) / v)[..., None] * diff  # (B, K, d)
        return (logits.softmax(-1)[..., None] * u_k).sum(1)

    return velocity


# ---------------------------------------------------------------------------------------------
# 3. Samplers
# ---------------------------------------------------------------------------------------------


def euler_step(v: Callable, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """x_{t + dt} = x_t + dt v(x_t, t): one step of Euler's method, error O(dt^2) per step."""
    return x + dt * v(x, t)


def heun_step(v: Callable, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
    """Heun's method (the explicit trapezoidal rule): an Euler step predicts x_{t + dt}, then the
    step uses the average of the slopes at both ends. Two calls of v, error O(dt^3) per step."""
    slope = v(x, t)
    predicted = x + dt * slope
    return x + dt / 2 * (slope + v(predicted, t + dt))


def _batched(v: Callable) -> Callable:
    """``v`` called with a (B,) tensor of times, as a network needs, whatever the step passes."""

    def field(x: torch.Tensor, t) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            t = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
        return v(x, t)

    return field


@torch.no_grad()
def integrate(
    v: Callable, x0: torch.Tensor, steps: int, *, step_fn: Callable = euler_step,
    t0: float = 0.0, t1: float = 1.0, keep_path: bool = False,
):
    """Solve dx/dt = v(x, t) from ``t0`` to ``t1`` in ``steps`` equal steps of ``step_fn``.

    ``v`` receives a (B,) tensor of times. Returns x(t1), or ``(x(t1), path)`` with the path
    (steps + 1, B, ...) when ``keep_path``. Network calls: ``steps`` for Euler, 2 ``steps`` for Heun.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating tensor, got {type(x0).__name__}")
    field, dt, x = _batched(v), (t1 - t0) / steps, x0
    path = [x0] if keep_path else None
    for i in range(steps):
        x = step_fn(field, x, t0 + i * dt, dt)
        if keep_path:
            path.append(x)
    return (x, torch.stack(path)) if keep_path else x


def euler_sample(v: Callable, x0: torch.Tensor, steps: int, *, step_fn: Callable = euler_step, **kwargs):
    """Euler's method from the noise ``x0`` (t = 0) to the data (t = 1): ``steps`` network calls."""
    return integrate(v, x0, steps, step_fn=step_fn, **kwargs)


def heun_sample(v: Callable, x0: torch.Tensor, steps: int, *, step_fn: Callable = heun_step, **kwargs):
    """Heun's method from the noise ``x0`` to the data: 2 ``steps`` network calls."""
    return integrate(v, x0, steps, step_fn=step_fn, **kwargs)


def straightness(path: torch.Tensor) -> float:
    """S = int_0^1 E || (x_1 - x_0) - dx_t/dt ||^2 dt (Liu et al. 2023), estimated from a path
    (K + 1, B, ...) on an equal time grid, with dx/dt taken as the slope of each step.

    S = 0 exactly when every path is a straight line travelled at constant speed, which one
    Euler step follows without error.
    """
    if not isinstance(path, torch.Tensor) or path.dim() < 3 or path.shape[0] < 2:
        raise ValueError(f"path must be (steps + 1, B, ...), got {getattr(path, 'shape', type(path).__name__)}")
    k = path.shape[0] - 1
    slopes = (path[1:] - path[:-1]) * k  # (K, B, ...)
    gap = (path[-1] - path[0])[None] - slopes
    return float(gap.pow(2).flatten(2).sum(-1).mean())


# ---------------------------------------------------------------------------------------------
# 4. The network and training
# ---------------------------------------------------------------------------------------------


@dataclass
class FlowConfig:
    data_dim: int = 2  # 2 for the toys, 64 for the 8x8 digits
    denoiser: str = "mlp"  # the network: "mlp" (MLPDenoiser) or "unet" (UNet8, 8x8 images only)
    hidden: int = 128  # MLP width; the U-Net's base channels are hidden // 4
    steps: int = 3000  # optimiser steps
    batch_size: int = 256
    lr: float = 2e-3  # Adam learning rate
    ema_decay: float = 0.995  # weight of the old average in the EMA of the weights
    time_scale: float = 1000.0  # t in [0, 1] enters the sinusoidal embedding as t * time_scale

    @classmethod
    def for_scale(cls, data: str = "toy", scale: str | None = None, **overrides) -> FlowConfig:
        """The sizes of ``DiffusionConfig.for_scale(data, scale)``, so that a flow and a diffusion
        model are compared on one training budget; ``overrides`` win."""
        sizes = DiffusionConfig.for_scale(data, scale)
        fields = ("data_dim", "denoiser", "hidden", "steps", "batch_size", "lr", "ema_decay")
        return cls(**{**{name: getattr(sizes, name) for name in fields}, **overrides})


class VelocityNet(nn.Module):
    """v_theta(x_t, t): the diffusion module's network with the time t in [0, 1] scaled to the
    range of its step embedding (0 to ``time_scale``)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.config = config
        inner = DiffusionConfig(data_dim=config.data_dim, denoiser=config.denoiser, hidden=config.hidden)
        self.net = UNet8(inner) if config.denoiser == "unet" else MLPDenoiser(inner)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t * self.config.time_scale)  # (B, d)


def make_velocity_net(config: FlowConfig | None = None, seed: int = 0, device=None) -> VelocityNet:
    """A seeded ``VelocityNet`` on ``device``."""
    config = config or FlowConfig.for_scale()
    if config.denoiser not in ("mlp", "unet") or (config.denoiser == "unet" and config.data_dim != 64):
        raise ValueError(f"denoiser must be 'mlp', or 'unet' for 64-pixel digits; got {config.denoiser!r} for data_dim {config.data_dim}")
    torch.manual_seed(seed)
    return VelocityNet(config).to(device or get_device())


def train_flow(
    model: nn.Module, x_train: torch.Tensor, *, x0_train: torch.Tensor | None = None, config: FlowConfig | None = None,
    loss_fn: Callable = flow_matching_loss, seed: int = 0, progress: bool | None = None,
) -> tuple[dict[str, list[float]], nn.Module]:
    """Train ``model`` as v_theta with Adam on ``loss_fn(model, x1, x0=...)``; returns (history, EMA model).

    ``x_train`` (N, d) are the data x_1. With ``x0_train`` (N, d) the noise is paired with them
    (reflow: row i of both is drawn together); without it the loss draws fresh independent noise.
    """
    config = config or model.config
    if not isinstance(x_train, torch.Tensor) or x_train.dim() != 2 or x_train.shape[1] != config.data_dim:
        raise ValueError(f"expected data of shape (N, {config.data_dim}), got {getattr(x_train, 'shape', type(x_train).__name__)}")
    if x0_train is not None and (not isinstance(x0_train, torch.Tensor) or x0_train.shape != x_train.shape):
        raise ValueError(f"x0_train must pair with x_train, shape {tuple(x_train.shape)}, got {getattr(x0_train, 'shape', None)}")

    def batch_loss(net: nn.Module, index: torch.Tensor) -> torch.Tensor:
        return loss_fn(net, x_train[index], x0=None if x0_train is None else x0_train[index])

    return train_with_ema(model, x_train, config, batch_loss, seed=seed, progress=progress,
                          description="flow matching training")


# ---------------------------------------------------------------------------------------------
# 5. Reflow
# ---------------------------------------------------------------------------------------------


def reflow(
    v_model: nn.Module, n_pairs: int, *, config: FlowConfig | None = None, sample_steps: int = 50,
    init: nn.Module | None = None, seed: int = 0, progress: bool | None = None,
) -> tuple[dict[str, list[float]], nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """One round of reflow (Liu et al. 2023): pair fresh noise x_0 with where the flow of ``v_model``
    takes it, x_1 = ODE(x_0) (Heun, ``sample_steps`` steps), and train a velocity on those pairs.

    The new network starts from ``init``'s weights if given, else from a fresh seeded one. Returns
    (history, EMA model, (x0, x1)).
    """
    config = config or v_model.config
    if not isinstance(n_pairs, int) or n_pairs < 1:
        raise ValueError(f"n_pairs must be a positive int, got {n_pairs!r}")
    device = next(v_model.parameters()).device
    x0 = torch.randn(n_pairs, config.data_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    x1 = torch.cat([heun_sample(v_model, chunk, sample_steps) for chunk in x0.split(4096)])
    model = copy.deepcopy(init).train().requires_grad_(True) if init is not None else make_velocity_net(config, seed, device)
    history, ema_model = train_flow(model, x1, x0_train=x0, config=config, seed=seed, progress=progress)
    return history, ema_model, (x0, x1)
