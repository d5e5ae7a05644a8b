"""The flow-matching assignment, graded as an instructor would: by plain nbgrader and by the
sandboxed grader, which must agree cell by cell. Each plausible wrong answer loses the points of
its own piece and only those (wrong answers to different pieces share a submission,
``tests.assignments.pack``)."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "flow"

LOSS = '''
def flow_matching_loss(v_model, x1, t=None, x0=None, interpolant_fn=interpolant):
    if t is None:
        t = {draw}
    if x0 is None:
        x0 = torch.randn_like(x1)
    x_t = interpolant_fn(x0, x1, t)
    return {loss}
'''
RIGHT_DRAW = "torch.rand(x1.shape[0], dtype=x1.dtype)"
RIGHT_LOSS = "(v_model(x_t, t) - (x1 - x0)).pow(2).mean()"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "interpolant_time_flipped": ("interpolant", '''
def interpolant(x0, x1, t):
    t = t.reshape(-1, *([1] * (x0.dim() - 1)))
    return t * x0 + (1 - t) * x1  # t = 0 gives the data
''', 0.0),
    "interpolant_two_dimensional_only": ("interpolant", '''
def interpolant(x0, x1, t):
    t = t[:, None]
    return (1 - t) * x0 + t * x1
''', 1.0),  # right for (B, D) (visible passes); fails on images (B, 1, 8, 8)
    "loss_target_reversed": ("flow_matching_loss", LOSS.format(draw=RIGHT_DRAW, loss="(v_model(x_t, t) - (x0 - x1)).pow(2).mean()"), 0.0),
    "loss_sums_dimensions": ("flow_matching_loss", LOSS.format(draw=RIGHT_DRAW, loss="(v_model(x_t, t) - (x1 - x0)).pow(2).sum(-1).mean()"), 0.0),
    "loss_one_time_per_batch": ("flow_matching_loss", LOSS.format(draw="torch.rand(1)", loss=RIGHT_LOSS), 1.0),
    "loss_network_sees_time_flipped": ("flow_matching_loss", LOSS.format(draw=RIGHT_DRAW, loss="(v_model(x_t, 1 - t) - (x1 - x0)).pow(2).mean()"), 1.0),
    "euler_backwards": ("euler_step", '''
def euler_step(v, x, t, dt):
    return x - dt * v(x, t)
''', 0.0),
    "euler_slope_at_the_end": ("euler_step", '''
def euler_step(v, x, t, dt):
    return x + dt * v(x, t + dt)
''', 0.0),
    "heun_without_averaged_slope": ("heun_step", '''
def heun_step(v, x, t, dt):
    predicted = x + dt * v(x, t)
    return x + dt * v(predicted, t + dt)  # the slope at the end only
''', 0.0),
    "heun_second_slope_at_the_start_point": ("heun_step", '''
def heun_step(v, x, t, dt):
    return x + dt / 2 * (v(x, t) + v(x, t + dt))  # the second slope is not at the predicted point
''', 1.0),  # right when v depends on t only (visible passes)
    "heun_without_the_half": ("heun_step", '''
def heun_step(v, x, t, dt):
    slope = v(x, t)
    return x + dt * (slope + v(x + dt * slope, t + dt))
''', 0.0),
}


class TestFlowAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("(1 - t) * x0 + t * x1", "torch.rand(x1.shape[0]", "dt / 2 * (slope")
