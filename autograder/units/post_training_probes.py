"""Sandbox side of the post-training checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/post_training.py``. It runs in the
sandboxed child, gets the student's namespace and gencore's own ``rl`` functions (``ref``), and
returns only what the student's code produced (tensors, numbers, the name of an exception),
deciding nothing; the verdicts, references and tolerances never enter the sandbox. The inputs
come from the functions below, which the grader uses too, so both sides see the same numbers.
"""

from __future__ import annotations

import torch


def _error(call) -> dict:
    """The value of ``call()``, or the name of the exception it raised."""
    try:
        return {"value": call()}
    except Exception as error:  # noqa: BLE001 (student code)
        return {"raised": type(error).__name__, "message": str(error)[:200]}


# -- inputs, shared with the verdicts -------------------------------------------------------------


def optimum_inputs() -> dict:
    g = torch.Generator().manual_seed(31)
    raw = torch.rand(4, 6, generator=g) + 0.05
    with_zeros = torch.rand(3, 5, generator=g) + 0.05
    with_zeros[0, 1] = with_zeros[1, 4] = with_zeros[2, 0] = 0.0
    return {
        "ref": raw / raw.sum(-1, keepdim=True),
        "rewards": torch.randn(4, 6, generator=g),
        "betas": (0.3, 1.0, 5.0),
        "zeros_ref": with_zeros / with_zeros.sum(-1, keepdim=True),
        "zeros_rewards": torch.randn(3, 5, generator=g),
        "large_ref": torch.tensor([0.7, 0.2, 0.1]),
        "large_rewards": torch.tensor([0.0, 500.0, 1000.0]),
        "batch3d_ref": torch.full((2, 3, 4), 0.25),
        "batch3d_rewards": torch.randn(2, 3, 4, generator=g),
    }


def advantage_inputs() -> dict:
    g = torch.Generator().manual_seed(32)
    return {
        "binary": (torch.rand(48, generator=g) < 0.4).float(),  # groups of 8: some all fail
        "graded": 100.0 + torch.randn(36, generator=g),  # rewards far from 0, groups of 6
        "single_group": torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]),
        "group_of_one": torch.tensor([0.0, 1.0, 1.0]),
        "all_fail": torch.zeros(16),
    }


def scalerl_inputs() -> dict:
    g = torch.Generator().manual_seed(33)
    n, t = 10, 7
    lengths = torch.tensor([1, 7, 3, 5, 2, 7, 4, 6, 1, 3])
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    gen = -3 * torch.rand(n, t, generator=g)
    # the trainer's log-probabilities: ratios rho from 0.1 to 12, some above the truncation
    logprobs = gen + torch.empty(n, t).uniform_(-2.3, 2.5, generator=g)
    logprobs = torch.where(mask.bool(), logprobs, torch.tensor(float("-inf")))  # padding holds -inf
    gen = torch.where(mask.bool(), gen, torch.tensor(float("-inf")))
    return {"logprobs": logprobs, "gen_logprobs": gen, "mask": mask, "group_size": 2,  # 8, 8, 9, 10, 4 tokens per prompt
            "advantages": torch.randn(n, generator=g), "max_weights": (4.0, 2.0)}


def scalerl_visible_inputs() -> dict:
    """The visible test cell's batch: two prompts of two completions, with 2 + 1 and 3 + 2 tokens."""
    return {"logprobs": torch.tensor([[-0.5, -1.0, 0.0], [-2.0, 0.0, 0.0], [-0.3, -0.6, -0.9], [-1.0, -0.2, 0.0]]),
            "gen_logprobs": torch.tensor([[-0.5, -1.2, 0.0], [-0.5, 0.0, 0.0], [-0.3, -0.6, -0.9], [-1.0, -0.2, 0.0]]),
            "mask": torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
            "advantages": torch.tensor([1.0, -2.0, 0.5, -0.5]), "group_size": 2}


def dpo_inputs() -> dict:
    g = torch.Generator().manual_seed(34)
    b = 64
    return {
        "pc": -20 * torch.rand(b, generator=g), "pr": -20 * torch.rand(b, generator=g),
        "rc": -20 * torch.rand(b, generator=g), "rr": -20 * torch.rand(b, generator=g),
        "betas": (0.1, 1.0, 3.0),
        # pairs ranked very wrongly and very rightly: margins of -200 and +200 nats times beta 1
        "extreme": [torch.tensor([-201.0, -1.0]), torch.tensor([-1.0, -201.0]), torch.tensor([-1.0, -1.0]),
                    torch.tensor([-1.0, -1.0])],
    }


# -- part 1 -----------------------------------------------------------------------------------------


def optimum_visible(student, ref):
    f = student["kl_regularized_optimum"]
    p, r = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.0, 1.0, 2.0])
    return {"beta1": f(p, r, 1.0), "beta_large": f(p, r, 1e3), "beta_small": f(p, r, 0.1)}


def optimum_hidden(student, ref):
    f = student["kl_regularized_optimum"]
    x = optimum_inputs()
    return {"random": [f(x["ref"], x["rewards"], b) for b in x["betas"]],
            "zeros": f(x["zeros_ref"], x["zeros_rewards"], 0.5),
            "large": f(x["large_ref"], x["large_rewards"], 1.0),
            "batch3d": f(x["batch3d_ref"], x["batch3d_rewards"], 0.7)}


# -- part 2 -----------------------------------------------------------------------------------------

VISIBLE_REWARDS = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def advantages_visible(student, ref):
    f = student["group_advantages"]
    r = torch.tensor(VISIBLE_REWARDS)
    return {"advantages": f(r, 4), "equal": f(torch.ones(8), 4), "indivisible": _error(lambda: f(r, 5))}


def advantages_hidden(student, ref):
    f = student["group_advantages"]
    x = advantage_inputs()
    return {"binary": f(x["binary"], 8), "graded": f(x["graded"], 6), "single_group": f(x["single_group"], 5),
            "group_of_one": f(x["group_of_one"], 1), "all_fail": f(x["all_fail"], 4)}


# -- part 3 -----------------------------------------------------------------------------------------


def _loss_and_grad(f, logprobs, gen, adv, mask, *args):
    logprobs = logprobs.clone().requires_grad_(True)
    loss = f(logprobs, gen, adv, mask, *args)
    (grad,) = torch.autograd.grad(loss, logprobs)
    return {"loss": loss, "grad": grad}


def scalerl_visible(student, ref):
    f = student["scalerl_loss"]
    x = scalerl_visible_inputs()
    return _loss_and_grad(f, x["logprobs"], x["gen_logprobs"], x["advantages"], x["mask"], x["group_size"])


def scalerl_hidden(student, ref):
    f = student["scalerl_loss"]
    x = scalerl_inputs()
    return {f"max_weight_{w:g}": _loss_and_grad(f, x["logprobs"], x["gen_logprobs"], x["advantages"], x["mask"], x["group_size"], w)
            for w in x["max_weights"]}


# -- parts 4 and 5 ----------------------------------------------------------------------------------

DPO_VISIBLE = ([-1.0, -3.0], [-2.0, -1.0], [-1.5, -2.0], [-1.0, -2.5], 0.5)


def _visible_pairs():
    return [torch.tensor(v) for v in DPO_VISIBLE[:4]], DPO_VISIBLE[4]


def dpo_visible(student, ref):
    tensors, beta = _visible_pairs()
    return {"loss": student["dpo_loss"](*tensors, beta)}


def dpo_hidden(student, ref):
    f = student["dpo_loss"]
    x = dpo_inputs()
    out = {"random": [f(x["pc"], x["pr"], x["rc"], x["rr"], b) for b in x["betas"]],
           "extreme": f(*x["extreme"], 1.0)}
    pc, pr = x["pc"].clone().requires_grad_(True), x["pr"].clone().requires_grad_(True)
    out["grad"] = list(torch.autograd.grad(f(pc, pr, x["rc"], x["rr"], 0.5).sum(), (pc, pr)))
    return out


def gradient_visible(student, ref):
    tensors, beta = _visible_pairs()
    return {"grads": list(student["dpo_loss_gradient"](*tensors, beta))}


def gradient_hidden(student, ref):
    f = student["dpo_loss_gradient"]
    x = dpo_inputs()
    return {"random": [list(f(x["pc"], x["pr"], x["rc"], x["rr"], b)) for b in x["betas"]],
            "extreme": list(f(*x["extreme"], 1.0))}
