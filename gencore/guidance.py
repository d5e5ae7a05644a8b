"""Conditional generation and guidance: p(x | c) by a class embedding, by cross-attention to
condition tokens, and by steering a sampler with a classifier (Dhariwal & Nichol 2021) or without
one (Ho & Salimans 2022).

1. exact Gaussian mixtures, where every noisy marginal p_t(x), conditional p_t(x | c) and
   classifier p_t(c | x) is known: ``mixture_log_joint``, ``mixture_scores``, ``mixture_predictors``;
2. guidance as pure functions of predictor callables: ``cfg_prediction`` and ``cfg_predictor``
   (classifier-free), ``classifier_guided_eps``, ``classifier_gradient`` and
   ``classifier_guided_predictor`` (classifier guidance), ``tilted_log_density``;
3. conditions: ``label_dropout``, the digits' style attribute ``ink_style``;
4. networks: ``cross_attention``, ``EmbeddingDenoiser`` (label embeddings added to the step's),
   ``CrossAttentionDenoiser`` (the hidden state attends to the condition tokens), ``NoisyClassifier``;
5. training: ``conditional_diffusion_loss``, ``train_conditional`` (with ``dropout_fn=`` and
   ``loss_fn=``) and ``train_noisy_classifier``.

The guidance weight w follows Ho & Salimans (2022, Eq. 6): eps~ = (1 + w) eps(x, c) - w eps(x, ∅),
so w = 0 is the conditional model and w > 0 guides. A condition ``c`` is a (B, L) tensor of
integer tokens, one vocabulary per position (``vocab_sizes``); the id ``vocab_sizes[l]`` at
position l is the "no condition" token ∅. Time is the diffusion module's: integer steps t in
{0, ..., T-1}, data x_0, noise predictor eps(x_t, t, c).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gencore.device import StepLog, get_device, pick, progress_bar, to_device
from gencore.diffusion import (
    NoiseSchedule,
    linear_schedule,
    q_sample,
    timestep_embedding,
    train_with_ema,
)
from gencore.nn import at_least_float32, check_same_shape

# ---------------------------------------------------------------------------------------------
# 1. Exact Gaussian mixtures: class k is the component N(m_k, s_k^2 I)
# ---------------------------------------------------------------------------------------------


def _mixture(means: torch.Tensor, stds, weights) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(means, torch.Tensor) or means.dim() != 2:
        raise ValueError(f"means must be a (K, d) tensor, got {getattr(means, 'shape', type(means).__name__)}")
    k = means.shape[0]
    stds = torch.as_tensor(stds, dtype=means.dtype, device=means.device).expand(k)
    weights = torch.full((k,), 1.0 / k, dtype=means.dtype) if weights is None else torch.as_tensor(weights, dtype=means.dtype)
    if (stds <= 0).any() or weights.shape != (k,) or (weights <= 0).any():
        raise ValueError(f"need positive stds and {k} positive weights, got {stds.tolist()} and {weights.tolist()}")
    return stds, (weights / weights.sum()).to(means.device)


def _abar(alpha_bar_t, x: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t (a float or a (B,) tensor) as (B, 1) in the dtype of x (B, d)."""
    a = torch.as_tensor(alpha_bar_t, dtype=x.dtype, device=x.device)
    if a.dim() == 0:
        a = a.expand(x.shape[0])
    if a.shape != x.shape[:1] or (a <= 0).any() or (a > 1).any():
        raise ValueError(f"alpha_bar_t must be a float or a ({x.shape[0]},) tensor in (0, 1], got {tuple(a.shape)}")
    return a[:, None]


def mixture_log_joint(x_t: torch.Tensor, alpha_bar_t, means: torch.Tensor, stds, weights=None) -> torch.Tensor:
    """log p_t(x_t, k) = log w_k + log N(x_t; sqrt(abar) m_k, (abar s_k^2 + 1 - abar) I), shape (B, K).

    The forward marginal of Ho et al. 2020 (Eq. 4) applied to each component. ``logsumexp`` over
    k gives log p_t(x_t); a softmax gives the exact classifier p_t(k | x_t) (Bayes' rule).
    """
    stds, weights = _mixture(means, stds, weights)
    if not isinstance(x_t, torch.Tensor) or x_t.dim() != 2 or x_t.shape[1] != means.shape[1]:
        raise ValueError(f"x_t must be (B, {means.shape[1]}), got {getattr(x_t, 'shape', type(x_t).__name__)}")
    a = _abar(alpha_bar_t, x_t)  # (B, 1)
    var = a * stds.to(x_t) ** 2 + 1 - a  # (B, K)
    diff = x_t[:, None, :] - a.sqrt()[..., None] * means.to(x_t)  # (B, K, d)
    d = x_t.shape[1]
    return weights.to(x_t).log() - 0.5 * d * (2 * math.pi * var).log() - 0.5 * diff.pow(2).sum(-1) / var


def mixture_scores(x_t: torch.Tensor, alpha_bar_t, means: torch.Tensor, stds, weights=None):
    """The exact scores: (grad log p_t(x_t) (B, d), grad log p_t(x_t | k) (B, K, d)).

    Given k, x_t is Gaussian, so its score is -(x_t - sqrt(abar) m_k) / v_k; the marginal score
    is their average under p_t(k | x_t) (differentiate the log of the mixture).
    """
    stds, _ = _mixture(means, stds, weights)
    a = _abar(alpha_bar_t, x_t)
    var = a * stds.to(x_t) ** 2 + 1 - a  # (B, K)
    conditional = -(x_t[:, None, :] - a.sqrt()[..., None] * means.to(x_t)) / var[..., None]  # (B, K, d)
    posterior = mixture_log_joint(x_t, alpha_bar_t, means, stds, weights).softmax(-1)  # (B, K)
    return (posterior[..., None] * conditional).sum(1), conditional


def mixture_predictors(means: torch.Tensor, stds, alpha_bar: torch.Tensor, weights=None):
    """Exact predictors of the mixture as the networks would give them, with step indices t.

    Returns ``(eps_model(x_t, t, c), classifier(x_t, t))``: the noise predictor
    eps = -sqrt(1 - abar_t) score (the diffusion chapter's Tweedie identity), conditional on the
    class c (a (B, 1) tensor; c = K, the null token, gives the unconditional one), and the logits
    log p_t(k | x_t) of the exact noise-conditional classifier.
    """
    k = means.shape[0]

    def abar_at(t, x):
        return alpha_bar.to(x)[t] if isinstance(t, torch.Tensor) else float(alpha_bar[t])

    def eps_model(x_t: torch.Tensor, t, c: torch.Tensor) -> torch.Tensor:
        c = check_condition(c, (k,), x_t.shape[0])[:, 0]
        a = abar_at(t, x_t)
        uncond, cond = mixture_scores(x_t, a, means, stds, weights)
        picked = torch.where((c < k)[:, None], cond[torch.arange(len(c)), c.clamp_max(k - 1)], uncond)  # (B, d)
        return -(1 - _abar(a, x_t)).sqrt() * picked

    def classifier(x_t: torch.Tensor, t) -> torch.Tensor:
        return mixture_log_joint(x_t, abar_at(t, x_t), means, stds, weights).log_softmax(-1)

    return eps_model, classifier


def tilted_log_density(x: torch.Tensor, c: int, w: float, means: torch.Tensor, stds, weights=None) -> torch.Tensor:
    """log of the unnormalised tilted law p(x | c)^(1 + w) p(x)^(-w) = p(x | c) p(c | x)^w / p(c)^w.

    What guidance with weight w would sample if guiding the score at every noise level guided the
    data distribution itself (Bradley & Nakkiran 2024 write it p(x|c)^gamma p(x)^(1-gamma), gamma = 1 + w).
    """
    if not 0 <= c < means.shape[0]:
        raise ValueError(f"c must be a class in [0, {means.shape[0] - 1}], got {c}")
    _, mixture_weights = _mixture(means, stds, weights)
    joint = mixture_log_joint(x, 1.0, means, stds, weights)  # abar = 1: the data distribution
    log_marginal = joint.logsumexp(-1)
    log_conditional = joint[:, c] - mixture_weights[c].to(x).log()
    return (1 + w) * log_conditional - w * log_marginal


# ---------------------------------------------------------------------------------------------
# 2. Guidance: pure functions of predictor callables
# ---------------------------------------------------------------------------------------------


def cfg_prediction(pred_cond: torch.Tensor, pred_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, Eq. 6): (1 + w) pred(x, c) - w pred(x, ∅).

    Linear in the predictions, so the same line guides noise, score or velocity predictions.
    w = 0 gives the conditional prediction, w = -1 the unconditional one.
    """
    check_same_shape("pred_cond", pred_cond, "pred_uncond", pred_uncond)
    return pred_cond + w * (pred_cond - pred_uncond)


def cfg_predictor(model: Callable, c: torch.Tensor, w: float, null: torch.Tensor, guide_fn: Callable = cfg_prediction) -> Callable:
    """``eps(x_t, t)`` for a sampler: ``model(x, t, c)`` run once on the batch doubled, with c and
    with the null condition ``null`` ((L,) tokens), combined by ``guide_fn``."""

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        both = model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([c, null.to(c).expand_as(c)]))
        pred_cond, pred_uncond = both.chunk(2)
        return guide_fn(pred_cond, pred_uncond, w)

    return eps


def classifier_guided_eps(eps: torch.Tensor, grad_log_prob: torch.Tensor, alpha_bar_t, scale: float) -> torch.Tensor:
    """eps^ = eps - scale sqrt(1 - abar_t) grad_x log p_phi(c | x_t) (Dhariwal & Nichol 2021, Sec. 4.2, Alg. 2).

    A noise prediction is a score times -sqrt(1 - abar_t), so adding ``scale`` times the
    classifier's gradient to the score subtracts sqrt(1 - abar_t) times it from eps.
    ``alpha_bar_t`` is a float or a (B,) tensor, one value per example.
    """
    check_same_shape("eps", eps, "grad_log_prob", grad_log_prob)
    a = _abar(alpha_bar_t, eps.reshape(eps.shape[0], -1)).reshape(-1, *([1] * (eps.dim() - 1)))
    return eps - scale * (1 - a).sqrt() * grad_log_prob


def classifier_gradient(classifier: Callable, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """grad_x log p_phi(c | x_t, t) by autograd, (B, d); ``classifier`` returns logits (B, K), c is (B,)."""
    with torch.enable_grad():
        x = x_t.detach().requires_grad_(True)
        log_probs = classifier(x, t).log_softmax(-1)
        (grad,) = torch.autograd.grad(log_probs.gather(1, c.reshape(-1, 1)).sum(), x)
    return grad


def classifier_guided_predictor(
    eps_model: Callable, classifier: Callable, c: torch.Tensor, scale: float, alpha_bar: torch.Tensor,
    guide_fn: Callable = classifier_guided_eps,
) -> Callable:
    """``eps(x_t, t)`` for a sampler: an unconditional ``eps_model(x_t, t)`` steered towards the
    classes ``c`` (B,) by the noise-conditional ``classifier(x_t, t)`` with weight ``scale``."""

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        grad = classifier_gradient(classifier, x_t, t, c)
        return guide_fn(eps_model(x_t, t), grad, alpha_bar.to(x_t)[t], scale)

    return eps


def clipped_predictor(eps_model: Callable, alpha_bar: torch.Tensor, low: float = -1.0, high: float = 1.0) -> Callable:
    """``eps(x_t, t)`` whose implied clean image x0^ = (x_t - sqrt(1 - abar) eps) / sqrt(abar) is
    clipped to the data range [low, high] (static thresholding, Saharia et al. 2022, Sec. 2.3), the
    noise then recomputed from it. Guided predictions overshoot the data range; this keeps DDIM's
    steps inside it."""

    def eps(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = alpha_bar.to(x_t)[t].reshape(-1, *([1] * (x_t.dim() - 1)))
        x0 = ((x_t - (1 - a).sqrt() * eps_model(x_t, t)) / a.sqrt()).clamp(low, high)
        return (x_t - a.sqrt() * x0) / (1 - a).sqrt()

    return eps


# ---------------------------------------------------------------------------------------------
# 3. Conditions
# ---------------------------------------------------------------------------------------------


def check_condition(c: torch.Tensor, vocab_sizes: Sequence[int], batch: int) -> torch.Tensor:
    """``c`` as a (B, L) integer tensor with c[:, l] in [0, vocab_sizes[l]] (the last id is ∅)."""
    if not isinstance(c, torch.Tensor) or c.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"the condition must be an integer tensor, got {getattr(c, 'dtype', type(c).__name__)}")
    if c.dim() == 1 and len(vocab_sizes) == 1:
        c = c[:, None]
    if c.shape != (batch, len(vocab_sizes)):
        raise ValueError(f"the condition must have shape ({batch}, {len(vocab_sizes)}), got {tuple(c.shape)}")
    high = torch.as_tensor(list(vocab_sizes), device=c.device)
    if c.device.type == "cpu" and c.numel() and ((c < 0) | (c > high)).any():
        raise ValueError(f"condition tokens out of range: position l takes 0..{[v - 1 for v in vocab_sizes]} "
                         f"or the null token {list(vocab_sizes)}, got values {c.min().item()}..{c.max().item()}")
    return c.long()


def label_dropout(c: torch.Tensor, p_uncond: float, null, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace the whole condition of each example by the null condition with probability ``p_uncond``
    (Ho & Salimans 2022, Alg. 1), independently per example; a new tensor, ``c`` (B,) or (B, L) kept.

    ``null`` is an int or an (L,) tensor of null tokens. Trained this way, one network learns
    eps(x, c) and eps(x, ∅) together.
    """
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    drop = torch.rand(c.shape[0], generator=generator).to(c.device) < p_uncond  # (B,)
    drop = drop.reshape(-1, *([1] * (c.dim() - 1)))
    return torch.where(drop, torch.as_tensor(null, dtype=c.dtype, device=c.device), c)


def ink_style(x: torch.Tensor, labels: torch.Tensor, edges: torch.Tensor | None = None, n_styles: int = 3):
    """The digits' stroke weight as a style token: the total ink sum_i x_i, cut at the quantiles of
    each digit's own ink (the training digits'), so that "thin" (0) ... "thick" (n_styles - 1)
    means the same share of every digit. Returns (styles (N,), edges (10, n_styles - 1))."""
    ink = x.reshape(x.shape[0], -1).sum(-1)
    if edges is None:
        levels = torch.arange(1, n_styles, dtype=ink.dtype, device=ink.device) / n_styles
        edges = torch.stack([ink[labels == k].quantile(levels) for k in range(10)])  # (10, n_styles - 1)
    styles = (ink[:, None] > edges.to(ink)[labels]).sum(-1)
    return styles, edges


# ---------------------------------------------------------------------------------------------
# 4. Networks
# ---------------------------------------------------------------------------------------------


def cross_attention(x: torch.Tensor, context: torch.Tensor, w_q, w_k, w_v, w_o) -> torch.Tensor:
    """One head of attention from x (B, Lq, d_x) to the context tokens (B, Lk, d_c) (Vaswani et al. 2017, Eq. 1):
    softmax(Q K^T / sqrt(d)) V W_o with Q = x W_q, K = context W_k, V = context W_v; the softmax runs
    over the context tokens, each query's weights sum to 1. Returns (B, Lq, d_x)."""
    q, k, v = x @ w_q, context @ w_k, context @ w_v  # (B, Lq, d), (B, Lk, d), (B, Lk, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, Lq, Lk)
    return scores.softmax(-1) @ v @ w_o


@dataclass
class GuidanceConfig:
    data_dim: int = 64  # 64 for the 8x8 digits, 1 or 2 for toys
    vocab_sizes: tuple[int, ...] = (10,)  # tokens per condition position: (10,) digits, (10, 3) digit and style
    hidden: int = 128  # MLP width (and token width)
    queries: int = 4  # the hidden state is read as this many query tokens of width hidden // queries
    T: int = 1000  # diffusion steps (linear schedule)
    steps: int = 2000  # optimiser steps
    batch_size: int = 128
    lr: float = 2e-3
    ema_decay: float = 0.995
    p_uncond: float = 0.1  # label dropout probability (Ho & Salimans's p_uncond)
    classifier_steps: int = 1000  # steps of the noise-conditional classifier

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> GuidanceConfig:
        """Sizes for the digits at ``GENCORE_SCALE`` (or ``scale``); ``overrides`` win."""
        sizes = pick(smoke={"hidden": 32, "steps": 20, "batch_size": 64, "classifier_steps": 20},
                     small={"hidden": 128, "steps": 1200, "batch_size": 128, "classifier_steps": 400},
                     full={"hidden": 256, "steps": 20000, "batch_size": 256, "lr": 1e-3, "ema_decay": 0.999,
                           "classifier_steps": 5000},
                     scale=scale)
        return cls(**{**sizes, **overrides})

    def make_schedule(self) -> NoiseSchedule:
        return linear_schedule(self.T)


class _ResidualMLP(nn.Module):
    """The diffusion module's MLPDenoiser body: residual blocks, an embedding added in each."""

    def __init__(self, config: GuidanceConfig, blocks: int = 3):
        super().__init__()
        h = config.hidden
        self.inp = nn.Linear(config.data_dim, h)
        self.time = nn.Sequential(nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h))
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(h, h), nn.SiLU(), nn.Linear(h, h)) for _ in range(blocks))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(h, config.data_dim))


class EmbeddingDenoiser(_ResidualMLP):
    """eps_theta(x_t, t, c): each condition token has a learned embedding (∅ included), and their
    sum is added to the step's embedding in every block: concatenating a one-hot c to the input
    of a linear layer is the same thing, a label-dependent shift."""

    def __init__(self, config: GuidanceConfig):
        super().__init__(config)
        self.config = config
        self.labels = nn.ModuleList(nn.Embedding(v + 1, config.hidden) for v in config.vocab_sizes)
        self.register_buffer("null", torch.tensor(config.vocab_sizes), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = check_condition(c, self.config.vocab_sizes, x_t.shape[0])
        emb = self.time(timestep_embedding(t, self.config.hidden).to(x_t.dtype))  # (B, h)
        emb = emb + sum(table(c[:, i]) for i, table in enumerate(self.labels))
        h = self.inp(x_t)
        for block in self.blocks:
            h = h + block(h + emb)
        return at_least_float32(self.out(h))  # (B, d)


class CrossAttentionDenoiser(_ResidualMLP):
    """eps_theta(x_t, t, c): after the first block the hidden state, read as ``queries`` tokens,
    attends to the condition tokens (token embedding + position embedding), as text-to-image U-Nets
    attend to a prompt (Rombach et al. 2022); the step's embedding alone enters every block.
    ``attention_fn`` is ``cross_attention`` or yours, called with this module's weights."""

    def __init__(self, config: GuidanceConfig, attention_fn: Callable = cross_attention):
        super().__init__(config)
        self.config, self.attention_fn, h = config, attention_fn, config.hidden
        if h % config.queries:
            raise ValueError(f"hidden ({h}) must be a multiple of queries ({config.queries})")
        self.tokens = nn.ModuleList(nn.Embedding(v + 1, h) for v in config.vocab_sizes)
        self.positions = nn.Parameter(torch.randn(len(config.vocab_sizes), h) * 0.02)
        d_q = h // config.queries
        self.norm = nn.LayerNorm(d_q)
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Parameter(torch.randn(n_in, n_out) / math.sqrt(n_in))
                                                  for n_in, n_out in ((d_q, d_q), (h, d_q), (h, d_q), (d_q, d_q)))
        self.register_buffer("null", torch.tensor(config.vocab_sizes), persistent=False)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        c = check_condition(c, self.config.vocab_sizes, x_t.shape[0])
        context = torch.stack([table(c[:, i]) for i, table in enumerate(self.tokens)], 1) + self.positions  # (B, L, h)
        emb = self.time(timestep_embedding(t, self.config.hidden).to(x_t.dtype))  # (B, h)
        h = self.inp(x_t)
        for i, block in enumerate(self.blocks):
            h = h + block(h + emb)
            if i == 0:
                queries = self.norm(h.view(h.shape[0], self.config.queries, -1))  # (B, Q, h / Q)
                h = h + self.attention_fn(queries, context, self.w_q, self.w_k, self.w_v, self.w_o).reshape(h.shape)
        return at_least_float32(self.out(h))  # (B, d)


class NoisyClassifier(_ResidualMLP):
    """p_phi(c | x_t, t): logits (B, n_classes) of the class of the clean x_0 behind x_t, for every
    noise level (Dhariwal & Nichol 2021, Sec. 4: a classifier trained on noised images)."""

    def __init__(self, config: GuidanceConfig, n_classes: int = 10):
        super().__init__(config)
        self.config = config
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(config.hidden, n_classes))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time(timestep_embedding(t, self.config.hidden).to(x_t.dtype))
        h = self.inp(x_t)
        for block in self.blocks:
            h = h + block(h + emb)
        return at_least_float32(self.out(h))


def make_conditional_denoiser(config: GuidanceConfig | None = None, kind: str = "embedding", seed: int = 0,
                              device=None, attention_fn: Callable = cross_attention) -> nn.Module:
    """A seeded ``EmbeddingDenoiser`` (``kind="embedding"``) or ``CrossAttentionDenoiser`` (``"attention"``)."""
    config = config or GuidanceConfig.for_scale()
    if kind not in ("embedding", "attention"):
        raise ValueError(f"kind must be 'embedding' or 'attention', got {kind!r}")
    torch.manual_seed(seed)
    model = EmbeddingDenoiser(config) if kind == "embedding" else CrossAttentionDenoiser(config, attention_fn)
    return model.to(device or get_device())


# ---------------------------------------------------------------------------------------------
# 5. Training
# ---------------------------------------------------------------------------------------------


def conditional_diffusion_loss(eps_model: Callable, x0: torch.Tensor, c: torch.Tensor, alpha_bar: torch.Tensor,
                               t: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """E || eps - eps_theta(x_t, t, c) ||^2 (Ho et al. 2020, Eq. 14, with the condition as an input)."""
    if t is None:
        t = torch.randint(0, len(alpha_bar), (x0.shape[0],), device=x0.device)
    if noise is None:
        noise = torch.randn_like(x0)
    return (eps_model(q_sample(x0, t, noise, alpha_bar), t, c) - noise).pow(2).mean()


def _check_pairs(x: torch.Tensor, labels: torch.Tensor, d: int) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != d:
        raise ValueError(f"expected data of shape (N, {d}), got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(labels, torch.Tensor) or labels.shape[0] != x.shape[0]:
        raise ValueError(f"expected one condition per example ({x.shape[0]}), got {getattr(labels, 'shape', None)}")


def train_conditional(
    model: nn.Module, x_train: torch.Tensor, c_train: torch.Tensor, schedule: NoiseSchedule | None = None, *,
    config: GuidanceConfig | None = None, dropout_fn: Callable = label_dropout,
    loss_fn: Callable = conditional_diffusion_loss, seed: int = 0, progress: bool | None = None,
) -> tuple[dict[str, list[float]], nn.Module]:
    """Train eps_theta(x_t, t, c) with ``dropout_fn(c, p_uncond, null)`` applied to every batch, so
    that the one network is conditional and unconditional; returns (history, EMA model)."""
    config = config or model.config
    _check_pairs(x_train, c_train, config.data_dim)
    c_train = check_condition(c_train, config.vocab_sizes, len(c_train))
    schedule = (schedule or config.make_schedule()).to(x_train.device)
    # one condition position: dropout_fn sees (B,) labels and an int null label, as in the assignment
    single = len(config.vocab_sizes) == 1
    null = config.vocab_sizes[0] if single else torch.tensor(config.vocab_sizes, device=x_train.device)

    def batch_loss(net: nn.Module, index: torch.Tensor) -> torch.Tensor:
        # label_dropout's coins, then the loss's t and noise, come from the global generator
        c = dropout_fn(c_train[index, 0] if single else c_train[index], config.p_uncond, null)
        return loss_fn(net, x_train[index], c, schedule.alpha_bar)

    return train_with_ema(model, x_train, config, batch_loss, seed=seed, progress=progress,
                          description="conditional diffusion training")


def train_noisy_classifier(
    classifier: nn.Module, x_train: torch.Tensor, labels: torch.Tensor, schedule: NoiseSchedule | None = None, *,
    config: GuidanceConfig | None = None, seed: int = 0, progress: bool | None = None,
) -> tuple[dict[str, list[float]], nn.Module]:
    """Cross-entropy of p_phi(c | x_t, t) on noised training data, x_t = q_sample(x_0, t, eps) with t
    uniform; returns (history, the classifier in eval mode)."""
    config = config or classifier.config
    _check_pairs(x_train, labels, config.data_dim)
    schedule = (schedule or config.make_schedule()).to(x_train.device)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.lr, foreach=True)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    bar = progress_bar(range(1, config.classifier_steps + 1), config.classifier_steps, "noisy classifier training", progress)
    log = StepLog(history, bar=bar, show=("loss",))
    for step in bar:
        index = to_device(torch.randint(0, len(x_train), (config.batch_size,), generator=generator), x_train.device)
        x0 = x_train[index]
        t = torch.randint(0, schedule.T, (len(index),), device=x0.device)
        optimizer.zero_grad()
        loss = F.cross_entropy(classifier(q_sample(x0, t, torch.randn_like(x0), schedule.alpha_bar), t), labels[index])
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        log.append(loss=loss)
    log.flush()
    return history, copy.deepcopy(classifier).eval().requires_grad_(False)
