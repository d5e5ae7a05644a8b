"""Sandbox side of the autoregressive assignment's checks: call the student's functions on the
grader's inputs and return what they produced (tensors, numbers), deciding nothing.

Each probe is declared with its verdict in ``autograder/units/autoregressive.py``. It runs in the
sandboxed child, gets the student's namespace and gencore's own ``autoregressive`` functions
(``ref``); the verdicts, references and tolerances never enter the sandbox. The inputs come from
the ``*_inputs`` functions below, which both sides call, so both see the same numbers.
"""

from __future__ import annotations

import torch

THREE_POINTS = (2.0, 3.0, 5.0)  # the chapter's worked example: mu = 10/3, sigma^2 = 14/9
NLL_PARAMETERS = ((0.0, 1.0), (1.5, 0.3), (-2.0, 4.0))  # (mu, var) pairs of the hidden NLL check
MASK_CASES = tuple((k, t) for k in (1, 3, 5, 7) for t in ("A", "B"))


def nll_hidden_inputs() -> torch.Tensor:
    return torch.randn(50, generator=torch.Generator().manual_seed(11)) * 1.7 + 0.4


def mle_hidden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(12)
    return torch.randn(1000, generator=g) * 2.5 - 1.0, torch.rand(7, generator=g) * 10


def bits_hidden_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(13)
    logits = 3 * torch.randn(5, 1, 8, 8, generator=g)
    x = torch.bernoulli(torch.full((5, 1, 8, 8), 0.4), generator=g)
    small_logits = torch.randn(2, 1, 4, 4, generator=g)
    small_x = torch.bernoulli(torch.full((2, 1, 4, 4), 0.5), generator=g)
    return logits, x, small_logits, small_x


BIG_X = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
BIG_LOGITS = torch.tensor([[[[100.0, -100.0], [-100.0, 100.0]]]])  # two pixels certain, two certainly wrong


# -- part 1: gaussian_nll ----------------------------------------------------------------------


def nll_visible(student, ref):
    nll = student["gaussian_nll"]
    x = torch.tensor(THREE_POINTS)
    return {"worked": nll(x, 10 / 3, 14 / 9), "standard": nll(torch.tensor([0.0]), 0.0, 1.0)}


def nll_hidden(student, ref):
    nll = student["gaussian_nll"]
    x = nll_hidden_inputs()
    values, grads = [], []
    for mu, var in NLL_PARAMETERS:
        values.append(nll(x, mu, var))
        mu_, var_ = torch.tensor(mu, requires_grad=True), torch.tensor(var, requires_grad=True)
        out = nll(x, mu_, var_)
        out.backward()
        grads.append([mu_.grad, var_.grad])
    return {"values": values, "grads": grads}


# -- part 2: gaussian_mle ----------------------------------------------------------------------


def mle_visible(student, ref):
    mu, var = student["gaussian_mle"](torch.tensor(THREE_POINTS))
    return {"mu": mu, "var": var}


def mle_hidden(student, ref):
    mle = student["gaussian_mle"]
    x, constant = mle_hidden_inputs()
    mu, var = mle(x)
    mu_c, var_c = mle(constant[:1].expand(5).clone())
    mu_s, var_s = mle(x[:2])
    return {"mu": mu, "var": var, "mu_constant": mu_c, "var_constant": var_c, "mu_two": mu_s, "var_two": var_s}


# -- part 3: causal_conv_mask ------------------------------------------------------------------


def mask_visible(student, ref):
    mask = student["causal_conv_mask"]
    return {"A": mask(3, "A"), "B": mask(3, "B")}


def mask_hidden(student, ref):
    mask = student["causal_conv_mask"]
    return {"masks": [mask(k, t) for k, t in MASK_CASES]}


# -- part 4: bits_per_dim ----------------------------------------------------------------------


def bits_visible(student, ref):
    bits = student["bits_per_dim"]
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(0))
    two_by_two = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    return {"coin": bits(torch.zeros(3, 1, 8, 8), x), "small": bits(torch.full((1, 1, 2, 2), 4.0).log(), two_by_two)}


def bits_hidden(student, ref):
    bits = student["bits_per_dim"]
    logits, x, small_logits, small_x = bits_hidden_inputs()
    return {"random": bits(logits, x), "small": bits(small_logits, small_x), "big": bits(BIG_LOGITS, BIG_X)}


def warm() -> None:
    """Run once in the template before any fork: the first masked convolution's imports."""
    from gencore import autoregressive

    autoregressive.PixelCNN(autoregressive.PixelCNNConfig(channels=2, n_layers=1))(torch.zeros(1, 1, 8, 8))
