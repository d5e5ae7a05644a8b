"""Sandbox side of the flow-matching checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/flow.py``. It runs in the sandboxed
child (or, for a hidden-test cell, in the notebook through ``run_in_notebook``), gets the
student's namespace and gencore's own ``flow`` functions (``ref``), and returns only what the
student's code produced. It decides nothing; the verdicts, with the reference values and
tolerances, never enter the sandbox. The inputs are built by the functions at the top, which the
grader calls too, so both sides see the same numbers. The loss is always given the library's
interpolant, so that a wrong interpolant costs the points of its own part only.
"""

from __future__ import annotations

import torch

F64 = torch.float64

# -- inputs shared with the grader -------------------------------------------------------------

VISIBLE_X0 = ((0.0, 0.0), (2.0, 2.0), (-1.0, 4.0))
VISIBLE_X1 = ((1.0, 1.0), (0.0, 0.0), (3.0, 0.0))
VISIBLE_T = (0.0, 1.0, 0.25)
GAUSS_MEAN = (1.0, -0.5)
GAUSS_COV = ((0.36, 0.24), (0.24, 0.25))
EULER_STEPS = (10, 20, 40, 80)
HEUN_STEPS = (5, 10, 20, 40)
N_DRAWS = 20_000


def interpolant_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(21)
    x0, x1, t = torch.randn(9, 3, generator=g, dtype=F64), torch.randn(9, 3, generator=g, dtype=F64), torch.rand(9, generator=g, dtype=F64)
    images0, images1 = torch.randn(3, 1, 8, 8, generator=g), torch.randn(3, 1, 8, 8, generator=g)
    return x0, x1, t, images0, images1, torch.tensor([0.1, 0.5, 0.9])


def loss_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(22)
    return torch.randn(12, 3, generator=g), torch.randn(12, 3, generator=g), torch.rand(12, generator=g)


def image_loss_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(23)
    return torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g), torch.rand(4, generator=g)


def linear_velocity_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in network whose output depends on x_t and on t (one time per example)."""
    return 0.3 * x_t - 0.5 + t.reshape(-1, *([1] * (x_t.dim() - 1))).to(x_t.dtype)


def step_inputs() -> torch.Tensor:
    return torch.randn(6, 4, generator=torch.Generator().manual_seed(24), dtype=F64)


def nonlinear_field(x: torch.Tensor, t) -> torch.Tensor:
    """A field that depends on x and t nonlinearly; t is the float the step passes."""
    return torch.sin(x) * (1 + t) - 0.5 * t * t * x


def gauss_start() -> torch.Tensor:
    return torch.randn(200, 2, generator=torch.Generator().manual_seed(25), dtype=F64)


def _gaussian_field(ref):
    return ref.gaussian_velocity(torch.tensor(GAUSS_MEAN, dtype=F64), torch.tensor(GAUSS_COV, dtype=F64))


# -- part 1: interpolant ------------------------------------------------------------------------


def interpolant_visible(student, ref):
    f = student["interpolant"]
    return {"x_t": f(torch.tensor(VISIBLE_X0), torch.tensor(VISIBLE_X1), torch.tensor(VISIBLE_T))}


def interpolant_hidden(student, ref):
    f = student["interpolant"]
    x0, x1, t, images0, images1, image_t = interpolant_inputs()
    before = [x0.clone(), x1.clone(), t.clone()]
    out = f(x0, x1, t)
    sweep = torch.linspace(0, 1, 11, dtype=F64)
    return {
        "random": out,
        "unchanged": all(torch.equal(a, b) for a, b in zip(before, (x0, x1, t))),
        "images": f(images0, images1, image_t),
        "sweep": f(x0[:1].expand(11, 3), x1[:1].expand(11, 3), sweep),
    }


# -- part 2: flow_matching_loss ------------------------------------------------------------------


def loss_visible(student, ref):
    loss_fn = student["flow_matching_loss"]
    x1, x0, t = loss_inputs()
    zero = loss_fn(lambda x_t, t: torch.zeros_like(x_t), x1, t=t, x0=x0, interpolant_fn=ref.interpolant)
    perfect = loss_fn(lambda x_t, t: x1 - x0, x1, t=t, x0=x0, interpolant_fn=ref.interpolant)
    return {"zero": zero, "perfect": perfect}


def loss_hidden(student, ref):
    loss_fn = student["flow_matching_loss"]
    x1, x0, t = loss_inputs()
    value = loss_fn(linear_velocity_model, x1, t=t, x0=x0, interpolant_fn=ref.interpolant)
    images1, images0, image_t = image_loss_inputs()
    images = loss_fn(linear_velocity_model, images1, t=image_t, x0=images0, interpolant_fn=ref.interpolant)
    model_saw, interpolant_saw = [], []

    def recording_model(x_t, t):
        model_saw.append((x_t.detach().clone(), t.detach().clone()))
        return torch.zeros_like(x_t)

    def recording_interpolant(x0, x1, t):
        interpolant_saw.append(t.detach().clone())
        return ref.interpolant(x0, x1, t)

    torch.manual_seed(26)
    loss_fn(recording_model, torch.full((N_DRAWS, 1), 2.0), interpolant_fn=recording_interpolant)
    x_t, t_model = model_saw[0] if model_saw else (None, None)
    weight = torch.tensor(0.7, requires_grad=True)
    loss_fn(lambda x_t, t: weight * x_t, x1, t=t, x0=x0, interpolant_fn=ref.interpolant).backward()
    return {
        "value": value,
        "images": images,
        "x_t": x_t,
        "t_model": t_model,
        "t_interpolant": interpolant_saw[0] if interpolant_saw else None,
        "interpolant_calls": len(interpolant_saw),
        "grad": weight.grad,
    }


# -- part 3: euler_step --------------------------------------------------------------------------


def _simple_fields(step) -> dict:
    """One step of ``step`` with v = 1 and with v(x, t) = t: the two visible cases both steps share."""
    x = step_inputs()
    return {
        "constant": step(lambda y, s: torch.ones_like(y), x, 0.2, 0.1),
        "time": step(lambda y, s: s * torch.ones_like(y), x, 0.3, 0.1),
    }


def euler_visible(student, ref):
    step = student["euler_step"]
    return {**_simple_fields(step), "linear": step(lambda y, s: -2.0 * y, step_inputs(), 0.0, 0.05)}


def euler_hidden(student, ref):
    step = student["euler_step"]
    x = step_inputs()
    before = x.clone()
    nonlinear = step(nonlinear_field, x, 0.35, 0.07)
    unchanged = torch.equal(x, before)
    field, start = _gaussian_field(ref), gauss_start()
    ends = {str(k): ref.euler_sample(field, start, k, step_fn=step) for k in EULER_STEPS}
    return {"nonlinear": nonlinear, "unchanged": unchanged, "ends": ends}


# -- part 4: heun_step ---------------------------------------------------------------------------


def heun_visible(student, ref):
    return _simple_fields(student["heun_step"])


def heun_hidden(student, ref):
    step = student["heun_step"]
    x = step_inputs()
    before = x.clone()
    calls = []

    def counting_field(y, s):
        calls.append(s)
        return nonlinear_field(y, s)

    nonlinear = step(counting_field, x, 0.35, 0.07)
    unchanged = torch.equal(x, before)
    field, start = _gaussian_field(ref), gauss_start()
    ends = {str(k): ref.heun_sample(field, start, k, step_fn=step) for k in HEUN_STEPS}
    return {
        "nonlinear": nonlinear,
        "linear": step(lambda y, s: -2.0 * y, x, 0.0, 0.05),
        "unchanged": unchanged,
        "calls": len(calls),
        "ends": ends,
    }


def warm() -> None:
    """Run once in the template before any fork: import gencore.flow and integrate once."""
    from gencore import flow

    flow.euler_sample(_gaussian_field(flow), gauss_start(), 2)
