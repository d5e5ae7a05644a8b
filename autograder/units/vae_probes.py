"""Sandbox side of the VAE checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/vae.py``. It runs in the sandboxed
child, gets the student's namespace and gencore's own ``vae`` functions (``ref``), and returns
only what the student's code produced: tensors, numbers, flags. It decides nothing; the
verdicts, with the reference values and tolerances, never enter the sandbox. The inputs are built
by the functions at the top, which the grader calls too, so both sides see the same numbers.
"""

from __future__ import annotations

import math

import torch
from gencore import data

def kl_hidden_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=g) * 2, torch.randn(16, 4, generator=g)


def reparam_hidden_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g), torch.randn(64, 5, generator=g)


def elbo_hidden_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(2)
    x, logits = torch.rand(8, 64, generator=g), 3 * torch.randn(8, 64, generator=g)
    return x, logits, torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)


ELBO_BETAS = (0.0, 1.0, 2.5)


def train_visible_setup(vae):
    torch.manual_seed(0)
    model = vae.VAE(vae.VAEConfig(latent_dim=2, hidden=16))
    return model, data.load_digits("train", device="cpu").x[:32]


def train_hidden_setup(vae):
    torch.manual_seed(5)
    model = vae.VAE(vae.VAEConfig(latent_dim=3, hidden=8))
    return model, data.load_digits("train", device="cpu").x[:40]


def _use_mean(mu, logvar):
    return mu  # a deterministic "sample", so that the grader can recompute the loss


# -- part 1 ------------------------------------------------------------------------------------


def kl_visible(student, ref):
    kl = student["gaussian_kl"]
    return {
        "one": kl(torch.tensor([2.0]), torch.tensor([0.25]).log()),
        "two": kl(torch.tensor([2.0, 0.0]), torch.tensor([0.25, 1.0]).log()),
        "batch": kl(torch.zeros(5, 3), torch.zeros(5, 3)),
    }


def kl_hidden(student, ref):
    kl = student["gaussian_kl"]
    mu, logvar = kl_hidden_inputs()
    out = kl(mu, logvar)
    mu_, logvar_ = mu.clone().requires_grad_(), logvar.clone().requires_grad_()
    kl(mu_, logvar_).sum().backward()
    return {"out": out, "grad_mu": mu_.grad, "grad_logvar": logvar_.grad, "leading": kl(torch.zeros(2, 3, 5), torch.zeros(2, 3, 5))}


# -- part 2 ------------------------------------------------------------------------------------


def reparam_visible(student, ref):
    reparameterize = student["reparameterize"]
    torch.manual_seed(0)
    mu, logvar = torch.tensor([1.0, -2.0]), torch.tensor([4.0, 0.25]).log()
    z = reparameterize(mu.expand(200_000, 2), logvar.expand(200_000, 2))
    mu_, logvar_ = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    reparameterize(mu_, logvar_).sum().backward()
    return {"z": z, "grad_mu": mu_.grad, "grad_logvar": logvar_.grad}


def reparam_hidden(student, ref):
    reparameterize = student["reparameterize"]
    mu, logvar, w = reparam_hidden_inputs()
    mu, logvar = mu.requires_grad_(), logvar.requires_grad_()
    torch.manual_seed(3)
    z = reparameterize(mu, logvar)
    (z * w).sum().backward()
    z3 = reparameterize(torch.full((100, 100, 4), 3.0), torch.full((100, 100, 4), math.log(9.0)))
    return {"z": z, "grad_mu": mu.grad, "grad_logvar": logvar.grad, "z3": z3}


# -- part 3 ------------------------------------------------------------------------------------


def elbo_visible(student, ref):
    negative_elbo = student["negative_elbo"]
    x = torch.tensor([[1.0, 0.0]])
    loss = negative_elbo(x, torch.zeros(1, 2), torch.zeros(1, 3), torch.zeros(1, 3), kl_fn=ref.gaussian_kl)
    mu, logvar = torch.tensor([[2.0]]), torch.tensor([[0.25]]).log()
    loss3 = negative_elbo(x, torch.zeros(1, 2), mu, logvar, beta=3.0, kl_fn=ref.gaussian_kl)
    return {"loss": loss, "loss_beta3": loss3}


def elbo_hidden(student, ref):
    negative_elbo = student["negative_elbo"]
    x, logits, mu, logvar = elbo_hidden_inputs()
    by_beta = [negative_elbo(x, logits, mu, logvar, beta=beta, kl_fn=ref.gaussian_kl) for beta in ELBO_BETAS]
    kl_seven = negative_elbo(x, logits, mu, logvar, beta=1.0, kl_fn=lambda m, lv: torch.full(m.shape[:-1], 7.0))
    big = negative_elbo(
        torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([[100.0, -100.0, 100.0]]),
        torch.zeros(1, 2), torch.zeros(1, 2), kl_fn=ref.gaussian_kl,
    )
    return {"by_beta": by_beta, "kl_seven": kl_seven, "big_logits": big}


# -- part 4 ------------------------------------------------------------------------------------


def step_visible(student, ref):
    train_step = student["train_step"]
    model, x = train_visible_setup(ref)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = train_step(model, optimizer, x, beta=1.0, loss_fn=ref.negative_elbo, reparam_fn=_use_mean)
    try:
        value = float(loss)
    except Exception:  # noqa: BLE001
        value = None
    return {"is_float": isinstance(loss, float), "type": type(loss).__name__, "loss": value, "params": list(model.parameters())}


def step_hidden(student, ref):
    train_step = student["train_step"]
    model, xs = train_hidden_setup(ref)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for batch in (xs[:20], xs[20:]):  # two steps: gradients must not leak from one to the next
        train_step(model, optimizer, batch, beta=2.5, loss_fn=ref.negative_elbo, reparam_fn=_use_mean)
    params = [p.detach().clone() for p in model.parameters()]
    calls = []
    train_step(model, optimizer, xs[:4], loss_fn=ref.negative_elbo, reparam_fn=lambda m, lv: calls.append(1) or m)
    return {"params": params, "reparam_calls": len(calls)}


def warm() -> None:
    """Run once in the template before any fork, so that no child pays for it: load the digits
    (cached by gencore) and take one optimiser step (torch.optim imports more on first use)."""
    from gencore import vae

    model, x = train_visible_setup(vae)
    vae.train_step(model, torch.optim.SGD(model.parameters(), lr=0.1), x)
