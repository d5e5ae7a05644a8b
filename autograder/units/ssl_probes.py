"""Sandbox side of the self-supervised learning checks: call the student's functions on the
grader's inputs.

Each probe is declared with its verdict in ``autograder/units/ssl.py``. It runs in the sandboxed
child (or in the notebook, through ``run_in_notebook``), gets the student's namespace and
gencore's own ``ssl`` functions (``ref``), and returns only what the student's code produced:
tensors, numbers, flags. It decides nothing; the verdicts, with the references (brute-force
loops, numpy's correlation coefficients, autograd) and tolerances, never enter the sandbox. The
inputs are built by the functions at the top, which the grader calls too, so both sides see the
same numbers.
"""

from __future__ import annotations

import torch
from torch import nn

f64 = dict(dtype=torch.float64)


def nt_xent_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(21)
    z_a = torch.randn(6, 5, generator=g, **f64)
    return z_a, 0.7 * z_a + torch.randn(6, 5, generator=g, **f64)  # partners more alike than strangers


NT_XENT_TEMPERATURES = (0.1, 0.5, 2.0)


def byol_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(22)
    return torch.randn(8, 6, generator=g, **f64), 3 * torch.randn(8, 6, generator=g, **f64)


def ema_networks(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 3)).double()


EMA_DECAYS = (0.99, 0.5, 0.0, 1.0)  # applied one after the other


def barlow_hand_example() -> torch.Tensor:
    """Four examples, two dimensions that are already centred, of unit (biased) variance and uncorrelated."""
    return torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])


def barlow_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(23)
    z_a = torch.randn(32, 6, generator=g, **f64)
    z_b = 0.6 * z_a @ torch.randn(6, 6, generator=g, **f64) + torch.randn(32, 6, generator=g, **f64)
    scale = torch.tensor([1.0, 5.0, 0.2, 2.0, 10.0, 0.5], **f64)
    return z_a * scale + 3.0, z_b - 1.0  # dimensions of different scales and means


BARLOW_LAMBDAS = (0.005, 0.1, 1.0)


def _with_grads(fn, *tensors):
    """fn's value on copies of ``tensors`` that require gradients, and their gradients."""
    leaves = [t.clone().requires_grad_(True) for t in tensors]
    value = fn(*leaves)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


# -- part 1: nt_xent_loss ----------------------------------------------------------------------


def nt_xent_visible(student, ref):
    loss = student["nt_xent_loss"]
    e = torch.eye(2)
    return {
        "orthogonal": loss(e, e.clone(), 0.5),  # two digits, their two views identical
        "scaled": loss(3.0 * e, 0.5 * e, 0.5),
        "one_pair": loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 0.5),
    }


def nt_xent_hidden(student, ref):
    loss = student["nt_xent_loss"]
    z_a, z_b = nt_xent_inputs()
    by_temperature = [loss(z_a, z_b, t) for t in NT_XENT_TEMPERATURES]
    value, (grad_a, grad_b) = _with_grads(lambda a, b: loss(a, b, 0.5), z_a, z_b)
    g = torch.Generator().manual_seed(24)
    big_a, big_b = torch.randn(64, 16, generator=g), torch.randn(64, 16, generator=g)
    return {"by_temperature": by_temperature, "value": value, "grad_a": grad_a, "grad_b": grad_b,
            "big": loss(big_a, big_b, 0.2), "big_swapped": loss(big_b, big_a, 0.2)}


# -- part 2: byol_loss -------------------------------------------------------------------------


def byol_visible(student, ref):
    loss = student["byol_loss"]
    p = torch.tensor([[1.0, 2.0]], requires_grad=True)
    z = torch.tensor([[0.5, -3.0]], requires_grad=True)
    loss(p, z).backward()
    return {
        "same": loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])),
        "orthogonal": loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])),
        "opposite": loss(torch.tensor([[2.0, 0.0]]), torch.tensor([[-1.0, 0.0]])),
        "grad_p": p.grad, "grad_z": z.grad,
    }


def byol_hidden(student, ref):
    loss = student["byol_loss"]
    p, z = byol_inputs()
    p_leaf, z_leaf = p.clone().requires_grad_(True), z.clone().requires_grad_(True)
    value = loss(p_leaf, 2.0 * z_leaf)  # the target as the output of a computation, as in training
    value.backward()
    return {"value": value.detach(), "grad_p": p_leaf.grad, "grad_z": z_leaf.grad}


# -- part 3: ema_update ------------------------------------------------------------------------


def _parameters(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def ema_visible(student, ref):
    target, online = nn.Linear(3, 2), nn.Linear(3, 2)
    with torch.no_grad():
        for p in target.parameters():
            p.fill_(0.0)
        for p in online.parameters():
            p.fill_(1.0)
    student["ema_update"](target, online, 0.9)
    return {"target": _parameters(target), "online": _parameters(online)}


def ema_hidden(student, ref):
    target, online = ema_networks(25), ema_networks(26)
    after = []
    for decay in EMA_DECAYS:
        student["ema_update"](target, online, decay)
        after.append(_parameters(target))
    return {"after": after, "online": _parameters(online)}


# -- part 4: barlow_twins_loss -----------------------------------------------------------------


def barlow_visible(student, ref):
    loss = student["barlow_twins_loss"]
    z = barlow_hand_example()
    flipped = z * torch.tensor([1.0, -1.0])
    copied = torch.stack([z[:, 0], z[:, 0]], 1)
    g = torch.Generator().manual_seed(27)
    z_a, z_b = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    return {
        "flipped": loss(z, flipped, 0.5),
        "copied": loss(z, copied, 0.5),
        "random": loss(z_a, z_b, 0.1),
        "rescaled": loss(z_a * torch.tensor([10.0, 0.1, 3.0]) + 5.0, z_b, 0.1),
    }


def barlow_hidden(student, ref):
    loss = student["barlow_twins_loss"]
    z_a, z_b = barlow_inputs()
    by_lambda = [loss(z_a, z_b, lam) for lam in BARLOW_LAMBDAS]
    value, (grad_a, grad_b) = _with_grads(lambda a, b: loss(a, b, 0.1), z_a, z_b)
    return {"by_lambda": by_lambda, "value": value, "grad_a": grad_a, "grad_b": grad_b}


def warm() -> None:
    """Run once in the template before any fork: the first autograd pass and nn.Linear's
    initialisation import more of torch on first use."""
    _with_grads(lambda a: (a * a).sum(), torch.ones(2))
    nn.Linear(2, 2)
