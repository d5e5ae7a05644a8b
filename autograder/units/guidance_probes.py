"""Sandbox side of the guidance checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/guidance.py``. It runs in the
sandboxed child (or, for a hidden-test cell, in the notebook through ``run_in_notebook``), gets the
student's namespace and gencore's own ``guidance`` module (``ref``), and returns only what the
student's code produced. The inputs are built by the functions at the top, which the grader calls
too, so both sides see the same numbers. The exact mixture of ``ref.mixture_predictors`` supplies
predictions and classifier gradients; the grader recomputes them from torch.distributions.
"""

from __future__ import annotations

import torch

F64 = torch.float64

# -- inputs shared with the grader -------------------------------------------------------------

N_LABELS = 20_000
P_UNCOND = 0.3
MIX_MEANS = ((-1.0, 0.5), (1.5, 0.0), (0.0, -2.0))
MIX_STD = 0.5
MIX_ALPHA_BAR = (0.95, 0.6, 0.2)  # a three-step schedule: the probes use steps 0, 1 and 2
GUIDANCE_WEIGHTS = (0.0, 0.5, 2.0, 7.5)


def labels_input() -> torch.Tensor:
    return torch.arange(N_LABELS) % 10


def token_input() -> torch.Tensor:
    return torch.stack([torch.arange(600) % 10, torch.arange(600) % 3], 1)  # (600, 2): digit, style


def prediction_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(31)
    return torch.randn(7, 5, generator=g, dtype=F64), torch.randn(7, 5, generator=g, dtype=F64)


def image_prediction_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(32)
    return torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)


def eps_grad_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(33)
    eps, grad = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    return eps, grad, torch.tensor([0.99, 0.7, 0.3, 0.05], dtype=F64)


def mixture_points() -> torch.Tensor:
    return 2 * torch.randn(40, 2, generator=torch.Generator().manual_seed(34), dtype=F64)


def mixture_steps() -> torch.Tensor:
    return torch.arange(40) % 3


def attention_inputs(lq=3, lk=5, d_x=6, d_c=4, d=7, o=6, batch=2, seed=35) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x, context = torch.randn(batch, lq, d_x, generator=g, dtype=F64), torch.randn(batch, lk, d_c, generator=g, dtype=F64)
    shapes = ((d_x, d), (d_c, d), (d_c, d), (d, o))
    return (x, context, *(torch.randn(*s, generator=g, dtype=F64) for s in shapes))


def _mixture(ref):
    return ref.mixture_predictors(torch.tensor(MIX_MEANS, dtype=F64), MIX_STD, torch.tensor(MIX_ALPHA_BAR, dtype=F64))


# -- part 1: label_dropout -----------------------------------------------------------------------


def dropout_visible(student, ref):
    f = student["label_dropout"]
    labels = torch.arange(12) % 10
    return {"none": f(labels.clone(), 0.0, 10), "all": f(labels.clone(), 1.0, 10)}


def dropout_hidden(student, ref):
    f = student["label_dropout"]
    labels = labels_input()
    before = labels.clone()
    torch.manual_seed(36)
    out = f(labels, P_UNCOND, 10)
    unchanged = torch.equal(labels, before)
    second = f(labels_input(), P_UNCOND, 10)
    tokens = token_input()
    rows = f(tokens, 0.5, torch.tensor([10, 3]))
    return {"out": out, "unchanged": unchanged, "second": second, "rows": rows}


# -- part 2: cfg_prediction ----------------------------------------------------------------------


def cfg_visible(student, ref):
    f = student["cfg_prediction"]
    cond, uncond = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 3.0]])
    return {"w0": f(cond, uncond, 0.0), "w1": f(cond, uncond, 1.0)}


def cfg_hidden(student, ref):
    f = student["cfg_prediction"]
    cond, uncond = prediction_inputs()
    before = (cond.clone(), uncond.clone())
    sweep = {str(w): f(cond, uncond, w) for w in GUIDANCE_WEIGHTS}
    unchanged = torch.equal(cond, before[0]) and torch.equal(uncond, before[1])
    images_c, images_u = image_prediction_inputs()
    eps_model, _ = _mixture(ref)
    x, t = mixture_points(), mixture_steps()
    c = torch.full((len(x), 1), 1)
    guided = ref.cfg_predictor(eps_model, c, 2.0, torch.tensor([3]), guide_fn=f)(x, t)
    return {"sweep": sweep, "unchanged": unchanged, "images": f(images_c, images_u, 3.0), "mixture": guided}


# -- part 3: classifier_guided_eps ---------------------------------------------------------------


def classifier_visible(student, ref):
    f = student["classifier_guided_eps"]
    eps, grad = torch.tensor([[1.0, -1.0]]), torch.tensor([[2.0, 0.5]])
    return {"scale0": f(eps, grad, 0.64, 0.0), "scale1": f(eps, grad, 0.64, 1.0)}


def classifier_hidden(student, ref):
    f = student["classifier_guided_eps"]
    eps, grad, abar = eps_grad_inputs()
    before = (eps.clone(), grad.clone())
    per_example = f(eps, grad, abar, 2.5)
    unchanged = torch.equal(eps, before[0]) and torch.equal(grad, before[1])
    images_e, images_g = image_prediction_inputs()
    images = f(images_e, images_g, torch.tensor([0.9, 0.5, 0.1]), 1.5)
    eps_model, classifier = _mixture(ref)
    x, t = mixture_points(), mixture_steps()
    null = torch.full((len(x), 1), 3)
    steered = ref.classifier_guided_predictor(lambda z, s: eps_model(z, s, null), classifier, torch.full((len(x),), 1), 1.0,
                                              torch.tensor(MIX_ALPHA_BAR, dtype=F64), guide_fn=f)(x, t)
    return {"per_example": per_example, "unchanged": unchanged, "images": images, "mixture": steered}


# -- part 4: cross_attention ---------------------------------------------------------------------


def attention_visible(student, ref):
    f = student["cross_attention"]
    return {"out": f(*attention_inputs(lq=2, lk=3, d_x=4, d_c=4, d=4, o=4, batch=1, seed=37))}


def attention_hidden(student, ref):
    f = student["cross_attention"]
    inputs = attention_inputs()
    before = [a.clone() for a in inputs]
    out = f(*inputs)
    unchanged = all(torch.equal(a, b) for a, b in zip(inputs, before))
    one_token = f(*attention_inputs(lk=1, seed=38))
    model = attention_network(ref, f)
    x, t, c = network_inputs()
    with torch.no_grad():
        network = model(x, t, c)
    return {"out": out, "unchanged": unchanged, "one_token": one_token, "network": network}


def attention_network(ref, attention_fn):
    """The library's cross-attention denoiser, seeded, in float64, with ``attention_fn`` plugged in."""
    config = ref.GuidanceConfig(data_dim=4, vocab_sizes=(5, 2), hidden=8, queries=2)
    torch.manual_seed(39)
    return ref.CrossAttentionDenoiser(config, attention_fn=attention_fn).double()


def network_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(40), dtype=F64)
    return x, torch.arange(6) * 100, torch.stack([torch.arange(6) % 6, torch.arange(6) % 3], 1)
