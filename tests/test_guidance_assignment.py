"""The guidance assignment, graded as an instructor would: by plain nbgrader and by the sandboxed
grader, which must agree cell by cell. Each plausible wrong answer loses the points of its own
piece and only those (wrong answers to different pieces share a submission,
``tests.assignments.pack``)."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "guidance"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "dropout_keeps_with_probability_p": ("label_dropout", '''
def label_dropout(labels, p_uncond, null_label):
    drop = torch.rand(labels.shape[0]) > p_uncond  # drops with probability 1 - p_uncond
    drop = drop.reshape(-1, *([1] * (labels.dim() - 1)))
    return torch.where(drop, torch.as_tensor(null_label, dtype=labels.dtype), labels)
''', 0.0),
    "dropout_one_coin_per_batch": ("label_dropout", '''
def label_dropout(labels, p_uncond, null_label):
    if torch.rand(()) < p_uncond:  # the whole batch at once
        return torch.as_tensor(null_label, dtype=labels.dtype).expand_as(labels).clone()
    return labels.clone()
''', 1.0),  # right for p_uncond 0 and 1 (visible passes)
    "dropout_in_place": ("label_dropout", '''
def label_dropout(labels, p_uncond, null_label):
    drop = torch.rand(labels.shape[0]) < p_uncond
    labels[drop] = torch.as_tensor(null_label, dtype=labels.dtype)
    return labels
''', 1.0),
    "dropout_per_token": ("label_dropout", '''
def label_dropout(labels, p_uncond, null_label):
    drop = torch.rand(labels.shape) < p_uncond  # each token on its own coin
    return torch.where(drop, torch.as_tensor(null_label, dtype=labels.dtype), labels)
''', 1.0),
    "cfg_sign_flipped": ("cfg_prediction", '''
def cfg_prediction(pred_cond, pred_uncond, w):
    return pred_cond - w * (pred_cond - pred_uncond)
''', 0.0),
    "cfg_weight_on_the_wrong_branch": ("cfg_prediction", '''
def cfg_prediction(pred_cond, pred_uncond, w):
    return w * pred_cond + (1 - w) * pred_uncond
''', 0.0),
    "classifier_score_without_the_factor": ("classifier_guided_eps", '''
def classifier_guided_eps(eps, grad_log_prob, alpha_bar_t, scale):
    return eps - scale * grad_log_prob
''', 0.0),
    "classifier_sign_flipped": ("classifier_guided_eps", '''
def classifier_guided_eps(eps, grad_log_prob, alpha_bar_t, scale):
    a = torch.as_tensor(alpha_bar_t, dtype=eps.dtype)
    a = a.reshape(-1, *([1] * (eps.dim() - 1))) if a.dim() == 1 else a
    return eps + scale * (1 - a).sqrt() * grad_log_prob
''', 0.0),
    "classifier_one_alpha_bar_only": ("classifier_guided_eps", '''
def classifier_guided_eps(eps, grad_log_prob, alpha_bar_t, scale):
    a = torch.as_tensor(alpha_bar_t, dtype=eps.dtype)  # a (B,) tensor broadcasts along the wrong axis
    return eps - scale * (1 - a).sqrt() * grad_log_prob
''', 1.0),  # right for a float alpha_bar_t (visible passes)
    "attention_without_scale": ("cross_attention", '''
def cross_attention(x, context, w_q, w_k, w_v, w_o):
    q, k, v = x @ w_q, context @ w_k, context @ w_v
    return (q @ k.transpose(-2, -1)).softmax(dim=-1) @ v @ w_o
''', 0.0),
    "attention_softmax_over_queries": ("cross_attention", '''
def cross_attention(x, context, w_q, w_k, w_v, w_o):
    q, k, v = x @ w_q, context @ w_k, context @ w_v
    return (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-2) @ v @ w_o
''', 0.0),
    "attention_scaled_by_the_input_width": ("cross_attention", '''
def cross_attention(x, context, w_q, w_k, w_v, w_o):
    q, k, v = x @ w_q, context @ w_k, context @ w_v
    return (q @ k.transpose(-2, -1) / math.sqrt(x.shape[-1])).softmax(dim=-1) @ v @ w_o
''', 1.0),  # right when x and Q have one width (visible passes)
}


class TestGuidanceAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("torch.where(drop, null, labels)", "pred_cond + w * (pred_cond - pred_uncond)",
               "scale * (1 - a).sqrt() * grad_log_prob", "scores.softmax(dim=-1) @ v @ w_o")
