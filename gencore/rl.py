"""Reinforcement learning for language models with verifiable rewards, top to bottom.

1. the target: the maximiser of E_pi[r] - beta KL(pi || pi_ref) over a discrete set
   (``kl_regularized_optimum``), the objective itself, and the score-function (log-derivative)
   estimator of a gradient of an expectation (``reinforce_surrogate``);
2. advantages: rewards minus their group mean, over a standard deviation (``group_advantages``),
   and the filters of groups that carry no signal (``informative_groups``, ``PassRateFilter``);
3. the per-token objectives: GRPO's clipped ratio with the k3 KL estimate to a reference
   (``grpo_loss``), and the ScaleRL objective (``scalerl_loss``), with the three ways of
   aggregating per-token terms into one loss (``sample_average``, ``prompt_average``,
   ``token_average``);
4. RL with verifiable rewards on the course's small GPT: ``rollout`` (a group of completions per
   prompt, their tokens, the generator's log-probabilities and the verifier's rewards) and
   ``train_rlvr``, with a progress bar and a history of reward, held-out pass@1, KL to the
   reference, clipped or truncated fraction, tokens generated and wall time; ``pass_rates`` (each
   held-out problem's pass rate over several samples) and ``paired_difference`` (the gain of one
   model over another on the same problems, with its standard error).

Shapes: a batch holds G completions for each of P prompts, ``N = P G`` rows, grouped
contiguously (rows 0..G-1 answer prompt 0, ...). Per-token tensors are (N, T) with a 0/1
``mask`` of the completion tokens; rewards and advantages are (N,).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from gencore import lm, tasks
from gencore.device import autocast, compiled, configure_backend, pick, progress_bar

# ---------------------------------------------------------------------------------------------
# 1. The KL-regularised target and the score-function estimator
# ---------------------------------------------------------------------------------------------


def _check_beta(beta) -> None:
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not beta > 0:
        raise ValueError(f"beta must be a positive number, got {beta!r}")


def _check_probs(name: str, probs: torch.Tensor) -> None:
    if not isinstance(probs, torch.Tensor) or probs.dim() < 1:
        raise ValueError(f"{name} must be a tensor of probabilities along its last dimension, got {type(probs).__name__}")
    if (probs < 0).any():
        raise ValueError(f"{name} has negative entries")
    total = probs.sum(-1)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-5):
        raise ValueError(f"{name} must sum to 1 along its last dimension, got sums {total.flatten()[:4].tolist()}")


def kl_regularized_optimum(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """The maximiser of E_{y~pi}[r(y)] - beta KL(pi || pi_ref) over distributions on a finite set:

        pi*(y) = pi_ref(y) exp(r(y) / beta) / Z,   Z = sum_y pi_ref(y) exp(r(y) / beta)

    (e.g. Rafailov et al. 2023, Eq. 4). Computed as a softmax of log pi_ref + r / beta, which
    never overflows; outcomes with pi_ref = 0 keep probability 0. Works along the last dimension.
    """
    _check_probs("ref_probs", ref_probs)
    _check_beta(beta)
    if not isinstance(rewards, torch.Tensor) or rewards.shape != ref_probs.shape:
        raise ValueError(f"rewards must have the shape of ref_probs, {tuple(ref_probs.shape)}, got {tuple(getattr(rewards, 'shape', ()))}")
    return torch.softmax(torch.log(ref_probs) + rewards / beta, dim=-1)


def kl_regularized_objective(probs: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """E_pi[r] - beta KL(pi || pi_ref) along the last dimension (terms with pi = 0 contribute 0)."""
    _check_beta(beta)
    log_ratio = torch.where(probs > 0, torch.log(probs) - torch.log(ref_probs), torch.zeros_like(probs))
    return (probs * rewards).sum(-1) - beta * (probs * log_ratio).sum(-1)


def reinforce_surrogate(logprobs: torch.Tensor, rewards: torch.Tensor, baseline: torch.Tensor | float = 0.0) -> torch.Tensor:
    """A scalar whose gradient is the score-function estimate of grad E_{y~p_theta}[r(y)]:

        grad E[r(y)] = E[r(y) grad log p_theta(y)]  ~  (1/N) sum_i (r_i - b) grad log p_theta(y_i)

    (the log-derivative trick; Williams 1992). ``logprobs`` (N,) are log p_theta(y_i) of samples
    y_i ~ p_theta, differentiable in theta; the rewards (and a baseline b that does not depend on
    y_i) enter as constants. Not the reparameterization estimator of the VAE chapter: no gradient
    flows through the sample itself, so r needs no derivative (a verifier's 0/1 is fine).
    """
    if logprobs.shape != rewards.shape or logprobs.dim() != 1:
        raise ValueError(f"logprobs and rewards must both have shape (N,), got {tuple(logprobs.shape)} and {tuple(rewards.shape)}")
    return ((rewards - baseline).detach() * logprobs).mean()


# ---------------------------------------------------------------------------------------------
# 2. Advantages and group filters
# ---------------------------------------------------------------------------------------------


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if not isinstance(rewards, torch.Tensor) or rewards.dim() != 1:
        raise ValueError(f"rewards must have shape (N,), got {tuple(getattr(rewards, 'shape', ()))}")
    if rewards.numel() % group_size:
        raise ValueError(f"group_size {group_size} does not divide the batch of {rewards.numel()} rewards")
    return rewards.view(-1, group_size)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-6) -> torch.Tensor:
    """A_i = (r_i - mean of its group) / (std + eps), shape (N,).

    ``scale="group"``: the standard deviation of each group, as in GRPO (Shao et al. 2024);
    ``scale="batch"``: one standard deviation of the whole batch's rewards, as in ScaleRL
    (Khatri et al. 2025); ``scale="none"``: the centred rewards. Standard deviations are the
    population ones (divide by G). A group whose rewards are all equal gets advantages exactly 0
    (its numerator is 0), whatever the scale.

    The baseline is the mean of the whole group, the completion itself included. Leaving it out
    (RLOO's baseline, the mean of the other G - 1) gives r_i - mean_others = G / (G - 1) (r_i - mean).
    """
    groups = _groups(rewards, group_size).to(torch.get_default_dtype() if not rewards.is_floating_point() else rewards.dtype)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale == "group":
        std = groups.std(dim=1, unbiased=False, keepdim=True)
    elif scale == "batch":
        std = groups.flatten().std(unbiased=False)
    elif scale == "none":
        return centred.flatten()
    else:
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    return (centred / (std + eps)).flatten()


def informative_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """A (P,) bool mask of the groups whose rewards are not all equal.

    A group that all passes or all fails has zero advantages: it adds nothing to the gradient
    but still counts in the average over prompts, so ScaleRL drops it from the batch ("zero-variance
    filtering", Khatri et al. 2025).
    """
    groups = _groups(rewards, group_size)
    return (groups != groups[:, :1]).any(dim=1)


@dataclass
class PassRateFilter:
    """ScaleRL's "no positive resampling": a prompt whose pass rate (over the group of its last
    sampling) reaches ``threshold`` (0.9) is not sampled again in later epochs."""

    threshold: float = 0.9
    retired: set = field(default_factory=set)

    def update(self, prompt_ids, rewards: torch.Tensor, group_size: int) -> None:
        rates = _groups(rewards, group_size).double().mean(dim=1)
        for prompt_id, rate in zip(prompt_ids, rates.tolist()):
            if rate >= self.threshold:
                self.retired.add(prompt_id)

    def keep(self, prompt_ids) -> list:
        return [p for p in prompt_ids if p not in self.retired]


# ---------------------------------------------------------------------------------------------
# 3. Per-token objectives
# ---------------------------------------------------------------------------------------------


def _check_tokens(mask: torch.Tensor, advantages: torch.Tensor, **tensors: torch.Tensor) -> list[torch.Tensor]:
    """Check the shapes; return the per-token tensors with 0 outside the mask. A padding position
    can hold a log-probability of -inf, and -inf * 0 is NaN: masking by multiplication would
    poison the loss and its gradient."""
    if mask.dim() != 2:
        raise ValueError(f"mask must have shape (N, T), got {tuple(mask.shape)}")
    for name, value in tensors.items():
        if value.shape != mask.shape:
            raise ValueError(f"{name} must have the shape of mask, {tuple(mask.shape)}, got {tuple(value.shape)}")
    if advantages.shape != mask.shape[:1]:
        raise ValueError(f"advantages must have shape (N,) = ({mask.shape[0]},), got {tuple(advantages.shape)}")
    keep = mask.bool()
    return [torch.where(keep, value, torch.zeros((), dtype=value.dtype, device=value.device)) for value in tensors.values()]


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """The per-token "k3" estimate of KL(pi || pi_ref) on tokens sampled from pi (Schulman 2020):
    exp(d) - d - 1 with d = log pi_ref - log pi; unbiased, and never negative."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1


def sample_average(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each completion's mean over its tokens, then the mean over completions (GRPO, Shao et al.
    2024, Eq. 3): every completion weighs the same, so a token of a short one weighs more."""
    return ((per_token * mask).sum(1) / mask.sum(1).clamp_min(1)).mean()


def token_average(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sum over all completion tokens of the batch over their number: every token weighs the
    same ("token average", Khatri et al. 2025, Sec. 3.2)."""
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def prompt_average(per_token: torch.Tensor, mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """For each prompt, the sum over the tokens of its G completions over their number
    sum_g |y_g|; then the mean over prompts (ScaleRL's "prompt average", Khatri et al. 2025,
    Sec. 3.2 and the objective of Sec. 4). Every prompt weighs the same, and within a prompt
    every token weighs the same. Rows are grouped contiguously, G per prompt."""
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if mask.shape[0] % group_size:
        raise ValueError(f"group_size {group_size} does not divide the batch of {mask.shape[0]} completions")
    per_prompt = (per_token * mask).view(-1, group_size * mask.shape[1]).sum(1)  # (P,)
    tokens = mask.reshape(-1, group_size * mask.shape[1]).sum(1)  # (P,) sum_g |y_g|
    return (per_prompt / tokens.clamp_min(1)).mean()


def grpo_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor, advantages: torch.Tensor,
    mask: torch.Tensor, clip_eps: float = 0.2, kl_coef: float = 0.04,
) -> tuple[torch.Tensor, dict]:
    """The GRPO loss (Shao et al. 2024, Eq. 3), to minimise; returns ``(loss, stats)``.

    Per token, with rho = pi / pi_old and the clipping half-width delta = ``clip_eps``:
    -[min(rho A, clip(rho, 1 - delta, 1 + delta) A) - kl_coef k3], averaged over each completion's
    tokens, then over completions (``sample_average``). ``old_logprobs`` (the policy that
    generated) and ``ref_logprobs`` are constants. ``stats``: ``clip_fraction`` (tokens whose
    ratio was clipped) and ``kl`` (mean k3 per token).
    """
    logprobs, old_logprobs, ref_logprobs = _check_tokens(mask, advantages, logprobs=logprobs, old_logprobs=old_logprobs,
                                                         ref_logprobs=ref_logprobs)
    mask = mask.to(logprobs.dtype)
    ratio = torch.exp(logprobs - old_logprobs.detach())
    a = advantages.detach()[:, None]
    surrogate = torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    kl = k3_kl(logprobs, ref_logprobs.detach())
    per_token = -(surrogate - kl_coef * kl)
    with torch.no_grad():
        clipped = ((ratio - ratio.clamp(1 - clip_eps, 1 + clip_eps)).abs() > 0).to(mask.dtype)
        stats = {"clip_fraction": float(token_average(clipped, mask)), "kl": float(token_average(kl, mask))}
    return sample_average(per_token, mask), stats


def scalerl_loss(
    logprobs: torch.Tensor, gen_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    group_size: int, max_weight: float = 4.0,
) -> tuple[torch.Tensor, dict]:
    """The ScaleRL objective (Khatri et al. 2025, Sec. 4; the truncated importance-sampling loss of
    CISPO), to minimise; returns ``(loss, stats)``. For each prompt, with its G = ``group_size``
    completions in consecutive rows,

        loss_x = -(1 / sum_g |y_g|) sum_i sum_t sg(min(rho_it, w_max)) A_i log pi(y_it),

    and the loss is the mean of loss_x over the prompts (``prompt_average``). rho_it =
    pi(y_it) / pi_gen(y_it) is the trainer's over the generator's probability of the token and
    w_max = ``max_weight``. The weight is a constant (stop-gradient), so every token's gradient
    is A_i grad log pi, reweighted for the mismatch between the generator and the trainer and
    capped so that one token cannot dominate. ``stats``: ``truncated_fraction`` (tokens whose
    weight was capped) and ``mean_weight``, over all tokens of the batch.
    """
    logprobs, gen_logprobs = _check_tokens(mask, advantages, logprobs=logprobs, gen_logprobs=gen_logprobs)
    mask = mask.to(logprobs.dtype)
    rho = torch.exp(logprobs.detach() - gen_logprobs.detach())
    weight = rho.clamp_max(max_weight)
    loss = -prompt_average(weight * advantages.detach()[:, None] * logprobs, mask, group_size)
    with torch.no_grad():
        stats = {"truncated_fraction": float(token_average((rho > max_weight).to(mask.dtype), mask)),
                 "mean_weight": float(token_average(weight, mask))}
    return loss, stats


# ---------------------------------------------------------------------------------------------
# 4. RL with verifiable rewards on the small GPT
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def pass_rates(model, prompts: list[str], k: int = 8, temperature: float = 1.0, seed: int = 1234,
               verify: Callable = tasks.verify, max_new_tokens: int | None = None) -> torch.Tensor:
    """For each prompt, the fraction of ``k`` completions sampled at ``temperature`` that ``verify``
    accepts, shape (P,). Its mean estimates pass@1 with k samples per problem, which averages out
    most of the sampling noise of a single draw. The draws come from a generator seeded with
    ``seed``, so two models evaluated with the same seed see the same random numbers."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("need at least one prompt")
    was_training = model.training
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    repeated = [p for p in prompts for _ in range(k)]
    solved = []
    for i in range(0, len(repeated), 4000):  # bounded memory whatever P k
        chunk = repeated[i : i + 4000]
        completions = lm.generate(model, chunk, max_new_tokens, temperature, generator=g)
        solved += [float(verify(p, c)) for p, c in zip(chunk, completions)]
    model.train(was_training)
    return torch.tensor(solved).view(len(prompts), k).mean(dim=1)


def paired_difference(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """The mean over problems of ``after - before`` and its standard error, std / sqrt(P).

    Both are per-problem scores of the same P problems (``pass_rates``): the difference of each
    problem with itself removes the spread between easy and hard problems, which dominates the
    standard error of two independent accuracies."""
    if before.shape != after.shape or before.dim() != 1 or before.numel() < 2:
        raise ValueError(f"need two (P,) tensors of one shape with P >= 2, got {tuple(before.shape)} and {tuple(after.shape)}")
    d = (after - before).double()
    return float(d.mean()), float(d.std(unbiased=True) / d.numel() ** 0.5)


@dataclass
class RLConfig:
    task: str = "sum_steps"
    steps: int = 60  # rollout batches
    prompts_per_step: int = 16  # P
    group_size: int = 8  # G completions per prompt
    updates_per_rollout: int = 2  # optimiser steps on each batch: the later ones are off-policy
    # a sharply trained small model moves far for a small step (book/rl.md): Adam at 3e-5 on
    # gradients clipped to norm 1 raised held-out pass@1 in each of three seeds; 5e-5 and 1e-4
    # fitted the training sums and lowered it (bench/results.md)
    lr: float = 3e-5
    optimizer: str = "adam"  # or "sgd"
    temperature: float = 1.0  # of the generator
    objective: str = "scalerl"  # or "grpo"
    advantage_scale: str = "batch"  # "group" for GRPO's per-group standard deviation
    max_weight: float = 4.0  # ScaleRL's truncation w_max of the importance weight
    clip_eps: float = 0.2  # GRPO's clipping half-width delta: the ratio is clipped to [1 - delta, 1 + delta]
    kl_coef: float = 0.0  # GRPO's k3 penalty (ScaleRL uses none)
    filter_zero_variance: bool = True
    pass_rate_threshold: float = 0.9
    n_train_prompts: int = 2000
    eval_n: int = 300
    eval_every: int = 10

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> RLConfig:
        sizes = pick(
            smoke=dict(steps=3, prompts_per_step=4, group_size=4, n_train_prompts=50, eval_n=40, eval_every=3),
            small=dict(),
            full=dict(steps=300, prompts_per_step=64, group_size=16, n_train_prompts=20_000, eval_n=2000, eval_every=25),
            scale=scale,
        )
        return cls(**{**sizes, **overrides})


@dataclass
class Rollout:
    prompts: list[str]  # N = P G, each prompt repeated G times, grouped
    completions: list[str]
    idx: torch.Tensor  # (N, L) prompt + completion tokens, right-padded
    mask: torch.Tensor  # (N, L - 1) 1 where idx[:, 1:] is a completion token (the "." included)
    gen_logprobs: torch.Tensor  # (N, L - 1) log pi_gen of each target token, at generation time
    rewards: torch.Tensor  # (N,) the verifier's 0/1


def target_logprobs(model, idx: torch.Tensor) -> torch.Tensor:
    """log pi(idx[:, t + 1] | idx[:, :t + 1]) for every position, (N, L - 1), in one forward pass."""
    logits, _ = model(idx[:, :-1])
    return lm.token_logprobs(logits, idx[:, 1:])


def rollout(model, prompts: list[str], group_size: int, temperature: float = 1.0, verify: Callable = tasks.verify,
            max_new_tokens: int | None = None, generator: torch.Generator | None = None) -> Rollout:
    """G sampled completions for each prompt, with what the objectives need (see ``Rollout``)."""
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    repeated = [p for p in prompts for _ in range(group_size)]
    context = lm.context_length(model)
    ids = lm.check_prompts(repeated, context)
    room = context - max(len(p) for p in ids) if max_new_tokens is None else max_new_tokens
    lens = torch.tensor([len(p) for p in ids])
    device = next(model.parameters()).device
    idx = lm.pad_batch(ids, int(lens.max()) + room).to(device)
    lens = lens.to(device)
    idx = lm.sample_continuations(model, idx, lens, lens + room, temperature, generator=generator)
    completions = lm.completions_from(idx.cpu(), lens.tolist())
    targets = idx[:, 1:]
    position = torch.arange(targets.shape[1], device=device)[None] + 1  # the index in idx of each target
    mask = ((position >= lens[:, None]) & (targets != tasks.PAD_ID)).float()
    with torch.no_grad():
        gen_logprobs = torch.where(mask.bool(), target_logprobs(model, idx), 0.0)
    rewards = torch.tensor([float(verify(p, c)) for p, c in zip(repeated, completions)], device=device)
    return Rollout(repeated, completions, idx, mask, gen_logprobs, rewards)


def train_rlvr(
    model, config: RLConfig | None = None, *, reference=None, loss_fn: Callable | None = None,
    advantage_fn: Callable = group_advantages, seed: int = 0, progress: bool | None = None,
) -> dict[str, list[float]]:
    """RL with the verifier as reward: sample groups, score them, take ``updates_per_rollout`` steps.

    ``loss_fn(logprobs, gen_logprobs, ref_logprobs, advantages, mask)`` returns ``(loss, stats)``;
    by default the ScaleRL or GRPO loss of ``config.objective``. ``advantage_fn(rewards, G)``
    (default ``group_advantages`` with ``config.advantage_scale``). ``reference`` (default: a
    frozen copy of the starting model) is what the KL is measured against. Returns a history:
    ``step``, ``reward`` (mean over the batch's samples), ``kl`` (mean per-token k3 estimate of
    KL(pi || pi_ref) on the batch), ``clip_fraction``, ``tokens`` (generated so far, all samples),
    ``seconds``, ``kept_groups``, and every ``eval_every`` steps ``eval_step``, ``pass@1`` (the
    accuracy of one completion sampled at the generator's temperature, on ``eval_n`` held-out
    problems, with the same random draws at every evaluation) and ``greedy`` (greedy decoding).
    """
    import copy

    config = config or RLConfig.for_scale()
    if config.objective not in ("scalerl", "grpo"):
        raise ValueError(f"objective must be 'scalerl' or 'grpo', got {config.objective!r}")
    if reference is None:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    if loss_fn is None:
        if config.objective == "scalerl":
            def loss_fn(logprobs, gen, ref, adv, mask):
                return scalerl_loss(logprobs, gen, adv, mask, config.group_size, config.max_weight)
        else:
            def loss_fn(logprobs, gen, ref, adv, mask):
                return grpo_loss(logprobs, gen, ref, adv, mask, config.clip_eps, config.kl_coef)
    problems = tasks.make_problems(config.task, config.n_train_prompts, "train", seed)
    pool = list(dict.fromkeys(p for p, _ in problems))
    pass_filter = PassRateFilter(config.pass_rate_threshold)
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    elif config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {config.optimizer!r}")
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    # on a GPU the rollouts sample with a generator of the GPU: a CPU one would copy every
    # next-token distribution to the host (on the CPU this is the same generator as before)
    g_sample = torch.Generator(device=device).manual_seed(seed) if device.type == "cuda" else g
    configure_backend(device)
    net = compiled(model)  # the updates; rollouts and evaluation sample with the plain model
    history: dict[str, list[float]] = {k: [] for k in ("step", "reward", "kl", "clip_fraction", "tokens", "seconds",
                                                       "kept_groups", "eval_step", "pass@1", "greedy")}
    started, tokens = time.perf_counter(), 0

    def evaluate(step: int) -> None:
        model.eval()
        history["eval_step"].append(step)
        sampled = torch.Generator(device="cpu").manual_seed(1234)  # the same draws at every evaluation
        history["pass@1"].append(lm.evaluate(model, config.task, config.eval_n, temperature=config.temperature, generator=sampled))
        history["greedy"].append(lm.evaluate(model, config.task, config.eval_n))

    evaluate(0)
    bar = progress_bar(range(1, config.steps + 1), config.steps, f"RLVR ({config.objective})", progress)
    for step in bar:
        candidates = pass_filter.keep(pool)
        chosen = torch.randperm(len(candidates), generator=g)[: config.prompts_per_step].tolist()
        prompts = [candidates[i] for i in chosen]
        model.eval()
        with autocast(device):  # bf16 layers on a GPU, float32 logits and log-probabilities
            batch = rollout(model, prompts, config.group_size, config.temperature, generator=g_sample)
        tokens += int(batch.mask.sum())
        pass_filter.update(prompts, batch.rewards, config.group_size)
        keep = torch.ones(len(prompts), dtype=torch.bool, device=batch.rewards.device)
        if config.filter_zero_variance:
            keep = informative_groups(batch.rewards, config.group_size)
        advantages = advantage_fn(batch.rewards, config.group_size) if advantage_fn is not group_advantages \
            else group_advantages(batch.rewards, config.group_size, config.advantage_scale)
        rows = keep.repeat_interleave(config.group_size)
        with torch.no_grad(), autocast(device):
            ref_logprobs = target_logprobs(reference, batch.idx)
        stats = {"clip_fraction": 0.0}
        if bool(rows.any()):
            model.train()
            for _ in range(config.updates_per_rollout):
                with autocast(device):
                    logprobs = target_logprobs(net, batch.idx[rows])
                loss, stats = loss_fn(logprobs, batch.gen_logprobs[rows], ref_logprobs[rows], advantages[rows], batch.mask[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
        with torch.no_grad(), autocast(device):
            logprobs = target_logprobs(model, batch.idx)
            kl = float(torch.where(batch.mask.bool(), k3_kl(logprobs, ref_logprobs), 0.0).sum() / batch.mask.sum().clamp_min(1))
        history["step"].append(step)
        history["reward"].append(float(batch.rewards.mean()))
        history["kl"].append(kl)
        history["clip_fraction"].append(stats.get("clip_fraction", stats.get("truncated_fraction", 0.0)))
        history["tokens"].append(tokens)
        history["seconds"].append(time.perf_counter() - started)
        history["kept_groups"].append(int(keep.sum()))
        bar.set_postfix(reward=f"{history['reward'][-1]:.2f}", kl=f"{kl:.3f}")
        if config.eval_every and (step % config.eval_every == 0 or step == config.steps):
            evaluate(step)
    model.eval()
    return history
