"""Test-time compute: ways to spend more tokens on a prompt to get a better answer, top to bottom.

1. pure pieces: ``majority_vote`` over final answers and ``mh_log_acceptance``, the
   Metropolis-Hastings acceptance of power sampling;
2. methods on a model and a batch of prompts, each returning a ``Samples`` (one completion per
   prompt and the tokens generated for it): ``low_temperature_sampling``,
   ``majority_vote_sampling``, ``best_of_n`` (by log-likelihood or by a reward), ``beam_search``
   and ``power_sampling_mcmc`` (Algorithm 1 of Karan & Du 2025);
3. exact helpers on a tiny autoregressive model whose sequences can be enumerated
   (``TabularLM``): the power distribution p^alpha, the low-temperature distribution, and the
   total variation between distributions.

Every method counts the tokens it generates, discarded ones included, so that methods can be
compared at equal cost.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gencore import tasks
from gencore.lm import (
    _as_list,
    _device,
    check_prompts,
    completions_from,
    context_length,
    generate,
    pad_batch,
    sample_continuations,
    sequence_logprob,
)


@dataclass
class Samples:
    completions: list[str]  # the chosen completion for each prompt
    tokens: list[int]  # tokens generated for each prompt, discarded candidates and proposals included
    acceptance_rate: float | None = None  # power sampling only: accepted / proposed moves


def accuracy_and_cost(prompts: list[str], samples: Samples, verify: Callable = tasks.verify) -> tuple[float, float]:
    """The fraction of prompts whose chosen completion ``verify`` accepts, and the mean tokens generated."""
    prompts = _as_list(prompts, "prompts")
    if len(prompts) != len(samples.completions):
        raise ValueError(f"{len(prompts)} prompts but {len(samples.completions)} completions")
    correct = sum(bool(verify(p, c)) for p, c in zip(prompts, samples.completions))
    return correct / len(prompts), sum(samples.tokens) / len(prompts)


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _n_tokens(completion: str) -> int:
    return len(completion)


# ---------------------------------------------------------------------------------------------
# 1. Pure pieces
# ---------------------------------------------------------------------------------------------


def majority_vote(completions: list[str], extract: Callable = tasks.extract_answer) -> str:
    """The completion whose final answer is the most frequent among ``completions`` (plurality).

    Completions without an answer do not vote; ties go to the answer seen first. If no
    completion has an answer, the first completion is returned.
    """
    if not completions:
        raise ValueError("majority_vote needs at least one completion")
    answers = [extract(c) for c in completions]
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return completions[0]
    best = max(counts.values())
    winner = next(a for a in answers if a is not None and counts[a] == best)  # first of the tied
    return completions[answers.index(winner)]


def mh_log_acceptance(
    logp_proposal: torch.Tensor,
    logp_current: torch.Tensor,
    logq_proposal: torch.Tensor,
    logq_current: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """log A(x', x) = min{0, alpha [log p(x') - log p(x)] + log q(x | x') - log q(x' | x)}.

    The Metropolis-Hastings acceptance for the target pi = p^alpha (Eq. 9 of Karan & Du 2025).
    x' keeps x's prefix before the resampling position m and redraws the rest from the
    autoregressive proposal q, so q(x'|x) is the proposal's probability of x'_{m:} and
    q(x|x') that of x_{m:}: the arguments are sums over the resampled suffix only (the shared
    prefix cancels from both ratios). Shapes (B,) in, (B,) out.
    """
    _check_alpha(alpha)
    log_ratio = alpha * (logp_proposal - logp_current) + (logq_current - logq_proposal)
    return torch.clamp(log_ratio, max=0.0)


# ---------------------------------------------------------------------------------------------
# 2. Methods
# ---------------------------------------------------------------------------------------------


def _max_new(model: nn.Module, prompts: list[str], max_new_tokens: int | None) -> int:
    ids = check_prompts(prompts, context_length(model), 1 if max_new_tokens is None else max_new_tokens)
    return context_length(model) - max(len(p) for p in ids) if max_new_tokens is None else max_new_tokens


def sample_n(model, prompts, n: int, max_new_tokens=None, temperature: float = 1.0, top_k=None,
             generator=None, batch: int = 2048) -> list[list[str]]:
    """``n`` independent completions for each prompt (all in batches of at most ``batch`` rows)."""
    prompts = _as_list(prompts, "prompts")
    _check_positive_int("n", n)
    max_new_tokens = _max_new(model, prompts, max_new_tokens)
    flat = [p for p in prompts for _ in range(n)]
    out: list[str] = []
    for i in range(0, len(flat), batch):
        out += generate(model, flat[i : i + batch], max_new_tokens, temperature, top_k, generator)
    return [out[i * n : (i + 1) * n] for i in range(len(prompts))]


def low_temperature_sampling(model, prompts, alpha: float, max_new_tokens=None, generator=None,
                             probs_fn: Callable | None = None) -> Samples:
    """Sample each token from p(x_t | x_<t)^alpha, renormalised: temperature 1/alpha.

    This sharpens every next-token conditional separately; it is *not* a sample of p^alpha
    over whole sequences (see ``low_temperature_distribution`` against ``power_distribution``).
    ``probs_fn(logits, alpha) -> probs`` (B, V), if given, computes the sharpened conditional
    instead of the library's tempered softmax.
    """
    _check_alpha(alpha)
    prompts = _as_list(prompts, "prompts")
    tempered = None if probs_fn is None else (lambda logits: probs_fn(logits, alpha))
    completions = generate(model, prompts, _max_new(model, prompts, max_new_tokens), 1.0 / alpha, generator=generator,
                           probs_fn=tempered)
    return Samples(completions, [_n_tokens(c) for c in completions])


def greedy_decoding(model, prompts, max_new_tokens=None) -> Samples:
    """The most likely next token at every step (the alpha -> infinity limit of the above)."""
    prompts = _as_list(prompts, "prompts")
    completions = generate(model, prompts, _max_new(model, prompts, max_new_tokens), 0.0)
    return Samples(completions, [_n_tokens(c) for c in completions])


def majority_vote_sampling(model, prompts, n: int, temperature: float = 1.0, max_new_tokens=None,
                           generator=None, extract: Callable = tasks.extract_answer) -> Samples:
    """Draw ``n`` completions per prompt and keep one with the most frequent final answer."""
    candidates = sample_n(model, prompts, n, max_new_tokens, temperature, generator=generator)
    return Samples([majority_vote(c, extract) for c in candidates], [sum(map(_n_tokens, c)) for c in candidates])


def best_of_n(model, prompts, n: int, reward_fn: Callable | None = None, temperature: float = 1.0,
              max_new_tokens=None, generator=None) -> Samples:
    """Draw ``n`` completions per prompt and keep the best one.

    Best by ``reward_fn(prompt, completion)`` (a verifier or a reward model) when given, else by
    the model's own log-likelihood log p(completion | prompt) (``sequence_logprob``). Ties go to
    the candidate drawn first.
    """
    prompts = _as_list(prompts, "prompts")
    candidates = sample_n(model, prompts, n, max_new_tokens, temperature, generator=generator)
    chosen = []
    for prompt, cands in zip(prompts, candidates):
        if reward_fn is None:
            with torch.no_grad():
                scores = sequence_logprob(model, [prompt] * n, cands).tolist()
        else:
            scores = [float(reward_fn(prompt, c)) for c in cands]
        chosen.append(cands[max(range(n), key=lambda i: (scores[i], -i))])
    return Samples(chosen, [sum(map(_n_tokens, c)) for c in candidates])


@torch.no_grad()
def beam_search(model, prompts, beam_width: int, max_new_tokens=None) -> Samples:
    """Keep the ``beam_width`` partial completions of highest log p(y_<=t | prompt) at every step.

    A beam that emits ``.`` is finished; the search stops when ``beam_width`` beams have
    finished or no open beam can still beat the best finished one (log-probabilities only
    decrease as tokens are added). Returns the finished beam of highest log-probability (the
    best open one if none finished). Tokens counted: every token appended to a kept beam.
    """
    prompts = _as_list(prompts, "prompts")
    _check_positive_int("beam_width", beam_width)
    max_new_tokens = _max_new(model, prompts, max_new_tokens)
    device = _device(model)
    completions, tokens = [], []
    for prompt in prompts:
        beams, scores = [tasks.encode(prompt)], torch.zeros(1, device=device)
        finished: list[tuple[float, list[int]]] = []
        used = 0
        for _ in range(max_new_tokens):
            # 1. every open beam, extended by every token: scores (beams, V)
            logits, _ = model(pad_batch(beams).to(device))
            last = torch.tensor([len(b) - 1 for b in beams], device=device)
            logp = F.log_softmax(logits[torch.arange(len(beams)), last].float(), dim=-1)
            logp[:, tasks.PAD_ID] = float("-inf")
            cand = (scores[:, None] + logp).flatten()
            # 2. the best beam_width extensions
            top = torch.topk(cand, min(beam_width, int(torch.isfinite(cand).sum()))).indices
            new_beams, new_scores = [], []
            for j in top.tolist():
                b, v = divmod(j, logp.shape[1])
                used += 1
                if v == tasks.EOS_ID:
                    finished.append((cand[j].item(), beams[b] + [v]))
                else:
                    new_beams.append(beams[b] + [v])
                    new_scores.append(cand[j])
            # 3. stop when nothing open can beat the best finished beam
            best_done = max((s for s, _ in finished), default=float("-inf"))
            if len(finished) >= beam_width or not new_beams or max(new_scores).item() <= best_done:
                break
            beams, scores = new_beams, torch.stack(new_scores)
        if finished:
            best = max(finished, key=lambda f: f[0])[1]
        else:
            best = new_beams[0] if new_beams else beams[0]
        completions.append(tasks.decode(best[len(prompt):]))
        tokens.append(used)
    return Samples(completions, tokens)


def _position_logprobs(model, x: torch.Tensor, first: torch.Tensor, alpha: float):
    """Per-position log p(x_t | x_<t) and log q(x_t | x_<t), q the base model at temperature 1/alpha,
    both (B, W), zero outside the generated tokens (before ``first[b]`` or padding)."""
    logits, _ = model(x[:, :-1])  # (B, W-1, V): predicts positions 1..W-1
    target = x[:, 1:].unsqueeze(-1)
    logp = F.log_softmax(logits.float(), -1).gather(-1, target).squeeze(-1)
    logq = F.log_softmax(alpha * logits.float(), -1).gather(-1, target).squeeze(-1)
    t = torch.arange(1, x.shape[1], device=x.device)
    keep = (t[None] >= first[:, None]) & (x[:, 1:] != tasks.PAD_ID)
    zero = torch.zeros(x.shape[0], 1, device=x.device)
    logp, logq = torch.where(keep, logp, 0.0), torch.where(keep, logq, 0.0)  # where, not *: -inf * 0 is nan
    return torch.cat([zero, logp], 1), torch.cat([zero, logq], 1)


@torch.no_grad()
def power_sampling_mcmc(
    model,
    prompts,
    alpha: float,
    block_size: int,
    n_mcmc: int,
    max_new_tokens: int | None = None,
    generator: torch.Generator | None = None,
    acceptance_fn: Callable = mh_log_acceptance,
) -> Samples:
    """Approximate samples of p^alpha over completions (Algorithm 1 of Karan & Du 2025).

    Stage k = 0 .. ceil(T/B)-1 targets pi_k(x_{1:h}) proportional to p(x_{1:h})^alpha with
    h = min((k+1)B, T) new tokens:
      1. extend the current completion to h tokens with the proposal q = base model at
         temperature 1/alpha;
      2. ``n_mcmc`` times: draw m uniformly from {1, ..., h}, redraw tokens m..h from q (x'),
         accept x' with probability A(x', x) = ``acceptance_fn`` (``mh_log_acceptance``), else
         keep x.
    After ``.`` a completion is padding with probability 1, so completions of any length live in
    one space of length T; a move whose position m falls after the ``.`` proposes x itself and
    is not counted as a proposal. ``tokens`` counts every token drawn, rejected proposals
    included; ``acceptance_rate`` is accepted / proposed moves over the whole batch (nan if none).
    One chain per prompt, all prompts in one batch (repeat a prompt to run several chains).
    """
    _check_alpha(alpha)
    _check_positive_int("block_size", block_size)
    if not isinstance(n_mcmc, int) or isinstance(n_mcmc, bool) or n_mcmc < 0:
        raise ValueError(f"n_mcmc must be a non-negative int, got {n_mcmc!r}")
    prompts = _as_list(prompts, "prompts")
    T = _max_new(model, prompts, max_new_tokens)
    device = _device(model)
    ids = check_prompts(prompts, context_length(model), T)
    P = torch.tensor([len(p) for p in ids], device=device)  # (B,) prompt lengths
    x = pad_batch(ids, int(P.max()) + T).to(device)  # (B, W)
    B = len(prompts)
    tokens = torch.zeros(B, dtype=torch.long, device=device)
    proposed = accepted = 0
    col = torch.arange(x.shape[1], device=device)
    rng_device = generator.device if generator is not None else device

    def drawn(new: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
        inside = (col[None] >= start[:, None]) & (col[None] < end[:, None])
        return ((new != tasks.PAD_ID) & inside).sum(1)  # (B,) tokens sampled in [start, end)

    for k in range(math.ceil(T / block_size)):
        h = min((k + 1) * block_size, T)
        end = P + h
        # 1. initialise the new block from the proposal
        x = sample_continuations(model, x, P + k * block_size, end, 1.0 / alpha, generator=generator)
        tokens += drawn(x, P + k * block_size, end)
        logp, logq = _position_logprobs(model, x, P, alpha)
        for _ in range(n_mcmc):
            # 2. a uniformly random position m in {1..h}; redraw the suffix from q
            m = P + torch.randint(0, h, (B,), generator=generator, device=rng_device).to(device)  # first resampled col
            x_new = sample_continuations(model, x, m, end, 1.0 / alpha, generator=generator)
            tokens += drawn(x_new, m, end)
            logp_new, logq_new = _position_logprobs(model, x_new, P, alpha)
            suffix = (col[None] >= m[:, None]).float()  # the shared prefix cancels in both ratios
            log_a = acceptance_fn((logp_new * suffix).sum(1), (logp * suffix).sum(1),
                                  (logq_new * suffix).sum(1), (logq * suffix).sum(1), alpha)
            # 3. accept or reject (u <= A); after '.', x' = x and nothing was proposed
            u = torch.rand(B, generator=generator, device=rng_device).to(device)
            accept = torch.log(u) <= log_a
            real = (x[torch.arange(B), m - 1] != tasks.EOS_ID) & (x[torch.arange(B), m - 1] != tasks.PAD_ID)
            proposed += int(real.sum())
            accepted += int((accept & real).sum())
            x = torch.where(accept[:, None], x_new, x)
            logp = torch.where(accept[:, None], logp_new, logp)
            logq = torch.where(accept[:, None], logq_new, logq)
    completions = completions_from(x.cpu(), P.tolist())
    rate = accepted / proposed if proposed else float("nan")
    return Samples(completions, tokens.tolist(), rate)


# ---------------------------------------------------------------------------------------------
# 3. Exact distributions on a tiny enumerable model
# ---------------------------------------------------------------------------------------------


class TabularLM(nn.Module):
    """An autoregressive model over the characters of ``support`` given by a table of conditionals.

    ``probs[s]`` is p(next | prefix) for the prefix of code s (the support characters written
    since the last character outside ``support``; the prompt ends with one such character).
    Every completion of ``length`` tokens can be enumerated, so p, p^alpha and the
    low-temperature distribution are exact. It has the interface of ``gencore.lm.GPT``
    (``forward(idx) -> logits, None`` over the full vocabulary, ``config.block_size``), so the
    samplers above run on it unchanged. Characters outside ``support`` get probability 0.
    """

    def __init__(self, support: str, length: int, probs: torch.Tensor, block_size: int = 16):
        super().__init__()
        tasks.encode(support)
        if tasks.EOS in support or len(set(support)) != len(support) or not support:
            raise ValueError(f"support must be distinct characters other than {tasks.EOS!r}, got {support!r}")
        _check_positive_int("length", length)
        V = len(support)
        rows = (V + 1) ** length
        if probs.shape != (rows, V) or not torch.allclose(probs.sum(-1), torch.ones(rows, dtype=probs.dtype)):
            raise ValueError(f"probs must be ({rows}, {V}) with rows summing to 1, got {tuple(probs.shape)}")
        self.support, self.length = support, length
        self.config = type("TabularConfig", (), {"block_size": block_size})()
        self.register_buffer("ids", torch.tensor(tasks.encode(support)))
        self.register_buffer("probs", probs.double())

    @staticmethod
    def prefix_code(prefix: str, support: str) -> int:
        """The table row of a prefix of support characters: digits v+1 in base |support|+1."""
        code = 0
        for c in prefix:
            code = code * (len(support) + 1) + support.index(c) + 1
        return code

    @classmethod
    def from_function(cls, support: str, length: int, conditional: Callable, block_size: int = 16) -> TabularLM:
        """A table built from ``conditional(prefix) -> list of probabilities over support``."""
        V = len(support)
        probs = torch.full(((V + 1) ** length, V), 1.0 / V, dtype=torch.double)
        for n in range(length):
            for prefix in itertools.product(support, repeat=n):
                probs[cls.prefix_code("".join(prefix), support)] = torch.tensor(conditional("".join(prefix)),
                                                                               dtype=torch.double)
        return cls(support, length, probs, block_size)

    @classmethod
    def random(cls, support: str = "01", length: int = 4, seed: int = 0, scale: float = 1.5) -> TabularLM:
        """Conditionals softmax(scale * N(0, I)) per prefix, seeded."""
        g = torch.Generator().manual_seed(seed)
        V = len(support)
        logits = scale * torch.randn((V + 1) ** length, V, generator=g, dtype=torch.double)
        return cls(support, length, logits.softmax(-1))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the context ({self.config.block_size})")
        V, rows = len(self.support), self.probs.shape[0]
        in_support = (idx[..., None] == self.ids).any(-1)  # (B, T)
        digit = (idx[..., None] == self.ids).float().argmax(-1) + 1  # (B, T): v+1 for support tokens
        code = torch.zeros(B, dtype=torch.long, device=idx.device)
        codes = []
        for t in range(T):
            code = torch.where(in_support[:, t], code * (V + 1) + digit[:, t], torch.zeros_like(code))
            code = torch.where(code < rows, code, torch.zeros_like(code))  # beyond the horizon: unused
            codes.append(code)
        logp = self.probs[torch.stack(codes, 1)].log().float()  # (B, T, V)
        logits = torch.full((B, T, tasks.VOCAB_SIZE), float("-inf"), device=idx.device)
        logits[..., self.ids] = logp
        return logits, None


def enumerate_completions(support: str, length: int) -> list[str]:
    """All strings of ``length`` characters of ``support``, in lexicographic order of ``support``."""
    return ["".join(c) for c in itertools.product(support, repeat=length)]


@torch.no_grad()
def power_distribution(model, prompt: str, completions: list[str], alpha: float) -> torch.Tensor:
    """p^alpha(y) = p(y | prompt)^alpha / sum_y' p(y' | prompt)^alpha over the listed completions."""
    _check_alpha(alpha)
    logp = sequence_logprob(model, [prompt] * len(completions), completions).double()
    return torch.softmax(alpha * logp, 0)


@torch.no_grad()
def low_temperature_distribution(model, prompt: str, completions: list[str], alpha: float) -> torch.Tensor:
    """The law of low-temperature sampling: prod_t p(y_t | prompt, y_<t)^alpha / Z_t(prompt, y_<t).

    Each factor is normalised over the next token alone, so the futures of a token are summed
    *before* raising to alpha; p^alpha raises each whole sequence, then sums.
    """
    _check_alpha(alpha)
    prompts = [prompt] * len(completions)
    ids = [tasks.encode(p + c) for p, c in zip(prompts, completions)]
    x = pad_batch(ids).to(_device(model))
    first = torch.full((len(ids),), len(prompt), device=x.device)
    _, logq = _position_logprobs(model, x, first, alpha)
    return torch.softmax(logq.double().sum(1), 0)  # already normalised; softmax guards round-off


def empirical_distribution(samples: list[str], completions: list[str]) -> torch.Tensor:
    """The frequency of each of ``completions`` among ``samples`` (ValueError on a sample outside them)."""
    index = {c: i for i, c in enumerate(completions)}
    counts = torch.zeros(len(completions), dtype=torch.double)
    for s in samples:
        if s not in index:
            raise ValueError(f"sample {s!r} is not one of the enumerated completions")
        counts[index[s]] += 1
    return counts / max(1, len(samples))


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """TV(p, q) = 1/2 sum_i |p_i - q_i|, in [0, 1]."""
    if p.shape != q.shape:
        raise ValueError(f"p and q must have one shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return 0.5 * (p.double() - q.double()).abs().sum().item()
