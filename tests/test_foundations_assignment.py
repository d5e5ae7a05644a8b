"""The foundations assignment (``solutions/foundations``), a plain nbgrader exercise: its checks
are asserts in the notebook's own test cells, with no unit module behind them. It is graded by
plain ``nbgrader autograde`` and by the sandboxed grader's notebook mode, which must agree cell by
cell; each typical mistake loses its own part's points only.

``WRONG = {name: (piece, code, points_kept)}``: ``piece`` is the grade_id of the solution cell the
answer replaces, ``code`` the cell's full replacement source, ``points_kept`` the points that answer
keeps on its own part out of 3 (1 where the visible test still passes and only the hidden one
fails). Every other part keeps its full marks. ``SECRETS``: fragments of the solutions that the
released notebook (``notebooks/foundations``) must not contain.
"""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "foundations"

GAUSSIAN_MLE = '''
def gaussian_mle(x):
    mu = x.mean(dim=0)
{body}
'''
DIVERGENCES = '''
def cross_entropy(p, q):
    return {cross_entropy}


def kl_categorical(p, q):
    return {kl}
'''
CE_RIGHT = "-torch.where(p > 0, p * torch.log(q), torch.zeros_like(p)).sum(dim=-1)"
KL_RIGHT = "torch.where(p > 0, p * (torch.log(p) - torch.log(q)), torch.zeros_like(p)).sum(dim=-1)"
CHAIN_RULE = '''
def chain_rule_logprob(image, conditional):
    x = {flatten}
    log_p = torch.zeros((), dtype=torch.float64)
    for i in range(len(x)):
        q = torch.as_tensor(conditional({previous}), dtype=torch.float64)
        log_p = log_p + {term}
    return log_p
'''
RIGHT_TERM = "(torch.log(q) if x[i] == 1 else torch.log(1 - q))"
FIT = '''
def fit_class_gaussians(x, y, n_classes, var_floor=0.01):
    prior = torch.zeros(n_classes, dtype=x.dtype)
    mean = torch.zeros(n_classes, x.shape[1], dtype=x.dtype)
    var = torch.zeros(n_classes, x.shape[1], dtype=x.dtype)
    for c in range(n_classes):
        x_c = x[y == c]
        prior[c] = {prior}
        mean[c] = x_c.mean(dim=0)
        var[c] = {var}
    return prior, mean, var
'''
PREDICT = '''
def predict_proba(x, prior, mean, var):
    diff = x[:, None, :] - mean
    log_likelihood = {log_likelihood}
    log_joint = {log_joint}
    return {posterior}
'''
LOG_LIK_RIGHT = "-0.5 * (torch.log(2 * math.pi * var) + diff**2 / var).sum(dim=-1)"
NORMALISE_RIGHT = "torch.exp(log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True))"

WRONG = {
    # Part 1: gaussian_mle
    "mle_covariance_unbiased": ("gaussian_mle", GAUSSIAN_MLE.format(body='''
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)'''), 0.0),
    "mle_no_centering": ("gaussian_mle", GAUSSIAN_MLE.format(body='''
    return mu, x.T @ x / x.shape[0]'''), 0.0),
    "mle_outer_products_over_points": ("gaussian_mle", GAUSSIAN_MLE.format(body='''
    centred = x - mu
    return mu, centred @ centred.T / x.shape[0]'''), 0.0),
    "mle_centres_x_in_place": ("gaussian_mle", GAUSSIAN_MLE.format(body='''
    x -= mu
    return mu, x.T @ x / x.shape[0]'''), 1.0),  # right values, but the caller's data are changed
    "mle_torch_cov_scalar_for_d1": ("gaussian_mle", GAUSSIAN_MLE.format(body='''
    return mu, torch.cov(x.T, correction=0)'''), 1.0),  # torch.cov of one variable returns shape ()
    # Part 2: cross_entropy and kl_categorical
    "kl_nan_at_zero_probabilities": ("kl_categorical", DIVERGENCES.format(
        cross_entropy="-(p * torch.log(q)).sum(dim=-1)", kl="(p * torch.log(p / q)).sum(dim=-1)"), 1.0),
    "kl_arguments_swapped": ("kl_categorical", DIVERGENCES.format(
        cross_entropy=CE_RIGHT, kl=KL_RIGHT.replace("(p > 0, p * (torch.log(p) - torch.log(q))", "(q > 0, q * (torch.log(q) - torch.log(p))")), 0.0),
    "divergences_in_bits": ("kl_categorical", DIVERGENCES.format(
        cross_entropy=CE_RIGHT.replace("torch.log(", "torch.log2("), kl=KL_RIGHT.replace("torch.log(", "torch.log2(")), 0.0),
    "divergences_sum_over_all_dimensions": ("kl_categorical", DIVERGENCES.format(
        cross_entropy=CE_RIGHT.replace(".sum(dim=-1)", ".sum()"), kl=KL_RIGHT.replace(".sum(dim=-1)", ".sum()")), 1.0),
    "cross_entropy_arguments_swapped": ("kl_categorical", DIVERGENCES.format(
        cross_entropy="-torch.where(q > 0, q * torch.log(p), torch.zeros_like(q)).sum(dim=-1)", kl=KL_RIGHT), 0.0),
    # Part 3: chain_rule_logprob
    "chain_rule_column_major": ("chain_rule_logprob", CHAIN_RULE.format(
        flatten="image.T.reshape(-1)", previous="x[:i]", term=RIGHT_TERM), 1.0),
    "chain_rule_log_of_product": ("chain_rule_logprob", '''
def chain_rule_logprob(image, conditional):
    x = image.reshape(-1)
    p = torch.ones((), dtype=torch.float64)
    for i in range(len(x)):
        q = torch.as_tensor(conditional(x[:i]), dtype=torch.float64)
        p = p * (q if x[i] == 1 else 1 - q)
    return torch.log(p)
''', 1.0),  # underflows to log 0 = -inf on a 32x32 image
    "chain_rule_includes_current_pixel": ("chain_rule_logprob", CHAIN_RULE.format(
        flatten="image.reshape(-1)", previous="x[:i + 1]", term=RIGHT_TERM), 0.0),
    "chain_rule_log_q_for_every_pixel": ("chain_rule_logprob", CHAIN_RULE.format(
        flatten="image.reshape(-1)", previous="x[:i]", term="torch.log(q)"), 0.0),
    # Part 4: fit_class_gaussians
    "fit_uniform_prior": ("fit_class_gaussians", FIT.format(
        prior="1 / n_classes", var="((x_c - mean[c]) ** 2).mean(dim=0) + var_floor"), 1.0),
    "fit_unbiased_variance": ("fit_class_gaussians", FIT.format(
        prior="len(x_c) / len(x)", var="x_c.var(dim=0) + var_floor"), 0.0),
    "fit_no_variance_floor": ("fit_class_gaussians", FIT.format(
        prior="len(x_c) / len(x)", var="((x_c - mean[c]) ** 2).mean(dim=0)"), 0.0),
    "fit_floor_hard_coded": ("fit_class_gaussians", FIT.format(
        prior="len(x_c) / len(x)", var="((x_c - mean[c]) ** 2).mean(dim=0) + 0.01"), 1.0),
    # Part 5: predict_proba
    "predict_without_log_sum_exp": ("predict_proba", PREDICT.format(
        log_likelihood=LOG_LIK_RIGHT, log_joint="log_likelihood + torch.log(prior)",
        posterior="torch.exp(log_joint) / torch.exp(log_joint).sum(dim=1, keepdim=True)"), 1.0),
    "predict_forgets_the_prior": ("predict_proba", PREDICT.format(
        log_likelihood=LOG_LIK_RIGHT, log_joint="log_likelihood", posterior=NORMALISE_RIGHT), 1.0),
    "predict_drops_log_variance_term": ("predict_proba", PREDICT.format(
        log_likelihood="-0.5 * (diff**2 / var).sum(dim=-1)", log_joint="log_likelihood + torch.log(prior)",
        posterior=NORMALISE_RIGHT), 1.0),
    "predict_normalises_over_points": ("predict_proba", PREDICT.format(
        log_likelihood=LOG_LIK_RIGHT, log_joint="log_likelihood + torch.log(prior)",
        posterior="torch.softmax(log_joint, dim=0)"), 0.0),
    "predict_variance_squared": ("predict_proba", PREDICT.format(
        log_likelihood="-0.5 * (torch.log(2 * math.pi * var) + diff**2 / var**2).sum(dim=-1)",
        log_joint="log_likelihood + torch.log(prior)", posterior=NORMALISE_RIGHT), 0.0),
}

SECRETS = (
    "centred.T @ centred / x.shape[0]",
    "p * (torch.log(p) - torch.log(q))",
    "conditional(x[:i])",
    "** 2).mean(dim=0) + var_floor",
    "torch.logsumexp(log_joint",
    "torch.log(2 * math.pi * var)",
    "np.cov(",  # the hidden tests' references
    "fit_class_conditional_gaussian",
    "neighbour_model",
)


class TestFoundationsAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = SECRETS
    STUBS = 6  # part 2's cell holds two functions

