"""The diffusion assignment, graded as an instructor would: by plain nbgrader and by the sandboxed
grader, which must agree cell by cell. Each plausible wrong answer loses the points of its own
piece and only those (wrong answers to different pieces share a submission,
``tests.assignments.pack``)."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "diffusion"

DDPM_STEP = '''
def ddpm_step(x_t, t, eps, schedule, noise):
    beta, alpha, abar = schedule.betas[t], schedule.alphas[t], schedule.alpha_bar[t]
    abar_prev = schedule.alpha_bar[t - 1] if t > 0 else torch.ones_like(abar)
    mean = (x_t - beta / (1 - abar).sqrt() * eps) / alpha.sqrt()
    variance = {variance}
    return mean + {scale} * noise
'''

DDIM_STEP = '''
def ddim_step(x_t, t, t_prev, eps, alpha_bar, eta=0.0, noise=None):
    abar = alpha_bar[t]
    abar_prev = {abar_prev}
    x0_pred = (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    sigma = {sigma}
    x_prev = abar_prev.sqrt() * x0_pred + (1 - abar_prev - sigma**2).sqrt() * eps
    if eta > 0:
        x_prev = x_prev + sigma * noise
    return x_prev
'''
RIGHT_PREV = "alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(abar)"
RIGHT_SIGMA = "eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "alpha_bar_exclusive_product": ("alpha_bar_from_betas", '''
def alpha_bar_from_betas(betas):
    # off by one: starts the product at 1, so entry t holds the product up to t - 1
    return torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1.0 - betas, dim=0)[:-1]])
''', 0.0),
    "alpha_bar_one_minus_sum": ("alpha_bar_from_betas", '''
def alpha_bar_from_betas(betas):
    return 1.0 - torch.cumsum(betas, dim=0)
''', 0.0),
    "alpha_bar_float32": ("alpha_bar_from_betas", '''
def alpha_bar_from_betas(betas):
    return torch.cumprod(1.0 - betas.float(), dim=0)
''', 1.0),  # right values in float32 (visible passes); loses precision for float64 schedules
    "q_sample_sqrt_missing": ("q_sample", '''
def q_sample(x0, t, noise, alpha_bar):
    a = alpha_bar[t].reshape(-1, *([1] * (x0.dim() - 1)))
    return a * x0 + (1 - a) * noise
''', 0.0),
    "q_sample_off_by_one": ("q_sample", '''
def q_sample(x0, t, noise, alpha_bar):
    a = alpha_bar[t - 1].reshape(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
''', 0.0),
    "q_sample_two_dimensional_only": ("q_sample", '''
def q_sample(x0, t, noise, alpha_bar):
    a = alpha_bar[t][:, None]
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
''', 1.0),  # right for (B, D) (visible passes); fails on images (B, 1, 8, 8)
    "loss_t_off_by_one": ("diffusion_loss", '''
def diffusion_loss(eps_model, x0, alpha_bar, t=None, noise=None, q_sample_fn=q_sample):
    if t is None:
        t = torch.randint(1, len(alpha_bar), (x0.shape[0],))  # never draws the first step
    if noise is None:
        noise = torch.randn_like(x0)
    return (noise - eps_model(q_sample_fn(x0, t, noise, alpha_bar), t)).pow(2).mean()
''', 1.0),
    "loss_sums_dimensions": ("diffusion_loss", '''
def diffusion_loss(eps_model, x0, alpha_bar, t=None, noise=None, q_sample_fn=q_sample):
    if t is None:
        t = torch.randint(0, len(alpha_bar), (x0.shape[0],))
    if noise is None:
        noise = torch.randn_like(x0)
    return (noise - eps_model(q_sample_fn(x0, t, noise, alpha_bar), t)).pow(2).sum(-1).mean()
''', 0.0),
    "ddpm_beta_where_beta_tilde_belongs": ("ddpm_step", DDPM_STEP.format(variance="beta", scale="variance.sqrt()"), 0.0),
    "ddpm_variance_not_its_square_root": (
        "ddpm_step", DDPM_STEP.format(variance="(1 - abar_prev) / (1 - abar) * beta", scale="variance"), 1.0),
    "ddim_data_index_wraps_around": ("ddim_step", DDIM_STEP.format(abar_prev="alpha_bar[t_prev]", sigma=RIGHT_SIGMA), 0.0),
    "ddim_sigma_without_eta_formula": ("ddim_step", DDIM_STEP.format(abar_prev=RIGHT_PREV, sigma="eta * (1 - abar_prev).sqrt()"), 1.0),
}



class TestDiffusionAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("torch.cumprod", "beta_tilde = ")
