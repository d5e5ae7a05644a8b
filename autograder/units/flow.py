"""The flow-matching assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/flow/flow.ipynb`` from here. The visible checks mirror the notebook's readable
asserts; the hidden ones exist only here. The student's process only produces data
(``flow_probes.py``); every comparison below runs in the grader's process, against references
computed here without ``gencore.flow``: the interpolant row by row, the loss from its formula in
float64, Gaussian conditioning written out for the exact velocity of Gaussian data, and Euler's and
Heun's methods as plain loops on that velocity, with the closed-form flow map for their orders.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import flow_probes as probes
from autograder.verdicts import close, require, scalar, tensor

LIBRARY = "gencore.flow"
F64 = torch.float64


def interpolant_reference(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(1 - t_i) x0_i + t_i x1_i, example by example, in float64."""
    x0, x1, t = x0.to(F64), x1.to(F64), t.to(F64)
    return torch.stack([(1 - t[i]) * x0[i] + t[i] * x1[i] for i in range(len(t))])


def loss_reference(x1: torch.Tensor, x0: torch.Tensor, t: torch.Tensor) -> float:
    """The mean over batch and dimensions of (v(x_t, t) - (x1 - x0))^2 for the probes' linear model."""
    x_t = interpolant_reference(x0, x1, t)
    t_col = t.to(F64).reshape(-1, *([1] * (x_t.dim() - 1)))
    return float(((0.3 * x_t - 0.5 + t_col) - (x1.to(F64) - x0.to(F64))).pow(2).mean())


def _gaussian():
    return torch.tensor(probes.GAUSS_MEAN, dtype=F64), torch.tensor(probes.GAUSS_COV, dtype=F64)


def velocity_reference(x: torch.Tensor, t: float) -> torch.Tensor:
    """E[x1 - x0 | x_t = x] for data N(m, Sigma): m + (t Sigma - (1 - t) I) C_t^{-1} (x - t m)."""
    m, cov = _gaussian()
    eye = torch.eye(2, dtype=F64)
    c_t = (1 - t) ** 2 * eye + t**2 * cov
    return m + torch.linalg.solve(c_t, (x - t * m).T).T @ (t * cov - (1 - t) * eye).T


def euler_reference(x: torch.Tensor, steps: int) -> torch.Tensor:
    h = 1.0 / steps
    for i in range(steps):
        x = x + h * velocity_reference(x, i * h)
    return x


def heun_reference(x: torch.Tensor, steps: int) -> torch.Tensor:
    h = 1.0 / steps
    for i in range(steps):
        slope = velocity_reference(x, i * h)
        x = x + h / 2 * (slope + velocity_reference(x + h * slope, (i + 1) * h))
    return x


def flow_map_reference(x0: torch.Tensor) -> torch.Tensor:
    """Where the exact flow takes x0 at t = 1: m + Sigma^{1/2} x0."""
    m, cov = _gaussian()
    lam, q = torch.linalg.eigh(cov)
    return m + x0 @ (q @ torch.diag(lam.sqrt()) @ q.T)


def _order(steps, ends) -> float:
    exact = flow_map_reference(probes.gauss_start())
    errors = [max((ends[str(k)] - exact).abs().max().item(), 1e-300) for k in steps]
    return float(np.polyfit(np.log(1 / np.asarray(steps, float)), np.log(errors), 1)[0])


def _sampler_ends(d: dict, steps, reference, what: str) -> None:
    ends = {str(k): tensor(d["ends"][str(k)], what) for k in steps}
    start = probes.gauss_start()
    for k in steps:
        got = ends[str(k)]
        require(got.shape == start.shape and bool(torch.isfinite(got).all()),
                f"{what} with {k} steps: expected finite points of shape {tuple(start.shape)}, got shape {tuple(got.shape)}")
    wrong = [k for k in steps if not close(ends[str(k)], reference(start, k), rtol=1e-6, atol=1e-8)]
    if wrong:
        with np.errstate(all="ignore"):
            order = _order(steps, ends)
        require(False, f"{what}, driven by the exact velocity of Gaussian data, does not follow the method (first "
                       f"mismatch with {wrong[0]} steps); its error at t = 1 falls like 1/steps^{order:.2f}")


def _constant_field_step(d: dict, what: str) -> torch.Tensor:
    """The verdict both steps share on v = 1, dt = 0.1: a tensor of the shape of x, equal to x + 0.1.
    Returns the probes' x."""
    x = probes.step_inputs()
    constant = tensor(d["constant"], what)
    require(constant.shape == x.shape, f"the step should return a tensor of the shape of x, {tuple(x.shape)}, got {tuple(constant.shape)}")
    require(close(constant, x + 0.1), "with v = 1 and dt = 0.1 the step should give x + 0.1: x + dt * v(x, t), moving forward in time")
    return x


# -- part 1: interpolant ----------------------------------------------------------------------


@visible(probes.interpolant_visible)
def interpolant_visible(d: dict) -> None:
    """three rows worked by hand: t = 0 gives the noise, t = 1 the data, t = 0.25 a quarter of the way"""
    x_t = tensor(d["x_t"], "interpolant(x0, x1, t)")
    require(x_t.shape == (3, 2), f"x_t should have the shape of x0, (3, 2), got {tuple(x_t.shape)}")
    expected = torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 3.0]], dtype=F64)
    require(close(x_t[0], expected[0]) and close(x_t[1], expected[1]),
            "at t = 0 x_t should be the noise x0 and at t = 1 the data x1: x_t = (1 - t) x0 + t x1 (is the time convention flipped?)")
    require(close(x_t, expected), f"row 3 (t = 0.25) should be 0.75 x0 + 0.25 x1 = (0, 3), got {x_t[2].tolist()}")


@hidden(probes.interpolant_hidden)
def interpolant_hidden(d: dict) -> None:
    """random float64 batches, images of shape (B, 1, 8, 8) with one time per image, a sweep over t, inputs left unchanged"""
    x0, x1, t, images0, images1, image_t = probes.interpolant_inputs()
    random = tensor(d["random"], "interpolant(x0, x1, t)")
    require(random.shape == (9, 3), f"x_t should have the shape of x0, (9, 3), got {tuple(random.shape)}")
    require(close(random, interpolant_reference(x0, x1, t)),
            "on a random batch x_t differs from (1 - t) x0 + t x1 with each example's own t")
    require(d["unchanged"] is True, "interpolant modified its inputs in place: compute a new tensor")
    images = tensor(d["images"], "interpolant(images0, images1, t)")
    require(images.shape == (3, 1, 8, 8),
            f"for images (3, 1, 8, 8) x_t should have shape (3, 1, 8, 8), got {tuple(images.shape)}: "
            "reshape t to (B, 1, ..., 1), whatever the number of dimensions of x0")
    require(close(images, interpolant_reference(images0, images1, image_t)),
            "for images each t should multiply every pixel of its own image")
    sweep = tensor(d["sweep"], "interpolant(...)")
    times = torch.linspace(0, 1, 11, dtype=F64)
    require(close(sweep, interpolant_reference(x0[:1].expand(11, 3), x1[:1].expand(11, 3), times)),
            "x_t should move from x0 to x1 along a straight line at constant speed as t goes from 0 to 1")


# -- part 2: flow_matching_loss -----------------------------------------------------------------


@visible(probes.loss_visible)
def loss_visible(d: dict) -> None:
    """a network that always answers 0 pays the mean of (x1 - x0)^2; one that knows x1 - x0 pays nothing"""
    x1, x0, _ = probes.loss_inputs()
    zero = scalar(d["zero"], "flow_matching_loss(...)", zero_dim=True)
    expected = float((x1.double() - x0.double()).pow(2).mean())
    require(math.isclose(zero, expected, rel_tol=1e-5),
            f"with v = 0 the loss should be mean((x1 - x0)^2) = {expected:.5f} over the batch and the dimensions, got {zero:.5f}")
    perfect = scalar(d["perfect"], "flow_matching_loss(...)", zero_dim=True)
    require(abs(perfect) < 1e-10,
            f"a network that returns x1 - x0 should pay 0, got {perfect:.5f}: the target is the velocity x1 - x0 (from noise to data)")


@hidden(probes.loss_hidden)
def loss_hidden(d: dict) -> None:
    """a network that depends on x_t and t, images, the draws of t (uniform, one per example) and of the noise (standard normal), the interpolant passed in, and the gradient"""
    x1, x0, t = probes.loss_inputs()
    value = scalar(d["value"], "flow_matching_loss(...)", zero_dim=True)
    require(math.isclose(value, loss_reference(x1, x0, t), rel_tol=1e-5),
            f"with a network that depends on x_t and t the loss should be {loss_reference(x1, x0, t):.5f}, got {value:.5f}: "
            "call v_model(x_t, t) with the interpolated point and the same t, and average over the batch and the dimensions")
    images1, images0, image_t = probes.image_loss_inputs()
    images = scalar(d["images"], "flow_matching_loss(...) on images", zero_dim=True)
    require(math.isclose(images, loss_reference(images1, images0, image_t), rel_tol=1e-5),
            "on images (B, 1, 8, 8) the loss should be the mean over the batch and every pixel")
    require(d["interpolant_calls"] >= 1, "build x_t with the interpolant_fn passed in (the training loop passes yours)")
    t_model = tensor(d["t_model"], "the times your loss drew")
    n = probes.N_DRAWS
    require(t_model.shape == (n,), f"when t is None, draw one time per example, shape ({n},), got {tuple(t_model.shape)}")
    require(bool(((t_model >= 0) & (t_model <= 1)).all()), "the times should lie in [0, 1]")
    require(len(torch.unique(t_model)) > n // 2, "draw a different time for each example, not one for the whole batch")
    # U[0, 1]: mean 1/2 with SE sqrt(1/12 / n), variance 1/12 with SE sqrt(1/180 / n); 5 standard errors
    require(abs(t_model.mean().item() - 0.5) < 5 * math.sqrt(1 / 12 / n) and abs(t_model.var().item() - 1 / 12) < 5 * math.sqrt(1 / 180 / n),
            f"the times should be uniform on [0, 1] (torch.rand): mean {t_model.mean().item():.3f}, variance {t_model.var().item():.4f}")
    require(close(t_model, tensor(d["t_interpolant"], "the times your loss drew")),
            "the network should see the same t that built x_t (not 1 - t)")
    x_t = tensor(d["x_t"], "x_t").reshape(-1)
    keep = t_model < 0.99  # x_0 = (x_t - 2 t) / (1 - t) for the data x1 = 2
    noise = (x_t[keep] - 2 * t_model[keep]) / (1 - t_model[keep])
    m = int(keep.sum())
    require(abs(noise.mean().item()) < 5 / math.sqrt(m) and abs(noise.var().item() - 1) < 5 * math.sqrt(2 / m),
            f"the noise x0 should be standard normal (torch.randn_like(x1)): mean {noise.mean().item():.3f}, variance {noise.var().item():.3f}")
    x_tr = interpolant_reference(x0, x1, t)
    target = (x1 - x0).to(F64)
    expected_grad = float((2 * (0.7 * x_tr - target) * x_tr).mean())
    grad = d["grad"]
    require(grad is not None, "the loss does not pass gradients to the network's parameters: keep it a torch computation (no .item(), no detach)")
    require(math.isclose(scalar(grad, "the gradient"), expected_grad, rel_tol=1e-4),
            f"the gradient of the loss in a weight of the network should be {expected_grad:.5f}, got {scalar(grad, 'the gradient'):.5f}")


# -- part 3: euler_step -------------------------------------------------------------------------


@visible(probes.euler_visible)
def euler_visible(d: dict) -> None:
    """a constant field, a field that depends on t only, and dx/dt = -2 x, by hand"""
    x = _constant_field_step(d, "euler_step(...)")
    require(close(tensor(d["time"], "euler_step(...)"), x + 0.03),
            "with v(x, t) = t, t = 0.3 and dt = 0.1 the step should give x + 0.03: the slope is taken at the start, v(x, t)")
    require(close(tensor(d["linear"], "euler_step(...)"), 0.9 * x), "with v(x, t) = -2 x and dt = 0.05 the step should give 0.9 x")


@hidden(probes.euler_hidden)
def euler_hidden(d: dict) -> None:
    """a field nonlinear in x and t, inputs left unchanged, and whole Euler runs (10 to 80 steps) on the exact velocity of Gaussian data"""
    x = probes.step_inputs()
    expected = x + 0.07 * probes.nonlinear_field(x, 0.35)
    require(close(tensor(d["nonlinear"], "euler_step(...)"), expected),
            "with a field nonlinear in x and t the step differs from x + dt * v(x, t)")
    require(d["unchanged"] is True, "euler_step modified x in place: return a new tensor (the samplers keep the old x)")
    _sampler_ends(d, probes.EULER_STEPS, euler_reference, "the Euler sampler with your step")


# -- part 4: heun_step --------------------------------------------------------------------------


@visible(probes.heun_visible)
def heun_visible(d: dict) -> None:
    """a constant field, and a field that depends on t only, where Heun's average of the two slopes is exact"""
    x = _constant_field_step(d, "heun_step(...)")
    got = tensor(d["time"], "heun_step(...)")
    require(close(got, x + 0.035),
            f"with v(x, t) = t, t = 0.3 and dt = 0.1 the step should give x + 0.035 (the average of the slopes 0.3 and 0.4 "
            f"times dt), got x + {(got - x).mean().item():.4f}")


@hidden(probes.heun_hidden)
def heun_hidden(d: dict) -> None:
    """a field nonlinear in x and t, dx/dt = -2 x, inputs left unchanged, and whole Heun runs (5 to 40 steps) on the exact velocity of Gaussian data"""
    x = probes.step_inputs()
    slope = probes.nonlinear_field(x, 0.35)
    expected = x + 0.035 * (slope + probes.nonlinear_field(x + 0.07 * slope, 0.42))
    require(close(tensor(d["nonlinear"], "heun_step(...)"), expected),
            f"with a field nonlinear in x and t the step differs from Heun's (your step called v {d['calls']} times; Heun calls it "
            "at (x, t) and at the Euler prediction (x + dt v(x, t), t + dt), then averages the two slopes)")
    require(close(tensor(d["linear"], "heun_step(...)"), (1 - 0.1 + 0.1**2 / 2) * x),
            "with v(x, t) = -2 x and dt = 0.05 the step should give x (1 + a dt + (a dt)^2 / 2) = 0.905 x")
    require(d["unchanged"] is True, "heun_step modified x in place: return a new tensor")
    _sampler_ends(d, probes.HEUN_STEPS, heun_reference, "the Heun sampler with your step")


# -- the unit -----------------------------------------------------------------------------------

UNIT = Unit(
    assignment="flow",
    library=LIBRARY,
    chapter="book/flow.html",
    pieces=(
        Piece("interpolant", "The interpolant", "the-interpolant-and-its-velocity", (interpolant_visible, interpolant_hidden),
              forbidden=(f"{LIBRARY}.interpolant",)),
        Piece("flow_matching_loss", "The flow-matching loss", "why-regression-gives-the-marginal-velocity", (loss_visible, loss_hidden),
              forbidden=(f"{LIBRARY}.flow_matching_loss", f"{LIBRARY}.velocity_target")),
        Piece("euler_step", "One Euler step", "sampling-euler-and-heun", (euler_visible, euler_hidden),
              forbidden=(f"{LIBRARY}.euler_step", f"{LIBRARY}.heun_step", f"{LIBRARY}.euler_sample")),
        Piece("heun_step", "One Heun step", "sampling-euler-and-heun", (heun_visible, heun_hidden),
              forbidden=(f"{LIBRARY}.heun_step", f"{LIBRARY}.euler_step", f"{LIBRARY}.heun_sample")),
    ),
)
