"""Learning from pairwise preferences: the Bradley-Terry model, reward models and DPO.

Every function takes per-pair log-probabilities, each the sum over a completion's tokens
(``gencore.lm.sequence_logprob``), as tensors of shape (B,): ``chosen`` is the preferred
completion y_w of a pair, ``rejected`` the other one, y_l.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pairs(beta=None, **tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if any(not isinstance(t, torch.Tensor) for t in tensors.values()) or len(set(shapes.values())) != 1 or len(first) != 1:
        raise ValueError(f"expected tensors of one shape (batch,), got {shapes}")
    if beta is not None and (not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")


def bradley_terry_probability(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """P(y_w preferred to y_l) = exp r_w / (exp r_w + exp r_l) = sigmoid(r_w - r_l) (Bradley & Terry 1952)."""
    _check_pairs(reward_chosen=reward_chosen, reward_rejected=reward_rejected)
    return torch.sigmoid(reward_chosen - reward_rejected)


def bradley_terry_loss(reward_chosen: torch.Tensor, reward_rejected: torch.Tensor) -> torch.Tensor:
    """The reward model's negative log-likelihood of the observed preferences, per pair (B,):
    -log sigmoid(r_w - r_l), computed with a stable log-sigmoid."""
    _check_pairs(reward_chosen=reward_chosen, reward_rejected=reward_rejected)
    return -F.logsigmoid(reward_chosen - reward_rejected)


def implicit_rewards(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO's implicit reward r_hat(y) = beta log(pi(y) / pi_ref(y)), per completion (B,): the reward
    for which the policy is the KL-regularised optimum, up to a per-prompt constant."""
    _check_pairs(beta, policy_logps=policy_logps, ref_logps=ref_logps)
    return beta * (policy_logps - ref_logps)


def dpo_loss(
    policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
) -> torch.Tensor:
    """The DPO loss per pair (B,) (Rafailov et al. 2023, Eq. 7):

        -log sigmoid( beta [log pi(y_w)/pi_ref(y_w) - log pi(y_l)/pi_ref(y_l)] )
      = bradley_terry_loss(r_hat(y_w), r_hat(y_l)).

    The partition function of the KL-regularised optimum is the same for both completions of a
    prompt and cancels in the difference. The reference log-probabilities are constants.
    """
    _check_pairs(beta, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    margin = (policy_chosen_logps - ref_chosen_logps.detach()) - (policy_rejected_logps - ref_rejected_logps.detach())
    return -F.logsigmoid(beta * margin)


def dpo_loss_gradients(
    policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The derivatives of each pair's DPO loss with respect to log pi(y_w) and log pi(y_l), by hand:

        d loss / d log pi(y_w) = -beta sigmoid(r_hat(y_l) - r_hat(y_w)),
        d loss / d log pi(y_l) = +beta sigmoid(r_hat(y_l) - r_hat(y_w)),

    so the parameter gradient is -beta sigmoid(r_hat_l - r_hat_w) [grad log pi(y_w) - grad log pi(y_l)]:
    push y_w up and y_l down, most where the implicit reward ranks the pair wrongly.
    """
    _check_pairs(beta, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    r_w = implicit_rewards(policy_chosen_logps.detach(), ref_chosen_logps.detach(), beta)
    r_l = implicit_rewards(policy_rejected_logps.detach(), ref_rejected_logps.detach(), beta)
    weight = beta * torch.sigmoid(r_l - r_w)
    return -weight, weight
