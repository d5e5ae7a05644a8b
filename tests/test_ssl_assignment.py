"""The self-supervised learning assignment, graded as an instructor would: by plain nbgrader and by
the sandboxed grader, which must agree cell by cell. Each plausible wrong answer loses the points
of its own piece and only those (wrong answers to different pieces share a submission,
``tests.assignments.pack``)."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "ssl"

NT_XENT_BODY = '''
def nt_xent_loss(z_a, z_b, temperature=0.5):
    b = z_a.shape[0]
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    logits = z @ z.T / {scale}
    logits = {mask}
    targets = {targets}
    return F.cross_entropy(logits[{rows}], targets[{rows}])
'''
MASKED = 'logits.masked_fill(torch.eye(2 * b, dtype=torch.bool), float("-inf"))'
PARTNERS = "torch.cat([torch.arange(b, 2 * b), torch.arange(b)])"

BARLOW_BODY = '''
def barlow_twins_loss(z_a, z_b, lambda_offdiag=5e-3):
    n = z_a.shape[0]
    za, zb = {standardise_a}, {standardise_b}
    c = za.T @ zb / n
    off = ~torch.eye(c.shape[0], dtype=torch.bool)
    return (1 - torch.diagonal(c)).pow(2).sum() + lambda_offdiag * {off_term}
'''
STANDARDISED = "(z_{v} - z_{v}.mean(0)) / z_{v}.std(0, unbiased=False)"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "nt_xent_self_similarity_not_masked": ("nt_xent_loss", NT_XENT_BODY.format(
        scale="temperature", mask="logits", targets=PARTNERS, rows=":"), 0.0),
    "nt_xent_positive_among_the_negatives": ("nt_xent_loss", NT_XENT_BODY.format(
        # the labels point at the view itself: its partner is scored as one more negative
        scale="temperature", mask="logits", targets="torch.arange(2 * b)", rows=":"), 0.0),
    "nt_xent_temperature_applied_twice": ("nt_xent_loss", NT_XENT_BODY.format(
        scale="temperature / temperature", mask=MASKED, targets=PARTNERS, rows=":"), 0.0),
    "nt_xent_one_direction_only": ("nt_xent_loss", NT_XENT_BODY.format(
        # only the views of z_a as anchors: right on the symmetric visible examples, wrong on random ones
        scale="temperature", mask=MASKED, targets=PARTNERS, rows=":b"), 1.0),
    "byol_gradient_into_the_target": ("byol_loss", '''
def byol_loss(prediction, target):
    return (2 - 2 * F.cosine_similarity(prediction, target, dim=-1)).mean()
''', 0.0),
    "byol_unnormalised_squared_error": ("byol_loss", '''
def byol_loss(prediction, target):
    return (prediction - target.detach()).pow(2).sum(-1).mean()
''', 0.0),
    "byol_summed_over_the_batch": ("byol_loss", '''
def byol_loss(prediction, target):
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).sum()
''', 1.0),  # the visible examples are single pairs
    "ema_weights_swapped": ("ema_update", '''
def ema_update(target, online, decay):
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            xi.copy_((1 - decay) * xi + decay * theta)
''', 0.0),
    "ema_updates_the_online_network": ("ema_update", '''
def ema_update(target, online, decay):
    with torch.no_grad():
        for xi, theta in zip(target.parameters(), online.parameters()):
            theta.copy_(decay * theta + (1 - decay) * xi)
''', 0.0),
    "ema_last_layer_only": ("ema_update", '''
def ema_update(target, online, decay):
    last_target, last_online = list(target.modules())[-1], list(online.modules())[-1]
    with torch.no_grad():
        for xi, theta in zip(last_target.parameters(), last_online.parameters()):
            xi.mul_(decay).add_((1 - decay) * theta)
''', 1.0),  # right for the visible test's single layer
    "barlow_not_standardised": ("barlow_twins_loss", BARLOW_BODY.format(
        standardise_a="z_a", standardise_b="z_b", off_term="c[off].pow(2).sum()"), 0.0),
    "barlow_normalised_per_example": ("barlow_twins_loss", BARLOW_BODY.format(
        # unit vectors per example, as in SimCLR, instead of standardised dimensions
        standardise_a="F.normalize(z_a, dim=1) * n ** 0.5", standardise_b="F.normalize(z_b, dim=1) * n ** 0.5",
        off_term="c[off].pow(2).sum()"), 0.0),
    "barlow_unbiased_standard_deviation": ("barlow_twins_loss", BARLOW_BODY.format(
        standardise_a="(z_a - z_a.mean(0)) / z_a.std(0)", standardise_b="(z_b - z_b.mean(0)) / z_b.std(0)",
        off_term="c[off].pow(2).sum()"), 0.0),
    "barlow_absolute_off_diagonal": ("barlow_twins_loss", BARLOW_BODY.format(
        standardise_a=STANDARDISED.format(v="a"), standardise_b=STANDARDISED.format(v="b"),
        off_term="c[off].abs().sum()"), 1.0),  # the visible examples have off-diagonal entries of 0 and 1
}


class TestSSLAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("masked_fill(self_mask", "target.detach(), dim=-1)", "target_param.mul_(decay)", "std(0, unbiased=False)")
