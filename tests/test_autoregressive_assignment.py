"""The autoregressive assignment, graded as an instructor would: by plain nbgrader and by the
sandboxed grader, which must agree cell by cell. Each plausible wrong answer loses the points
of its own piece and only those."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "autoregressive"

MASK = '''
def causal_conv_mask(kernel_size, mask_type):
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    {body}
    return mask
'''

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "nll_sum_not_mean": ("gaussian_nll", '''
def gaussian_nll(x, mu, var):
    var = torch.as_tensor(var, dtype=x.dtype)
    return 0.5 * (torch.log(2 * math.pi * var) + (x - mu) ** 2 / var).sum()
''', 0.0),
    "nll_var_as_sigma": ("gaussian_nll", '''
def gaussian_nll(x, mu, var):
    var = torch.as_tensor(var, dtype=x.dtype)
    return (0.5 * torch.log(2 * math.pi * var**2) + (x - mu) ** 2 / (2 * var**2)).mean()
''', 0.0),  # agrees at var = 1, not at the worked example's 14/9
    "nll_detached_from_mu": ("gaussian_nll", '''
def gaussian_nll(x, mu, var):
    mu, var = float(mu), float(var)
    return 0.5 * (torch.log(torch.tensor(2 * math.pi * var)) + (x - mu) ** 2 / var).mean()
''', 1.0),  # right values (visible passes), no gradient for mu and var (hidden fails)
    "mle_unbiased_variance": ("gaussian_mle", '''
def gaussian_mle(x):
    return x.mean(), x.var()
''', 0.0),
    "mle_returns_sigma": ("gaussian_mle", '''
def gaussian_mle(x):
    return x.mean(), x.std(unbiased=False)
''', 0.0),
    "mask_type_a_keeps_centre": ("causal_conv_mask", MASK.format(body="mask[:c, :] = 1.0\n    mask[c, :c + 1] = 1.0"), 0.0),
    "mask_row_below_leaks": ("causal_conv_mask", MASK.format(
        body="mask[:c, :] = 1.0\n    mask[c, :c] = 1.0\n    mask[c + 1:, :c] = 1.0\n    mask[c, c] = float(mask_type == 'B')"), 0.0),
    "mask_hard_coded_3x3": ("causal_conv_mask", '''
def causal_conv_mask(kernel_size, mask_type):
    centre = 1.0 if mask_type == "B" else 0.0
    return torch.tensor([[1.0, 1.0, 1.0], [1.0, centre, 0.0], [0.0, 0.0, 0.0]])
''', 1.0),  # passes the 3x3 visible test only
    "bits_in_nats": ("bits_per_dim", '''
def bits_per_dim(logits, x):
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).mean(dim=1)
''', 0.0),
    "bits_unstable_log_sigmoid": ("bits_per_dim", '''
def bits_per_dim(logits, x):
    p = torch.sigmoid(logits)
    nats = -(x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(dim=1)
    return nats / (x[0].numel() * math.log(2))
''', 1.0),
    "bits_divides_by_64": ("bits_per_dim", '''
def bits_per_dim(logits, x):
    nats = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)
    return nats / (64 * math.log(2))
''', 0.0),  # the visible 2x2 example catches it
}


class TestAutoregressiveAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("binary_cross_entropy_with_logits(logits", "mask[c, :c] = 1.0")
