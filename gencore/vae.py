"""Variational autoencoders (Kingma & Welling 2014; Rezende et al. 2014), top to bottom.

1. the math, as pure functions: ``gaussian_kl``, ``reparameterize``, the two likelihoods and
   ``negative_elbo``;
2. the models: an MLP ``VAE`` and a plain ``Autoencoder`` for comparison;
3. training: ``train_step`` (one optimiser step) and ``train_vae`` (the loop), both taking the
   math as arguments so that a notebook can plug in its own functions.

Shapes: ``x`` is (B, d) with d = 64 pixels for the 8x8 digits; ``mu``, ``logvar``, ``z`` are (B, d_z),
d_z the latent dimension.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from gencore.device import (StepLog, autocast, compile_in_place, compiled, configure_backend, get_device, host_floats, pick,
                            progress_bar, to_device)
from gencore.nn import at_least_float32, check_same_shape, mlp

# ---------------------------------------------------------------------------------------------
# 1. The math
# ---------------------------------------------------------------------------------------------


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, diag(exp(logvar))) || N(0, I) ), summed over the last dimension.

    Closed form (Kingma & Welling 2014, Appendix B), per dimension j:
    KL_j = 1/2 (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2). Returns shape ``mu.shape[:-1]``.
    """
    check_same_shape("mu", mu, "logvar", logvar)
    if mu.dim() == 0:
        raise ValueError("mu and logvar need a last (latent) dimension; got 0-d tensors")
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)


def gaussian_kl_full(mu: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, cov) || N(0, I) ) = 1/2 [tr(cov) + mu^T mu - k - log det cov] for full ``cov``.

    ``mu`` is (..., k), ``cov`` is (..., k, k) symmetric positive definite.
    """
    if mu.dim() == 0 or cov.shape != mu.shape + mu.shape[-1:]:
        raise ValueError(
            f"cov must have shape mu.shape + (k,) = {tuple(mu.shape) + tuple(mu.shape[-1:])}, "
            f"got {tuple(cov.shape)}"
        )
    k = mu.shape[-1]
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    logdet = torch.linalg.slogdet(cov).logabsdet
    return 0.5 * (trace + (mu * mu).sum(-1) - k - logdet)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample z ~ N(mu, diag(exp(logvar))) written as z = mu + sigma * eps, eps ~ N(0, I).

    The noise carries no parameters, so gradients flow to ``mu`` and ``logvar``
    (Kingma & Welling 2014, Sec. 2.4). ``exp(logvar / 2)`` is sigma.
    """
    check_same_shape("mu", mu, "logvar", logvar)
    eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def bernoulli_nll(x: torch.Tensor, x_logits: torch.Tensor) -> torch.Tensor:
    """-log p(x | z) for a Bernoulli decoder with logits ``x_logits``, summed over pixels: (B,).

    A log-likelihood for binary x in {0, 1}. On grey levels in [0, 1] the same binary cross-entropy
    is a reconstruction loss but not a log-likelihood: lambda^x (1 - lambda)^(1 - x) integrates over
    [0, 1] to (2 lambda - 1) / logit(lambda) <= 1/2 (Loaiza-Ganem & Cunningham 2019).
    """
    check_same_shape("x", x, "x_logits", x_logits)
    return F.binary_cross_entropy_with_logits(x_logits, x, reduction="none").sum(dim=-1)


def gaussian_nll(x: torch.Tensor, x_mean: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    """-log p(x | z) for a Gaussian decoder N(x_mean, sigma^2 I) with fixed ``sigma``: (B,).

    The squared error is scaled by 1/(2 sigma^2), the 1/2 coming from the Gaussian density.
    """
    check_same_shape("x", x, "x_mean", x_mean)
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    d = x.shape[-1]
    squared_error = (x - x_mean).pow(2).sum(dim=-1)
    return 0.5 * squared_error / sigma**2 + d * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


def negative_elbo(
    x: torch.Tensor,
    x_logits: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float = 1.0,
    kl_fn: Callable = gaussian_kl,
    nll_fn: Callable = bernoulli_nll,
) -> torch.Tensor:
    """The (beta-weighted) negative ELBO per example, shape (B,).

    -ELBO = E_q[-log p(x|z)] + beta KL(q(z|x) || p(z)), with the expectation estimated by the
    single z that produced ``x_logits`` (Kingma & Welling 2014, Eq. 7; beta as in Higgins et
    al. 2017). Pass ``nll_fn=gaussian_nll`` (and decoder means as ``x_logits``) for a Gaussian
    decoder.
    """
    if x.dim() != 2 or mu.dim() != 2 or x.shape[0] != mu.shape[0]:
        raise ValueError(
            f"expected x of shape (B, d) and mu of shape (B, d_z) with the same B, "
            f"got {tuple(x.shape)} and {tuple(mu.shape)}"
        )
    return nll_fn(x, x_logits) + beta * kl_fn(mu, logvar)


# ---------------------------------------------------------------------------------------------
# 2. Models
# ---------------------------------------------------------------------------------------------


@dataclass
class VAEConfig:
    data_dim: int = 64  # pixels of an 8x8 digit
    latent_dim: int = 8  # d_z; use 2 to look at the latent space directly
    hidden: int = 256  # width of the two hidden layers of encoder and decoder
    steps: int = 3000  # optimiser steps
    batch_size: int = 128
    lr: float = 2e-3  # Adam learning rate
    beta: float = 1.0  # weight of the KL term (1 is the ELBO)

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> VAEConfig:
        """Sizes for ``GENCORE_SCALE`` (or ``scale``); keyword overrides win."""
        sizes = pick(
            smoke=dict(hidden=32, steps=20, batch_size=64),
            small=dict(hidden=256, steps=3000, batch_size=128),
            full=dict(hidden=512, steps=30000, batch_size=256, lr=1e-3),
            scale=scale,
        )
        return cls(**{**sizes, **overrides})


class VAE(nn.Module):
    """Gaussian encoder q(z|x) = N(mu(x), diag exp(logvar(x))), decoder giving pixel logits."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = mlp([c.data_dim, c.hidden, c.hidden, 2 * c.latent_dim])
        self.decoder = mlp([c.latent_dim, c.hidden, c.hidden, c.data_dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # float32 out, also under bf16 autocast: exp(logvar) and the KL need the precision
        mu, logvar = at_least_float32(self.encoder(x)).chunk(2, dim=-1)  # (B, d_z), (B, d_z)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.decoder(z))  # (B, d) logits, float32

    def forward(self, x: torch.Tensor, reparam_fn: Callable = reparameterize):
        mu, logvar = self.encode(x)
        z = reparam_fn(mu, logvar)
        return self.decode(z), mu, logvar

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the model: z ~ N(0, I), then the decoder's pixel means, (n, d)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(device)
        return torch.sigmoid(self.decode(z))


class Autoencoder(nn.Module):
    """The deterministic ancestor: x -> z -> x_hat, trained on reconstruction alone."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        c = config
        self.encoder = mlp([c.data_dim, c.hidden, c.hidden, c.latent_dim])
        self.decoder = mlp([c.latent_dim, c.hidden, c.hidden, c.data_dim])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.encoder(x))  # (B, d_z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.decoder(z))  # (B, d) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@torch.no_grad()
def importance_log_likelihood(model: VAE, x: torch.Tensor, k: int = 256, chunk: int = 64) -> torch.Tensor:
    """log p(x) estimated with k = K importance samples from q(z|x) (Burda et al. 2016), (B,).

    log (1/K) sum_i p(x|z_i) p(z_i) / q(z_i|x) is a lower bound in expectation that never
    decreases as K grows and, when the weights p(x, z) / q(z|x) are bounded, tends to log p(x)
    (their Theorem 1); with K = 1 its expectation is the ELBO. It is a log-likelihood only for
    binary x (see ``bernoulli_nll``). Samples are drawn ``chunk`` at a time.
    """
    mu, logvar = model.encode(x)  # (B, d_z)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    prior = torch.distributions.Normal(0.0, 1.0)
    log_weights = []
    for start in range(0, k, chunk):
        z = q.sample((min(chunk, k - start),))  # (c, B, d_z)
        log_px_z = -bernoulli_nll(x.expand(len(z), *x.shape), model.decode(z))  # (c, B)
        log_weights.append(log_px_z + prior.log_prob(z).sum(-1) - q.log_prob(z).sum(-1))
    return torch.logsumexp(torch.cat(log_weights), dim=0) - math.log(k)


# ---------------------------------------------------------------------------------------------
# 3. Training
# ---------------------------------------------------------------------------------------------


def train_step(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    beta: float = 1.0,
    loss_fn: Callable = negative_elbo,
    reparam_fn: Callable = reparameterize,
) -> torch.Tensor:
    """One optimiser step on the batch mean of ``loss_fn``; returns that mean, detached (a 0-d tensor).

    Returning the tensor rather than ``loss.item()`` lets the loop collect losses without waiting
    for the GPU at every step; ``float()`` of it is the number.
    """
    optimizer.zero_grad()  # gradients accumulate in PyTorch unless cleared
    mu, logvar = model.encode(x)
    z = reparam_fn(mu, logvar)
    x_logits = model.decode(z)
    loss = loss_fn(x, x_logits, mu, logvar, beta).mean()
    loss.backward()
    optimizer.step()
    return loss.detach()


def _batches(x: torch.Tensor, batch_size: int, steps: int, generator: torch.Generator):
    """``steps`` minibatches, reshuffling after every pass over the data."""
    n = x.shape[0]
    order, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield x[to_device(order[pos : pos + batch_size], x.device)]
        pos += batch_size


def _check_data(x: torch.Tensor, data_dim: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != data_dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected data of shape (N, {data_dim}), got {shape}")


def train_vae(
    model: VAE,
    x_train: torch.Tensor,
    *,
    config: VAEConfig | None = None,
    x_eval: torch.Tensor | None = None,
    step_fn: Callable = train_step,
    loss_fn: Callable | None = None,
    reparam_fn: Callable = reparameterize,
    kl_fn: Callable = gaussian_kl,
    nll_fn: Callable = bernoulli_nll,
    eval_every: int = 50,
    on_eval: Callable[[int, VAE], None] | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` with Adam for ``config.steps`` steps and return the loss history.

    Every piece is a parameter: ``step_fn`` does one step, ``loss_fn`` is the per-example loss
    (by default ``negative_elbo`` built from ``kl_fn`` and ``nll_fn``), ``reparam_fn`` draws z.
    The history has the training loss at every step (``step``, ``loss``) and, every
    ``eval_every`` steps, the reconstruction term and the KL term measured on ``x_eval``
    (``eval_step``, ``recon``, ``kl``; ``x_eval`` defaults to the first 512 training points).
    ``on_eval(step, model)``, when given, is called after each evaluation: a place to keep
    snapshots of the model for pictures of training (copy what you keep, the model goes on).
    """
    config = config or model.config
    _check_data(x_train, config.data_dim)
    if loss_fn is None:
        loss_fn = partial(negative_elbo, kl_fn=kl_fn, nll_fn=nll_fn)
    x_eval = x_train[:512] if x_eval is None else x_eval
    configure_backend(x_train.device)
    compile_in_place(model.encoder, model.decoder)  # step_fn reaches them through encode/decode
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "loss": [], "eval_step": [], "recon": [], "kl": []}
    batches = _batches(x_train, config.batch_size, config.steps, generator)
    bar = progress_bar(batches, config.steps, f"VAE beta={config.beta:g}", progress)
    log = StepLog(history, every=eval_every)
    for step, x in enumerate(bar, start=1):
        with autocast(x.device):  # bf16 on a GPU; the models return float32 to the losses
            loss = step_fn(model, optimizer, x, beta=config.beta, loss_fn=loss_fn, reparam_fn=reparam_fn)
        history["step"].append(step)
        log.append(loss=loss)
        if step % eval_every == 0 or step == config.steps:
            with torch.no_grad(), autocast(x.device):
                mu, logvar = model.encode(x_eval)
                recon = nll_fn(x_eval, model.decode(reparam_fn(mu, logvar))).mean()
                kl = kl_fn(mu, logvar).mean()
            recon, kl = host_floats([recon, kl])  # the evaluation's one wait for the GPU
            history["eval_step"].append(step)
            history["recon"].append(recon)
            history["kl"].append(kl)
            bar.set_postfix(recon=f"{recon:.1f}", kl=f"{kl:.1f}")
            if on_eval is not None:
                on_eval(step, model)
    log.flush()
    return history



def train_autoencoder(
    model: Autoencoder,
    x_train: torch.Tensor,
    *,
    config: VAEConfig | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, list[float]]:
    """Train a plain autoencoder on reconstruction (Bernoulli NLL) alone; returns ``step``, ``loss``."""
    config = config or model.config
    _check_data(x_train, config.data_dim)
    configure_backend(x_train.device)
    net = compiled(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    batches = _batches(x_train, config.batch_size, config.steps, generator)
    bar = progress_bar(batches, config.steps, "autoencoder", progress)
    log = StepLog(history, bar=bar, show=("loss",))
    for step, x in enumerate(bar, start=1):
        optimizer.zero_grad()
        with autocast(x.device):
            loss = bernoulli_nll(x, net(x)).mean()
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        log.append(loss=loss)
    log.flush()
    return history


def make_vae(config: VAEConfig | None = None, seed: int = 0, device=None) -> VAE:
    """A freshly initialised ``VAE`` (seeded) on ``device``; the config defaults to the scale's."""
    torch.manual_seed(seed)
    return VAE(config or VAEConfig.for_scale()).to(device or get_device())
