"""Grader side of the post-training assignment (RL with verifiable rewards and DPO): references
and verdicts, never in the sandbox.

The visible checks mirror the visible test cells of ``solutions/post_training/post_training.ipynb``;
the hidden checks exist only here (the notebook's hidden cells call
:func:`autograder.units.run_in_notebook`). References are written here in numpy float64, from
the formulas, independent of the student's code and of the library's: the closed-form optimum
with a log-sum-exp, group means by a loop over groups, the ScaleRL loss and its gradient
token by token, and the DPO gradient by autograd on a float64 DPO loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from autograder.units import Check, CheckFailed, Piece, Unit, require
from autograder.units import post_training_probes as probes

EPS = 1e-6  # the advantages' epsilon, as the notebook states it


def array(value, what: str) -> np.ndarray:
    """The student's tensor as float64; anything that is not a tensor fails the check."""
    if not isinstance(value, np.ndarray):
        kind = f"an object of type {value['__object__']}" if isinstance(value, dict) and "__object__" in value else type(value).__name__
        raise CheckFailed(f"{what} should return a tensor, got {kind}")
    return np.array(value, dtype=np.float64)


def close(value, expected: np.ndarray, what: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    got = array(value, what.split(":")[0])
    require(got.shape == expected.shape, f"{what}: expected shape {expected.shape}, got {got.shape}")
    require(bool(np.isfinite(got).all()), f"{what}: the result is not all finite (nan or inf)")
    require(np.allclose(got, expected, atol=atol, rtol=rtol),
            f"{what}: expected {np.round(expected, 5).tolist()[:8]}, got {np.round(got, 5).tolist()[:8]}"
            + (" (first 8 shown)" if expected.size > 8 else ""))


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


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


def optimum_visible(d: dict) -> None:
    p, r = np.array([0.5, 0.25, 0.25]), np.array([0.0, 1.0, 2.0])
    close(d["beta1"], optimum(p, r, 1.0), "pi_ref = (0.5, 0.25, 0.25), r = (0, 1, 2), beta = 1")
    close(d["beta_large"], p, "beta = 1000 (the optimum stays at pi_ref)", atol=1e-3)
    got = array(d["beta_small"], "kl_regularized_optimum")
    require(got.shape == (3,) and np.isfinite(got).all() and got[2] > 0.999,
            f"beta = 0.1 should put almost all mass on the highest reward, got {np.round(got, 4).tolist()}")


def optimum_hidden(d: dict) -> None:
    x = {k: np_(v) if isinstance(v, torch.Tensor) else v for k, v in probes.optimum_inputs().items()}
    for beta, value in zip(x["betas"], d["random"]):
        close(value, optimum(x["ref"], x["rewards"], beta), f"4 random distributions over 6 outcomes at beta = {beta} "
              "(normalise along the last dimension)")
    close(d["zeros"], optimum(x["zeros_ref"], x["zeros_rewards"], 0.5),
          "a reference with zero-probability outcomes (they keep probability 0)")
    close(d["large"], optimum(x["large_ref"], x["large_rewards"], 1.0), "rewards of 500 and 1000 at beta = 1 (compute in log space)")
    close(d["batch3d"], optimum(x["batch3d_ref"], x["batch3d_rewards"], 0.7), "a (2, 3, 4) batch of distributions")


# -- part 2 ----------------------------------------------------------------------------------------


def advantages_visible(d: dict) -> None:
    close(d["advantages"], advantages(np.array(probes.VISIBLE_REWARDS), 4),
          "rewards (1,0,0,0 | 1,1,1,1 | 0,1,0,1) in groups of 4 (the group's mean, the batch's std)", atol=1e-4)
    close(d["equal"], np.zeros(8), "a batch of 8 equal rewards (advantage 0, no nan)", atol=1e-6)
    raised = d["indivisible"]
    require(raised.get("raised") == "ValueError",
            "group_size = 5 does not divide 12 rewards: raise ValueError"
            + (f", not {raised['raised']}" if "raised" in raised else " (it returned a value)"))


def advantages_hidden(d: dict) -> None:
    x = {k: np_(v) for k, v in probes.advantage_inputs().items()}
    close(d["binary"], advantages(x["binary"], 8), "48 binary rewards in groups of 8, some groups all fail", atol=1e-4)
    close(d["graded"], advantages(x["graded"], 6), "rewards near 100 in groups of 6 (subtract each group's own mean)", atol=1e-3)
    close(d["single_group"], advantages(x["single_group"], 5), "a single group of 5", atol=1e-4)
    close(d["group_of_one"], np.zeros(3), "groups of one completion (no spread: advantage 0)", atol=1e-6)
    close(d["all_fail"], np.zeros(16), "a batch where every completion fails", atol=1e-6)


# -- part 3 ----------------------------------------------------------------------------------------


def _scalerl_verdict(got: dict, x: dict, max_weight: float, what: str) -> None:
    loss, grad = scalerl(x["logprobs"], x["gen_logprobs"], x["advantages"], x["mask"], x["group_size"], max_weight)
    value = array(got["loss"], "scalerl_loss")
    require(value.size == 1, f"scalerl_loss should return a single number (a 0-d tensor), got shape {value.shape}")
    require(np.isfinite(value).all(), f"{what}: the loss is {value.item()} (padding positions must not enter the sum)")
    require(abs(value.item() - loss) < 1e-4 * max(1.0, abs(loss)),
            f"{what}: the loss should be {loss:.5f} (each prompt's sum over its tokens / their number, then the mean "
            f"over prompts), got {value.item():.5f}")
    close(got["grad"], grad, f"{what}: d loss / d logprobs (-weight A / (P #tokens of the prompt); the weight is a "
          "constant: sg(min(rho, max_weight)))", atol=1e-5)


def scalerl_visible(d: dict) -> None:
    x = {k: np_(v) if isinstance(v, torch.Tensor) else v for k, v in probes.scalerl_visible_inputs().items()}
    _scalerl_verdict(d, x, 4.0, "two prompts of two completions, with 2 + 1 and 3 + 2 tokens")


def scalerl_hidden(d: dict) -> None:
    x = {k: np_(v) if isinstance(v, torch.Tensor) else v for k, v in probes.scalerl_inputs().items()}
    for w in x["max_weights"]:
        _scalerl_verdict(d[f"max_weight_{w:g}"], x, w, f"5 prompts of 2 completions of 1 to 7 tokens (4 to 10 tokens "
                         f"per prompt), ratios up to 12, -inf padding, max_weight = {w:g}")


# -- parts 4 and 5 ---------------------------------------------------------------------------------


def _visible_reference():
    pc, pr, rc, rr, beta = probes.DPO_VISIBLE
    return dpo_reference(pc, pr, rc, rr, beta)


def dpo_visible(d: dict) -> None:
    loss, _, _ = _visible_reference()
    close(d["loss"], loss, "two pairs at beta = 0.5 (one loss per pair)")


def dpo_hidden(d: dict) -> None:
    x = {k: np_(v) if isinstance(v, torch.Tensor) else v for k, v in probes.dpo_inputs().items()}
    for beta, value in zip(x["betas"], d["random"]):
        close(value, dpo_reference(x["pc"], x["pr"], x["rc"], x["rr"], beta)[0], f"64 random pairs at beta = {beta}")
    close(d["extreme"], dpo_reference(*[np_(t) for t in x["extreme"]], 1.0)[0],
          "a pair ranked wrongly by 200 nats and one ranked rightly by 200 (use a stable log-sigmoid)")
    _, d_w, d_l = dpo_reference(x["pc"], x["pr"], x["rc"], x["rr"], 0.5)
    require(isinstance(d["grad"], list) and len(d["grad"]) == 2, "no gradient reached the policy's log-probabilities")
    close(d["grad"][0], d_w, "autograd through your loss, d / d log pi(y_w) (keep it in torch)")
    close(d["grad"][1], d_l, "autograd through your loss, d / d log pi(y_l)")


def _pair(value, what: str) -> tuple:
    require(isinstance(value, list) and len(value) == 2, f"{what}: return two tensors, (d_chosen, d_rejected)")
    return value[0], value[1]


def gradient_visible(d: dict) -> None:
    _, d_w, d_l = _visible_reference()
    chosen, rejected = _pair(d["grads"], "dpo_loss_gradient")
    close(chosen, d_w, "two pairs at beta = 0.5, d loss / d log pi(y_w)")
    close(rejected, d_l, "two pairs at beta = 0.5, d loss / d log pi(y_l)")


def gradient_hidden(d: dict) -> None:
    x = {k: np_(v) if isinstance(v, torch.Tensor) else v for k, v in probes.dpo_inputs().items()}
    for beta, value in zip(x["betas"], d["random"]):
        _, d_w, d_l = dpo_reference(x["pc"], x["pr"], x["rc"], x["rr"], beta)
        chosen, rejected = _pair(value, "dpo_loss_gradient")
        close(chosen, d_w, f"64 random pairs at beta = {beta}, against autograd: d loss / d log pi(y_w)")
        close(rejected, d_l, f"64 random pairs at beta = {beta}, against autograd: d loss / d log pi(y_l)")
    _, d_w, d_l = dpo_reference(*[np_(t) for t in x["extreme"]], 1.0)
    chosen, rejected = _pair(d["extreme"], "dpo_loss_gradient")
    close(chosen, d_w, "pairs ranked wrongly and rightly by 200 nats: d loss / d log pi(y_w)")
    close(rejected, d_l, "pairs ranked wrongly and rightly by 200 nats: d loss / d log pi(y_l)")


# -- the unit --------------------------------------------------------------------------------------

UNIT = Unit(
    assignment="post_training",
    notebook="post_training",
    chapter="book/rl.html",
    probes=Path(probes.__file__),
    pieces=(
        Piece("kl_regularized_optimum", "The KL-regularised optimum", "the-kl-regularised-objective-and-its-optimum", (
            Check("test_kl_regularized_optimum_visible", 1, True, optimum_visible,
                  "a three-outcome example at beta = 1, a very large and a small beta"),
            Check("test_kl_regularized_optimum_hidden", 2, False, optimum_hidden,
                  "random batches of distributions at three betas, zero-probability outcomes, rewards of 1000, a 3-d batch"),
        ), forbidden=("gencore.rl.kl_regularized_optimum",)),
        Piece("group_advantages", "Group advantages", "grpo-and-the-scalerl-objective-piece-by-piece", (
            Check("test_group_advantages_visible", 1, True, advantages_visible,
                  "three groups of four binary rewards (one all passing), a batch of equal rewards, and a group size "
                  "that does not divide the batch"),
            Check("test_group_advantages_hidden", 2, False, advantages_hidden,
                  "binary rewards in groups of 8, rewards near 100 in groups of 6, a single group, groups of one, "
                  "a batch where all fail"),
        ), forbidden=("gencore.rl.group_advantages",)),
        Piece("scalerl_loss", "The ScaleRL loss, averaged per prompt", "grpo-and-the-scalerl-objective-piece-by-piece", (
            Check("test_scalerl_loss_visible", 1, True, scalerl_visible,
                  "two prompts of two completions, with different token counts: the loss and its gradient"),
            Check("test_scalerl_loss_hidden", 2, False, scalerl_hidden,
                  "five prompts of two completions of 1 to 7 tokens, with importance ratios above the truncation and "
                  "-inf padding, at two truncation levels: the loss and its gradient"),
        ), forbidden=("gencore.rl.scalerl_loss", "gencore.rl.grpo_loss")),
        Piece("dpo_loss", "The DPO loss", "book/dpo.html#from-the-kl-regularised-optimum-to-dpo", (
            Check("test_dpo_loss_visible", 1, True, dpo_visible, "two pairs at beta = 0.5"),
            Check("test_dpo_loss_hidden", 2, False, dpo_hidden,
                  "64 random pairs at three betas, pairs ranked wrongly or rightly by 200 nats, and the gradient"),
        ), forbidden=("gencore.preference.dpo_loss", "gencore.preference.bradley_terry_loss")),
        Piece("dpo_loss_gradient", "The DPO gradient, by hand", "book/dpo.html#the-gradient-by-hand", (
            Check("test_dpo_loss_gradient_visible", 1, True, gradient_visible, "two pairs at beta = 0.5"),
            Check("test_dpo_loss_gradient_hidden", 2, False, gradient_hidden,
                  "64 random pairs at three betas and pairs ranked by 200 nats, against autograd"),
        ), forbidden=("gencore.preference.dpo_loss_gradients", "torch.autograd.grad", "torch.autograd.backward")),
    ),
)
