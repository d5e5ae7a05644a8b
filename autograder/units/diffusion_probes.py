"""Sandbox side of the diffusion checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/diffusion.py``. It runs in the
sandboxed child (or, for a hidden-test cell, in the notebook through ``run_in_notebook``), gets
the student's namespace and gencore's own ``diffusion`` functions (``ref``), and returns only what
the student's code produced. It decides nothing; the verdicts, with the reference values and
tolerances, never enter the sandbox. The inputs are built by the functions at the top, which the
grader calls too, so both sides see the same numbers.
"""

from __future__ import annotations

import torch

F64 = torch.float64

# -- inputs shared with the grader -------------------------------------------------------------

VISIBLE_BETAS = (0.1, 0.2, 0.5)
VISIBLE_ALPHA_BAR = (0.9, 0.5, 0.1)
GAUSS_MEAN = (1.0, -0.5)
GAUSS_COV = ((0.36, 0.24), (0.24, 0.25))
N_GAUSS = 8000
STEP_INDICES = (0, 1, 37, 500, 999)


def random_betas() -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return (0.01 + 0.3 * torch.rand(50, generator=g)).double()


def q_sample_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(12)
    x0, noise = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    images, image_noise = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.randn(3, 1, 8, 8, generator=g)
    return x0, torch.randint(0, 1000, (16,), generator=g), noise, images, torch.tensor([0, 400, 999]), image_noise


def loss_inputs() -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(13)
    return torch.randn(12, 3, generator=g), torch.randint(0, 1000, (12,), generator=g), torch.randn(12, 3, generator=g)


def linear_eps_model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A fixed stand-in network whose output depends on x_t and on t."""
    return 0.7 * x_t - 0.2 + t.to(x_t.dtype)[:, None] / 1000


def step_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(14)
    return torch.randn(6, 4, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64)


DDIM_STOCHASTIC = ((400, 399, 1.0), (400, 150, 0.5), (37, -1, 1.0), (999, 0, 0.3))  # (t, t_prev, eta)


def ddim_noise_inputs(eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A perturbed noise prediction and the noise z of a stochastic DDIM step."""
    g = torch.Generator().manual_seed(19)
    return eps + 0.3 * torch.randn(6, 4, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64)


def gaussian_setup(ref):
    schedule = ref.linear_schedule(1000)
    mean, cov = torch.tensor(GAUSS_MEAN), torch.tensor(GAUSS_COV)
    return schedule, ref.gaussian_eps_model(mean, cov, schedule.alpha_bar)


def _x_T() -> torch.Tensor:  # noqa: N802
    return torch.randn(N_GAUSS, 2, generator=torch.Generator().manual_seed(15))


# -- part 1: alpha_bar_from_betas --------------------------------------------------------------


def alpha_bar_visible(student, ref):
    f = student["alpha_bar_from_betas"]
    return {"three": f(torch.tensor(VISIBLE_BETAS)), "linear": f(torch.linspace(1e-4, 0.02, 1000))}


def alpha_bar_hidden(student, ref):
    f = student["alpha_bar_from_betas"]
    betas = random_betas()
    before = betas.clone()
    out = f(betas)
    return {
        "random": out,
        "unchanged": bool(torch.equal(betas, before)),
        "linear64": f(torch.linspace(1e-4, 0.02, 1000, dtype=F64)),
        "cosine": f(ref.cosine_schedule(300, dtype=F64).betas),
    }


# -- part 2: q_sample ------------------------------------------------------------------------


def q_sample_visible(student, ref):
    q_sample = student["q_sample"]
    alpha_bar = torch.tensor(VISIBLE_ALPHA_BAR)
    x0, t = torch.tensor([[1.0, 2.0], [3.0, 4.0], [-1.0, 0.0]]), torch.tensor([0, 1, 2])
    return {
        "signal": q_sample(x0, t, torch.zeros(3, 2), alpha_bar),
        "noise": q_sample(torch.zeros(3, 2), t, torch.ones(3, 2), alpha_bar),
    }


def q_sample_hidden(student, ref):
    q_sample = student["q_sample"]
    schedule = ref.linear_schedule(1000)
    x0, t, noise, images, image_t, image_noise = q_sample_inputs()
    n = 200_000
    g = torch.Generator().manual_seed(16)
    moments = {}
    for step in (50, 300, 900):
        x = q_sample(torch.full((n, 1), 1.5), torch.full((n,), step), torch.randn(n, 1, generator=g), schedule.alpha_bar)
        moments[str(step)] = [x.mean(), x.var()]
    return {
        "random": q_sample(x0, t, noise, schedule.alpha_bar),
        "images": q_sample(images, image_t, image_noise, schedule.alpha_bar),
        "moments": moments,
    }


# -- part 3: diffusion_loss ------------------------------------------------------------------


def loss_visible(student, ref):
    loss_fn = student["diffusion_loss"]
    schedule = ref.linear_schedule(1000)
    x0, t, noise = loss_inputs()
    zero = loss_fn(lambda x_t, t: torch.zeros_like(x_t), x0, schedule.alpha_bar, t=t, noise=noise, q_sample_fn=ref.q_sample)
    perfect = loss_fn(lambda x_t, t: noise, x0, schedule.alpha_bar, t=t, noise=noise, q_sample_fn=ref.q_sample)
    return {"zero": zero, "perfect": perfect}


def loss_hidden(student, ref):
    loss_fn = student["diffusion_loss"]
    schedule = ref.linear_schedule(1000)
    x0, t, noise = loss_inputs()
    value = loss_fn(linear_eps_model, x0, schedule.alpha_bar, t=t, noise=noise, q_sample_fn=ref.q_sample)
    seen, calls = [], []

    def recording_model(x_t, t):
        seen.append((x_t.detach().clone(), t.detach().clone()))
        return torch.zeros_like(x_t)

    def recording_q_sample(*args):
        calls.append(1)
        return ref.q_sample(*args)

    x_big = torch.full((20_000, 1), 2.0)
    torch.manual_seed(17)
    loss_fn(recording_model, x_big, schedule.alpha_bar, q_sample_fn=recording_q_sample)
    drawn_x_t, drawn_t = seen[0] if seen else (None, None)
    return {
        "value": value,
        "t": drawn_t,
        "x_t": drawn_x_t,
        "q_sample_calls": len(calls),
        "grad": _loss_gradient(loss_fn, ref, schedule, x0, t, noise),
    }


def _loss_gradient(loss_fn, ref, schedule, x0, t, noise):
    weight = torch.tensor(0.7, requires_grad=True)
    loss_fn(lambda x_t, t: weight * x_t, x0, schedule.alpha_bar, t=t, noise=noise, q_sample_fn=ref.q_sample).backward()
    return weight.grad


# -- part 4: ddpm_step -----------------------------------------------------------------------


def ddpm_visible(student, ref):
    step = student["ddpm_step"]
    schedule = ref.linear_schedule(1000, dtype=F64)
    x0, eps = step_inputs()
    x_0 = ref.q_sample(x0, torch.zeros(6, dtype=torch.long), eps, schedule.alpha_bar)
    x_500 = ref.q_sample(x0, torch.full((6,), 500), eps, schedule.alpha_bar)
    return {
        "last_noise0": step(x_0, 0, eps, schedule, torch.zeros_like(x0)),
        "last_noise1": step(x_0, 0, eps, schedule, torch.ones_like(x0)),
        "mean_500": step(x_500, 500, eps, schedule, torch.zeros_like(x0)),
    }


def ddpm_hidden(student, ref):
    step = student["ddpm_step"]
    schedule64 = ref.linear_schedule(1000, dtype=F64)
    x0, eps = step_inputs()
    means, spreads = {}, {}
    for t in STEP_INDICES:
        x_t = ref.q_sample(x0, torch.full((6,), t), eps, schedule64.alpha_bar)
        means[str(t)] = step(x_t, t, eps, schedule64, torch.zeros_like(x0))
        spreads[str(t)] = step(x_t, t, eps, schedule64, torch.ones_like(x0)) - means[str(t)]
    schedule, eps_model = gaussian_setup(ref)
    samples = ref.ddpm_sample(eps_model, (N_GAUSS, 2), schedule, step_fn=step, x_T=_x_T(),
                              generator=torch.Generator().manual_seed(18), progress=False)
    return {"means": means, "spreads": spreads, "samples": samples}


# -- part 5: ddim_step -----------------------------------------------------------------------


def ddim_visible(student, ref):
    step = student["ddim_step"]
    schedule = ref.linear_schedule(1000, dtype=F64)
    x0, eps = step_inputs()
    x_t = ref.q_sample(x0, torch.full((6,), 500), eps, schedule.alpha_bar)
    return {"to_data": step(x_t, 500, -1, eps, schedule.alpha_bar), "to_200": step(x_t, 500, 200, eps, schedule.alpha_bar)}


def ddim_hidden(student, ref):
    step = student["ddim_step"]
    schedule64 = ref.linear_schedule(1000, dtype=F64)
    x0, eps = step_inputs()
    eps_guess, z = ddim_noise_inputs(eps)
    stochastic = {}
    for t, t_prev, eta in DDIM_STOCHASTIC:
        x_t = ref.q_sample(x0, torch.full((6,), t), eps, schedule64.alpha_bar)
        stochastic[f"{t},{t_prev},{eta}"] = step(x_t, t, t_prev, eps_guess, schedule64.alpha_bar, eta=eta, noise=z)
    schedule, eps_model = gaussian_setup(ref)
    samples = ref.ddim_sample(eps_model, (N_GAUSS, 2), schedule, 200, step_fn=step, x_T=_x_T(), progress=False)
    again = ref.ddim_sample(eps_model, (N_GAUSS, 2), schedule, 200, step_fn=step, x_T=_x_T(), progress=False)
    return {"stochastic": stochastic, "samples": samples, "repeatable": bool(torch.equal(samples, again))}


def warm() -> None:
    """Run once in the template before any fork: import gencore.diffusion and build a schedule."""
    from gencore import diffusion

    schedule, eps_model = gaussian_setup(diffusion)
    diffusion.ddim_sample(eps_model, (4, 2), schedule, 5, progress=False)
