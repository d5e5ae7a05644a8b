"""The self-supervised learning assignment's checks: declarations, references and verdicts.
Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/ssl/ssl.ipynb`` from here. The visible checks mirror the notebook's readable asserts;
the hidden ones exist only here. The student's process only produces data (``ssl_probes.py``);
every comparison below runs in the grader's process against references computed independently of
``gencore.ssl``: the NT-Xent loss as a loop over every view and every candidate, the cosine by
hand, the EMA rule written out parameter by parameter, numpy's correlation coefficients, and
autograd through these references for the gradients.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import ssl_probes as probes
from autograder.verdicts import close, require, scalar, tensor

LIBRARY = "gencore.ssl"


def _gradient(d: dict, key: str, what: str) -> torch.Tensor:
    require(d[key] is not None, f"no gradient reached {what}: is the loss computed from it with differentiable operations?")
    return tensor(d[key], f"the gradient in {what}")


def _against_reference(values, settings, reference, function: str, setting: str, rtol: float, terms: str) -> None:
    """The student's loss at each of ``settings`` (a temperature, a lambda) against ``reference(setting)``."""
    require(isinstance(values, list) and len(values) == len(settings), f"{function} did not return a value")
    for value, got in zip(settings, values):
        got = scalar(got, f"{function}(...)", zero_dim=True)
        want = reference(value)
        require(abs(got - want) < rtol * max(1.0, abs(want)),
                f"at {setting} {value} the loss is {got:.6f}, the reference {want:.6f} ({terms})")


def _pair_gradients(d: dict, reference, z_a: torch.Tensor, z_b: torch.Tensor, **tolerance) -> None:
    """The student's gradients in z_a and z_b against autograd through ``reference(z_a, z_b)``."""
    a, b = z_a.clone().requires_grad_(True), z_b.clone().requires_grad_(True)
    reference(a, b).backward()
    require(close(_gradient(d, "grad_a", "z_a"), a.grad, **tolerance)
            and close(_gradient(d, "grad_b", "z_b"), b.grad, **tolerance),
            "the gradients in z_a and z_b differ from the reference's")


# -- part 1: nt_xent_loss --------------------------------------------------------------------------


def nt_xent_reference(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Every view i against every other view k, one at a time: -log e^{s_ij/t} / sum_{k != i} e^{s_ik/t}."""
    views = torch.cat([z_a, z_b]).double()
    n, b = len(views), len(z_a)
    units = [v / torch.sqrt((v * v).sum()) for v in views]
    total = 0.0
    for i in range(n):
        logits = torch.stack([(units[i] * units[k]).sum() / temperature for k in range(n) if k != i])
        partner = (i + b) % n
        position = partner if partner < i else partner - 1  # its place once view i is left out
        total = total - (logits[position] - torch.logsumexp(logits, 0))
    return total / n


@visible(probes.nt_xent_visible)
def nt_xent_visible(d: dict) -> None:
    """two digits with orthogonal projections, rescaled projections, and a batch of one digit"""
    expected = math.log(1 + 2 * math.exp(-2.0))
    got = scalar(d["orthogonal"], "nt_xent_loss(...)", zero_dim=True)
    hints = {math.log(2 + 2 * math.exp(-2.0)): "is the view itself (similarity 1) left out of the denominator?",
             math.log(1 + 2 * math.exp(-4.0)): "is the temperature applied only once?",
             math.log(1 + math.exp(-2.0)): "the negatives are all 2B - 2 other views, those of the same view set too"}
    hint = next((h for value, h in hints.items() if abs(got - value) < 1e-4), "")
    require(abs(got - expected) < 1e-5, f"expected log(1 + 2 e^-2) = {expected:.4f} for two digits with orthogonal "
                                        f"projections at temperature 0.5, got {got:.4f}. {hint}".strip())
    scaled = scalar(d["scaled"], "nt_xent_loss(...)", zero_dim=True)
    require(abs(scaled - expected) < 1e-5, f"rescaling the projections changed the loss to {scaled:.4f}: "
                                           "normalise them, the similarity is the cosine")
    one = scalar(d["one_pair"], "nt_xent_loss(...)", zero_dim=True)
    require(abs(one) < 1e-5, f"with one digit each view's only candidate is its partner, so the loss is 0; got {one:.4f}: "
                             "leave the view itself out of the denominator")


@hidden(probes.nt_xent_hidden)
def nt_xent_hidden(d: dict) -> None:
    """random projections at three temperatures against a loop over every pairing, the gradients, a batch of 64"""
    z_a, z_b = probes.nt_xent_inputs()
    _against_reference(d["by_temperature"], probes.NT_XENT_TEMPERATURES, lambda t: nt_xent_reference(z_a, z_b, t).item(),
                       "nt_xent_loss", "temperature", 1e-6,
                       "average over all 2B views, each against its 2B - 2 negatives and its partner")
    _pair_gradients(d, lambda a, b: nt_xent_reference(a, b, 0.5), z_a, z_b, atol=1e-8)
    g = torch.Generator().manual_seed(24)
    big_a, big_b = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    want = nt_xent_reference(big_a, big_b, 0.2).item()
    for key in ("big", "big_swapped"):
        got = scalar(d[key], "nt_xent_loss(...)", zero_dim=True)
        # float32 inputs: round-off over 128 views
        require(abs(got - want) < 1e-4 * max(1.0, abs(want)), f"on a batch of 64 digits the loss is {got:.5f}, the reference {want:.5f}")


# -- part 2: byol_loss ----------------------------------------------------------------------------


def byol_reference(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    cos = (p * z).sum(-1) / torch.sqrt((p * p).sum(-1) * (z * z).sum(-1))
    return (2 - 2 * cos).mean()


@visible(probes.byol_visible)
def byol_visible(d: dict) -> None:
    """the same, orthogonal and opposite directions, and no gradient into the target"""
    for key, want, words in (("same", 0.0, "a prediction in the target's direction"),
                             ("orthogonal", 2.0, "orthogonal vectors"), ("opposite", 4.0, "opposite vectors")):
        got = scalar(d[key], "byol_loss(...)", zero_dim=True)
        require(abs(got - want) < 1e-5, f"{words} should give {want:g} (2 - 2 cos), got {got:.4f}: normalise both vectors")
    require(d["grad_p"] is not None and tensor(d["grad_p"], "the gradient").abs().sum() > 0,
            "no gradient reached the prediction")
    require(d["grad_z"] is None or tensor(d["grad_z"], "the gradient").abs().sum() == 0,
            "a gradient reached the target: stop it (target.detach())")


@hidden(probes.byol_hidden)
def byol_hidden(d: dict) -> None:
    """a random batch against 2 - 2 cos averaged over the batch, the gradient in the prediction, none in the target"""
    p, z = probes.byol_inputs()
    value = scalar(d["value"], "byol_loss(...)", zero_dim=True)
    want = byol_reference(p, 2.0 * z)
    require(abs(value - want.item()) < 1e-7, f"the loss on a batch of 8 is {value:.6f}, the reference {want.item():.6f} "
                                             "(the batch mean of 2 - 2 cos)")
    leaf = p.clone().requires_grad_(True)
    byol_reference(leaf, 2.0 * z).backward()
    require(close(_gradient(d, "grad_p", "the prediction"), leaf.grad, atol=1e-10),
            "the gradient in the prediction differs from the reference's")
    require(d["grad_z"] is None or tensor(d["grad_z"], "the gradient").abs().sum() == 0,
            "a gradient flowed through the target into the network that produced it: stop it (target.detach())")


# -- part 3: ema_update ---------------------------------------------------------------------------


def _tensors(values, count: int, what: str) -> list[torch.Tensor]:
    require(isinstance(values, list) and len(values) == count, f"the {what}'s parameters could not be read back")
    return [tensor(v, f"a parameter of the {what}") for v in values]


@visible(probes.ema_visible)
def ema_visible(d: dict) -> None:
    """target at 0 and online at 1, decay 0.9: the target moves to 0.1 and the online network stays"""
    for t in _tensors(d["target"], 2, "target"):
        require(close(t, torch.full_like(t, 0.1)),
                f"the target should be 0.9 * 0 + 0.1 * 1 = 0.1 everywhere, got {t.flatten()[:4].tolist()}: "
                "decay multiplies the target's old weights")
    for t in _tensors(d["online"], 2, "online network"):
        require(close(t, torch.ones_like(t)), "the online network changed: only the target is updated")


@hidden(probes.ema_hidden)
def ema_hidden(d: dict) -> None:
    """four updates of a two-layer network (decay 0.99, 0.5, 0 and 1) against the rule by hand, every parameter"""
    target = [p.detach().clone() for p in probes.ema_networks(25).parameters()]
    online = [p.detach().clone() for p in probes.ema_networks(26).parameters()]
    require(isinstance(d["after"], list) and len(d["after"]) == len(probes.EMA_DECAYS), "the target could not be read back")
    for decay, got in zip(probes.EMA_DECAYS, d["after"]):
        target = [decay * xi + (1 - decay) * theta for xi, theta in zip(target, online)]
        for g_param, want in zip(_tensors(got, len(target), "target"), target):
            require(close(g_param, want), f"after an update with decay {decay} the target differs from "
                                          "decay * target + (1 - decay) * online (are all parameters updated?)")
    for got, want in zip(_tensors(d["online"], len(online), "online network"), online):
        require(close(got, want), "the online network changed: only the target is updated")


# -- part 4: barlow_twins_loss --------------------------------------------------------------------


def barlow_reference(z_a: np.ndarray, z_b: np.ndarray, lam: float) -> float:
    d = z_a.shape[1]
    c = np.array([[np.corrcoef(z_a[:, i], z_b[:, j])[0, 1] for j in range(d)] for i in range(d)])
    off = ~np.eye(d, dtype=bool)
    return float(((1 - np.diag(c)) ** 2).sum() + lam * (c[off] ** 2).sum())


def barlow_torch_reference(z_a: torch.Tensor, z_b: torch.Tensor, lam: float) -> torch.Tensor:
    """The same loss in torch, for the gradients: the correlation as covariance over standard deviations."""
    a, b = z_a - z_a.mean(0), z_b - z_b.mean(0)
    c = (a.T @ b) / torch.sqrt((a * a).sum(0)[:, None] * (b * b).sum(0)[None, :])
    off = ~torch.eye(c.shape[0], dtype=torch.bool)
    return ((1 - c.diagonal()) ** 2).sum() + lam * (c[off] ** 2).sum()


@visible(probes.barlow_visible)
def barlow_visible(d: dict) -> None:
    """two hand-computed examples, and a loss unchanged by rescaling and shifting a dimension"""
    flipped = scalar(d["flipped"], "barlow_twins_loss(...)", zero_dim=True)
    require(abs(flipped - 4.0) < 1e-3, f"C = diag(1, -1) should give (1 - 1)^2 + (1 + 1)^2 = 4, got {flipped:.4f}: "
                                       "standardise each dimension with its batch mean and biased standard deviation")
    copied = scalar(d["copied"], "barlow_twins_loss(...)", zero_dim=True)
    require(abs(copied - 1.5) < 1e-3, f"C = [[1, 1], [0, 0]] with lambda 0.5 should give 1 + 0.5 * 1 = 1.5, got {copied:.4f}: "
                                      "lambda weighs the off-diagonal terms only")
    random, rescaled = (scalar(d[k], "barlow_twins_loss(...)", zero_dim=True) for k in ("random", "rescaled"))
    require(abs(random - rescaled) < 1e-4 * max(1.0, abs(random)),
            f"rescaling and shifting a dimension changed the loss from {random:.4f} to {rescaled:.4f}: "
            "standardise each dimension over the batch (centre, divide by its standard deviation)")


@hidden(probes.barlow_hidden)
def barlow_hidden(d: dict) -> None:
    """random correlated embeddings of different scales at three lambdas against numpy's correlations, the gradients"""
    z_a, z_b = probes.barlow_inputs()
    # 1e-3: an epsilon added to the variance, as BatchNorm does (1e-5), moves the loss by about 1e-4
    # relative on these inputs; the unbiased standard deviation moves it by 3%, a missing
    # standardisation by far more
    _against_reference(d["by_lambda"], probes.BARLOW_LAMBDAS, lambda lam: barlow_reference(z_a.numpy(), z_b.numpy(), lam),
                       "barlow_twins_loss", "lambda", 1e-3, "squares of the correlations")
    _pair_gradients(d, lambda a, b: barlow_torch_reference(a, b, 0.1), z_a, z_b, rtol=1e-3, atol=1e-6)


# -- the unit -------------------------------------------------------------------------------------

UNIT = Unit(
    assignment="ssl",
    library=LIBRARY,
    chapter="book/ssl.html",
    pieces=(
        Piece("nt_xent_loss", "SimCLR's NT-Xent loss", "simclr-the-nt-xent-loss", (nt_xent_visible, nt_xent_hidden),
              forbidden=(f"{LIBRARY}.nt_xent_loss", f"{LIBRARY}.infonce_loss")),
        Piece("byol_loss", "BYOL's loss with its stop-gradient", "byol-a-target-network-instead-of-negatives",
              (byol_visible, byol_hidden), forbidden=(f"{LIBRARY}.byol_loss",)),
        Piece("ema_update", "The target network's moving average", "byol-a-target-network-instead-of-negatives",
              (ema_visible, ema_hidden), forbidden=(f"{LIBRARY}.ema_update", "torch.optim.swa_utils.AveragedModel")),
        Piece("barlow_twins_loss", "The Barlow Twins loss", "barlow-twins-redundancy-reduction",
              (barlow_visible, barlow_hidden),
              forbidden=(f"{LIBRARY}.barlow_twins_loss", f"{LIBRARY}.cross_correlation", "torch.corrcoef", "numpy.corrcoef")),
    ),
)
