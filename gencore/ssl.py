"""Self-supervised learning on the 8x8 digits: SimCLR, BYOL and Barlow Twins, top to bottom.

1. views: ``augment`` draws a random view of each digit (a small shift, rotation and scaling by
   ``resample``, pixel dropout and noise; never a flip, which would change a digit's identity);
2. InfoNCE on correlated Gaussians, where the mutual information and the density ratio are known:
   ``correlated_gaussians``, ``gaussian_mutual_information``, ``gaussian_log_ratio``, ``infonce_loss``;
3. the losses, pure functions: ``nt_xent_loss`` (SimCLR), ``byol_loss`` and ``ema_update`` (BYOL),
   ``barlow_twins_loss``;
4. the networks: an MLP encoder, a projection head and BYOL's predictor (``SSLNet``);
5. training loops that take the losses and the EMA rule as arguments (``loss_fn=``, ``ema_fn=``);
6. evaluation on frozen features: ``linear_probe_accuracy``, ``knn_accuracy``, ``effective_rank``.

Shapes: ``x`` is (B, 64) pixels in [0, 1]; ``z_a``, ``z_b`` are (B, d_z), the two views' projections.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gencore.device import (StepLog, autocast, compiled, configure_backend, float32_region, get_device, pick,
                            progress_bar, to_device)
from gencore.nn import at_least_float32, check_same_shape, mlp

# ---------------------------------------------------------------------------------------------
# 1. Views of a digit
# ---------------------------------------------------------------------------------------------


def resample(x: torch.Tensor, angle: torch.Tensor, factor: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Digits ``x`` (B, 64) rotated by ``angle`` (B,) radians, scaled by ``factor`` (B,) and moved by
    ``shift`` (B, 2) pixels (right, down), by bilinear resampling with zeros outside the image."""
    b = x.shape[0]
    # output pixel u reads the input at A u + t, in grid units where the image spans [-1, 1]
    cos, sin = torch.cos(angle) / factor, torch.sin(angle) / factor
    t = -shift * (2 / 8)  # one pixel is 2/8 of the grid
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), [b, 1, 8, 8], align_corners=False)  # (B, 8, 8, 2)
    return F.grid_sample(x.view(b, 1, 8, 8), grid, align_corners=False).view(b, 64)


def augment(x: torch.Tensor, generator: torch.Generator | None = None, shift: float = 1.0,
            degrees: float = 12.0, scale: float = 0.1, dropout: float = 0.1, noise: float = 0.1) -> torch.Tensor:
    """A random view of each digit in ``x`` (B, 64): the same digit, drawn a little differently.

    ``resample`` moves it by up to ``shift`` pixels, rotates it by up to ``degrees`` and scales it
    by a factor in [1 - scale, 1 + scale]; then a fraction ``dropout`` of the pixels is blanked and
    Gaussian noise of standard deviation ``noise`` is added (clipped to [0, 1]). No flips.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != 64:
        raise ValueError(f"augment expects digits of shape (B, 64), got {tuple(getattr(x, 'shape', ()))}")
    b = x.shape[0]
    uniform = lambda *shape: (2 * torch.rand(*shape, generator=generator) - 1).to(x.device)  # U[-1, 1]
    views = resample(x, math.radians(degrees) * uniform(b), 1 + scale * uniform(b), shift * uniform(b, 2))
    keep = (torch.rand(b, 64, generator=generator) >= dropout).to(x.device, x.dtype)
    views = views * keep + noise * torch.randn(b, 64, generator=generator).to(x.device, x.dtype)
    return views.clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# 2. InfoNCE on correlated Gaussians
# ---------------------------------------------------------------------------------------------


def correlated_gaussians(n: int, rho: float, dim: int = 1, generator: torch.Generator | None = None):
    """n pairs (x, y) with x ~ N(0, I_dim) and y = rho x + sqrt(1 - rho^2) eps: each coordinate
    pair is a standard bivariate Gaussian of correlation rho. Returns two (n, dim) float64 tensors."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho}")
    x = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(n, dim, generator=generator, dtype=torch.float64)
    return x, y


def gaussian_mutual_information(rho: float, dim: int = 1) -> float:
    """I(X; Y) = -dim/2 log(1 - rho^2) nats for ``dim`` independent coordinate pairs of correlation rho."""
    if not -1 < rho < 1:
        raise ValueError(f"rho must lie in (-1, 1), got {rho}")
    return -0.5 * dim * math.log1p(-rho**2)


def gaussian_log_ratio(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """log p(y_j | x_i) / p(y_j) for every pair: the optimal InfoNCE critic, an (N, M) matrix.

    p(y | x) = N(rho x, (1 - rho^2) I) and p(y) = N(0, I), so per coordinate the log ratio is
    -(y - rho x)^2 / (2 (1 - rho^2)) + y^2 / 2 - 1/2 log(1 - rho^2).
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (N, dim) and (M, dim), got {tuple(x.shape)} and {tuple(y.shape)}")
    s2 = 1 - rho**2
    residual = (y[None, :, :] - rho * x[:, None, :]).pow(2)  # (N, M, dim)
    return (-residual / (2 * s2) + y[None, :, :].pow(2) / 2).sum(-1) - 0.5 * x.shape[1] * math.log(s2)


def infonce_loss(scores: torch.Tensor) -> torch.Tensor:
    """L = -1/N sum_i log softmax_j(scores[i, j]) at j = i, for critic scores (N, N) whose diagonal
    holds the N positive pairs (van den Oord et al. 2018). log N - L <= I(X; Y)."""
    if scores.dim() != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"scores must be a square (N, N) matrix, got {tuple(scores.shape)}")
    return F.cross_entropy(scores, torch.arange(len(scores), device=scores.device))


# ---------------------------------------------------------------------------------------------
# 3. The losses
# ---------------------------------------------------------------------------------------------


def nt_xent_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss (Chen et al. 2020, Eq. 1), averaged over all 2B views.

    The 2B projections are L2-normalised; view i's positive is the other view of its digit and
    its 2B - 2 negatives are all remaining views; the self-similarity is masked out.
    """
    check_same_shape("z_a", z_a, "z_b", z_b)
    if z_a.dim() != 2 or temperature <= 0:
        raise ValueError(f"expected (B, d_z) projections and a positive temperature, "
                         f"got {tuple(z_a.shape)} and {temperature}")
    b = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)  # (2B, d_z)
    logits = z @ z.T / temperature  # (2B, 2B) cosine similarities / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)  # i <-> i + B
    return F.cross_entropy(logits, positives)


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's loss (Grill et al. 2020, Eq. 2): || p/|p| - sg(z)/|sg(z)| ||^2 = 2 - 2 cos(p, z),
    averaged over the batch. The stop-gradient sg: no gradient reaches the target."""
    check_same_shape("prediction", prediction, "target", target)
    cos = F.cosine_similarity(prediction, target.detach(), dim=-1)  # (B,)
    return (2 - 2 * cos).mean()


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, decay: float) -> None:
    """The target network's update (Grill et al. 2020, Eq. 1): xi <- decay xi + (1 - decay) theta,
    in place, for every parameter; the online network is unchanged."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must lie in [0, 1], got {decay}")
    for xi, theta in zip(target.parameters(), online.parameters(), strict=True):
        xi.mul_(decay).add_(theta.detach(), alpha=1 - decay)


def cross_correlation(z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """The (d_z, d_z) matrix C_ij of correlations between dimension i of z_a and j of z_b across the batch
    (Zbontar et al. 2021, Eq. 2): each dimension centred and divided by its (biased) standard deviation."""
    check_same_shape("z_a", z_a, "z_b", z_b)
    if z_a.dim() != 2 or z_a.shape[0] < 2:
        raise ValueError(f"expected (B, d_z) projections with B >= 2, got {tuple(z_a.shape)}")
    standardise = lambda z: (z - z.mean(0)) / z.std(0, unbiased=False).clamp_min(1e-8)
    return standardise(z_a).T @ standardise(z_b) / z_a.shape[0]


def barlow_twins_loss(z_a: torch.Tensor, z_b: torch.Tensor, lambda_offdiag: float = 5e-3) -> torch.Tensor:
    """sum_i (1 - C_ii)^2 + lambda_offdiag sum_{i != j} C_ij^2 (Zbontar et al. 2021, Eq. 1)."""
    c = cross_correlation(z_a, z_b)
    on_diagonal = (1 - c.diagonal()).pow(2).sum()  # invariance: each dimension agrees across views
    off_diagonal = c.pow(2).sum() - c.diagonal().pow(2).sum()  # redundancy between dimensions
    return on_diagonal + lambda_offdiag * off_diagonal


# ---------------------------------------------------------------------------------------------
# 4. Networks
# ---------------------------------------------------------------------------------------------


@dataclass
class SSLConfig:
    data_dim: int = 64  # pixels of an 8x8 digit
    hidden: int = 128  # width of the encoder's two hidden layers
    rep_dim: int = 32  # the representation: what the probes see
    head_hidden: int = 128  # hidden width of the projection head and the predictor
    proj_dim: int = 64  # the projection the losses see (and the predictor's output)
    steps: int = 1000  # optimiser steps
    batch_size: int = 128  # digits per step, two views each
    lr: float = 2e-3  # Adam learning rate
    temperature: float = 0.5  # NT-Xent's temperature
    decay: float = 0.99  # BYOL's EMA decay of the target network (0: the target is the online network)
    lambda_offdiag: float = 0.05  # Barlow Twins' weight of the off-diagonal terms (about 3 / proj_dim)

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> SSLConfig:
        """Sizes for ``GENCORE_SCALE`` (or ``scale``); keyword overrides win."""
        sizes = pick(smoke=dict(hidden=32, head_hidden=32, steps=5, batch_size=32), small={},
                     full=dict(hidden=256, head_hidden=256, steps=5000, batch_size=256),
                     scale=scale)
        return cls(**{**sizes, **overrides})


def head(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    """Linear -> BatchNorm -> ReLU -> Linear: BYOL's projector and predictor, used here for all three
    methods (SimCLR's head also has one hidden layer; Barlow Twins' projector has two). The batch
    normalisation keeps the heads' inputs scaled through training."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, d_out))


class SSLNet(nn.Module):
    """encoder (the representation) -> projection head -> predictor (BYOL only)."""

    def __init__(self, config: SSLConfig):
        super().__init__()
        c = self.config = config
        self.encoder = mlp([c.data_dim, c.hidden, c.hidden, c.rep_dim])
        self.projector = head(c.rep_dim, c.head_hidden, c.proj_dim)
        self.predictor = head(c.proj_dim, c.head_hidden, c.proj_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return at_least_float32(self.projector(self.encoder(x)))  # (B, proj_dim)


def make_ssl_net(config: SSLConfig | None = None, seed: int = 0, device=None) -> SSLNet:
    """A seeded ``SSLNet`` on ``device``; the config defaults to the scale's."""
    torch.manual_seed(seed)
    return SSLNet(config or SSLConfig.for_scale()).to(device or get_device())


# ---------------------------------------------------------------------------------------------
# 5. Training
# ---------------------------------------------------------------------------------------------


def _check_data(x: torch.Tensor, data_dim: int = 64) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != data_dim:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected data of shape (N, {data_dim}), got {shape}")


def _batches(n: int, batch_size: int, steps: int, generator: torch.Generator):
    """``steps`` index batches, reshuffling after every pass over the n points."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} training points")
    order, pos = torch.randperm(n, generator=generator), 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=generator), 0
        yield order[pos: pos + batch_size]
        pos += batch_size


def _train(model: nn.Module, x_train: torch.Tensor, config: SSLConfig, name: str, step_loss: Callable,
           after_step: Callable | None, seed: int, progress: bool | None) -> dict[str, list[float]]:
    """The loop the methods share: two views per digit, ``step_loss(x_a, x_b, index) -> (loss, z_a)``,
    Adam, then ``after_step()``. The history has ``step``, ``loss`` and ``std``, the mean over
    dimensions of the batch standard deviation of z_a / |z_a| (0 when the outputs collapse)."""
    _check_data(x_train, config.data_dim)
    configure_backend(x_train.device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "loss": [], "std": []}
    batches = _batches(len(x_train), config.batch_size, config.steps, generator)
    bar = progress_bar(batches, config.steps, name, progress)
    log = StepLog(history, bar=bar, show=("loss",))
    model.train()
    for step, index in enumerate(bar, start=1):
        x = x_train[to_device(index, x_train.device)]
        x_a, x_b = augment(x, generator), augment(x, generator)  # two views of each digit
        optimizer.zero_grad()
        with autocast(x.device):
            loss, z_a = step_loss(x_a, x_b, index)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        history["step"].append(step)
        log.append(loss=loss, std=F.normalize(z_a.detach().float(), dim=1).std(0).mean())
    log.flush()
    model.eval()
    return history


def _two_view_loss(net: nn.Module, loss_fn: Callable, *args) -> Callable:
    """The step of SimCLR and Barlow Twins: ``loss_fn(z_a, z_b, *args)`` on one network's projections."""

    def step_loss(x_a, x_b, index):
        z_a, z_b = net(x_a), net(x_b)
        with float32_region(z_a.device):  # the losses stay in float32 under bf16 autocast
            return loss_fn(z_a, z_b, *args), z_a

    return step_loss


def train_simclr(model: SSLNet, x_train: torch.Tensor, *, config: SSLConfig | None = None,
                 loss_fn: Callable = nt_xent_loss, seed: int = 0, progress: bool | None = None) -> dict:
    """SimCLR (Chen et al. 2020): ``loss_fn(z_a, z_b, temperature)`` on the projections of two views."""
    config = config or model.config
    step_loss = _two_view_loss(compiled(model), loss_fn, config.temperature)
    return _train(model, x_train, config, "SimCLR", step_loss, None, seed, progress)


def train_barlow_twins(model: SSLNet, x_train: torch.Tensor, *, config: SSLConfig | None = None,
                       loss_fn: Callable = barlow_twins_loss, seed: int = 0, progress: bool | None = None) -> dict:
    """Barlow Twins (Zbontar et al. 2021): ``loss_fn(z_a, z_b, lambda_offdiag)`` on two views' projections."""
    config = config or model.config
    step_loss = _two_view_loss(compiled(model), loss_fn, config.lambda_offdiag)
    return _train(model, x_train, config, "Barlow Twins", step_loss, None, seed, progress)


def train_byol(model: SSLNet, x_train: torch.Tensor, *, config: SSLConfig | None = None,
               loss_fn: Callable = byol_loss, ema_fn: Callable = ema_update, predictor: bool = True,
               seed: int = 0, progress: bool | None = None) -> dict:
    """BYOL (Grill et al. 2020): the online network (``model``) predicts the target network's
    projection of the other view, symmetrised over the two views; after each step
    ``ema_fn(target, online, config.decay)`` moves the target towards the online weights.

    With ``config.decay == 0`` the target *is* the online network (SimSiam, Chen & He 2021): its
    projections then carry gradients, and only ``loss_fn``'s stop-gradient keeps them out.
    ``predictor=False`` compares the projections directly. The target is discarded at the end.
    """
    config = config or model.config
    online = nn.Sequential(model.encoder, model.projector)
    # the target normalises with its own batch statistics, like the online network, whatever mode model was in
    target = online if config.decay == 0 else copy.deepcopy(online).requires_grad_(False).train()
    head = model.predictor if predictor else nn.Identity()
    model.predictor.requires_grad_(predictor)  # an unused predictor stays out of the optimiser

    def step_loss(x_a, x_b, index):
        z_a, z_b = online(x_a), online(x_b)  # (B, proj_dim)
        t_a, t_b = (z_a, z_b) if target is online else (target(x_a), target(x_b))
        p_a, p_b = head(z_a), head(z_b)
        with float32_region(z_a.device):  # each view predicts the other
            loss = 0.5 * (loss_fn(p_a.float(), t_b.float()) + loss_fn(p_b.float(), t_a.float()))
        return loss, z_a

    after = None if target is online else partial(ema_fn, target, online, config.decay)
    try:
        return _train(model, x_train, config, "BYOL", step_loss, after, seed, progress)
    finally:
        model.predictor.requires_grad_(True)


def train_supervised(model: SSLNet, x_train: torch.Tensor, y_train: torch.Tensor, *,
                     config: SSLConfig | None = None, seed: int = 0, progress: bool | None = None) -> dict:
    """The supervised baseline of the same size: ``model.encoder`` and a linear layer
    (``model.classifier``, added here) trained with cross-entropy on the labels, on the same
    augmented views as the self-supervised runs."""
    config = config or model.config
    if not isinstance(y_train, torch.Tensor) or y_train.shape != (len(x_train),):
        raise ValueError(f"y_train must have shape ({len(x_train)},), got {tuple(getattr(y_train, 'shape', ()))}")
    torch.manual_seed(seed)
    model.classifier = nn.Linear(config.rep_dim, 10).to(x_train.device)
    net = compiled(nn.Sequential(model.encoder, model.classifier))

    def step_loss(x_a, x_b, index):
        y = y_train[to_device(index, y_train.device)]
        logits_a, logits_b = net(x_a), net(x_b)
        with float32_region(x_a.device):
            return 0.5 * (F.cross_entropy(logits_a.float(), y) + F.cross_entropy(logits_b.float(), y)), logits_a

    return _train(model, x_train, config, "supervised", step_loss, None, seed, progress)


# ---------------------------------------------------------------------------------------------
# 6. Evaluation on frozen features
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def representations(model: SSLNet, x: torch.Tensor) -> torch.Tensor:
    """The encoder's output for ``x`` (N, 64): the frozen features the probes see, (N, rep_dim)."""
    _check_data(x, model.config.data_dim)
    return at_least_float32(model.encoder(x))  # the encoder has no batch statistics: no eval() needed


def _probe_data(train_features, train_labels, test_features, test_labels) -> list[np.ndarray]:
    """The four arguments as numpy arrays, checked: (N, D) features with one label each."""
    arrays = [a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
              for a in (train_features, train_labels, test_features, test_labels)]
    f_tr, y_tr, f_te, y_te = arrays
    if (f_tr.ndim != 2 or f_te.ndim != 2 or f_tr.shape[1] != f_te.shape[1]
            or len(f_tr) != len(y_tr) or len(f_te) != len(y_te)):
        raise ValueError(f"expected (N, D) features with N labels for train and test, got {f_tr.shape} with "
                         f"{y_tr.shape} labels and {f_te.shape} with {y_te.shape} labels")
    return arrays


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels, c: float = 1.0) -> float:
    """Test accuracy of a multinomial logistic regression (L2 strength 1/c) fitted on standardised
    frozen features: the linear evaluation protocol of SimCLR, BYOL and Barlow Twins."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f_tr, y_tr, f_te, y_te = _probe_data(train_features, train_labels, test_features, test_labels)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a collapsed feature can stall lbfgs
        probe.fit(f_tr, y_tr)
    return float((probe.predict(f_te) == y_te).mean())


def knn_accuracy(train_features, train_labels, test_features, test_labels, k: int = 5) -> float:
    """Test accuracy of a k-nearest-neighbour vote under cosine similarity of frozen features."""
    from sklearn.neighbors import KNeighborsClassifier

    f_tr, y_tr, f_te, y_te = _probe_data(train_features, train_labels, test_features, test_labels)
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(f_tr, y_tr)
    return float((knn.predict(f_te) == y_te).mean())


def effective_rank(z: torch.Tensor) -> float:
    """exp of the entropy of the normalised singular values of z (N, D) (Roy & Vetterli 2007):
    D for D equal singular values, 1 when all rows are one vector (a collapsed representation)."""
    if not isinstance(z, torch.Tensor) or z.dim() != 2:
        raise ValueError(f"z must be an (N, D) tensor, got {tuple(getattr(z, 'shape', ()))}")
    s = torch.linalg.svdvals(z.detach().double())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
