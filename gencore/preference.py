"""Learning from pairwise preferences: the Bradley-Terry model, reward models and DPO, top to bottom.

1. the objectives, each a function of per-pair log-probabilities (the sum over a completion's
   tokens, ``gencore.lm.sequence_logprob``) given as tensors of shape (B,): ``chosen`` is the
   preferred completion y_w of a pair, ``rejected`` the other one, y_l. The Bradley-Terry
   reward-model loss, DPO's loss and its hand-derived gradient (and ``hand_gradient_loss``, which
   trains with a hand-derived gradient instead of autograd's), "Idea 0" (the likelihood margin
   with no reference) and SFT on the winners all share the signature
   ``loss_fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> (B,)``;
2. preference pairs from the course GPT's own samples, judged by the verifier
   (``build_preference_pairs``, ``make_pair_data``), and the four log-probability vectors of a
   batch of pairs (``pair_logprobs``);
3. training on pairs (``train_preference`` and its four variants ``train_idea0``,
   ``train_sft_winners``, ``train_dpo``, ``train_tr_dpo``) with a progress bar and a history of
   held-out accuracy, likelihoods of chosen and rejected completions, implicit-reward margin and
   KL to the starting model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gencore import lm, tasks
from gencore.device import StepLog, autocast, compiled, configure_backend, pick, progress_bar


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


def hand_gradient_loss(loss_fn: Callable, gradient_fn: Callable) -> Callable:
    """A pair objective whose value is ``loss_fn``'s and whose backward pass is ``gradient_fn``'s.

    ``gradient_fn(pc, pr, rc, rr, beta)`` returns the derivatives of each pair's loss with respect
    to log pi(y_w) and log pi(y_l), two (B,) tensors (``dpo_loss_gradients`` for DPO). The chain
    rule carries them into the model's parameters, so a model trained with this objective follows
    the hand-derived gradient, not autograd's derivative of ``loss_fn``. The references and beta
    receive no gradient.
    """

    class _HandGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, pc, pr, rc, rr, beta):
            ctx.save_for_backward(pc, pr, rc, rr)
            ctx.beta = beta
            return loss_fn(pc, pr, rc, rr, beta).detach()

        @staticmethod
        def backward(ctx, upstream):
            pc, pr, rc, rr = ctx.saved_tensors
            d_w, d_l = gradient_fn(pc.detach(), pr.detach(), rc.detach(), rr.detach(), ctx.beta)
            if d_w.shape != pc.shape or d_l.shape != pr.shape:
                raise ValueError(f"gradient_fn must return two tensors of shape {tuple(pc.shape)}, got "
                                 f"{tuple(d_w.shape)} and {tuple(d_l.shape)}")
            return upstream * d_w.to(upstream), upstream * d_l.to(upstream), None, None, None

    def objective(pc, pr, rc, rr, beta):
        return _HandGradient.apply(pc, pr, rc, rr, beta)

    objective.__name__ = f"{getattr(loss_fn, '__name__', 'loss')}_with_hand_gradient"
    return objective


def unreferenced_margin_loss(
    policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
) -> torch.Tensor:
    """"Idea 0", per pair (B,): -[log pi(y_w) - log pi(y_l)], the likelihood margin with no reference.

    Unbounded below: the loss keeps falling as log pi(y_l) goes to -inf, and its gradient with
    respect to each log-probability is a constant (-1, +1) that never fades, however well the
    pair is already ranked. The reference and beta are accepted (and ignored) so that every
    objective of this module has one signature.
    """
    _check_pairs(beta, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    return -(policy_chosen_logps - policy_rejected_logps)


def chosen_nll_loss(
    policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
) -> torch.Tensor:
    """SFT on the winners, per pair (B,): -log pi(y_w), maximum likelihood of the chosen completion.
    The rejected completion, the reference and beta are ignored (one signature for all objectives)."""
    _check_pairs(beta, policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                 ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    return -policy_chosen_logps


# ---------------------------------------------------------------------------------------------
# Preference pairs from the model's own samples, judged by the verifier
# ---------------------------------------------------------------------------------------------


@dataclass
class PreferencePairs:
    """Pairs (x, y_w, y_l): ``chosen[i]`` is preferred to ``rejected[i]`` as an answer to ``prompts[i]``."""

    prompts: list[str]
    chosen: list[str]
    rejected: list[str]

    def __post_init__(self):
        if not (len(self.prompts) == len(self.chosen) == len(self.rejected)):
            raise ValueError(f"need one chosen and one rejected completion per prompt, got {len(self.prompts)} prompts, "
                             f"{len(self.chosen)} chosen and {len(self.rejected)} rejected")

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows) -> PreferencePairs:
        rows = list(rows)
        return PreferencePairs([self.prompts[i] for i in rows], [self.chosen[i] for i in rows],
                               [self.rejected[i] for i in rows])


def build_preference_pairs(
    model, prompts: list[str], k: int = 4, temperature: float = 1.0, verify: Callable = tasks.verify,
    max_new_tokens: int | None = None, generator: torch.Generator | None = None,
) -> tuple[PreferencePairs, dict]:
    """Sample ``k`` completions per prompt from ``model`` and pair a correct one with an incorrect one.

    The verifier plays the human labeller: of two answers to a prompt it prefers the one it
    accepts. A prompt yields a pair only when its k samples hold both kinds; the first correct
    and the first incorrect sample make the pair (the samples are exchangeable, so this is a
    random choice). Returns the pairs and counts: ``prompts``, ``with_pair``, ``all_correct``,
    ``all_wrong`` and ``samples_correct`` (the fraction of all samples the verifier accepts).
    """
    prompts = lm._as_list(prompts, "prompts")
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ValueError(f"k must be an int >= 2 (a pair needs two samples), got {k!r}")
    repeated = [p for p in prompts for _ in range(k)]
    completions = lm.generate(model, repeated, max_new_tokens, temperature, generator=generator)
    pairs = PreferencePairs([], [], [])
    counts = {"prompts": len(prompts), "with_pair": 0, "all_correct": 0, "all_wrong": 0}
    n_correct = 0
    for i, prompt in enumerate(prompts):
        group = completions[i * k: (i + 1) * k]
        right = [c for c in group if verify(prompt, c)]
        wrong = [c for c in group if not verify(prompt, c)]
        n_correct += len(right)
        if right and wrong:
            pairs.prompts.append(prompt)
            pairs.chosen.append(right[0])
            pairs.rejected.append(wrong[0])
            counts["with_pair"] += 1
        else:
            counts["all_correct" if right else "all_wrong"] += 1
    counts["samples_correct"] = n_correct / len(repeated)
    return pairs, counts


def pair_logprobs(policy, reference, pairs: PreferencePairs) -> tuple[torch.Tensor, ...]:
    """The four (B,) vectors every objective takes: log pi(y_w), log pi(y_l) (differentiable),
    log pi_ref(y_w), log pi_ref(y_l) (constants), each summed over the completion's tokens.
    Chosen and rejected completions go through each model in one batch of 2B rows."""
    if not isinstance(pairs, PreferencePairs) or len(pairs) == 0:
        raise ValueError(f"pairs must be a non-empty PreferencePairs, got {type(pairs).__name__} of length {len(pairs) if hasattr(pairs, '__len__') else '?'}")
    prompts, completions, n = pairs.prompts * 2, pairs.chosen + pairs.rejected, len(pairs)
    policy_logps = lm.sequence_logprob(policy, prompts, completions)  # (2B,)
    with torch.no_grad():
        ref_logps = lm.sequence_logprob(reference, prompts, completions)
    return policy_logps[:n], policy_logps[n:], ref_logps[:n], ref_logps[n:]


@torch.no_grad()
def mean_token_kl(policy, reference, prompts: list[str], completions: list[str]) -> float:
    """The exact KL(pi(. | x, y_<t) || pi_ref(. | x, y_<t)) over the vocabulary, averaged over every
    completion token t. On completions sampled from pi this is the per-token KL(pi || pi_ref)."""
    prompt_ids = lm.check_prompts(prompts, lm.context_length(policy), room=0)
    seqs = [p + tasks.encode(c) for p, c in zip(prompt_ids, completions)]
    idx = lm.pad_batch(seqs).to(lm._device(policy))  # (B, L)
    logp = torch.log_softmax(policy(idx[:, :-1])[0].float(), -1)  # (B, L-1, V)
    logq = torch.log_softmax(reference(idx[:, :-1])[0].float(), -1)
    kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, L-1)
    j = torch.arange(idx.shape[1] - 1, device=idx.device)[None] + 1  # the position each row of logits predicts
    starts = torch.tensor([len(p) for p in prompt_ids], device=idx.device)[:, None]
    ends = torch.tensor([len(s) for s in seqs], device=idx.device)[:, None]
    mask = (j >= starts) & (j < ends)
    return float(kl[mask].mean()) if bool(mask.any()) else 0.0


# ---------------------------------------------------------------------------------------------
# Training on pairs: Idea 0, SFT on the winners, DPO and TR-DPO
# ---------------------------------------------------------------------------------------------


@dataclass
class PreferenceConfig:
    task: str = "sum_direct"  # the base model answers a fifth of these: many prompts give a pair
    n_train_prompts: int = 600  # training prompts sampled for pairs
    n_eval_prompts: int = 200  # held-out prompts: accuracy, held-out pairs, KL
    k: int = 4  # samples per prompt when building pairs
    steps: int = 60  # optimiser steps
    batch_size: int = 32  # pairs per step
    # the base model is sharply trained: Adam at 2e-5 with the gradient clipped to norm 1 is a
    # scale that stays stable (an SGD step of norm 0.05 took the per-token KL to ~100 nats)
    lr: float = 2e-5
    # DPO's KL strength: implicit rewards are beta log(pi / pi_ref). Sequence log-ratios here are
    # a few nats: with beta = 0.1 the sigmoid would stay far from saturating and DPO would act
    # like Idea 0; beta = 1 lets the weight of a pair fade once the pair is ranked right
    beta: float = 1.0
    tau: int = 20  # TR-DPO: the reference becomes a copy of the policy every tau steps
    eval_every: int = 10

    def __post_init__(self):
        if not isinstance(self.beta, (int, float)) or isinstance(self.beta, bool) or not self.beta > 0:
            raise ValueError(f"beta must be a positive number, got {self.beta!r}")
        for name in ("k", "steps", "batch_size", "tau", "n_train_prompts", "n_eval_prompts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.k < 2:
            raise ValueError(f"k must be >= 2 (a pair needs two samples), got {self.k}")

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> PreferenceConfig:
        sizes = pick(
            smoke=dict(n_train_prompts=40, n_eval_prompts=24, steps=4, batch_size=8, eval_every=2, tau=2),
            small=dict(),
            full=dict(n_train_prompts=5000, n_eval_prompts=1000, k=8, steps=400, batch_size=64, eval_every=25, tau=50),
            scale=scale,
        )
        return cls(**{**sizes, **overrides})


def make_pair_data(model, config: PreferenceConfig | None = None, seed: int = 0) -> tuple[PreferencePairs, PreferencePairs, dict]:
    """Training pairs from train-split prompts and held-out pairs from test-split prompts of
    ``config.task``, both sampled from ``model`` at temperature 1; returns (train, held_out, counts)."""
    config = config or PreferenceConfig.for_scale()
    g = torch.Generator().manual_seed(seed)
    n_new = tasks.max_completion_length(config.task)
    train_prompts = list(dict.fromkeys(p for p, _ in tasks.make_problems(config.task, config.n_train_prompts, "train", seed)))
    test_prompts = list(dict.fromkeys(p for p, _ in tasks.make_problems(config.task, config.n_eval_prompts, "test", seed)))
    train, train_counts = build_preference_pairs(model, train_prompts, config.k, 1.0, max_new_tokens=n_new, generator=g)
    held_out, test_counts = build_preference_pairs(model, test_prompts, config.k, 1.0, max_new_tokens=n_new, generator=g)
    return train, held_out, {"train": train_counts, "held_out": test_counts}


def train_preference(
    model, train_pairs: PreferencePairs, eval_pairs: PreferencePairs, config: PreferenceConfig | None = None, *,
    loss_fn: Callable = dpo_loss, tau: int | None = None, reference=None, seed: int = 0, progress: bool | None = None,
    desc: str = "DPO",
) -> dict[str, list[float]]:
    """Adam on minibatches of pairs, minimising the mean of ``loss_fn(pc, pr, rc, rr, beta)``.

    ``reference`` (default: a frozen copy of the starting model) supplies log pi_ref; with ``tau``
    it is replaced by a copy of the policy every ``tau`` steps (TR-DPO). Every evaluation is
    measured against the *starting* model, so that all methods share one yardstick. History:
    ``step``, ``loss``; and every ``config.eval_every`` steps (and at step 0) ``eval_step``,
    ``greedy`` (held-out accuracy, greedy decoding), ``sampled`` (temperature 1, the same draws at
    every evaluation), ``chosen_logp`` and ``rejected_logp`` (mean log-likelihood of the held-out
    pairs' completions), ``margin`` (mean implicit-reward margin beta[log pi/pi_0 (y_w) -
    log pi/pi_0 (y_l)]), ``pref_accuracy`` (fraction of held-out pairs with a positive margin) and
    ``kl`` (per-token KL(pi || pi_0) on the sampled completions, ``mean_token_kl``).
    """
    import copy

    config = config or PreferenceConfig.for_scale()
    if tau is not None and (not isinstance(tau, int) or isinstance(tau, bool) or tau < 1):
        raise ValueError(f"tau must be a positive int or None, got {tau!r}")
    if len(train_pairs) == 0 or len(eval_pairs) == 0:
        raise ValueError(f"need training and held-out pairs, got {len(train_pairs)} and {len(eval_pairs)}")
    start = copy.deepcopy(model).eval().requires_grad_(False)  # pi_0, the yardstick
    reference = start if reference is None else reference
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    g = torch.Generator().manual_seed(seed)
    device = lm._device(model)
    configure_backend(device)
    net = compiled(model)  # the updates; evaluation and the copies (TR-DPO) use the plain model
    eval_prompts = [p for p, _ in tasks.make_problems(config.task, config.n_eval_prompts, "test", 0)]
    n_new = tasks.max_completion_length(config.task)
    history: dict[str, list[float]] = {k: [] for k in ("step", "loss", "eval_step", "greedy", "sampled", "chosen_logp",
                                                       "rejected_logp", "margin", "pref_accuracy", "kl")}

    @torch.no_grad()
    @autocast(device)
    def evaluate(step: int) -> None:
        log.flush()
        model.eval()
        history["eval_step"].append(step)
        greedy = lm.generate(model, eval_prompts, n_new, temperature=0.0)
        sampled = lm.generate(model, eval_prompts, n_new, 1.0, generator=torch.Generator().manual_seed(1234))
        history["greedy"].append(tasks.accuracy(eval_prompts, greedy))
        history["sampled"].append(tasks.accuracy(eval_prompts, sampled))
        history["kl"].append(mean_token_kl(model, start, eval_prompts, sampled))
        pc, pr, rc, rr = pair_logprobs(model, start, eval_pairs)
        margin = implicit_rewards(pc, rc, config.beta) - implicit_rewards(pr, rr, config.beta)
        history["chosen_logp"].append(float(pc.mean()))
        history["rejected_logp"].append(float(pr.mean()))
        history["margin"].append(float(margin.mean()))
        history["pref_accuracy"].append(float((margin > 0).float().mean()))

    order: list[int] = []
    bar = progress_bar(range(1, config.steps + 1), config.steps, desc, progress)
    log = StepLog(history, bar=bar, show=("loss",))
    evaluate(0)
    for step in bar:
        # 1. TR-DPO: the reference becomes the current policy every tau steps
        if tau is not None and step > 1 and (step - 1) % tau == 0:
            reference = copy.deepcopy(model).eval().requires_grad_(False)
        # 2. a minibatch of pairs, each pair once per epoch
        if len(order) < config.batch_size:
            order += torch.randperm(len(train_pairs), generator=g).tolist()
        rows, order = order[: config.batch_size], order[config.batch_size:]
        # 3. one Adam step on the mean loss over the pairs
        model.train()
        with autocast(device):  # bf16 layers on a GPU; log-probabilities and their ratios in float32
            loss = loss_fn(*pair_logprobs(net, reference, train_pairs.subset(rows)), config.beta).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        history["step"].append(step)
        log.append(loss=loss)
        if step % config.eval_every == 0 or step == config.steps:
            evaluate(step)
    log.flush()
    model.eval()
    return history


def train_idea0(model, train_pairs, eval_pairs, config=None, **kwargs) -> dict[str, list[float]]:
    """"Idea 0": maximise log pi(y_w) - log pi(y_l) with no reference (``unreferenced_margin_loss``)."""
    return train_preference(model, train_pairs, eval_pairs, config, loss_fn=unreferenced_margin_loss, desc="Idea 0", **kwargs)


def train_sft_winners(model, train_pairs, eval_pairs, config=None, **kwargs) -> dict[str, list[float]]:
    """Supervised fine-tuning on the chosen completions only (``chosen_nll_loss``)."""
    return train_preference(model, train_pairs, eval_pairs, config, loss_fn=chosen_nll_loss, desc="SFT on winners", **kwargs)


def train_dpo(model, train_pairs, eval_pairs, config=None, loss_fn: Callable = dpo_loss, **kwargs) -> dict[str, list[float]]:
    """DPO (Rafailov et al. 2023) against a frozen copy of the starting model; ``loss_fn`` defaults to ``dpo_loss``."""
    return train_preference(model, train_pairs, eval_pairs, config, loss_fn=loss_fn, desc="DPO", **kwargs)


def train_tr_dpo(model, train_pairs, eval_pairs, config=None, loss_fn: Callable = dpo_loss, **kwargs) -> dict[str, list[float]]:
    """TR-DPO (Gorbatovski et al. 2024, hard update): DPO whose reference is reset to the policy
    every ``config.tau`` steps, so the policy may drift from the start in steps of bounded size."""
    config = config or PreferenceConfig.for_scale()
    return train_preference(model, train_pairs, eval_pairs, config, loss_fn=loss_fn, tau=config.tau, desc="TR-DPO", **kwargs)
