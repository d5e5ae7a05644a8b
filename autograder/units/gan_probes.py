"""Sandbox side of the GAN checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/gan.py``. It runs in the sandboxed
child (or in the notebook, through ``run_in_notebook``), gets the student's namespace and
gencore's own ``gan`` functions (``ref``), and returns only what the student's code produced. It
decides nothing; the verdicts, with the references (scipy, closed forms, autograd) and
tolerances, never enter the sandbox. The inputs are built by the functions at the top, which the
grader calls too, so both sides see the same numbers.
"""

from __future__ import annotations

import torch

f64 = dict(dtype=torch.float64)


def _simplex(g: torch.Generator, rows: int, k: int, zeros: bool) -> torch.Tensor:
    p = torch.rand(rows, k, generator=g, **f64) ** 3
    if zeros:
        p = p * (torch.rand(rows, k, generator=g, **f64) > 0.4)
        p[:, 0] += 1e-3
    return p / p.sum(-1, keepdim=True)


def logits_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    return 4 * torch.randn(24, generator=g, **f64), 4 * torch.randn(24, generator=g, **f64)


def js_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(12)
    return _simplex(g, 10, 7, zeros=True), _simplex(g, 10, 7, zeros=True)


def density_grid() -> torch.Tensor:
    return torch.linspace(-5, 5, 41, **f64)


def w1_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(13)
    return torch.randn(300, generator=g, **f64), 3 * torch.rand(300, generator=g, **f64) - 0.5


def lp_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(14)
    return torch.randn(6, generator=g, **f64), torch.randn(6, generator=g, **f64) + 0.8


GP_N = 40_000
GP_DIRECTION = (0.6, 0.8)


def _grad(fn, *tensors):
    tensors = [t.clone().requires_grad_(True) for t in tensors]
    out = fn(*tensors)
    out.backward()
    return out.detach(), [t.grad for t in tensors]


# -- part 1: the discriminator's loss -----------------------------------------------------------


def discriminator_visible(student, ref):
    loss = student["discriminator_loss"]
    return {
        "at_zero": loss(torch.zeros(5), torch.zeros(5)),
        "confident": loss(torch.full((3,), 30.0), torch.full((3,), -30.0)),
        "swapped": loss(torch.full((3,), -3.0), torch.full((3,), 3.0)),
    }


def discriminator_hidden(student, ref):
    loss = student["discriminator_loss"]
    real, fake = logits_inputs()
    value, (grad_real, grad_fake) = _grad(loss, real, fake)
    return {"value": value, "grad_real": grad_real, "grad_fake": grad_fake,
            "extreme": loss(torch.tensor([-200.0, -300.0]), torch.tensor([200.0, 300.0]))}


# -- part 2: the non-saturating generator loss --------------------------------------------------


def generator_visible(student, ref):
    loss = student["generator_loss_nonsaturating"]
    value, (grad,) = _grad(loss, torch.tensor([-10.0, -10.0]))
    return {"at_zero": loss(torch.zeros(4)), "value_rejected": value, "grad_rejected": grad}


def generator_hidden(student, ref):
    loss = student["generator_loss_nonsaturating"]
    _, fake = logits_inputs()
    value, (grad,) = _grad(loss, fake)
    return {"value": value, "grad": grad, "extreme": loss(torch.tensor([-200.0, -300.0]))}


# -- part 3: Jensen-Shannon ---------------------------------------------------------------------


def js_visible(student, ref):
    js = student["js_divergence"]
    return {
        "same": js(torch.tensor([0.2, 0.3, 0.5]), torch.tensor([0.2, 0.3, 0.5])),
        "example": js(torch.tensor([0.25, 0.75]), torch.tensor([0.75, 0.25])),
        "batch": js(torch.full((3, 4), 0.25), torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 3)),
    }


def js_hidden(student, ref):
    js = student["js_divergence"]
    p, q = js_inputs()
    disjoint = js(torch.tensor([0.5, 0.5, 0.0, 0.0], **f64), torch.tensor([0.0, 0.0, 0.1, 0.9], **f64))
    return {"random": js(p, q), "swapped": js(q, p), "disjoint": disjoint}


# -- part 4: the optimal discriminator ----------------------------------------------------------


def optimal_visible(student, ref):
    d = student["optimal_discriminator"]
    return {"out": d(torch.tensor([0.2, 0.6, 0.3]), torch.tensor([0.2, 0.2, 0.0]))}


def optimal_hidden(student, ref):
    d = student["optimal_discriminator"]
    x = density_grid()
    normal = torch.distributions.Normal
    p_data, p_model = normal(-1.0, 1.0).log_prob(x).exp(), normal(1.5, 0.5).log_prob(x).exp()
    p, q = js_inputs()
    return {"gaussians": d(p_data, p_model), "discrete": d(p, q), "shape": list(d(torch.ones(3, 5), torch.ones(3, 5)).shape)}


# -- part 5: Wasserstein-1 in one dimension -----------------------------------------------------


def w1_visible(student, ref):
    w1 = student["wasserstein1_1d"]
    return {
        "shift": w1(torch.tensor([0.0, 1.0, 2.0]), torch.tensor([5.0, 6.0, 7.0])),
        "unsorted": w1(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 3.0, 2.0])),
    }


def w1_hidden(student, ref):
    w1 = student["wasserstein1_1d"]
    x, y = w1_inputs()
    a, b = lp_inputs()
    return {"random": w1(x, y), "lp": w1(a, b), "same": w1(x, x.flip(0))}


# -- part 6: the gradient penalty ---------------------------------------------------------------


def gp_visible(student, ref):
    penalty_fn = student["gradient_penalty"]
    w = torch.tensor([3.0, 4.0], requires_grad=True)
    g = torch.Generator().manual_seed(15)
    real, fake = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g)
    penalty = penalty_fn(lambda x: x @ w, real, fake)
    grad = torch.autograd.grad(penalty, w)[0] if isinstance(penalty, torch.Tensor) and penalty.requires_grad else None
    return {"penalty": penalty, "grad_w": grad}


def gp_hidden(student, ref):
    penalty_fn = student["gradient_penalty"]
    u = torch.tensor(GP_DIRECTION, **f64)
    a = torch.tensor(1.0, **f64, requires_grad=True)
    penalty = penalty_fn(lambda x: 0.5 * a * x.pow(2).sum(-1), (3 * u).expand(GP_N, 2), u.expand(GP_N, 2))
    grad = torch.autograd.grad(penalty, a)[0] if isinstance(penalty, torch.Tensor) and penalty.requires_grad else None
    images = penalty_fn(lambda x: 0.5 * x.pow(2).sum((1, 2, 3)), torch.full((GP_N, 1, 8, 8), 3 / 8, **f64),
                        torch.full((GP_N, 1, 8, 8), 1 / 8, **f64))
    return {"penalty": penalty, "grad_a": grad, "images": images}


def warm() -> None:
    """Run once in the template before any fork: one double backward (autograd's first use)."""
    from gencore import gan

    gan.gradient_penalty(lambda x: x.pow(2).sum(-1), torch.randn(4, 2), torch.randn(4, 2))
