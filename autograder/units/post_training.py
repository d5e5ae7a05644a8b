"""The post-training assignment's checks (RL with verifiable rewards and DPO): declarations,
references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/post_training/post_training.ipynb`` from here. The visible checks mirror the
notebook's readable asserts; the hidden ones exist only here. The student's process only produces
data (``post_training_probes.py``); every comparison below runs in the grader's process, against
references written here in numpy float64 from the formulas, independent of the student's code
and of the library's: the closed-form optimum with a log-sum-exp, group means by a loop over
groups, the ScaleRL loss and its gradient token by token, and the DPO gradient by autograd on a
float64 DPO loss.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import post_training_probes as probes
from autograder.verdicts import array, assert_close, require, scalar

EPS = 1e-6  # the advantages' epsilon, as the notebook states it

# The unit's tolerance, looser than the toolkit's (rtol 1e-5, atol 1e-6): this unit's checks have
# compared the student's float32 results at rtol 1e-4 and atol 1e-5 since before the toolkit, and
# keep doing so, so that no score changes. A comparison with another atol passes it explicitly.
assert_near = functools.partial(assert_close, rtol=1e-4, atol=1e-5)


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def as_numpy(inputs: dict) -> dict:
    """A probes module's inputs with their tensors as float64 arrays (the rest as they are)."""
    return {k: np_(v) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


# -- references ------------------------------------------------------------------------------------


def optimum(ref: np.ndarray, rewards: np.ndarray, beta: float) -> np.ndarray:
    """pi_ref exp(r / beta) / Z along the last axis, with the largest exponent subtracted first."""
    with np.errstate(divide="ignore"):
        logits = np.log(ref) + rewards / beta
    logits = logits - logits.max(-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(-1, keepdims=True)


def advantages(rewards: np.ndarray, group_size: int) -> np.ndarray:
    """Each reward minus its group's mean, over the population std of the whole batch (ScaleRL)."""
    scale = rewards.std() + EPS  # numpy's std divides by N
    out = np.empty_like(rewards)
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        out[start : start + group_size] = (group - group.mean()) / scale
    return out


def scalerl(logprobs, gen, adv, mask, group_size, max_weight) -> tuple[float, np.ndarray]:
    """The loss and d loss / d logprobs, token by token over the completion tokens only: each
    prompt's terms over its own token count (rows i // group_size share a prompt), then the mean
    over prompts (Khatri et al. 2025, Sec. 4)."""
    n_prompts = len(mask) // group_size
    prompt_tokens = [mask[k * group_size : (k + 1) * group_size].sum() for k in range(n_prompts)]
    loss, grad = 0.0, np.zeros_like(logprobs)
    for i, t in zip(*np.nonzero(mask)):
        weight = min(np.exp(logprobs[i, t] - gen[i, t]), max_weight)
        scale = n_prompts * prompt_tokens[i // group_size]
        loss -= weight * adv[i] * logprobs[i, t] / scale
        grad[i, t] = -weight * adv[i] / scale
    return loss, grad


def dpo_reference(pc, pr, rc, rr, beta) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pair losses and their derivatives in log pi(y_w), log pi(y_l), by float64 autograd."""
    pc, pr = (torch.as_tensor(v, dtype=torch.float64).clone().requires_grad_(True) for v in (pc, pr))
    rc, rr = (torch.as_tensor(v, dtype=torch.float64) for v in (rc, rr))
    z = beta * ((pc - rc) - (pr - rr))
    loss = torch.nn.functional.softplus(-z)  # -log sigmoid(z), stable
    d_w, d_l = torch.autograd.grad(loss.sum(), (pc, pr))
    return np_(loss), np_(d_w), np_(d_l)


# -- part 1 ----------------------------------------------------------------------------------------


@visible(probes.optimum_visible)
def optimum_visible(d: dict) -> None:
    """a three-outcome example at beta = 1, a very large and a small beta"""
    p, r = np.array([0.5, 0.25, 0.25]), np.array([0.0, 1.0, 2.0])
    assert_near(d["beta1"], optimum(p, r, 1.0), "pi_ref = (0.5, 0.25, 0.25), r = (0, 1, 2), beta = 1")
    assert_near(d["beta_large"], p, "beta = 1000 (the optimum stays at pi_ref)", atol=1e-3)
    got = array(d["beta_small"], "kl_regularized_optimum")
    require(got.shape == (3,) and np.isfinite(got).all() and got[2] > 0.999,
            f"beta = 0.1 should put almost all mass on the highest reward, got {np.round(got, 4).tolist()}")


@hidden(probes.optimum_hidden)
def optimum_hidden(d: dict) -> None:
    """random batches of distributions at three betas, zero-probability outcomes, rewards of 1000, a 3-d batch"""
    x = as_numpy(probes.optimum_inputs())
    for beta, value in zip(x["betas"], d["random"]):
        assert_near(value, optimum(x["ref"], x["rewards"], beta), f"4 random distributions over 6 outcomes at beta = {beta} "
                    "(normalise along the last dimension)")
    assert_near(d["zeros"], optimum(x["zeros_ref"], x["zeros_rewards"], 0.5),
                "a reference with zero-probability outcomes (they keep probability 0)")
    assert_near(d["large"], optimum(x["large_ref"], x["large_rewards"], 1.0),
                "rewards of 500 and 1000 at beta = 1 (compute in log space)")
    assert_near(d["batch3d"], optimum(x["batch3d_ref"], x["batch3d_rewards"], 0.7), "a (2, 3, 4) batch of distributions")


# -- part 2 ----------------------------------------------------------------------------------------


@visible(probes.advantages_visible)
def advantages_visible(d: dict) -> None:
    """three groups of four binary rewards (one all passing), a batch of equal rewards, and a group size
    that does not divide the batch"""
    assert_near(d["advantages"], advantages(np.array(probes.VISIBLE_REWARDS), 4),
                "rewards (1,0,0,0 | 1,1,1,1 | 0,1,0,1) in groups of 4 (the group's mean, the batch's std)", atol=1e-4)
    assert_near(d["equal"], np.zeros(8), "a batch of 8 equal rewards (advantage 0, no nan)", atol=1e-6)
    raised = d["indivisible"]
    require(raised.get("raised") == "ValueError",
            "group_size = 5 does not divide 12 rewards: raise ValueError"
            + (f", not {raised['raised']}" if "raised" in raised else " (it returned a value)"))


@hidden(probes.advantages_hidden)
def advantages_hidden(d: dict) -> None:
    """binary rewards in groups of 8, rewards near 100 in groups of 6, a single group, groups of one,
    a batch where all fail"""
    x = as_numpy(probes.advantage_inputs())
    assert_near(d["binary"], advantages(x["binary"], 8), "48 binary rewards in groups of 8, some groups all fail", atol=1e-4)
    assert_near(d["graded"], advantages(x["graded"], 6), "rewards near 100 in groups of 6 (subtract each group's own mean)",
                atol=1e-3)
    assert_near(d["single_group"], advantages(x["single_group"], 5), "a single group of 5", atol=1e-4)
    assert_near(d["group_of_one"], np.zeros(3), "groups of one completion (no spread: advantage 0)", atol=1e-6)
    assert_near(d["all_fail"], np.zeros(16), "a batch where every completion fails", atol=1e-6)


# -- part 3 ----------------------------------------------------------------------------------------


def _scalerl_verdict(got: dict, x: dict, max_weight: float, what: str) -> None:
    loss, grad = scalerl(x["logprobs"], x["gen_logprobs"], x["advantages"], x["mask"], x["group_size"], max_weight)
    value = scalar(got["loss"], "scalerl_loss")
    require(math.isfinite(value), f"{what}: the loss is {value} (padding positions must not enter the sum)")
    require(abs(value - loss) < 1e-4 * max(1.0, abs(loss)),
            f"{what}: the loss should be {loss:.5f} (each prompt's sum over its tokens / their number, then the mean "
            f"over prompts), got {value:.5f}")
    assert_near(got["grad"], grad, f"{what}: d loss / d logprobs (-weight A / (P #tokens of the prompt); the weight is a "
                "constant: sg(min(rho, max_weight)))")


@visible(probes.scalerl_visible)
def scalerl_visible(d: dict) -> None:
    """two prompts of two completions, with different token counts: the loss and its gradient"""
    _scalerl_verdict(d, as_numpy(probes.scalerl_visible_inputs()), 4.0,
                     "two prompts of two completions, with 2 + 1 and 3 + 2 tokens")


@hidden(probes.scalerl_hidden)
def scalerl_hidden(d: dict) -> None:
    """five prompts of two completions of 1 to 7 tokens, with importance ratios above the truncation and
    -inf padding, at two truncation levels: the loss and its gradient"""
    x = as_numpy(probes.scalerl_inputs())
    for w in x["max_weights"]:
        _scalerl_verdict(d[f"max_weight_{w:g}"], x, w, f"5 prompts of 2 completions of 1 to 7 tokens (4 to 10 tokens "
                         f"per prompt), ratios up to 12, -inf padding, max_weight = {w:g}")


# -- parts 4 and 5 ---------------------------------------------------------------------------------


def _visible_reference():
    pc, pr, rc, rr, beta = probes.DPO_VISIBLE
    return dpo_reference(pc, pr, rc, rr, beta)


@visible(probes.dpo_visible)
def dpo_visible(d: dict) -> None:
    """two pairs at beta = 0.5"""
    loss, _, _ = _visible_reference()
    assert_near(d["loss"], loss, "two pairs at beta = 0.5 (one loss per pair)")


@hidden(probes.dpo_hidden)
def dpo_hidden(d: dict) -> None:
    """64 random pairs at three betas, pairs ranked wrongly or rightly by 200 nats, and the gradient"""
    x = as_numpy(probes.dpo_inputs())
    for beta, value in zip(x["betas"], d["random"]):
        assert_near(value, dpo_reference(x["pc"], x["pr"], x["rc"], x["rr"], beta)[0], f"64 random pairs at beta = {beta}")
    assert_near(d["extreme"], dpo_reference(*[np_(t) for t in x["extreme"]], 1.0)[0],
                "a pair ranked wrongly by 200 nats and one ranked rightly by 200 (use a stable log-sigmoid)")
    _, d_w, d_l = dpo_reference(x["pc"], x["pr"], x["rc"], x["rr"], 0.5)
    require(isinstance(d["grad"], list) and len(d["grad"]) == 2, "no gradient reached the policy's log-probabilities")
    assert_near(d["grad"][0], d_w, "autograd through your loss, d / d log pi(y_w) (keep it in torch)")
    assert_near(d["grad"][1], d_l, "autograd through your loss, d / d log pi(y_l)")


def _gradients(value, reference: tuple, what: str) -> None:
    """The student's (d_chosen, d_rejected) against the reference's; ``what`` starts each message."""
    require(isinstance(value, list) and len(value) == 2, "dpo_loss_gradient: return two tensors, (d_chosen, d_rejected)")
    _, d_w, d_l = reference
    assert_near(value[0], d_w, f"{what}d loss / d log pi(y_w)")
    assert_near(value[1], d_l, f"{what}d loss / d log pi(y_l)")


@visible(probes.gradient_visible)
def gradient_visible(d: dict) -> None:
    """two pairs at beta = 0.5"""
    _gradients(d["grads"], _visible_reference(), "two pairs at beta = 0.5, ")


@hidden(probes.gradient_hidden)
def gradient_hidden(d: dict) -> None:
    """64 random pairs at three betas and pairs ranked by 200 nats, against autograd"""
    x = as_numpy(probes.dpo_inputs())
    for beta, value in zip(x["betas"], d["random"]):
        _gradients(value, dpo_reference(x["pc"], x["pr"], x["rc"], x["rr"], beta),
                   f"64 random pairs at beta = {beta}, against autograd: ")
    _gradients(d["extreme"], dpo_reference(*[np_(t) for t in x["extreme"]], 1.0),
               "pairs ranked wrongly and rightly by 200 nats: ")


# -- the unit --------------------------------------------------------------------------------------

UNIT = Unit(
    assignment="post_training",
    library="gencore.rl",
    chapter="book/rl.html",
    pieces=(
        Piece("kl_regularized_optimum", "The KL-regularised optimum", "the-kl-regularised-objective-and-its-optimum",
              (optimum_visible, optimum_hidden), forbidden=("gencore.rl.kl_regularized_optimum",)),
        Piece("group_advantages", "Group advantages", "grpo-and-the-scalerl-objective-piece-by-piece",
              (advantages_visible, advantages_hidden), forbidden=("gencore.rl.group_advantages",)),
        Piece("scalerl_loss", "The ScaleRL loss, averaged per prompt", "grpo-and-the-scalerl-objective-piece-by-piece",
              (scalerl_visible, scalerl_hidden), forbidden=("gencore.rl.scalerl_loss", "gencore.rl.grpo_loss")),
        Piece("dpo_loss", "The DPO loss", "book/dpo.html#from-the-kl-regularised-optimum-to-dpo",
              (dpo_visible, dpo_hidden), forbidden=("gencore.preference.dpo_loss", "gencore.preference.bradley_terry_loss")),
        Piece("dpo_loss_gradient", "The DPO gradient, by hand", "book/dpo.html#the-gradient-by-hand",
              (gradient_visible, gradient_hidden),
              forbidden=("gencore.preference.dpo_loss_gradients", "torch.autograd.grad", "torch.autograd.backward")),
    ),
)
