"""gencore.sampling against exact enumeration on tiny autoregressive models (tables of
conditionals multiplied out by hand), Monte Carlo with stated tolerances, and brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autograder.units.lm import table_laws
from gencore import lm, sampling, tasks

ALPHA = 4.0


def trap_conditional(prefix: str) -> list[float]:
    """'0' is likelier first, but its futures are spread out; '1' leads to one likely future, '100'."""
    return {"": [0.6, 0.4], "1": [0.95, 0.05], "10": [0.95, 0.05]}.get(prefix, [0.5, 0.5])


@pytest.fixture(scope="module")
def trap() -> sampling.TabularLM:
    return sampling.TabularLM.from_function("01", 3, trap_conditional)


@pytest.fixture(scope="module")
def random_table() -> sampling.TabularLM:
    return sampling.TabularLM.random("012", 3, seed=3, scale=1.5)


def exact_by_hand(model: sampling.TabularLM, alpha: float):
    """p(y), p^alpha(y) and the low-temperature law, multiplied out from the table with numpy
    (the grader's reference for the LM assignment)."""
    seqs, p, power, low = table_laws(model, alpha)
    return seqs, torch.tensor(p), torch.tensor(power), torch.tensor(low)


def test_tabular_model_and_exact_distributions_match_the_table(trap, random_table):
    for model in (trap, random_table):
        seqs, p, power, low = exact_by_hand(model, ALPHA)
        assert seqs == sampling.enumerate_completions(model.support, model.length)
        logp = lm.sequence_logprob(model, ["="] * len(seqs), seqs).double()
        torch.testing.assert_close(logp.exp(), p, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(sampling.power_distribution(model, "=", seqs, ALPHA), power, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(sampling.low_temperature_distribution(model, "=", seqs, ALPHA), low,
                                   atol=1e-6, rtol=1e-5)
    # on the trap the two laws are far apart: p^alpha prefers '100', low temperature the '0' branch
    seqs, _, power, low = exact_by_hand(trap, ALPHA)
    assert seqs[power.argmax()] == "100" and power.max() > 0.8
    assert low[:4].sum() > 0.8  # the four completions starting with '0'
    assert sampling.total_variation(power, low) > 0.6


def test_mh_log_acceptance_against_the_formula_on_whole_sequences(random_table):
    # A = min{1, [p(x')/p(x)]^alpha q(x|x')/q(x'|x)} with q(x|x') the proposal's probability of
    # x's suffix from m on; here written with whole-sequence probabilities from the table
    model = random_table
    seqs, p, _, _ = exact_by_hand(model, ALPHA)
    probs = model.probs.numpy()

    def q_suffix(y, m):  # proposal = temperature 1/alpha, from position m (0-based) on
        out = 1.0
        for t in range(m, len(y)):
            row = probs[sampling.TabularLM.prefix_code(y[:t], model.support)] ** ALPHA
            out *= row[model.support.index(y[t])] / row.sum()
        return out

    def p_suffix(y, m):
        out = 1.0
        for t in range(m, len(y)):
            out *= probs[sampling.TabularLM.prefix_code(y[:t], model.support)][model.support.index(y[t])]
        return out

    for x, x_new, m in [("012", "021", 1), ("000", "222", 0), ("120", "121", 2), ("201", "210", 1)]:
        ratio = (p[seqs.index(x_new)] / p[seqs.index(x)]) ** ALPHA * q_suffix(x, m) / q_suffix(x_new, m)
        expected = min(1.0, float(ratio))
        got = sampling.mh_log_acceptance(
            torch.tensor([math.log(p_suffix(x_new, m))]), torch.tensor([math.log(p_suffix(x, m))]),
            torch.tensor([math.log(q_suffix(x_new, m))]), torch.tensor([math.log(q_suffix(x, m))]), ALPHA,
        ).exp().item()
        assert got == pytest.approx(expected, rel=1e-5)


def test_mh_kernel_leaves_p_alpha_invariant_exactly(random_table):
    # one move of Algorithm 1 (m uniform, suffix from q, accept with mh_log_acceptance), as an
    # exact transition matrix over all 27 sequences: p^alpha K = p^alpha, and low temperature is not
    model = random_table
    seqs, _, power, low = exact_by_hand(model, ALPHA)
    probs, sup, T = model.probs.numpy(), model.support, model.length

    def cond(y, t):
        return probs[sampling.TabularLM.prefix_code(y[:t], sup)]

    def logsum(y, m, tempered):
        total = 0.0
        for t in range(m, T):
            row = cond(y, t) ** (ALPHA if tempered else 1.0)
            total += math.log(row[sup.index(y[t])] / row.sum())
        return total

    K = np.zeros((len(seqs), len(seqs)))
    for i, x in enumerate(seqs):
        for j, x_new in enumerate(seqs):
            for m in range(T):
                if x_new[:m] != x[:m]:
                    continue
                q_move = math.exp(logsum(x_new, m, True))
                a = sampling.mh_log_acceptance(
                    torch.tensor([logsum(x_new, m, False)]), torch.tensor([logsum(x, m, False)]),
                    torch.tensor([logsum(x_new, m, True)]), torch.tensor([logsum(x, m, True)]), ALPHA,
                ).exp().item()
                K[i, j] += q_move * a / T
        K[i, i] += 1.0 - K[i].sum()
    np.testing.assert_allclose(power.numpy() @ K, power.numpy(), atol=1e-6)
    assert np.abs(low.numpy() @ K - low.numpy()).sum() > 1e-2


@pytest.mark.parametrize("block_size", [1, 3])
def test_power_sampling_converges_to_p_alpha_and_low_temperature_does_not(trap, block_size):
    # 4000 chains; with K = 8 outcomes the sampling noise of an empirical TV is at most
    # 1/2 sqrt(K/n) = 0.022 on average, so 0.05 leaves room for noise and a little bias
    n = 4000
    seqs, _, power, low = exact_by_hand(trap, ALPHA)
    g = torch.Generator().manual_seed(0)
    result = sampling.power_sampling_mcmc(trap, ["="] * n, ALPHA, block_size=block_size, n_mcmc=60,
                                          max_new_tokens=3, generator=g)
    mcmc = sampling.empirical_distribution(result.completions, seqs)
    assert sampling.total_variation(mcmc, power) < 0.05
    assert 0.0 < result.acceptance_rate < 1.0
    lowtemp = sampling.low_temperature_sampling(trap, ["="] * n, ALPHA, max_new_tokens=3, generator=g)
    empirical_low = sampling.empirical_distribution(lowtemp.completions, seqs)
    assert sampling.total_variation(empirical_low, low) < 0.05  # it samples its own law ...
    assert sampling.total_variation(empirical_low, power) > 0.5  # ... which is far from p^alpha


def test_power_sampling_total_variation_falls_with_mcmc_steps(random_table):
    n = 4000
    seqs, _, power, low = exact_by_hand(random_table, ALPHA)
    tv = []
    for steps in (0, 3, 20):
        r = sampling.power_sampling_mcmc(random_table, ["="] * n, ALPHA, 3, steps, 3, torch.Generator().manual_seed(1))
        tv.append(sampling.total_variation(sampling.empirical_distribution(r.completions, seqs), power))
    # no MCMC step: the proposal alone, i.e. low-temperature sampling
    assert tv[0] == pytest.approx(sampling.total_variation(low, power), abs=0.04)
    assert tv[2] < 0.04 < tv[0] and tv[2] < tv[1]


def test_power_sampling_counts_tokens_including_rejected_proposals(random_table):
    # one block of T = 3: 3 tokens to start, then T - m + 1 for m uniform on {1, 2, 3}: 2 per move
    n, steps = 3000, 5
    r = sampling.power_sampling_mcmc(random_table, ["="] * n, ALPHA, 3, steps, 3, torch.Generator().manual_seed(2))
    mean = sum(r.tokens) / n
    se = math.sqrt(steps * (2 / 3)) / math.sqrt(n)  # the variance of T - m + 1 is 2/3
    assert abs(mean - (3 + 2 * steps)) < 5 * se


def test_power_sampling_on_the_gpt_respects_end_of_sequence():
    model = lm.load_base_model(device="cpu")
    prompts = [p for p, _ in tasks.make_problems("add", 6, "test", seed=0)]
    r = sampling.power_sampling_mcmc(model, prompts, ALPHA, block_size=2, n_mcmc=3, max_new_tokens=5,
                                     generator=torch.Generator().manual_seed(0))
    assert len(r.completions) == 6
    for c, n in zip(r.completions, r.tokens):
        assert len(c) <= 5 and tasks.EOS not in c[:-1]
        assert n >= len(c)


def test_majority_vote():
    assert sampling.majority_vote(["12.", "13.", "5,13.", "12"]) == "13."  # "12" has no '.': no vote
    assert sampling.majority_vote(["7.", "8.", "8.", "7."]) == "7."  # a tie goes to the first answer
    assert sampling.majority_vote(["x", "y"], extract=lambda c: None) == "x"
    assert sampling.majority_vote(["1,3.", "03."]) == "1,3."  # 3 and 03 are one answer
    with pytest.raises(ValueError):
        sampling.majority_vote([])


def test_beam_search_finds_the_mode_and_width_one_is_greedy(random_table, trap):
    for model in (random_table, trap):
        seqs, p, _, _ = exact_by_hand(model, ALPHA)
        # the toy never emits '.', so the search stops at max_new_tokens with the best open beam
        wide = sampling.beam_search(model, ["="], beam_width=len(seqs), max_new_tokens=model.length)
        assert wide.completions == [seqs[int(p.argmax())]]
        narrow = sampling.beam_search(model, ["="], beam_width=1, max_new_tokens=model.length)
        greedy = lm.generate(model, ["="], model.length, temperature=0)
        assert narrow.completions == greedy
    assert sampling.beam_search(trap, ["="], 1, 3).completions == ["000"]  # greedy falls into the trap
    assert sampling.beam_search(trap, ["="], 2, 3).completions == ["100"]


def test_beam_search_on_the_gpt_returns_its_highest_scoring_finished_beam():
    model = lm.load_base_model(device="cpu")
    prompt = tasks.make_problems("add", 1, "test", seed=3)[0][0]
    beam = sampling.beam_search(model, [prompt], beam_width=4).completions[0]
    assert beam.endswith(tasks.EOS)
    # nothing sampled from the model at temperature 1 that ends in '.' scores higher
    samples = [c for c in lm.generate(model, [prompt] * 200, generator=torch.Generator().manual_seed(0))
               if c.endswith(tasks.EOS)]
    best = lm.sequence_logprob(model, [prompt] * len(samples), samples).max().item()
    assert lm.sequence_logprob(model, prompt, beam).item() >= best - 1e-4


def test_best_of_n_picks_the_best_candidate(random_table):
    prompts = ["="] * 5
    candidates = sampling.sample_n(random_table, prompts, 8, 3, generator=torch.Generator().manual_seed(4))
    by_p = sampling.best_of_n(random_table, prompts, 8, max_new_tokens=3, generator=torch.Generator().manual_seed(4))
    seqs, p, _, _ = exact_by_hand(random_table, ALPHA)
    for cands, chosen in zip(candidates, by_p.completions):
        assert p[seqs.index(chosen)] == max(p[seqs.index(c)] for c in cands)
    assert by_p.tokens == [8 * 3] * 5

    def reward(prompt, completion):  # count of '2's
        return completion.count("2")

    g = torch.Generator().manual_seed(4)
    by_r = sampling.best_of_n(random_table, prompts, 8, reward, max_new_tokens=3, generator=g)
    for cands, chosen in zip(candidates, by_r.completions):
        assert chosen == max(cands, key=lambda c: (reward("=", c), -cands.index(c)))


def test_bad_input_raises(random_table):
    for alpha in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            sampling.power_sampling_mcmc(random_table, ["="], alpha, 1, 1, 3)
        with pytest.raises(ValueError, match="alpha"):
            sampling.low_temperature_sampling(random_table, ["="], alpha, 3)
        with pytest.raises(ValueError, match="alpha"):
            sampling.mh_log_acceptance(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), alpha)
    with pytest.raises(ValueError, match="empty prompt"):
        sampling.power_sampling_mcmc(random_table, [""], 2.0, 1, 1, 3)
    with pytest.raises(ValueError, match="context"):
        sampling.power_sampling_mcmc(random_table, ["1+" * 8 + "="], 2.0, 1, 1, 3)
    with pytest.raises(ValueError, match="unknown characters"):
        sampling.power_sampling_mcmc(random_table, ["a?"], 2.0, 1, 1, 3)
    with pytest.raises(ValueError, match="block_size"):
        sampling.power_sampling_mcmc(random_table, ["="], 2.0, 0, 1, 3)
    with pytest.raises(ValueError, match="beam_width"):
        sampling.beam_search(random_table, ["="], 0, 3)
    with pytest.raises(ValueError):
        sampling.total_variation(torch.ones(2), torch.ones(3))


def test_low_temperature_sampling_tends_to_greedy_and_alpha_one_is_plain_sampling(random_table):
    seqs, p, _, _ = exact_by_hand(random_table, ALPHA)
    sharp = sampling.low_temperature_sampling(random_table, ["="] * 50, 1e4, 3, torch.Generator().manual_seed(0))
    assert set(sharp.completions) == set(lm.generate(random_table, ["="], 3, temperature=0))
    plain = sampling.low_temperature_sampling(random_table, ["="] * 4000, 1.0, 3, torch.Generator().manual_seed(0))
    assert sampling.total_variation(sampling.empirical_distribution(plain.completions, seqs), p) < 0.06


def test_majority_vote_sampling_and_accuracy_on_the_gpt():
    model = lm.load_base_model(device="cpu")
    prompts = [p for p, _ in tasks.make_problems("sum_steps", 4, "test", seed=0)]
    voted = sampling.majority_vote_sampling(model, prompts, 5, generator=torch.Generator().manual_seed(7))
    candidates = sampling.sample_n(model, prompts, 5, generator=torch.Generator().manual_seed(7))
    assert voted.completions == [sampling.majority_vote(c) for c in candidates]
    assert voted.tokens == [sum(len(c) for c in cands) for cands in candidates]
    accuracy, cost = sampling.accuracy_and_cost(prompts, voted)
    assert accuracy == sum(tasks.verify(p, c) for p, c in zip(prompts, voted.completions)) / 4
    assert cost == sum(voted.tokens) / 4


def test_power_sampling_on_a_small_gpt_follows_the_exact_chain_with_end_of_sequence():
    # completions of at most two tokens, '.' allowed at either position: 211 outcomes. The law of
    # Algorithm 1 after N moves (one block, B = T = 2) is mu_0 K^N, with mu_0 the proposal's law
    # and K the Metropolis-Hastings kernel, both built here by enumeration from the model's
    # conditionals; the sampler's empirical law must match it, and p^alpha must be K-invariant.
    config = lm.GPTConfig.for_scale("smoke", n_layer=1, n_embd=16, n_head=2, block_size=8)
    model = lm.make_gpt(config, seed=1, device="cpu")
    with torch.no_grad():
        model.head.weight.mul_(5.0)  # sharper conditionals: p^alpha differs from low temperature
    alpha, prompt, eos = 2.0, "1+2=", tasks.EOS
    chars = [c for c in tasks.ALPHABET if c != eos]
    outcomes = [eos] + [a + eos for a in chars] + [a + b for a in chars for b in chars]
    index = {y: i for i, y in enumerate(outcomes)}
    logits = {pre: model(torch.tensor([tasks.encode(prompt + pre)]))[0][0, -1].double() for pre in [""] + chars}
    logp = {pre: torch.log_softmax(v, -1).tolist() for pre, v in logits.items()}
    logq = {pre: torch.log_softmax(alpha * v, -1).tolist() for pre, v in logits.items()}

    def suffix(table, y, m):  # sum over positions m.. of y (0-based) of log table[prefix][token]
        return sum(table[y[:t]][tasks.VOCAB.index(y[t])] for t in range(m, len(y)))

    p = torch.tensor([math.exp(suffix(logp, y, 0)) for y in outcomes], dtype=torch.double)
    power = p**alpha / (p**alpha).sum()
    mu = torch.tensor([math.exp(suffix(logq, y, 0)) for y in outcomes], dtype=torch.double)
    K = np.zeros((len(outcomes), len(outcomes)))
    for x in outcomes:
        for m in (0, 1):  # the resampled position, uniform over the T = 2 positions
            if m >= len(x):  # after '.': the move proposes x itself
                K[index[x], index[x]] += 0.5
                continue
            for y in outcomes:
                if y[:m] != x[:m] or len(y) <= m:
                    continue
                log_a = min(0.0, alpha * (suffix(logp, y, m) - suffix(logp, x, m))
                            + suffix(logq, x, m) - suffix(logq, y, m))
                K[index[x], index[y]] += 0.5 * math.exp(suffix(logq, y, m) + log_a)
        K[index[x], index[x]] += 1.0 - K[index[x]].sum()
    K = torch.from_numpy(K)
    torch.testing.assert_close(power @ K, power, atol=1e-9, rtol=0)
    n, steps = 3000, 12
    exact = mu @ torch.linalg.matrix_power(K, steps)
    r = sampling.power_sampling_mcmc(model, [prompt] * n, alpha, block_size=2, n_mcmc=steps, max_new_tokens=2,
                                     generator=torch.Generator().manual_seed(0))
    empirical = sampling.empirical_distribution(r.completions, outcomes)
    # tolerance: the 99th percentile of the TV between n exact draws and their law
    g = torch.Generator().manual_seed(1)
    draws = [torch.bincount(torch.multinomial(exact, n, True, generator=g), minlength=len(outcomes)) / n
             for _ in range(100)]
    noise = sorted(sampling.total_variation(d.double(), exact) for d in draws)[98]
    assert sampling.total_variation(empirical, exact) < noise
    # the chain is on its way from the proposal's law to p^alpha, and gets there
    assert sampling.total_variation(exact, power) < sampling.total_variation(mu, power) - 0.1
    assert sampling.total_variation(mu @ torch.linalg.matrix_power(K, 2000), power) < 1e-3


def test_low_temperature_sampling_with_a_probs_fn_draws_the_same_tokens(random_table):
    # probs_fn replaces the tempered softmax: softmax(alpha * logits) is the same law, and with one
    # seed the same draws; a probs_fn that ignores alpha samples the untempered model instead
    n = 500
    default = sampling.low_temperature_sampling(random_table, ["="] * n, ALPHA, 3, torch.Generator().manual_seed(4))
    plugged = sampling.low_temperature_sampling(random_table, ["="] * n, ALPHA, 3, torch.Generator().manual_seed(4),
                                                probs_fn=lambda logits, a: torch.softmax(a * logits.float(), -1))
    assert plugged.completions == default.completions
    plain = sampling.low_temperature_sampling(random_table, ["="] * n, ALPHA, 3, torch.Generator().manual_seed(4),
                                              probs_fn=lambda logits, a: torch.softmax(logits.float(), -1))
    assert plain.completions != default.completions
