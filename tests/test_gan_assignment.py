"""The GAN assignment, graded as an instructor would: by plain nbgrader and by the sandboxed grader,
which must agree cell by cell. Each plausible wrong answer loses the points of its own piece and
only those (wrong answers to different pieces share a submission, ``tests.assignments.pack``)."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "gan"

GP_BODY = '''
def gradient_penalty(critic, real, fake):
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), dtype=real.dtype)
    x_hat = ({mix}).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph={graph})
    norms = grad.flatten(start_dim=1).norm(dim=1)
    return {penalty}
'''
JS_BODY = '''
def js_divergence(p, q):
    m = {mixture}
    kl = lambda a: {term}.sum(dim=-1)
    return 0.5 * (kl(p) + kl(q))
'''

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "d_loss_log_of_sigmoid": ("discriminator_loss", '''
def discriminator_loss(real_logits, fake_logits):
    return -(torch.log(torch.sigmoid(real_logits)).mean() + torch.log(1 - torch.sigmoid(fake_logits)).mean())
''', 1.0),  # right at moderate logits (visible passes), inf at logits of 200 (hidden fails)
    "d_loss_labels_swapped": ("discriminator_loss", '''
def discriminator_loss(real_logits, fake_logits):
    return F.softplus(real_logits).mean() + F.softplus(-fake_logits).mean()
''', 0.0),
    "g_loss_minimax": ("generator_loss_nonsaturating", '''
def generator_loss_nonsaturating(fake_logits):
    return -F.softplus(fake_logits).mean()
''', 0.0),
    "optimal_discriminator_inverted": ("optimal_discriminator", '''
def optimal_discriminator(p_data, p_model):
    return p_model / (p_data + p_model)
''', 0.0),
    "js_log_base_2": ("js_divergence", JS_BODY.format(
        mixture="0.5 * (p + q)", term="(torch.special.xlogy(a, a) - torch.special.xlogy(a, m)) / math.log(2)"), 0.0),
    "js_without_half_mixture": ("js_divergence", JS_BODY.format(
        mixture="p + q", term="(torch.special.xlogy(a, a) - torch.special.xlogy(a, m))"), 0.0),
    "js_nan_at_zeros": ("js_divergence", JS_BODY.format(mixture="0.5 * (p + q)", term="(a * torch.log(a / m))"), 1.0),
    "w1_unsorted": ("wasserstein1_1d", '''
def wasserstein1_1d(x, y):
    return (x - y).abs().mean()
''', 0.0),
    "gp_on_real_points_only": ("gradient_penalty", GP_BODY.format(
        mix="real.detach().clone()", graph="True", penalty="(norms - 1).pow(2).mean()"), 1.0),  # exact for a linear critic
    "gp_norm_squared_without_minus_one": ("gradient_penalty", GP_BODY.format(
        mix="eps * real + (1 - eps) * fake", graph="True", penalty="norms.pow(2).mean()"), 0.0),
    "gp_without_create_graph": ("gradient_penalty", GP_BODY.format(
        mix="eps * real + (1 - eps) * fake", graph="False", penalty="(norms - 1).pow(2).mean()"), 0.0),
}

class TestGANAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("softplus(-real_logits)", "xlogy(p, m)", "create_graph=True)\n")
