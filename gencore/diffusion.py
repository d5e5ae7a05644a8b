"""Diffusion models: the forward process, DDPM (Ho et al. 2020) and DDIM (Song et al. 2021).

1. schedules: ``linear_schedule``, ``cosine_schedule``, ``NoiseSchedule`` (betas, alphas,
   alpha_bar), built from ``alpha_bar_from_betas``;
2. the math, as pure functions: ``q_sample`` (the closed-form marginal), ``diffusion_loss``
   (the simple epsilon loss), ``posterior_mean_variance``, ``ddpm_step``, ``ddim_step``, and the
   exact epsilon-predictor of Gaussian data, ``gaussian_eps_model``;
3. samplers: ``ddpm_sample`` and ``ddim_sample`` accept any callable ``eps_model(x_t, t)``;
4. denoisers: ``MLPDenoiser`` for 2-D points, ``UNet8`` for 8x8 digits, ``EMA`` of weights;
5. training: ``train_diffusion``, which takes the loss as an argument, on the loop ``train_with_ema``.

Time is indexed from 0 as in the code of Ho et al.: ``t`` in {0, ..., T-1}, and index ``t``
is the paper's step t + 1. So ``alpha_bar[t]`` is prod_{s <= t} (1 - beta_s), ``x_t`` has been
noised t + 1 times, and "the step before index 0" is the data x_0 itself (alpha_bar = 1).
Shapes: data are flat, ``x`` of shape (B, d) (data dimension d = 2 for the toys, 64 for the digits).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gencore.device import StepLog, autocast, compiled, configure_backend, get_device, pick, progress_bar, to_device
from gencore.nn import at_least_float32, check_same_shape

# ---------------------------------------------------------------------------------------------
# 1. Noise schedules
# ---------------------------------------------------------------------------------------------


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s), the signal kept after t + 1 steps (Ho et al. 2020, Eq. 4)."""
    _check_betas(betas)
    return torch.cumprod(1.0 - betas, dim=0)


def _check_betas(betas) -> None:
    if not isinstance(betas, torch.Tensor) or not betas.is_floating_point() or betas.dim() != 1 or len(betas) == 0:
        raise ValueError(f"betas must be a non-empty 1-D floating tensor, got {getattr(betas, 'shape', type(betas).__name__)}")
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise ValueError(f"every beta must lie in (0, 1); got min {betas.min().item():.3g}, max {betas.max().item():.3g}")


@dataclass
class NoiseSchedule:
    """The per-step variances ``betas`` (T,), ``alphas = 1 - betas`` and ``alpha_bar`` (cumulative)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bar: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor, alpha_bar_fn: Callable = alpha_bar_from_betas) -> NoiseSchedule:
        _check_betas(betas)
        return cls(betas, 1.0 - betas, alpha_bar_fn(betas))

    @property
    def T(self) -> int:  # noqa: N802 (the paper's name)
        return len(self.betas)

    def alpha_bar_prev(self, t: int) -> torch.Tensor:
        """alpha_bar of the step before index t; 1 before the first step (no noise yet)."""
        return self.alpha_bar[t - 1] if t > 0 else torch.ones((), dtype=self.alpha_bar.dtype, device=self.alpha_bar.device)

    def to(self, device) -> NoiseSchedule:
        return NoiseSchedule(self.betas.to(device), self.alphas.to(device), self.alpha_bar.to(device))


def linear_schedule(T: int = 1000, beta_1: float = 1e-4, beta_T: float = 0.02, dtype=torch.float32) -> NoiseSchedule:  # noqa: N803
    """betas rising linearly from ``beta_1`` to ``beta_T`` (Ho et al. 2020, Sec. 4)."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    return NoiseSchedule.from_betas(torch.linspace(beta_1, beta_T, T, dtype=dtype))


def cosine_schedule(T: int = 1000, s: float = 0.008, max_beta: float = 0.999, dtype=torch.float32) -> NoiseSchedule:  # noqa: N803
    """alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi / 2), normalised (Nichol & Dhariwal 2021, Eq. 17)."""
    if not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)  # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1}
    return NoiseSchedule.from_betas(betas.to(dtype))


# ---------------------------------------------------------------------------------------------
# 2. The math
# ---------------------------------------------------------------------------------------------


def _check_t(t, T: int) -> None:  # noqa: N803
    if isinstance(t, torch.Tensor):
        # the range is checked on the CPU only: on a GPU it would make the host wait at every
        # training step (an index out of range still fails there, in the indexing)
        out_of_range = t.device.type == "cpu" and t.numel() and (t.min() < 0 or t.max() >= T)
        if t.dtype not in (torch.int64, torch.int32) or out_of_range:
            raise ValueError(f"t must hold integer steps in [0, {T - 1}], got dtype {t.dtype} and range "
                             f"[{t.min().item() if t.numel() else '-'}, {t.max().item() if t.numel() else '-'}]")
    elif not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < T:
        raise ValueError(f"t must be an int in [0, {T - 1}], got {t!r}")


def _per_example(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, ..., 1) to broadcast against x of shape (B, ...)."""
    return values[t].reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise, a draw of q(x_t | x_0) (Ho et al. 2020, Eq. 4).

    ``x0`` and ``noise`` are (B, ...), ``t`` is (B,) integer steps, ``alpha_bar`` is (T,).
    """
    check_same_shape("x0", x0, "noise", noise)
    _check_t(t, len(alpha_bar))
    if not isinstance(t, torch.Tensor) or t.shape != x0.shape[:1]:
        raise ValueError(f"t must be a tensor of shape ({x0.shape[0]},), one step per example, got {getattr(t, 'shape', t)!r}")
    a = _per_example(alpha_bar, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def diffusion_loss(
    eps_model: Callable, x0: torch.Tensor, alpha_bar: torch.Tensor,
    t: torch.Tensor | None = None, noise: torch.Tensor | None = None, q_sample_fn: Callable = q_sample,
) -> torch.Tensor:
    """L_simple = E_{t, x_0, eps} || eps - eps_model(x_t, t) ||^2 (Ho et al. 2020, Eq. 14), a scalar.

    The mean runs over the batch and over the dimensions of x. ``t`` (uniform on {0, ..., T-1})
    and ``noise`` (standard normal) are drawn unless given.
    """
    T = len(alpha_bar)  # noqa: N806
    if t is None:
        t = torch.randint(0, T, (x0.shape[0],), device=x0.device)
    if noise is None:
        noise = torch.randn_like(x0)
    x_t = q_sample_fn(x0, t, noise, alpha_bar)
    return (noise - eps_model(x_t, t)).pow(2).mean()


def posterior_mean_variance(x0, x_t, t: int, schedule: NoiseSchedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, Eq. 6-7).

    mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
    variance beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (0 at index 0: x_0 is then known).
    """
    check_same_shape("x0", x0, "x_t", x_t)
    _check_t(t, schedule.T)
    beta, alpha, abar, abar_prev = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t], schedule.alpha_bar_prev(t)
    mean = abar_prev.sqrt() * beta / (1 - abar) * x0 + alpha.sqrt() * (1 - abar_prev) / (1 - abar) * x_t
    return mean, (1 - abar_prev) / (1 - abar) * beta


def ddpm_step(x_t: torch.Tensor, t: int, eps: torch.Tensor, schedule: NoiseSchedule, noise: torch.Tensor) -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1} ~ N(mu_theta(x_t, t), beta-tilde_t I) (Ho et al. 2020, Eq. 11, Alg. 2).

    mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t), with ``eps`` the predicted
    noise; ``noise`` is the fresh standard normal draw (its scale is 0 at index 0).
    """
    check_same_shape("x_t", x_t, "eps", eps)
    check_same_shape("x_t", x_t, "noise", noise)
    _check_t(t, schedule.T)
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    variance = (1 - schedule.alpha_bar_prev(t)) / (1 - abar) * beta  # beta-tilde_t
    return mean + variance.sqrt() * noise


def ddim_step(
    x_t: torch.Tensor, t: int, t_prev: int, eps: torch.Tensor, alpha_bar: torch.Tensor,
    eta: float = 0.0, noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM step from index t to the earlier index t_prev (-1 means the data) (Song et al. 2021, Eq. 12, 16).

    x_0 is predicted as (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); then
    x_prev = sqrt(abar_prev) x0_pred + sqrt(1 - abar_prev - sigma^2) eps + sigma noise, with
    sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).
    eta = 0 is deterministic; eta = 1 with t_prev = t - 1 is the DDPM step.
    """
    check_same_shape("x_t", x_t, "eps", eps)
    _check_t(t, len(alpha_bar))
    if not isinstance(t_prev, int) or not -1 <= t_prev < t:
        raise ValueError(f"t_prev must be an int with -1 <= t_prev < t = {t}, got {t_prev!r}")
    if eta < 0:
        raise ValueError(f"eta must be non-negative, got {eta}")
    abar = alpha_bar[t]
    abar_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(abar)
    x0_pred = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()  # 1. predict x_0
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()  # 2. the noise scale
    x_prev = abar_prev.sqrt() * x0_pred + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps  # 3. move
    if eta > 0:
        if noise is None:
            raise ValueError("eta > 0 needs a noise tensor")
        check_same_shape("x_t", x_t, "noise", noise)
        x_prev = x_prev + sigma * noise
    return x_prev


def gaussian_eps_model(mean: torch.Tensor, cov: torch.Tensor, alpha_bar: torch.Tensor) -> Callable:
    """The exact noise predictor E[eps | x_t] when the data are N(mean, cov).

    x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps is Gaussian with covariance C = abar cov + (1 - abar) I
    and Cov(eps, x_t) = sqrt(1 - abar) I, so E[eps | x_t] = sqrt(1 - abar) C^{-1} (x_t - sqrt(abar) mean).
    Returns ``eps_model(x_t, t)`` for ``x_t`` (B, d) and an int (or a (B,) tensor of one value) ``t``.
    """
    d = mean.shape[-1]
    if mean.dim() != 1 or cov.shape != (d, d):
        raise ValueError(f"need mean (d,) and cov (d, d), got {tuple(mean.shape)} and {tuple(cov.shape)}")
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)

    def eps_model(x_t: torch.Tensor, t) -> torch.Tensor:
        t = int(t.flatten()[0]) if isinstance(t, torch.Tensor) else t
        a = alpha_bar[t].to(cov.dtype)
        C_inv = torch.linalg.inv(a * cov + (1 - a) * eye)  # noqa: N806 (symmetric)
        return ((1 - a).sqrt() * (x_t.to(cov.dtype) - a.sqrt() * mean) @ C_inv).to(x_t.dtype)  # (B, d)

    return eps_model


def mixture_denoiser(means: torch.Tensor, std: float, alpha_bar: torch.Tensor, weights: torch.Tensor | None = None):
    """E[x_0 | x_t] and E[eps | x_t] when the data are a mixture of isotropic Gaussians N(means_k, std^2 I).

    Given component k, x_t ~ N(sqrt(abar) m_k, v I) with v = abar std^2 + 1 - abar, and
    E[x_0 | x_t, k] = m_k + sqrt(abar) std^2 / v (x_t - sqrt(abar) m_k); the responsibilities
    p(k | x_t) weight these. E[eps | x_t] = (x_t - sqrt(abar) E[x_0 | x_t]) / sqrt(1 - abar).
    Returns ``(x0_model, eps_model)``, both called as ``f(x_t, t)``; ``means`` is (n_modes, d).
    """
    if means.dim() != 2 or std <= 0:
        raise ValueError(f"need means (n_modes, d) and a positive std, got {tuple(means.shape)} and {std}")
    k, dim = means.shape
    log_weights = (torch.full((k,), 1.0 / k) if weights is None else weights).to(means).log()

    def x0_model(x_t: torch.Tensor, t) -> torch.Tensor:
        t = int(t.flatten()[0]) if isinstance(t, torch.Tensor) else t
        a = alpha_bar[t].to(means)
        v = a * std**2 + 1 - a
        diff = x_t[:, None, :] - a.sqrt() * means[None]  # (B, n_modes, d)
        logits = log_weights - 0.5 * diff.pow(2).sum(-1) / v  # (B, n_modes): log p(k | x_t) + const
        x0_given_k = means[None] + a.sqrt() * std**2 / v * diff  # (B, n_modes, d)
        return (logits.softmax(-1)[..., None] * x0_given_k).sum(1)

    def eps_model(x_t: torch.Tensor, t) -> torch.Tensor:
        t_int = int(t.flatten()[0]) if isinstance(t, torch.Tensor) else t
        a = alpha_bar[t_int].to(means)
        return (x_t - a.sqrt() * x0_model(x_t, t_int)) / (1 - a).sqrt()

    return x0_model, eps_model


# ---------------------------------------------------------------------------------------------
# 3. Samplers
# ---------------------------------------------------------------------------------------------


def _call(eps_model: Callable, x: torch.Tensor, t: int) -> torch.Tensor:
    return eps_model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))


def _noise(shape, generator, device, dtype) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=dtype).to(device)


@torch.no_grad()
def ddpm_sample(
    eps_model: Callable, shape: tuple[int, ...], schedule: NoiseSchedule, *, step_fn: Callable = ddpm_step,
    x_T: torch.Tensor | None = None, generator: torch.Generator | None = None, device=None,  # noqa: N803
    dtype=torch.float32, keep: tuple[int, ...] = (), progress: bool | None = None,
):
    """Ancestral sampling (Ho et al. 2020, Alg. 2): x_T ~ N(0, I), then T steps of ``step_fn``.

    Returns the samples, or ``(samples, {t: x_t})`` for the t in ``keep``, numbered as in the
    paper: the step at index t produces x_t, so ``0`` is the samples and ``T`` the starting noise.
    """
    device = device or schedule.betas.device
    x = _noise(shape, generator, device, dtype) if x_T is None else x_T.to(device, dtype)
    kept = {schedule.T: x.clone()} if schedule.T in keep else {}
    for t in progress_bar(range(schedule.T - 1, -1, -1), schedule.T, "DDPM sampling", progress):
        x = step_fn(x, t, _call(eps_model, x, t), schedule, _noise(shape, generator, device, dtype))
        if t in keep:
            kept[t] = x.clone()
    return (x, kept) if keep else x


def ddim_timesteps(T: int, steps: int) -> list[int]:  # noqa: N803
    """``steps`` indices from T-1 down to 0, evenly spaced (Song et al. 2021, Sec. 4.2).

    Every schedule starts at T-1, the pure noise x_T: one step jumps from there to the data.
    """
    if not isinstance(steps, int) or not 1 <= steps <= T:
        raise ValueError(f"steps must be an int in [1, {T}], got {steps!r}")
    if steps == 1:
        return [T - 1]
    # the spacing (T - 1) / (steps - 1) is at least 1, so the rounded indices are distinct
    return sorted({round(i * (T - 1) / (steps - 1)) for i in range(steps)}, reverse=True)


@torch.no_grad()
def ddim_sample(
    eps_model: Callable, shape: tuple[int, ...], schedule: NoiseSchedule, steps: int, eta: float = 0.0, *,
    step_fn: Callable = ddim_step, x_T: torch.Tensor | None = None, generator: torch.Generator | None = None,  # noqa: N803
    device=None, dtype=torch.float32, progress: bool | None = None,
) -> torch.Tensor:
    """DDIM sampling with ``steps`` network calls (Song et al. 2021, Eq. 12); eta = 0 is deterministic."""
    device = device or schedule.betas.device
    x = _noise(shape, generator, device, dtype) if x_T is None else x_T.to(device, dtype)
    times = ddim_timesteps(schedule.T, steps)
    for i in progress_bar(range(len(times)), len(times), f"DDIM sampling ({steps} steps)", progress):
        t, t_prev = times[i], times[i + 1] if i + 1 < len(times) else -1
        noise = _noise(shape, generator, device, dtype) if eta > 0 else None
        x = step_fn(x, t, t_prev, _call(eps_model, x, t), schedule.alpha_bar, eta=eta, noise=noise)
    return x


# ---------------------------------------------------------------------------------------------
# 4. Denoisers
# ---------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of the step (Vaswani et al. 2017, as in Ho et al. 2020): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


@dataclass
class DiffusionConfig:
    data_dim: int = 2  # 2 for the toys, 64 for the 8x8 digits
    T: int = 1000  # diffusion steps
    schedule: str = "linear"  # "linear" or "cosine"
    denoiser: str = "mlp"  # "mlp" (MLPDenoiser) or "unet" (UNet8, 8x8 images only)
    hidden: int = 128  # MLP width; the U-Net's base channels are hidden // 4
    steps: int = 3000  # optimiser steps
    batch_size: int = 256
    lr: float = 2e-3  # Adam learning rate
    ema_decay: float = 0.995  # weight of the old average in the EMA of the weights

    @classmethod
    def for_scale(cls, data: str = "toy", scale: str | None = None, **overrides) -> DiffusionConfig:
        """Sizes for ``data`` ("toy" or "digits") at ``GENCORE_SCALE`` (or ``scale``); overrides win."""
        if data == "toy":
            sizes = pick(smoke=dict(hidden=32, steps=30, batch_size=128),
                         small=dict(hidden=64, steps=1500, batch_size=256),
                         full=dict(hidden=256, steps=20000, batch_size=512, lr=1e-3, ema_decay=0.999), scale=scale)
        elif data == "digits":
            # on a CPU the U-Net is too slow to train in a minute; the MLP sees the 64 pixels as a vector
            sizes = pick(smoke=dict(hidden=32, steps=20, batch_size=64),
                         small=dict(hidden=128, steps=2000, batch_size=128, lr=2e-3),
                         full=dict(denoiser="unet", hidden=128, steps=20000, batch_size=256, lr=5e-4, ema_decay=0.999),
                         scale=scale)
            sizes = {"data_dim": 64, "lr": 1e-3, **sizes}
        else:
            raise ValueError(f"data must be 'toy' or 'digits', got {data!r}")
        return cls(**{**sizes, **overrides})

    def make_schedule(self) -> NoiseSchedule:
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got {self.schedule!r}")
        return linear_schedule(self.T) if self.schedule == "linear" else cosine_schedule(self.T)


class MLPDenoiser(nn.Module):
    """eps_theta(x_t, t) for points: residual MLP blocks, the step's embedding added in each."""

    def __init__(self, config: DiffusionConfig, blocks: int = 3):
        super().__init__()
        self.config, h = config, config.hidden
        self.inp = nn.Linear(config.data_dim, h)
        self.time = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h)) for _ in range(blocks))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(h, config.data_dim))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.config.hidden))  # (B, h)
        h = self.inp(x_t)
        for block in self.blocks:
            h = h + block(h + emb)
        return at_least_float32(self.out(h))  # (B, d), float32 also under bf16 autocast


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the step's embedding added in between, plus a skip connection."""

    def __init__(self, c_in: int, c_out: int, time_dim: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(min(8, c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(min(8, c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        return self.conv2(F.silu(self.norm2(h))) + self.skip(x)


class UNet8(nn.Module):
    """A small U-Net for 8x8 images: 8x8 -> 4x4 -> 2x2 and back, with skips (Ronneberger et al. 2015).

    Takes and returns flat (B, 64) tensors, so that the diffusion math stays on vectors.
    """

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.config, c = config, max(8, config.hidden // 4)
        self.time_dim = 4 * c
        self.time = nn.Sequential(nn.Linear(c, self.time_dim), nn.SiLU(), nn.Linear(self.time_dim, self.time_dim))
        self.inp = nn.Conv2d(1, c, 3, padding=1)
        self.down1, self.pool1 = ResBlock(c, c, self.time_dim), nn.Conv2d(c, c, 3, stride=2, padding=1)
        self.down2, self.pool2 = ResBlock(c, 2 * c, self.time_dim), nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)
        self.mid = ResBlock(2 * c, 2 * c, self.time_dim)
        self.up2 = ResBlock(4 * c, 2 * c, self.time_dim)
        self.up1 = ResBlock(3 * c, c, self.time_dim)
        self.out = nn.Sequential(nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.time[0].in_features))  # (B, 4c)
        x = self.inp(x_t.view(-1, 1, 8, 8))  # (B, c, 8, 8)
        skip1 = self.down1(x, emb)  # (B, c, 8, 8)
        skip2 = self.down2(self.pool1(skip1), emb)  # (B, 2c, 4, 4)
        h = self.mid(self.pool2(skip2), emb)  # (B, 2c, 2, 2)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2), skip2], 1), emb)  # (B, 2c, 4, 4)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2), skip1], 1), emb)  # (B, c, 8, 8)
        return at_least_float32(self.out(h).view(-1, 64))  # float32 also under bf16 autocast


class EMA:
    """An exponential moving average of a model's weights, used for sampling (Ho et al. 2020, App. B)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must lie in [0, 1), got {decay}")
        self.decay, self.model = decay, copy.deepcopy(model).eval().requires_grad_(False)
        self._source, self._averages, self._tracked = model, list(self.model.parameters()), list(model.parameters())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """average <- decay average + (1 - decay) current, for every parameter of ``model``."""
        current = self._tracked if model is self._source else list(model.parameters())
        torch._foreach_lerp_(self._averages, current, 1.0 - self.decay)


def make_denoiser(config: DiffusionConfig | None = None, seed: int = 0, device=None) -> nn.Module:
    """A seeded ``MLPDenoiser`` or ``UNet8`` (as ``config.denoiser`` says) on ``device``."""
    config = config or DiffusionConfig.for_scale()
    if config.denoiser not in ("mlp", "unet") or (config.denoiser == "unet" and config.data_dim != 64):
        raise ValueError(f"denoiser must be 'mlp', or 'unet' for 64-pixel digits; got {config.denoiser!r} for data_dim {config.data_dim}")
    torch.manual_seed(seed)
    model = UNet8(config) if config.denoiser == "unet" else MLPDenoiser(config)
    return model.to(device or get_device())


def digits_to_model(x: torch.Tensor) -> torch.Tensor:
    """Pixels in [0, 1] to [-1, 1], the range the unit-variance noise is matched to."""
    return 2 * x - 1


def model_to_digits(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# 5. Training
# ---------------------------------------------------------------------------------------------


def train_diffusion(
    model: nn.Module, x_train: torch.Tensor, schedule: NoiseSchedule | None = None, *,
    config: DiffusionConfig | None = None, loss_fn: Callable = diffusion_loss, seed: int = 0, progress: bool | None = None,
) -> tuple[dict[str, list[float]], nn.Module]:
    """Train ``model`` as eps_theta with Adam on ``loss_fn(model, x0, alpha_bar)``; returns (history, EMA model).

    The history has ``step`` and ``loss``; sample from the EMA model, whose weights average the
    last ~1 / (1 - ema_decay) steps and give smoother samples than the last iterate.
    """
    config = config or model.config
    if not isinstance(x_train, torch.Tensor) or x_train.dim() != 2 or x_train.shape[1] != config.data_dim:
        raise ValueError(f"expected data of shape (N, {config.data_dim}), got {getattr(x_train, 'shape', type(x_train).__name__)}")
    schedule = (schedule or config.make_schedule()).to(x_train.device)

    def batch_loss(net: nn.Module, index: torch.Tensor) -> torch.Tensor:
        return loss_fn(net, x_train[index], schedule.alpha_bar)  # the schedule stays float32

    return train_with_ema(model, x_train, config, batch_loss, seed=seed, progress=progress, description="diffusion training")


def train_with_ema(
    model: nn.Module, x_train: torch.Tensor, config, batch_loss: Callable, *, seed: int = 0,
    progress: bool | None = None, description: str = "training",
) -> tuple[dict[str, list[float]], nn.Module]:
    """The loop that ``train_diffusion`` and ``gencore.flow.train_flow`` share: ``config.steps`` Adam
    steps (cosine decay to lr / 10) on ``batch_loss(net, index)``, the loss on the rows ``index`` of
    ``x_train``, drawn uniformly with replacement; returns (history, EMA model).

    ``config`` needs ``lr``, ``steps``, ``batch_size`` and ``ema_decay``.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)  # one kernel per step, not per tensor
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps, eta_min=config.lr / 10)
    ema = EMA(model, config.ema_decay)
    configure_backend(x_train.device)
    net = compiled(model)  # the EMA copy above and the samplers use the plain module
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the loss draws t and the noise from the global generator
    history: dict[str, list[float]] = {"step": [], "loss": []}
    bar = progress_bar(range(1, config.steps + 1), config.steps, description, progress)
    log = StepLog(history, bar=bar, show=("loss",))
    for step in bar:
        index = to_device(torch.randint(0, len(x_train), (config.batch_size,), generator=generator), x_train.device)
        optimizer.zero_grad()
        with autocast(x_train.device):  # bf16 layers on a GPU; the network returns float32
            loss = batch_loss(net, index)
        loss.backward()
        optimizer.step()
        scheduler.step()
        ema.update(model)
        history["step"].append(step)
        log.append(loss=loss)
    log.flush()
    return history, ema.model
