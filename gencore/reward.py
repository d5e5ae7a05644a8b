"""Learned reward models for test-time compute on the course GPT, top to bottom.

1. samples: ``LabelledSamples``, K completions per prompt drawn once from the base model and
   labelled by the verifier (``sample_and_label``), split by prompt (``split``);
2. the reward model: ``RewardModel``, a copy of the base GPT's trunk (embeddings, blocks, final
   norm) read out in one of two ways: a scalar head at the last token of prompt + completion
   (the verifiers of Cobbe et al. 2021 are language models of the generator's size with a scalar
   head), or through the language model's own output layer, a rescaled log-likelihood of the
   completion under the copy; its top blocks and the readout are fine-tuned, the lower blocks
   stay frozen; ``score`` scores many completions;
3. two ways to train it on the same samples: an outcome reward model (ORM), a logistic
   regression of the verifier's label, ``orm_loss``; and a Bradley-Terry model on (correct,
   wrong) pairs of the same prompt, ``same_prompt_pairs`` and ``gencore.preference.
   bradley_terry_loss``; ``train_reward_model`` runs either;
4. evaluation: ``reliability_bins`` (calibration), ``within_prompt_accuracy`` (how often a
   correct completion outscores a wrong one of the same prompt);
5. selection among N candidates: ``best_of_n_index`` (argmax, ties to the first candidate),
   ``weighted_majority_vote``; the KL of best-of-N (``best_of_n_kl`` and, with ties,
   ``best_of_n_pmf``); accuracy against N with standard errors (``accuracy_curve``).

Shapes: P prompts, K (or N) completions per prompt, B rows of a batch, T positions, C channels.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gencore import lm, sampling, tasks
from gencore.device import StepLog, float32_region, pick, progress_bar
from gencore.nn import at_least_float32
from gencore.preference import bradley_terry_loss

# ---------------------------------------------------------------------------------------------
# 1. Samples labelled by the verifier
# ---------------------------------------------------------------------------------------------


@dataclass
class LabelledSamples:
    """K completions of each of P prompts, with the verifier's verdict on each."""

    prompts: list[str]  # (P,)
    completions: list[list[str]]  # P lists of K strings, in the order they were drawn
    correct: torch.Tensor  # (P, K) bool: tasks.verify(prompt, completion)

    def __post_init__(self):
        P = len(self.prompts)
        K = len(self.completions[0]) if self.completions else 0
        if len(self.completions) != P or any(len(c) != K for c in self.completions) or K == 0:
            raise ValueError(f"need K >= 1 completions for each of the {P} prompts")
        if not isinstance(self.correct, torch.Tensor) or self.correct.shape != (P, K):
            raise ValueError(f"correct must be a tensor of shape ({P}, {K}), got "
                             f"{getattr(self.correct, 'shape', type(self.correct).__name__)}")

    def flat(self) -> tuple[list[str], list[str], torch.Tensor]:
        """Every (prompt, completion, label) as P * K rows, prompt-major."""
        prompts = [p for p in self.prompts for _ in range(self.correct.shape[1])]
        completions = [c for group in self.completions for c in group]
        return prompts, completions, self.correct.flatten().float()

    def subset(self, rows) -> LabelledSamples:
        """The prompts ``rows`` with all their completions."""
        rows = list(rows)
        return LabelledSamples([self.prompts[i] for i in rows], [self.completions[i] for i in rows], self.correct[rows])

    def tokens(self) -> torch.Tensor:
        """(P, K) the number of tokens generated for each completion."""
        return torch.tensor([[len(c) for c in group] for group in self.completions])


def sample_and_label(model, prompts: list[str], k: int, temperature: float = 1.0, task: str = "sum_steps",
                     generator: torch.Generator | None = None) -> LabelledSamples:
    """Draw ``k`` completions per prompt from ``model`` once and label each with ``tasks.verify``."""
    completions = sampling.sample_n(model, prompts, k, tasks.max_completion_length(task), temperature,
                                    generator=generator)
    correct = torch.tensor([[tasks.verify(p, c) for c in group] for p, group in zip(prompts, completions)])
    return LabelledSamples(list(prompts), completions, correct)


def split(samples: LabelledSamples, held_out: float, seed: int = 0) -> tuple[LabelledSamples, LabelledSamples]:
    """(train, held-out) by prompt: all completions of a prompt fall on one side."""
    if not 0 < held_out < 1:
        raise ValueError(f"held_out must be a fraction in (0, 1), got {held_out!r}")
    order = torch.randperm(len(samples.prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    n_out = max(1, round(held_out * len(order)))
    return samples.subset(sorted(order[n_out:])), samples.subset(sorted(order[:n_out]))


# ---------------------------------------------------------------------------------------------
# 2. The reward model: the GPT's trunk and a scalar head
# ---------------------------------------------------------------------------------------------


class RewardModel(nn.Module):
    """r(x, y): a copy of the base GPT's trunk and one of two readouts of it.

    ``readout="head"``: a linear head on the vector at the last token of prompt + completion
    (causal attention lets that position see the prompt and the whole completion), started at
    zero, the verifier of Cobbe et al. (2021) in form.

    ``readout="likelihood"``: the score is read through the language model's own output layer,
    r(x, y) = a * sum_t log p_phi(y_t | x, y_<t) + b, the log-likelihood of the completion under
    the copy, rescaled. At the start (phi the language model, a = 1, b = 0) it is the generator's
    log-likelihood; training on the verifier's labels moves the copy's next-token probabilities,
    the scale and the offset.

    The trunk is a copy of the language model's. Its last ``trainable_blocks`` blocks, the final
    norm and the readout are trained; the embeddings and the blocks below stay as the language
    model left them, so their output (``frozen_features``) is computed once per sample and a
    training step runs only the trained blocks. The language model is untouched.
    """

    def __init__(self, base: lm.GPT, trainable_blocks: int = 1, readout: str = "head"):
        super().__init__()
        n_layer = len(base.blocks)
        if not isinstance(trainable_blocks, int) or not 0 <= trainable_blocks <= n_layer:
            raise ValueError(f"trainable_blocks must be an int in 0..{n_layer}, got {trainable_blocks!r}")
        if readout not in ("head", "likelihood"):
            raise ValueError(f"readout must be 'head' or 'likelihood', got {readout!r}")
        self.config, self.readout = base.config, readout
        self.tok_emb, self.pos_emb = copy.deepcopy(base.tok_emb), copy.deepcopy(base.pos_emb)
        self.frozen = copy.deepcopy(base.blocks[: n_layer - trainable_blocks])
        self.trained = copy.deepcopy(base.blocks[n_layer - trainable_blocks:])
        self.ln_f = copy.deepcopy(base.ln_f)
        if readout == "head":
            self.head = nn.Linear(base.config.n_embd, 1)
            nn.init.zeros_(self.head.weight)  # every completion starts with the same score
            nn.init.zeros_(self.head.bias)
        else:
            self.lm_head = copy.deepcopy(base.head)  # (V, C): next-token logits
            self.register_buffer("pad_mask", base.pad_mask.clone(), persistent=False)
            self.scale = nn.Parameter(torch.tensor(1.0))  # a
            self.offset = nn.Parameter(torch.tensor(0.0))  # b
        for module in (self.tok_emb, self.pos_emb, self.frozen):
            module.requires_grad_(False)

    @torch.no_grad()
    def frozen_features(self, idx: torch.Tensor) -> torch.Tensor:
        """The residual stream (B, T, C) after the frozen blocks, for token ids ``idx`` (B, T)."""
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))  # (B, T, C)
        for block in self.frozen:
            x = block(x)
        return x

    def score_features(self, x: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor,
                       starts: torch.Tensor) -> torch.Tensor:
        """Scores (B,) from ``frozen_features`` ``x`` (B, T, C) of token ids ``idx`` (B, T), rows
        holding ``lengths`` (B,) tokens of which the first ``starts`` (B,) are the prompt's."""
        B, T, _ = x.shape
        if idx.shape != (B, T):
            raise ValueError(f"idx must be (B, T) = ({B}, {T}) like the features, got {tuple(idx.shape)}")
        if lengths.shape != (B,) or int(lengths.min()) < 1 or int(lengths.max()) > T:
            raise ValueError(f"lengths must be (B,) = ({B},) with values in 1..{T}, got {tuple(lengths.shape)}")
        if starts.shape != (B,) or int(starts.min()) < 1 or bool((starts >= lengths).any()):
            raise ValueError("starts must be (B,): each prompt's length, at least 1 and less than the row's")
        for block in self.trained:
            x = block(x)
        h = self.ln_f(x)  # (B, T, C)
        if self.readout == "head":
            return self.head(h[torch.arange(B, device=x.device), lengths - 1]).squeeze(-1)  # the last token
        with float32_region(x.device):  # log-probabilities in float32, as in the language model
            logits = self.lm_head(at_least_float32(h[:, :-1])).masked_fill(self.pad_mask, -1e4)  # (B, T-1, V)
        logp = lm.token_logprobs(logits, idx[:, 1:])  # (B, T-1): position j predicts token j + 1
        j = torch.arange(1, T, device=x.device)  # the token each position predicts
        completion = (j[None] >= starts[:, None]) & (j[None] < lengths[:, None])  # (B, T-1)
        return self.scale * torch.where(completion, logp, 0.0).sum(1) + self.offset  # (B,)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        """Scores (B,) of right-padded token ids ``idx`` (B, T) whose rows hold ``lengths`` (B,)
        tokens, the prompt's ``starts`` (B,) first."""
        return self.score_features(self.frozen_features(idx), idx, lengths, starts)


def encode_pairs(prompts: list[str], completions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids (B, T) of prompt + completion, right-padded, each row's length (B,) and its
    prompt's length (B,), where the completion starts."""
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(f"need as many completions as prompts (at least one), got {len(prompts)} and {len(completions)}")
    if any(not p or not c for p, c in zip(prompts, completions)):
        raise ValueError("every prompt and every completion needs at least one character")
    seqs = [tasks.encode(p + c) for p, c in zip(prompts, completions)]
    return lm.pad_batch(seqs), torch.tensor([len(s) for s in seqs]), torch.tensor([len(p) for p in prompts])


def _batches(lengths: torch.Tensor, batch: int):
    """(rows, width) for consecutive slices of ``batch`` rows, each cut to its longest row."""
    for i in range(0, len(lengths), batch):
        rows = slice(i, i + batch)
        yield rows, int(lengths[rows].max())


@torch.no_grad()
def score(reward_model: RewardModel, prompts: list[str], completions: list[str], batch: int = 4096) -> torch.Tensor:
    """r(x, y) for every (prompt, completion) pair, (B,) float."""
    device = lm._device(reward_model)
    idx, lengths, starts = (t.to(device) for t in encode_pairs(prompts, completions))
    reward_model.eval()
    out = [reward_model(idx[rows, :width], lengths[rows], starts[rows]) for rows, width in _batches(lengths, batch)]
    return torch.cat(out).float().cpu()


# ---------------------------------------------------------------------------------------------
# 3. Training: an outcome reward model or a Bradley-Terry model on the same samples
# ---------------------------------------------------------------------------------------------


def orm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per completion (B,): -[c log sigmoid(r) + (1 - c) log sigmoid(-r)], c the verifier's 0/1 label.

    The ORM reads sigmoid(r(x, y)) as the probability that y is correct (Cobbe et al. 2021).
    """
    if logits.shape != labels.shape or logits.dim() != 1:
        raise ValueError(f"logits and labels must share one shape (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")


def same_prompt_pairs(correct: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (correct, wrong) pair of completions of one prompt, as flat row indices into a (P, K) grid.

    Returns ``chosen`` and ``rejected`` (M,), prompt by prompt; prompts whose K completions are
    all right or all wrong give none.
    """
    if not isinstance(correct, torch.Tensor) or correct.dim() != 2:
        raise ValueError(f"correct must be a (P, K) tensor, got {getattr(correct, 'shape', type(correct).__name__)}")
    K = correct.shape[1]
    c = correct.bool()
    both = c[:, :, None] & ~c[:, None, :]  # (P, K, K): [p, i, j] = i right and j wrong
    p, i, j = both.nonzero(as_tuple=True)
    return p * K + i, p * K + j


@dataclass
class RewardConfig:
    steps: int = 500  # optimiser steps
    batch_size: int = 128  # rows per step: completions (ORM) or batch_size // 2 pairs (Bradley-Terry)
    lr: float = 3e-4  # AdamW, constant
    weight_decay: float = 0.0

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> RewardConfig:
        sizes = pick(smoke=dict(steps=5, batch_size=32), small=dict(), full=dict(steps=3000, batch_size=256),
                     scale=scale)
        return cls(**{**sizes, **overrides})


def train_reward_model(reward_model: RewardModel, samples: LabelledSamples, objective: str = "orm",
                       config: RewardConfig | None = None, seed: int = 0, progress: bool | None = None) -> dict:
    """AdamW on minibatches of ``samples``: ``objective="orm"`` fits the labels (``orm_loss``),
    ``"bt"`` the same-prompt pairs (``bradley_terry_loss`` of r(x, y_w) - r(x, y_l)). History: ``loss``."""
    config = config or RewardConfig.for_scale()
    if objective not in ("orm", "bt"):
        raise ValueError(f"objective must be 'orm' or 'bt', got {objective!r}")
    prompts, completions, labels = samples.flat()
    device = lm._device(reward_model)
    idx, lengths, starts = (t.to(device) for t in encode_pairs(prompts, completions))
    features = reward_model.frozen_features(idx)  # (B, T, C), once: the frozen part never changes
    labels = labels.to(device)
    chosen, rejected = (t.to(device) for t in same_prompt_pairs(samples.correct))
    n_rows = len(labels) if objective == "orm" else len(chosen)
    if n_rows == 0:
        raise ValueError("no same-prompt (correct, wrong) pairs to train a Bradley-Terry model on")
    if reward_model.readout == "likelihood":
        fit_readout(reward_model, features, idx, lengths, starts, labels, objective, chosen, rejected)
    g = torch.Generator().manual_seed(seed)
    trained = [p for p in reward_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"loss": []}
    log = StepLog(history)
    n_batch = config.batch_size if objective == "orm" else max(1, config.batch_size // 2)
    reward_model.train()
    for _ in progress_bar(range(config.steps), config.steps, f"reward model ({objective})", progress):
        # 1. a minibatch: completions (ORM) or pairs, whose two rows go through the model together
        batch = torch.randint(n_rows, (n_batch,), generator=g).to(device)
        rows = batch if objective == "orm" else torch.cat([chosen[batch], rejected[batch]])
        width = int(lengths[rows].max())
        r = reward_model.score_features(features[rows, :width], idx[rows, :width], lengths[rows], starts[rows])
        # 2. the objective's loss
        if objective == "orm":
            loss = orm_loss(r, labels[rows]).mean()
        else:
            loss = bradley_terry_loss(r[:len(batch)], r[len(batch):]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.append(loss=loss)
    log.flush()
    reward_model.eval()
    return history


def fit_readout(reward_model: RewardModel, features: torch.Tensor, idx: torch.Tensor, lengths: torch.Tensor,
                starts: torch.Tensor, labels: torch.Tensor, objective: str, chosen: torch.Tensor,
                rejected: torch.Tensor, batch: int = 4096) -> None:
    """Set the likelihood readout's scale a and offset b to the best fit with the trunk fixed.

    With the copy as it is, r = a * log p_phi(y | x) + b is a logistic regression on one feature,
    so a and b are fitted exactly (L-BFGS on two parameters) before the fine-tuning starts, which
    therefore starts calibrated: the ORM's labels fit a and b, the Bradley-Terry pairs fit a (b
    cancels in a difference, and stays).
    """
    with torch.no_grad():
        scale, offset = reward_model.scale.detach().clone(), reward_model.offset.detach().clone()
        reward_model.scale.fill_(1.0)
        reward_model.offset.fill_(0.0)
        logp = torch.cat([reward_model.score_features(features[rows, :width], idx[rows, :width], lengths[rows],
                                                      starts[rows])
                          for rows, width in _batches(lengths, batch)]).double()  # (B,) log p_phi(y | x)
    a = torch.tensor(float(scale), dtype=torch.float64, requires_grad=True)
    b = torch.tensor(float(offset), dtype=torch.float64, requires_grad=True)
    params = [a, b] if objective == "orm" else [a]
    solver = torch.optim.LBFGS(params, lr=1.0, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        solver.zero_grad()
        if objective == "orm":
            loss = orm_loss(a * logp + b, labels.double()).mean()
        else:
            loss = bradley_terry_loss(a * logp[chosen], a * logp[rejected]).mean()
        loss.backward()
        return loss

    solver.step(closure)
    with torch.no_grad():
        reward_model.scale.fill_(float(a))
        reward_model.offset.fill_(float(b))


# ---------------------------------------------------------------------------------------------
# 4. Evaluation
# ---------------------------------------------------------------------------------------------


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10) -> dict[str, torch.Tensor]:
    """Calibration data: predicted probabilities cut into ``n_bins`` equal-width bins of [0, 1].

    Bin b holds the p with b/n <= p < (b+1)/n (p = 1 in the last bin). Returns per bin ``count``,
    ``confidence`` (mean p) and ``accuracy`` (mean label), nan where a bin is empty, and ``ece``,
    the expected calibration error sum_b (count_b / n) |accuracy_b - confidence_b|.
    """
    if probs.dim() != 1 or probs.shape != labels.shape or len(probs) == 0:
        raise ValueError(f"probs and labels must share one non-empty shape (B,), got {tuple(probs.shape)} and "
                         f"{tuple(labels.shape)}")
    if bool(((probs < 0) | (probs > 1) | probs.isnan()).any()):
        raise ValueError("probs must lie in [0, 1] (apply a sigmoid to the reward model's logits)")
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive int, got {n_bins!r}")
    probs, labels = probs.double(), labels.double()
    bin_of = (probs * n_bins).long().clamp(max=n_bins - 1)  # (B,)
    count = torch.bincount(bin_of, minlength=n_bins).double()
    confidence = torch.bincount(bin_of, probs, minlength=n_bins) / count
    accuracy = torch.bincount(bin_of, labels, minlength=n_bins) / count
    ece = (count / len(probs) * (accuracy - confidence).abs()).nansum()
    return {"count": count, "confidence": confidence, "accuracy": accuracy, "ece": ece}


def within_prompt_accuracy(scores: torch.Tensor, correct: torch.Tensor) -> float:
    """The fraction of same-prompt (correct, wrong) pairs that ``scores`` (P, K) rank right (ties: 1/2).

    This is what best-of-N needs; an accuracy over all completions also rewards knowing which
    prompts are hard.
    """
    if scores.shape != correct.shape or scores.dim() != 2:
        raise ValueError(f"scores and correct must share one shape (P, K), got {tuple(scores.shape)} and {tuple(correct.shape)}")
    chosen, rejected = same_prompt_pairs(correct)
    if len(chosen) == 0:
        raise ValueError("no prompt has both a correct and a wrong completion")
    s = scores.flatten().double()
    return float(((s[chosen] > s[rejected]).double() + 0.5 * (s[chosen] == s[rejected]).double()).mean())


# ---------------------------------------------------------------------------------------------
# 5. Selecting one of N candidates
# ---------------------------------------------------------------------------------------------


def best_of_n_index(scores: torch.Tensor) -> torch.Tensor:
    """For scores (P, N) of N candidates per prompt, the index (P,) of the best candidate of each row.

    Ties go to the candidate drawn first (the lowest index). The candidates are exchangeable
    draws, so this favours no answer, and the choice is deterministic: a verifier scores 0 or 1,
    and a reward model scores a repeated completion the same, so ties are common. Scores are
    compared within a row only: a prompt's scores say nothing about another prompt's candidates.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must be a (P, N) tensor with N >= 1, got {getattr(scores, 'shape', type(scores).__name__)}")
    if bool(scores.isnan().any()):
        raise ValueError("scores contain nan: a nan cannot be ranked")
    return scores.argmax(dim=1)  # torch.argmax returns the first maximal index


def best_of_n(scores: torch.Tensor, completions: list[list[str]]) -> list[str]:
    """The completion of each prompt with the highest score, ties to the first (``best_of_n_index``)."""
    if len(completions) != scores.shape[0] or any(len(c) != scores.shape[1] for c in completions):
        raise ValueError(f"need {scores.shape[0]} lists of {scores.shape[1]} completions for scores {tuple(scores.shape)}")
    return [group[i] for group, i in zip(completions, best_of_n_index(scores).tolist())]


def weighted_majority_vote(completions: list[str], weights: list[float],
                           extract: Callable = tasks.extract_answer) -> str:
    """The first completion whose final answer has the largest total weight.

    Verifier-weighted voting (Uesato et al. 2022), e.g. with the reward model's probabilities as
    weights; with equal weights it is ``sampling.majority_vote``. Completions without an answer
    do not vote; ties go to the answer seen first; if no completion has an answer, the first.
    """
    if len(completions) != len(weights) or not completions:
        raise ValueError(f"need one weight per completion (at least one), got {len(completions)} and {len(weights)}")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError("weights must be finite and non-negative (e.g. the reward model's probabilities)")
    answers = [extract(c) for c in completions]
    total: dict[str, float] = {}
    for a, w in zip(answers, weights):
        if a is not None:
            total[a] = total.get(a, 0.0) + float(w)
    if not total:
        return completions[0]
    best = max(total.values())
    return next(c for c, a in zip(completions, answers) if a is not None and total[a] == best)


def best_of_n_kl(n) -> float:
    """KL(best-of-n || base) = log n - (n - 1)/n for a score with no ties (Stiennon et al. 2020).

    With U = F(r(y)) uniform, best-of-n makes U the maximum of n uniforms, density n u^(n-1);
    the KL is E[log(n U^(n-1))] = log n + (n - 1) E[log U] = log n - (n - 1)/n. With ties (a
    discrete base law) it is an upper bound (Beirami et al. 2024); see ``best_of_n_pmf``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    return math.log(n) - (n - 1) / n


def best_of_n_pmf(p: torch.Tensor, rewards: torch.Tensor, n: int) -> torch.Tensor:
    """The law of best-of-n on a discrete base law ``p`` (M,) over outcomes with ``rewards`` (M,).

    Outcomes of equal reward are tied and share their block's mass in proportion to p:
    pi_n(y) = p(y) / p(R = r(y)) * [F(r(y))^n - F(r(y)^-)^n], with F(r) = P(R <= r) and
    F(r^-) = P(R < r).
    """
    if p.dim() != 1 or p.shape != rewards.shape or not bool(torch.isclose(p.sum(), p.new_tensor(1.0))):
        raise ValueError(f"p must be a probability vector with one reward per outcome, got {tuple(p.shape)} and "
                         f"{tuple(rewards.shape)}")
    best_of_n_kl(n)  # checks n
    p = p.double()
    values, block = torch.unique(rewards.double(), return_inverse=True)  # sorted rewards, block of each y
    tied = torch.bincount(block, p, minlength=len(values))  # p(R = r), (U,)
    at_most = tied.cumsum(0).clamp(max=1.0)  # F(r) = P(R <= r)
    below = at_most - tied  # F(r^-) = P(R < r)
    return p / tied[block] * (at_most**n - below.clamp(min=0.0) ** n)[block]


def accuracy_curve(choose: Callable, correct: torch.Tensor, tokens: torch.Tensor, ns) -> dict[str, list[float]]:
    """Accuracy of a selection rule against N, with standard errors and tokens spent.

    ``correct`` and ``tokens`` are (P, N_max): N_max independent candidates of each of P problems.
    ``choose(n, offset)`` returns the index (P,) of the candidate picked among candidates
    offset .. offset + n - 1 of each problem. For each n the N_max // n disjoint groups of n
    candidates are all used, which estimates the same accuracy as the first group alone with
    less variance. Per n: ``accuracy`` (mean over problems of the fraction of groups whose pick
    is correct), ``standard_error`` (std of those per-problem fractions over sqrt(P): problems
    are the independent units), ``tokens`` (mean tokens of a group of n candidates: every one was
    generated, picked or not) and ``groups`` (N_max // n).
    """
    if correct.shape != tokens.shape or correct.dim() != 2:
        raise ValueError(f"correct and tokens must share one shape (P, N), got {tuple(correct.shape)} and {tuple(tokens.shape)}")
    out: dict[str, list[float]] = {"n": [], "accuracy": [], "standard_error": [], "tokens": [], "groups": []}
    P, n_max = correct.shape
    rows = torch.arange(P)
    for n in ns:
        if not 1 <= n <= n_max:
            raise ValueError(f"n must be in 1..{n_max}, got {n}")
        groups = n_max // n
        picked = torch.zeros(P, dtype=torch.float64)
        for offset in range(0, groups * n, n):
            index = choose(n, offset)
            if index.shape != (P,) or bool(((index < offset) | (index >= offset + n)).any()):
                raise ValueError(f"choose({n}, {offset}) must return (P,) = ({P},) indices in {offset}..{offset + n - 1}")
            picked += correct[rows, index].double()
        picked /= groups  # (P,): the fraction of this problem's groups solved
        out["n"].append(int(n))
        out["accuracy"].append(float(picked.mean()))
        out["standard_error"].append(float(picked.std() / math.sqrt(P)) if P > 1 else float("nan"))
        out["tokens"].append(float(tokens[:, :groups * n].sum(1).double().mean() / groups))
        out["groups"].append(groups)
    return out
