"""The language-model assignment's checks: declarations, references and verdicts. Never in the sandbox.

Each check is declared once, on its verdict (``@visible(probe)`` / ``@hidden(probe)``; the
docstring is what students read); ``release`` writes the grade_ids, points and hidden cells of
``solutions/lm/lm.ipynb`` from here. The visible checks mirror the notebook's readable asserts;
the hidden ones exist only here. The student's process only produces data (``lm_probes.py``);
every comparison below runs in the grader's process, against references independent of the
student's code and of the library's: log-probabilities by a brute-force loop with one model call
per token, conditionals multiplied out from the tables of tiny models, counting by hand, the
Metropolis-Hastings formula written on whole sequences, and a loop that keeps the first of the best.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from gencore import lm, sampling, tasks

from autograder.spec import Piece, Unit, hidden, visible
from autograder.units import lm_probes as probes
from autograder.verdicts import assert_close, close, require, scalar, tensor

ALPHA = probes.ALPHA
# Empirical TV of N_CHAINS draws over K outcomes has mean at most 1/2 sqrt(K / N) (0.024 for
# K = 8 or 27 and N = 4000 is at most 0.041); 0.06 leaves room for noise, a plain mistake is far above
TV_TOLERANCE = 0.06


# -- exact references, by hand -----------------------------------------------------------------


def brute_force_logprob(model, prompt: str, completion: str) -> float:
    """log p(completion | prompt) with one model call per completion token (float64 softmax)."""
    ids = tasks.encode(prompt + completion)
    total = 0.0
    with torch.no_grad():
        for t in range(len(prompt), len(ids)):
            logits, _ = model(torch.tensor([ids[:t]]))
            total += torch.log_softmax(logits[0, -1].double(), -1)[ids[t]].item()
    return total


def table_laws(model: sampling.TabularLM, alpha: float) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """All completions of a tabular model, with p, p^alpha and the low-temperature law multiplied
    out from its table."""
    support, probs = model.support, model.probs.numpy()
    seqs = ["".join(s) for s in itertools.product(support, repeat=model.length)]
    p, low = np.ones(len(seqs)), np.ones(len(seqs))
    for i, y in enumerate(seqs):
        for t, c in enumerate(y):
            row = probs[sampling.TabularLM.prefix_code(y[:t], support)]
            p[i] *= row[support.index(c)]
            low[i] *= row[support.index(c)] ** alpha / (row**alpha).sum()
    return seqs, p, p**alpha / (p**alpha).sum(), low


def table_logprob(model: sampling.TabularLM, completion: str) -> float:
    probs, support = model.probs.numpy(), model.support
    return sum(math.log(probs[sampling.TabularLM.prefix_code(completion[:t], support)][support.index(c)])
               for t, c in enumerate(completion))


def empirical_tv(samples, seqs: list[str], target: np.ndarray, what: str) -> float:
    require(isinstance(samples, list) and len(samples) == probes.N_CHAINS, f"{what} produced no samples")
    index = {s: i for i, s in enumerate(seqs)}
    counts = np.zeros(len(seqs))
    for s in samples:
        require(s in index, f"{what} produced {s!r}, which the model gives probability 0")
        counts[index[s]] += 1
    return 0.5 * float(np.abs(counts / len(samples) - target).sum())


def reference_vote(completions: tuple[str, ...]) -> str:
    """Plurality of final answers by counting; no-answer completions abstain; first seen wins ties."""
    answers = [tasks.extract_answer(c) for c in completions]
    counts: dict[str, int] = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return completions[0]
    best = max(counts.values())
    for c, a in zip(completions, answers):
        if a is not None and counts[a] == best:
            return c
    raise AssertionError("unreachable")


def tempered(logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """p^alpha / sum p^alpha from the float64 softmax, written with logs to stay finite."""
    logp = torch.log_softmax(logits.double(), -1)
    return torch.softmax(alpha * logp, -1)


def mh_formula(lp_new, lp_old, lq_new, lq_old, alpha: float) -> np.ndarray:
    """log min{1, [p(x')/p(x)]^alpha q(x|x') / q(x'|x)}, from ratios of probabilities (float64)."""
    ratio = (np.exp(lp_new) / np.exp(lp_old)) ** alpha * np.exp(lq_old) / np.exp(lq_new)
    return np.log(np.minimum(1.0, ratio))


# -- part 1: sequence_logprob ------------------------------------------------------------------


@visible(probes.logprob_visible)
def logprob_visible(d: dict) -> None:
    """three completions on a tabular model whose conditionals are known, one after a two-token prompt"""
    cases = (("100", math.log(0.4 * 0.95 * 0.95), "'100' after '='"), ("0", math.log(0.6), "'0' after '='"),
             ("two_token_prompt", math.log(0.4 * 0.95), "'10' after the prompt '+='"))
    for key, expected, what in cases:
        got = scalar(d[key], "sequence_logprob")
        require(math.isfinite(got) and abs(got - expected) < 1e-4,
                f"log p({what}) should be {expected:.5f}, got {got:.5f}: sum log p(y_t | prompt, y_<t) over the "
                "completion's tokens only, the logits at position t scoring the token at t + 1")


@hidden(probes.logprob_hidden)
def logprob_hidden(d: dict) -> None:
    """a random and the trained GPT against a loop with one model call per token (a sequence that fills
    the context included), the gradient, a second tabular model"""
    models = {"random": probes.small_gpt(), "base": lm.load_base_model("cpu")}
    for name, model in models.items():
        got = d[name]
        require(isinstance(got, list) and len(got) == len(probes.LOGPROB_PAIRS), "sequence_logprob returned nothing")
        for (prompt, completion), value in zip(probes.LOGPROB_PAIRS, got):
            expected = brute_force_logprob(model, prompt, completion)
            value = scalar(value, "sequence_logprob")
            require(abs(value - expected) < 1e-3 * max(1.0, abs(expected)),
                    f"on a {name} GPT, log p({completion!r} | {prompt!r}) should be {expected:.4f} (one model call "
                    f"per token), got {value:.4f}")
    # the gradient of log p(y | x) in the output layer, by autograd through the brute-force loop
    model = probes.small_gpt()
    ids = tasks.encode("".join(probes.LOGPROB_PAIRS[1]))
    n_prompt = len(probes.LOGPROB_PAIRS[1][0])
    total = sum(torch.log_softmax(model(torch.tensor([ids[:t]]))[0][0, -1], -1)[ids[t]] for t in range(n_prompt, len(ids)))
    total.backward()
    grad = tensor(d["grad"], "the gradient of sequence_logprob")
    require(close(grad, model.head.weight.grad, atol=1e-4),
            "gradients do not flow through sequence_logprob as they should: keep it in torch, without no_grad or .item()")
    table = probes.random_table(sampling)
    for y, value in zip(("012", "2", "21"), d["table"]):
        expected = table_logprob(table, y)
        require(abs(scalar(value, "sequence_logprob") - expected) < 1e-4,
                f"on a tabular model log p({y!r} | '=') should be {expected:.5f}")


# -- part 2: majority_vote ---------------------------------------------------------------------


@visible(probes.vote_visible)
def vote_visible(d: dict) -> None:
    """three completions, two with one answer; a single one"""
    require(d["picked"] == "68,135.",
            f"of {list(probes.VOTE_VISIBLE)} the answer 135 is given twice: expected '68,135.' (the first completion "
            f"with it), got {d['picked']!r}; vote on final answers (tasks.extract_answer), not on whole strings")
    require(d["single"] == "42.", f"a single completion wins its own vote: expected '42.', got {d['single']!r}")


@hidden(probes.vote_hidden)
def vote_hidden(d: dict) -> None:
    """ties, completions without an answer, nobody answering, answers written differently"""
    got = d["picked"]
    require(isinstance(got, list) and len(got) == len(probes.VOTE_HIDDEN), "majority_vote returned nothing")
    for case, value in zip(probes.VOTE_HIDDEN, got):
        expected = reference_vote(case)
        require(value == expected, f"majority_vote({list(case)}) should return {expected!r}, got {value!r} "
                                   "(completions without an answer do not vote; ties go to the answer seen first)")


# -- part 3: low_temperature_probs ---------------------------------------------------------------


def _probs(value, expected: torch.Tensor, what: str) -> None:
    assert_close(value, expected, f"low_temperature_probs: {what}", atol=1e-5)


@visible(probes.temperature_visible)
def temperature_visible(d: dict) -> None:
    """p = (0.5, 0.3, 0.2) at alpha = 2 and 1"""
    p = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
    _probs(d["alpha2"], p**2 / (p**2).sum(), "p = (0.5, 0.3, 0.2) at alpha = 2 (p^2 renormalised)")
    _probs(d["alpha1"], p, "alpha = 1 gives back p")


@hidden(probes.temperature_hidden)
def temperature_hidden(d: dict) -> None:
    """random logits at three alphas, very large logits, a large alpha, -inf logits, and the law of
    sequences sampled with your conditionals against the exact low-temperature law"""
    x = probes.temperature_inputs()
    for alpha, value in zip(x["alphas"], d["random"]):
        _probs(value, tempered(x["random"], alpha), f"random logits at alpha = {alpha}")
    _probs(d["large"], tempered(x["large"], ALPHA), "logits of size 1000 (compute in log space)")
    _probs(d["flat"], tempered(x["flat"], 60.0), "near-uniform logits at alpha = 60 (p^60 underflows: work with logits)")
    _probs(d["masked"], tempered(x["masked"], ALPHA), "logits with -inf entries (tokens of probability 0)")
    seqs, _, power, low = table_laws(probes.trap_model(sampling), ALPHA)
    tv = empirical_tv(d["samples"], seqs, low, "sampling with your conditionals")
    require(tv < TV_TOLERANCE, f"{probes.N_CHAINS} sequences sampled token by token with your conditionals are at "
                               f"total variation {tv:.3f} from the exact low-temperature law (allowed {TV_TOLERANCE})")


# -- part 4: mh_log_acceptance -----------------------------------------------------------------


@visible(probes.mh_visible)
def mh_visible(d: dict) -> None:
    """a worse proposal, and a proposal equal to the current state"""
    got = tensor(d["log_a"], "mh_log_acceptance")
    v = probes.MH_VISIBLE
    expected = torch.tensor([2.0 * (-2.0 + 1.0) + (-1.5 + 3.0), 0.0], dtype=torch.float64)
    require(got.shape == (2,), f"one value per chain expected, shape (2,); got {tuple(got.shape)}")
    require(close(got, expected, atol=1e-5),
            f"with log p(x') = {v['logp_proposal']}, log p(x) = {v['logp_current']}, log q(x'|x) = {v['logq_proposal']}, "
            f"log q(x|x') = {v['logq_current']} and alpha = 2, log A should be {expected.tolist()}, got {got.tolist()}")


@hidden(probes.mh_hidden, description=(
    "50 random moves against the formula on whole-sequence ratios, and power sampling with your "
    f"acceptance on a model small enough to enumerate: within total variation {TV_TOLERANCE} of p^alpha"))
def mh_hidden(d: dict) -> None:
    # the description is given above rather than as a docstring: it states TV_TOLERANCE
    x = {k: v.numpy() for k, v in probes.mh_hidden_inputs().items()}
    for alpha, value in zip((1.0, ALPHA), d["formula"]):
        expected = torch.from_numpy(mh_formula(x["logp_proposal"], x["logp_current"], x["logq_proposal"],
                                               x["logq_current"], alpha))
        require(close(tensor(value, "mh_log_acceptance"), expected, atol=1e-5),
                f"on 50 random moves at alpha = {alpha}, log A differs from log min(1, [p(x')/p(x)]^alpha q(x|x')/q(x'|x)) "
                "(the logarithm of a probability is never above 0)")
    seqs, _, power, low = table_laws(probes.random_table(sampling), ALPHA)
    tv = empirical_tv(d["samples"], seqs, power, "power sampling with your acceptance")
    require(tv < TV_TOLERANCE, f"{probes.N_CHAINS} chains of power sampling ({probes.N_MCMC} steps) with your acceptance "
                               f"are at total variation {tv:.3f} from the exact p^alpha (allowed {TV_TOLERANCE})")


# -- part 5: best_of_n ---------------------------------------------------------------------------


def first_best(row: list[float]) -> int:
    """The index of the largest score of a row, the earliest among equals, by a plain loop."""
    best = 0
    for i, value in enumerate(row):
        if value > row[best]:
            best = i
    return best


def _picked(value, what: str) -> list:
    require(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value),
            f"best_of_n should return a list of completions (strings), got {type(value).__name__} for {what}")
    return list(value)


@visible(probes.bon_visible)
def bon_visible(d: dict) -> None:
    """two prompts with distinct scores; a single candidate"""
    picked = _picked(d["picked"], "the visible example")
    require(picked == ["68,135.", "47."],
            f"with scores {probes.BON_VISIBLE['scores']} expected ['68,135.', '47.'] (the highest score of each row), "
            f"got {picked!r}")
    require(_picked(d["single"], "one candidate") == ["5."], "a prompt with one candidate should get that candidate")


@hidden(probes.bon_hidden)
def bon_hidden(d: dict) -> None:
    """ties (verifier verdicts, rows of equal scores), -inf scores, one candidate per prompt, rows on
    different scales and random integer scores, against a loop that keeps the first of the best"""
    got = d["picked"]
    cases = probes.bon_hidden_inputs()
    require(isinstance(got, list) and len(got) == len(cases), "best_of_n returned nothing")
    for (scores, completions), value in zip(cases, got):
        expected = [group[first_best(row)] for group, row in zip(completions, scores.tolist())]
        value = _picked(value, f"scores of shape {tuple(scores.shape)}")
        wrong = [p for p, (a, b) in enumerate(zip(value, expected)) if a != b]
        require(len(value) == len(expected) and not wrong,
                f"on scores of shape {tuple(scores.shape)}, prompt {wrong[0] if wrong else len(value)}: expected "
                f"{expected[wrong[0]] if wrong else len(expected)!r}, got {value[wrong[0]] if wrong else len(value)!r} "
                f"(scores {scores[wrong[0]].tolist() if wrong else ''}); compare within each row only, ties go to the "
                "first candidate")


# -- the unit ----------------------------------------------------------------------------------

UNIT = Unit(
    assignment="lm",
    library="gencore.sampling",
    chapter="book/lm.html",
    pieces=(
        Piece("sequence_logprob", "The log-probability of a completion", "a-language-model-is-an-autoregressive-model",
              (logprob_visible, logprob_hidden), forbidden=("gencore.lm.sequence_logprob", "gencore.lm.token_logprobs")),
        Piece("majority_vote", "Majority vote over final answers", "repeated-sampling-and-majority-vote",
              (vote_visible, vote_hidden), forbidden=("gencore.sampling.majority_vote",)),
        Piece("low_temperature_probs", "The next-token distribution at temperature 1/alpha",
              "the-power-distribution-is-not-low-temperature-sampling", (temperature_visible, temperature_hidden),
              forbidden=("gencore.lm.next_token_distribution",)),
        Piece("mh_log_acceptance", "The Metropolis-Hastings acceptance of power sampling",
              "power-sampling-by-metropolis-hastings", (mh_visible, mh_hidden),
              forbidden=("gencore.sampling.mh_log_acceptance",)),
        Piece("best_of_n", "Best-of-N selection with ties to the first candidate",
              "book/reward.html#best-of-n-selection-and-ties", (bon_visible, bon_hidden),
              forbidden=("gencore.reward.best_of_n", "gencore.reward.best_of_n_index")),
    ),
)
