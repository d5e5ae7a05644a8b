"""Generative adversarial networks (Goodfellow et al. 2014) and Wasserstein GANs (Arjovsky et
al. 2017; Gulrajani et al. 2017), top to bottom.

1. the math, as pure functions: ``js_divergence``, ``optimal_discriminator``,
   ``wasserstein1_1d``, the losses of both players for the three games (minimax,
   non-saturating, Wasserstein) and ``gradient_penalty``;
2. the models: an MLP generator and critic for 2-D toys, a small convolutional pair for the
   8x8 digits;
3. training: ``train_gan`` (the loop, every loss a parameter), ``train_critic`` (one player
   against two fixed sample sets) and ``train_gan_2d`` (a ready-made toy run for other chapters).

Shapes: samples ``x`` are (B, d), d = 2 for the toys and 64 for the digits; noise ``z`` is
(B, latent_dim), latent_dim = d_z in the book; a discriminator or critic returns one number per
example, (B,). The discriminator returns *logits*: D(x) = sigmoid(logit).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gencore.device import StepLog, autocast, compiled, configure_backend, get_device, pick, progress_bar, to_device
from gencore.nn import at_least_float32, check_same_shape, mlp

# ---------------------------------------------------------------------------------------------
# 1. The math
# ---------------------------------------------------------------------------------------------


def _check_probabilities(name: str, p: torch.Tensor, atol: float = 1e-4) -> None:
    if not isinstance(p, torch.Tensor) or not p.is_floating_point() or p.dim() == 0:
        raise ValueError(f"{name} must be a floating tensor of probability vectors (..., K), got {p!r:.60}")
    if (p < 0).any():
        raise ValueError(f"{name} has negative entries (smallest {p.min().item():.3g}); probabilities are >= 0")
    sums = p.sum(dim=-1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=atol, rtol=0):
        raise ValueError(f"{name} must sum to 1 along the last dimension, got sums in [{sums.min():.6g}, {sums.max():.6g}]")


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence between probability vectors along the last dimension, in nats.

    JS(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m) with the mixture m = (p + q) / 2, so that
    0 <= JS <= log 2 (Lin 1991; Goodfellow et al. 2014, Sec. 4.1). Terms with p_i = 0 are
    exactly zero (0 log 0 = 0), so disjoint supports give log 2 rather than NaN.
    Returns shape ``p.shape[:-1]``.
    """
    check_same_shape("p", p, "q", q)
    _check_probabilities("p", p)
    _check_probabilities("q", q)
    # xlogy(a, b) = a log b and is 0 where a = 0. We write log m = log(p + q) - log 2 rather than
    # halving p + q, which can underflow to 0 for the tiniest positive p
    total = p + q
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, total)).sum(dim=-1) + math.log(2) * p.sum(dim=-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, total)).sum(dim=-1) + math.log(2) * q.sum(dim=-1)
    return 0.5 * (kl_pm + kl_qm)


def optimal_discriminator(p_data: torch.Tensor, p_model: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_model(x)), elementwise (Goodfellow et al. 2014, Prop. 1).

    Inputs are densities (or probabilities) evaluated at the same points. Where both are zero
    no point is ever drawn, any value is optimal, and we return 1/2.
    """
    check_same_shape("p_data", p_data, "p_model", p_model)
    if (p_data < 0).any() or (p_model < 0).any():
        raise ValueError("densities must be non-negative")
    total = p_data + p_model
    return torch.where(total > 0, p_data / total.clamp_min(torch.finfo(total.dtype).tiny), 0.5)


def wasserstein1_1d(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """W1 between the empirical distributions of two 1-D samples of equal size n.

    In one dimension, for a cost that is a convex function of x - y such as |x - y|, the
    monotone rearrangement (matching the samples in sorted order) is an optimal plan, so
    W1 = (1/n) sum_i |x_(i) - y_(i)| with x_(i) the i-th smallest (Villani 2003, Sec. 2.2;
    Peyre & Cuturi 2019, Sec. 2.6). For a cost concave in |x - y|, such as sqrt|x - y| (a concave
    function of the distance, not a convex function of x - y), it need not be.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 1:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 1-D floating tensor of samples, got {shape}")
    if x.shape != y.shape or x.numel() == 0:
        raise ValueError(f"x and y must hold the same (non-zero) number of samples, got {x.numel()} and {y.numel()}")
    return (x.sort().values - y.sort().values).abs().mean()


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-V(D, G) estimated on a batch: -mean log D(x) - mean log(1 - D(G(z))), D = sigmoid(logit).

    Goodfellow et al. 2014, Eq. 1, with the sign flipped so that the discriminator minimises it.
    log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l) stay finite at any l.
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_minimax(fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's side of the minimax game: mean log(1 - D(G(z))) = -mean softplus(l).

    Its gradient vanishes where the discriminator rejects the fakes confidently (l << 0): the
    loss saturates (Goodfellow et al. 2014, Sec. 3).
    """
    return -F.softplus(fake_logits).mean()


def generator_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating generator loss -mean log D(G(z)) = mean softplus(-l) (Goodfellow et al.
    2014, Sec. 3): same fixed point as the minimax loss, strong gradients where D rejects fakes."""
    return F.softplus(-fake_logits).mean()


def critic_loss_wasserstein(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """mean f(G(z)) - mean f(x): the critic minimises the negative of the dual objective of W1
    (Arjovsky et al. 2017, Eq. 3); f must be kept (about) 1-Lipschitz."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss_wasserstein(fake_scores: torch.Tensor) -> torch.Tensor:
    """-mean f(G(z)): the generator moves its samples up the critic (Arjovsky et al. 2017, Alg. 1)."""
    return -fake_scores.mean()


def gradient_penalty(critic: Callable, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The WGAN-GP penalty E[(||grad_x f(x_hat)||_2 - 1)^2] on random interpolates.

    x_hat = u x + (1 - u) x~ with one u ~ U[0, 1] per example (Gulrajani et al. 2017, Eq. 3
    and Alg. 1, where u is called epsilon). The gradient is taken with ``create_graph=True`` so
    that the penalty can be differentiated again with respect to the critic's parameters. The
    norm runs over all non-batch dimensions, so images (B, 1, H, W) work as well as vectors (B, d).
    """
    check_same_shape("real", real, "fake", fake)
    if real.dim() < 2:
        raise ValueError(f"real and fake must be batches (B, ...), got shape {tuple(real.shape)}")
    u = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (u * real.detach() + (1 - u) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)  # (B, ...)
    norms = grad.flatten(start_dim=1).norm(dim=1)  # (B,)
    return (norms - 1).pow(2).mean()


@torch.no_grad()
def clip_weights(model: nn.Module, c: float) -> None:
    """Clamp every parameter to [-c, c]: the original WGAN's crude way to bound the Lipschitz
    constant (Arjovsky et al. 2017, Alg. 1)."""
    for p in model.parameters():
        p.clamp_(-c, c)


def gradient_norms(critic: Callable, x: torch.Tensor) -> torch.Tensor:
    """||grad_x f(x)||_2 at each point of the batch x, (B,). Their maximum is a lower bound on
    the Lipschitz constant of f, not the constant itself: f may be steeper between the points."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x)
    return grad.flatten(start_dim=1).norm(dim=1)


# ---------------------------------------------------------------------------------------------
# 2. Models
# ---------------------------------------------------------------------------------------------


@dataclass
class GANConfig:
    data_dim: int = 2  # 2 for the toys, 64 for the digits
    latent_dim: int = 2  # dimension of the noise z ~ N(0, I)
    hidden: int = 128  # width of the hidden layers (MLP) or channels of the first conv (digits)
    steps: int = 2000  # generator steps
    n_critic: int = 1  # discriminator/critic steps per generator step
    batch_size: int = 256
    lr: float = 1e-3  # Adam learning rate of both players
    adam_betas: tuple[float, float] = (0.5, 0.9)  # Adam's decay rates (beta1, beta2); GANs use a small beta1
    gp_weight: float = 0.0  # lambda of the gradient penalty (10 in Gulrajani et al. 2017); 0 = off
    clip: float | None = None  # weight clipping of the critic (0.01 in Arjovsky et al. 2017)

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> GANConfig:
        """A GAN on a 2-D toy, sized for ``GENCORE_SCALE`` (or ``scale``); overrides win.

        Every game on the toys gets the same budget: 5 discriminator (critic) steps per generator
        step, and Adam with beta1 = 0, beta2 = 0.9 as in Gulrajani et al. 2017.
        """
        sizes = pick(smoke=dict(hidden=16, steps=20, batch_size=64),
                     small=dict(hidden=64, steps=400, batch_size=128),
                     full=dict(hidden=256, steps=3000, batch_size=256), scale=scale)
        return cls(**{**dict(n_critic=5, adam_betas=(0.0, 0.9)), **sizes, **overrides})

    @classmethod
    def wgan_gp(cls, scale: str | None = None, **overrides) -> GANConfig:
        """WGAN-GP on a 2-D toy: the toy budget of ``for_scale`` plus a gradient penalty of weight 1.

        A weight of 10 is the paper's choice for images (Gulrajani et al. 2017); on our 2-D toy,
        with its short budget, we use 1."""
        return cls.for_scale(scale, **{"gp_weight": 1.0, **overrides})

    @classmethod
    def wgan_clip(cls, scale: str | None = None, **overrides) -> GANConfig:
        """The original WGAN on a 2-D toy: the toy budget with the critic's weights clipped to 0.01."""
        return cls.for_scale(scale, **{"clip": 0.01, **overrides})

    @classmethod
    def digits(cls, scale: str | None = None, **overrides) -> GANConfig:
        """WGAN-GP on the 8x8 digits with the convolutional pair (penalty weight 10, as in the paper)."""
        sizes = pick(smoke=dict(hidden=8, steps=10, batch_size=32),
                     small=dict(hidden=16, steps=400, batch_size=64),
                     full=dict(hidden=64, steps=10000, batch_size=256), scale=scale)
        base = dict(data_dim=64, latent_dim=16, n_critic=5, gp_weight=10.0, lr=1e-3, adam_betas=(0.0, 0.9))
        return cls(**{**base, **sizes, **overrides})


class MLPGenerator(nn.Module):
    """x = G(z): an MLP from noise (B, latent_dim) to samples (B, data_dim)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = config
        self.net = mlp([c.latent_dim, c.hidden, c.hidden, c.hidden, c.data_dim], activation=nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.net(z))  # float32 samples, also under bf16 autocast

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return self(torch.randn(n, self.config.latent_dim, generator=generator).to(device))


class MLPCritic(nn.Module):
    """A discriminator (logits) or critic (real scores) for (B, data_dim) inputs; returns (B,)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = config
        self.net = mlp([c.data_dim, c.hidden, c.hidden, c.hidden, 1], activation=lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.net(x).squeeze(-1))  # float32 scores for the losses


class ConvGenerator(nn.Module):
    """z (B, latent_dim) -> 2x2 -> 4x4 -> 8x8 digits, returned flat (B, 64) with pixels in (0, 1)."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = 2 * config.hidden
        self.project = nn.Linear(config.latent_dim, c * 2 * 2)
        self.net = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1), nn.ReLU(),  # (B, c/2, 4, 4)
            nn.ConvTranspose2d(c // 2, 1, 4, stride=2, padding=1),  # (B, 1, 8, 8)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], -1, 2, 2)  # (B, c, 2, 2)
        return torch.sigmoid(at_least_float32(self.net(h))).flatten(start_dim=1)  # (B, 64), float32

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = next(self.parameters()).device
        return self(torch.randn(n, self.config.latent_dim, generator=generator).to(device))


class ConvCritic(nn.Module):
    """8x8 digits (B, 64) -> 4x4 -> 2x2 -> one score per image (B,). No batch norm: the gradient
    penalty is defined per example, and batch norm would mix the examples of a batch."""

    def __init__(self, config: GANConfig):
        super().__init__()
        self.config = config
        c = config.hidden
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, c, 4, 4)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),  # (B, 2c, 2, 2)
            nn.Flatten(), nn.Linear(2 * c * 4, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.net(x.reshape(x.shape[0], 1, 8, 8)).squeeze(-1))


def make_gan(config: GANConfig, seed: int = 0, device=None) -> tuple[nn.Module, nn.Module]:
    """A seeded (generator, critic) pair: the MLP pair for 2-D data, the conv pair for 64-D digits."""
    torch.manual_seed(seed)
    conv = config.data_dim == 64
    generator = (ConvGenerator if conv else MLPGenerator)(config)
    critic = (ConvCritic if conv else MLPCritic)(config)
    device = device or get_device()
    return generator.to(device), critic.to(device)


# ---------------------------------------------------------------------------------------------
# 3. Training
# ---------------------------------------------------------------------------------------------


def _check_data(x: torch.Tensor, data_dim: int, name: str = "data") -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != data_dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected {name} of shape (N, {data_dim}), got {shape}")


def _batch(x: torch.Tensor, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    return x[to_device(torch.randint(0, x.shape[0], (batch_size,), generator=generator), x.device)]


def train_gan(
    generator: nn.Module,
    critic: nn.Module,
    x_train: torch.Tensor,
    *,
    config: GANConfig | None = None,
    d_loss_fn: Callable = discriminator_loss,
    g_loss_fn: Callable = generator_loss_nonsaturating,
    penalty_fn: Callable = gradient_penalty,
    eval_fn: Callable | None = None,
    eval_every: int = 100,
    seed: int = 0,
    progress: bool | None = None,
    desc: str = "GAN",
) -> dict[str, list]:
    """Alternate ``config.n_critic`` critic steps and one generator step, ``config.steps`` times.

    Every piece is a parameter (Goodfellow et al. 2014, Alg. 1; Gulrajani et al. 2017, Alg. 1):
    the critic minimises ``d_loss_fn(critic(real), critic(fake))``, plus
    ``config.gp_weight * penalty_fn(critic, real, fake)`` when the weight is positive, with its
    weights clipped to ``config.clip`` if set; the generator minimises
    ``g_loss_fn(critic(fake))``. For a WGAN pass ``critic_loss_wasserstein`` and
    ``generator_loss_wasserstein``. ``eval_fn(generator) -> dict`` runs every ``eval_every``
    steps and at the end. The history has ``step``, ``d_loss``, ``g_loss`` per step, and
    ``eval_step`` plus one list per key that ``eval_fn`` returns.
    """
    config = config or generator.config
    _check_data(x_train, config.data_dim)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.adam_betas)
    opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=config.adam_betas)
    rng = torch.Generator().manual_seed(seed)
    device = x_train.device
    configure_backend(device)
    # the gradient penalty differentiates the critic twice, which compiled graphs do not support
    net_g, net_c = compiled(generator), critic if config.gp_weight > 0 else compiled(critic)

    def noise() -> torch.Tensor:
        return to_device(torch.randn(config.batch_size, config.latent_dim, generator=rng), device)

    history: dict[str, list] = {"step": [], "d_loss": [], "g_loss": [], "eval_step": []}
    bar = progress_bar(range(1, config.steps + 1), config.steps, desc, progress)
    log = StepLog(history, every=eval_every)
    for step in bar:
        # 1. the critic: n_critic steps against fakes the generator cannot change (detached)
        for _ in range(config.n_critic):
            real = _batch(x_train, config.batch_size, rng)
            with autocast(device):  # bf16 layers on a GPU; the networks return float32
                with torch.no_grad():
                    fake = net_g(noise())
                scores = net_c(torch.cat([real, fake]))  # one pass for both halves: (2B,)
                d_loss = d_loss_fn(scores[: len(real)], scores[len(real) :])
                if config.gp_weight > 0:
                    d_loss = d_loss + config.gp_weight * penalty_fn(critic, real, fake)
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            if config.clip is not None:
                clip_weights(critic, config.clip)
        # 2. the generator: one step through the (fixed) critic
        with autocast(device):
            g_loss = g_loss_fn(net_c(net_g(noise())))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        history["step"].append(step)
        log.append(d_loss=d_loss, g_loss=g_loss)
        if eval_fn is not None and (step % eval_every == 0 or step == config.steps):
            generator.eval()
            metrics = eval_fn(generator)
            generator.train()
            history["eval_step"].append(step)
            for key, value in metrics.items():
                history.setdefault(key, []).append(value)
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items() if isinstance(v, float | int)})
    log.flush()
    return history


def train_critic(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    loss_fn: Callable = critic_loss_wasserstein,
    penalty_fn: Callable = gradient_penalty,
    gp_weight: float = 0.0,
    steps: int = 500,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool | None = None,
) -> list[float]:
    """Train one player against two fixed sample sets (the inner max of the game, alone).

    With ``loss_fn=discriminator_loss`` this fits the discriminator of a fixed generator, which
    should approach ``optimal_discriminator``; with ``critic_loss_wasserstein`` and a gradient
    penalty it finds the dual potential of W1. Returns the loss per step.
    """
    check_same_shape("real", real, "fake", fake)
    configure_backend(real.device)
    net = critic if gp_weight > 0 else compiled(critic)  # no double backward through compiled graphs
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.9))
    rng = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"loss": []}
    log = StepLog(history)
    for _ in progress_bar(range(steps), steps, "critic", progress):
        x, y = _batch(real, batch_size, rng), _batch(fake, batch_size, rng)
        with autocast(real.device):
            loss = loss_fn(net(x), net(y))
            if gp_weight > 0:
                loss = loss + gp_weight * penalty_fn(critic, x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        log.append(loss=loss)
    log.flush()
    return history["loss"]


def toy_metrics(samples: torch.Tensor, data: torch.Tensor, centers: torch.Tensor | None = None) -> dict[str, float]:
    """Sample quality on a 2-D toy: ``sliced_w1`` to the data (gencore.metrics.sliced_wasserstein)
    and, when ``centers`` are given, ``modes`` covered and the ``high_quality`` fraction."""
    from gencore import metrics

    samples, data = samples.detach().cpu(), data.detach().cpu()
    out = {"sliced_w1": metrics.sliced_wasserstein(samples, data)}
    if centers is not None:
        coverage = metrics.mode_coverage(samples, centers)
        out.update(modes=coverage["modes_covered"], high_quality=coverage["high_quality"])
    return out


VARIANTS = ("nonsaturating", "minimax", "wgan-gp", "wgan-clip")


def train_gan_2d_with_critic(
    data: torch.Tensor,
    config: GANConfig | None = None,
    *,
    variant: str = "wgan-gp",
    centers: torch.Tensor | None = None,
    eval_every: int = 100,
    seed: int = 0,
    snapshots: int = 0,
    penalty_fn: Callable = gradient_penalty,
    progress: bool | None = None,
) -> tuple[MLPGenerator, MLPCritic, dict[str, list]]:
    """Train an MLP GAN on 2-D ``data`` (N, 2) and return ``(generator, critic, history)``.

    ``variant`` picks the game: ``nonsaturating`` or ``minimax`` (the original GAN with either
    generator loss), ``wgan-gp`` (Wasserstein with gradient penalty) or ``wgan-clip`` (weight
    clipping). The default config is the scale's for that game; ``config.steps`` is the budget
    of generator steps. The history tracks ``sliced_w1`` to ``data`` (and mode coverage when
    ``centers`` are given) every ``eval_every`` steps, and ``snapshots`` samples there if
    positive (``history["samples"]``, for pictures of training); ``generator.sample(n)`` draws more.
    ``penalty_fn`` is the gradient penalty used when ``config.gp_weight`` is positive.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    wasserstein = variant.startswith("wgan")
    if config is None:
        config = {"wgan-gp": GANConfig.wgan_gp, "wgan-clip": GANConfig.wgan_clip}.get(variant, GANConfig.for_scale)()
    _check_data(data, config.data_dim)
    generator, critic = make_gan(config, seed=seed, device=data.device)
    reference = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:1000]]
    sample_rng = torch.Generator().manual_seed(seed + 1)

    def evaluate(g):
        samples = g.sample(len(reference), generator=sample_rng)
        out = toy_metrics(samples, reference, centers)
        return {**out, "samples": samples[:snapshots].cpu()} if snapshots > 0 else out

    history = train_gan(
        generator, critic, data, config=config,
        d_loss_fn=critic_loss_wasserstein if wasserstein else discriminator_loss,
        g_loss_fn={"nonsaturating": generator_loss_nonsaturating, "minimax": generator_loss_minimax}.get(
            variant, generator_loss_wasserstein),
        penalty_fn=penalty_fn, eval_fn=evaluate, eval_every=eval_every, seed=seed, progress=progress, desc=variant,
    )
    return generator, critic, history


def train_gan_2d(data: torch.Tensor, config: GANConfig | None = None, **options) -> tuple[MLPGenerator, dict[str, list]]:
    """``train_gan_2d_with_critic`` without the critic: ``(generator, history)``. For example
    ``generator, history = train_gan_2d(toy_2d("two_moons", 20_000), GANConfig.wgan_gp(steps=500))``,
    then ``generator.sample(1000)``; ``history["sliced_w1"]`` tracks the distance to the data."""
    generator, _, history = train_gan_2d_with_critic(data, config, **options)
    return generator, history
