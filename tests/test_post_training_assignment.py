"""The post-training assignment (RLVR and DPO), graded as an instructor would: by plain nbgrader
and by the sandboxed grader, which must agree cell by cell. Each plausible wrong answer loses the
points of its own piece and only those (wrong answers to different pieces share a submission,
``tests.assignments.pack``)."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "post_training"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "optimum_beta_multiplies": ("kl_regularized_optimum", '''
def kl_regularized_optimum(ref_probs, rewards, beta):
    return torch.softmax(torch.log(ref_probs) + beta * rewards, dim=-1)
''', 0.0),
    "optimum_ignores_the_reference": ("kl_regularized_optimum", '''
def kl_regularized_optimum(ref_probs, rewards, beta):
    return torch.softmax(rewards / beta, dim=-1)
''', 0.0),
    "optimum_overflows": ("kl_regularized_optimum", '''
def kl_regularized_optimum(ref_probs, rewards, beta):
    weights = ref_probs * torch.exp(rewards / beta)
    return weights / weights.sum(dim=-1, keepdim=True)
''', 1.0),  # right until exp(r / beta) overflows
    "optimum_normalised_over_the_batch": ("kl_regularized_optimum", '''
def kl_regularized_optimum(ref_probs, rewards, beta):
    return torch.softmax(torch.log(ref_probs) + rewards / beta, dim=0)
''', 1.0),  # right on one distribution, wrong on a batch of them
    "advantage_not_per_group": ("group_advantages", '''
def group_advantages(rewards, group_size):
    if rewards.numel() % group_size:
        raise ValueError("group_size must divide the number of rewards")
    return (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-6)
''', 0.0),  # the batch's mean instead of each group's
    "advantage_group_std": ("group_advantages", '''
def group_advantages(rewards, group_size):
    if rewards.numel() % group_size:
        raise ValueError("group_size must divide the number of rewards")
    groups = rewards.view(-1, group_size)
    return ((groups - groups.mean(1, keepdim=True)) / (groups.std(1, unbiased=False, keepdim=True) + 1e-6)).flatten()
''', 0.0),  # GRPO's per-group scale, not the batch's
    "advantage_unbiased_std": ("group_advantages", '''
def group_advantages(rewards, group_size):
    if rewards.numel() % group_size:
        raise ValueError("group_size must divide the number of rewards")
    groups = rewards.view(-1, group_size)
    return ((groups - groups.mean(1, keepdim=True)) / (rewards.std() + 1e-6)).flatten()
''', 0.0),  # divides by N - 1
    "advantage_nan_on_equal_rewards": ("group_advantages", '''
def group_advantages(rewards, group_size):
    if rewards.numel() % group_size:
        raise ValueError("group_size must divide the number of rewards")
    groups = rewards.view(-1, group_size)
    return ((groups - groups.mean(1, keepdim=True)) / rewards.std(unbiased=False)).flatten()
''', 0.0),  # 0 / 0 when every reward of the batch is the same
    "advantage_strided_groups": ("group_advantages", '''
def group_advantages(rewards, group_size):
    if rewards.numel() % group_size:
        raise ValueError("group_size must divide the number of rewards")
    groups = rewards.view(group_size, -1)  # every P-th reward taken as one group
    return ((groups - groups.mean(0)) / (rewards.std(unbiased=False) + 1e-6)).flatten()
''', 0.0),
    "advantage_no_value_error": ("group_advantages", '''
def group_advantages(rewards, group_size):
    groups = rewards.view(-1, group_size)
    return ((groups - groups.mean(1, keepdim=True)) / (rewards.std(unbiased=False) + 1e-6)).flatten()
''', 2.0),  # right advantages; a batch the groups do not divide raises a RuntimeError, not ValueError
    "loss_mean_per_sequence": ("scalerl_loss", '''
def scalerl_loss(logprobs, gen_logprobs, advantages, mask, group_size, max_weight=4.0):
    keep = mask.bool()
    logprobs = torch.where(keep, logprobs, torch.zeros_like(logprobs))
    gen_logprobs = torch.where(keep, gen_logprobs, torch.zeros_like(gen_logprobs))
    weight = torch.exp(logprobs - gen_logprobs).clamp(max=max_weight).detach()
    per_token = weight * advantages[:, None] * logprobs * mask
    return -(per_token.sum(1) / mask.sum(1)).mean()
''', 0.0),
    "loss_token_average": ("scalerl_loss", '''
def scalerl_loss(logprobs, gen_logprobs, advantages, mask, group_size, max_weight=4.0):
    keep = mask.bool()
    logprobs = torch.where(keep, logprobs, torch.zeros_like(logprobs))
    gen_logprobs = torch.where(keep, gen_logprobs, torch.zeros_like(gen_logprobs))
    weight = torch.exp(logprobs - gen_logprobs).clamp(max=max_weight).detach()
    return -(weight * advantages[:, None] * logprobs * mask).sum() / mask.sum()
''', 0.0),  # one sum over all the batch's tokens / their number: right only if every prompt has as many tokens
    "loss_weight_not_detached": ("scalerl_loss", '''
def scalerl_loss(logprobs, gen_logprobs, advantages, mask, group_size, max_weight=4.0):
    keep = mask.bool()
    logprobs = torch.where(keep, logprobs, torch.zeros_like(logprobs))
    gen_logprobs = torch.where(keep, gen_logprobs, torch.zeros_like(gen_logprobs))
    weight = torch.exp(logprobs - gen_logprobs).clamp(max=max_weight)
    per_token = weight * advantages[:, None] * logprobs * mask
    rows = group_size * mask.shape[1]
    return -(per_token.reshape(-1, rows).sum(1) / mask.reshape(-1, rows).sum(1)).mean()
''', 0.0),
    "loss_sign_flipped": ("scalerl_loss", '''
def scalerl_loss(logprobs, gen_logprobs, advantages, mask, group_size, max_weight=4.0):
    keep = mask.bool()
    logprobs = torch.where(keep, logprobs, torch.zeros_like(logprobs))
    gen_logprobs = torch.where(keep, gen_logprobs, torch.zeros_like(gen_logprobs))
    weight = torch.exp(logprobs - gen_logprobs).clamp(max=max_weight).detach()
    per_token = weight * advantages[:, None] * logprobs * mask
    rows = group_size * mask.shape[1]
    return (per_token.reshape(-1, rows).sum(1) / mask.reshape(-1, rows).sum(1)).mean()
''', 0.0),
    "loss_not_truncated": ("scalerl_loss", '''
def scalerl_loss(logprobs, gen_logprobs, advantages, mask, group_size, max_weight=4.0):
    keep = mask.bool()
    logprobs = torch.where(keep, logprobs, torch.zeros_like(logprobs))
    gen_logprobs = torch.where(keep, gen_logprobs, torch.zeros_like(gen_logprobs))
    weight = torch.exp(logprobs - gen_logprobs).detach()
    per_token = weight * advantages[:, None] * logprobs * mask
    rows = group_size * mask.shape[1]
    return -(per_token.reshape(-1, rows).sum(1) / mask.reshape(-1, rows).sum(1)).mean()
''', 1.0),  # no ratio above the truncation in the visible test
    "loss_masks_by_multiplying": ("scalerl_loss", '''
def scalerl_loss(logprobs, gen_logprobs, advantages, mask, group_size, max_weight=4.0):
    weight = torch.exp(logprobs - gen_logprobs).clamp(max=max_weight).detach()
    per_token = weight * advantages[:, None] * logprobs * mask
    rows = group_size * mask.shape[1]
    return -(per_token.reshape(-1, rows).sum(1) / mask.reshape(-1, rows).sum(1)).mean()
''', 1.0),  # -inf * 0 = nan on the padding of the hidden test
    "dpo_beta_outside_the_log_ratio": ("dpo_loss", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -beta * F.logsigmoid(margin)
''', 0.0),
    "dpo_sign_flipped": ("dpo_loss", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    margin = (policy_rejected_logps - ref_rejected_logps) - (policy_chosen_logps - ref_chosen_logps)
    return -F.logsigmoid(beta * margin)
''', 0.0),
    "dpo_mean_over_pairs": ("dpo_loss", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * margin).mean()
''', 0.0),  # one number instead of one loss per pair
    "dpo_unstable_log_of_sigmoid": ("dpo_loss", '''
def dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    margin = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -torch.log(torch.sigmoid(beta * margin))
''', 1.0),  # sigmoid(-200) underflows to 0
    "gradient_sigmoid_of_the_wrong_difference": ("dpo_loss_gradient", '''
def dpo_loss_gradient(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    r_w = beta * (policy_chosen_logps - ref_chosen_logps)
    r_l = beta * (policy_rejected_logps - ref_rejected_logps)
    weight = beta * torch.sigmoid(r_w - r_l)
    return -weight, weight
''', 0.0),
    "gradient_without_beta": ("dpo_loss_gradient", '''
def dpo_loss_gradient(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    r_w = beta * (policy_chosen_logps - ref_chosen_logps)
    r_l = beta * (policy_rejected_logps - ref_rejected_logps)
    weight = torch.sigmoid(r_l - r_w)
    return -weight, weight
''', 0.0),  # the chain rule's factor beta forgotten
    "gradient_sign_flipped": ("dpo_loss_gradient", '''
def dpo_loss_gradient(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    r_w = beta * (policy_chosen_logps - ref_chosen_logps)
    r_l = beta * (policy_rejected_logps - ref_rejected_logps)
    weight = beta * torch.sigmoid(r_l - r_w)
    return weight, -weight
''', 0.0),
}


class TestPostTrainingAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("torch.log(ref_probs) + rewards / beta", "centred / (rewards.float().std(unbiased=False) + 1e-6)",
               ".clamp(max=max_weight).detach()", "-F.logsigmoid(beta * margin)", "torch.sigmoid(r_l - r_w)")
