"""gencore.reward against independent references: brute-force enumeration of best-of-N draws,
Monte Carlo with tolerances from its standard error, hand-written logistic losses and autograd,
calibration bins and votes counted by hand."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
from scipy import stats

from autograder.units.lm import first_best as first_best_by_loop
from gencore import lm, reward, sampling, tasks
from gencore.preference import bradley_terry_loss

# -- best-of-N selection ------------------------------------------------------------------------


def test_best_of_n_index_against_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (300, 7), generator=g).double()  # four values over seven: many ties
    scores[5] = 2.0  # a row of equals
    scores[6, :3] = float("-inf")  # candidates ruled out
    expected = [first_best_by_loop(row) for row in scores.tolist()]
    assert reward.best_of_n_index(scores).tolist() == expected
    assert reward.best_of_n_index(scores)[5] == 0
    # 0/1 verifier scores: the first correct candidate
    verdicts = torch.tensor([[0.0, 1, 1], [0, 0, 0], [1, 0, 1]])
    assert reward.best_of_n_index(verdicts).tolist() == [1, 0, 0]


def test_best_of_n_compares_within_each_prompt_only():
    # the largest score of all is in row 0; row 1's best is still its own largest
    scores = torch.tensor([[9.0, 1.0, 8.0], [0.1, 0.3, 0.2]])
    completions = [["a", "b", "c"], ["d", "e", "f"]]
    assert reward.best_of_n(scores, completions) == ["a", "e"]
    assert reward.best_of_n(torch.tensor([[0.5]]), [["only"]]) == ["only"]


@pytest.mark.parametrize("bad", [torch.tensor([1.0, 2.0]), torch.zeros(2, 0), torch.tensor([[1.0, float("nan")]]),
                                 [[1.0, 2.0]]])
def test_best_of_n_index_rejects_bad_scores(bad):
    with pytest.raises(ValueError):
        reward.best_of_n_index(bad)


def test_best_of_n_rejects_mismatched_completions():
    with pytest.raises(ValueError):
        reward.best_of_n(torch.zeros(2, 3), [["a", "b", "c"]])


# -- the KL of best-of-N ------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 8, 64])
def test_best_of_n_kl_against_monte_carlo(n):
    # A continuous score: the base law is N(0, 1) and r(y) = y. Best-of-n is simulated by drawing
    # n values and keeping the largest; KL = E_bon[log pi_n(y) / p(y)] with the density of the
    # maximum of n draws, pi_n(y) = n Phi(y)^(n-1) phi(y) (an order statistic, not the formula).
    rng = np.random.default_rng(n)
    best = rng.standard_normal((40_000, n)).max(1)
    log_ratio = math.log(n) + (n - 1) * stats.norm.logcdf(best)
    estimate, standard_error = log_ratio.mean(), log_ratio.std(ddof=1) / math.sqrt(len(log_ratio))
    assert abs(estimate - reward.best_of_n_kl(n)) < 4 * standard_error, (estimate, standard_error)
    assert reward.best_of_n_kl(1) == 0.0


def test_best_of_n_density_of_the_maximum_against_simulation():
    # the order-statistic density used above: P(max of n <= t) = Phi(t)^n at a few thresholds
    rng = np.random.default_rng(1)
    n, draws = 8, 40_000
    best = rng.standard_normal((draws, n)).max(1)
    for t in (-0.5, 0.5, 1.0, 2.0):
        p = stats.norm.cdf(t) ** n
        assert abs((best <= t).mean() - p) < 4 * math.sqrt(p * (1 - p) / draws)


def test_best_of_n_pmf_against_enumeration_of_every_draw():
    # a discrete base law with tied rewards: enumerate all 4^3 ordered triples, keep the first of
    # the best (ties among equal rewards go to the candidate drawn first)
    p = torch.tensor([0.1, 0.4, 0.3, 0.2], dtype=torch.float64)
    r = torch.tensor([1.0, 0.0, 1.0, 2.0], dtype=torch.float64)
    n = 3
    exact = torch.zeros(4, dtype=torch.float64)
    for draw in itertools.product(range(4), repeat=n):
        rewards = [r[i].item() for i in draw]
        exact[draw[first_best_by_loop(rewards)]] += math.prod(p[i].item() for i in draw)
    torch.testing.assert_close(reward.best_of_n_pmf(p, r, n), exact, atol=1e-12, rtol=0)
    kl = float((exact * (exact / p).log()).sum())
    assert kl < reward.best_of_n_kl(n)  # ties: the formula is an upper bound (Beirami et al. 2024)


def test_best_of_n_pmf_without_ties_reaches_the_formula():
    # many outcomes of distinct rewards: the discrete law approaches the continuous case
    g = torch.Generator().manual_seed(2)
    p = torch.rand(20_000, generator=g, dtype=torch.float64)
    p /= p.sum()
    r = torch.randn(20_000, generator=g, dtype=torch.float64)
    for n in (4, 32):
        pi = reward.best_of_n_pmf(p, r, n)
        assert abs(float(pi.sum()) - 1) < 1e-9
        kl = float((pi * (pi / p).log()).sum())
        assert kl <= reward.best_of_n_kl(n) + 1e-9 and reward.best_of_n_kl(n) - kl < 0.02


@pytest.mark.parametrize("n", [0, 1.5, True, -2])
def test_best_of_n_kl_rejects_bad_n(n):
    with pytest.raises(ValueError):
        reward.best_of_n_kl(n)


# -- losses ---------------------------------------------------------------------------------------


def test_orm_loss_is_the_logistic_loss_with_its_gradient():
    g = torch.Generator().manual_seed(3)
    logits = (4 * torch.randn(50, generator=g, dtype=torch.float64)).requires_grad_()
    labels = (torch.rand(50, generator=g) < 0.5).double()
    loss = reward.orm_loss(logits, labels)
    sig = 1 / (1 + torch.exp(-logits.detach()))
    by_hand = -(labels * torch.log(sig) + (1 - labels) * torch.log(1 - sig))
    torch.testing.assert_close(loss.detach(), by_hand, atol=1e-10, rtol=1e-8)
    loss.sum().backward()
    torch.testing.assert_close(logits.grad, sig - labels, atol=1e-10, rtol=1e-8)  # d/dr = sigmoid(r) - c
    with pytest.raises(ValueError):
        reward.orm_loss(logits.detach(), labels[:-1])


def test_same_prompt_pairs_against_a_loop_and_the_bt_loss_by_hand():
    correct = torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], dtype=torch.bool)
    chosen, rejected = reward.same_prompt_pairs(correct)
    by_loop = [(p * 4 + i, p * 4 + j) for p in range(3) for i in range(4) for j in range(4)
               if correct[p, i] and not correct[p, j]]
    assert sorted(zip(chosen.tolist(), rejected.tolist())) == sorted(by_loop)
    # the Bradley-Terry loss the trainer uses, on those pairs, against log(1 + exp(-(r_w - r_l)))
    scores = torch.randn(12, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_()
    loss = bradley_terry_loss(scores[chosen], scores[rejected]).sum()
    margin = (scores[chosen] - scores[rejected]).detach()
    assert abs(loss.item() - float(np.log1p(np.exp(-margin.numpy())).sum())) < 1e-10
    loss.backward()
    grad = torch.zeros(12, dtype=torch.float64)
    weight = 1 / (1 + torch.exp(margin))  # sigmoid(r_l - r_w)
    grad.index_add_(0, chosen, -weight)
    grad.index_add_(0, rejected, weight)
    torch.testing.assert_close(scores.grad, grad, atol=1e-10, rtol=1e-8)


def test_within_prompt_accuracy_against_a_loop():
    g = torch.Generator().manual_seed(5)
    scores = torch.randint(0, 3, (40, 6), generator=g).float()
    correct = torch.rand(40, 6, generator=g) < 0.5
    wins = []
    for p in range(40):
        for i in range(6):
            for j in range(6):
                if correct[p, i] and not correct[p, j]:
                    s, t = scores[p, i].item(), scores[p, j].item()
                    wins.append(1.0 if s > t else 0.5 if s == t else 0.0)
    assert abs(reward.within_prompt_accuracy(scores, correct) - sum(wins) / len(wins)) < 1e-12
    with pytest.raises(ValueError):
        reward.within_prompt_accuracy(scores, torch.ones(40, 6, dtype=torch.bool))


# -- calibration ----------------------------------------------------------------------------------


def test_reliability_bins_by_hand():
    probs = torch.tensor([0.05, 0.1, 0.15, 0.55, 0.6, 0.95, 1.0, 0.3], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 0, 1, 1, 0], dtype=torch.float64)
    out = reward.reliability_bins(probs, labels, n_bins=4)
    # bins [0, .25): .05 .1 .15; [.25, .5): .3; [.5, .75): .55 .6; [.75, 1]: .95 1.0
    assert out["count"].tolist() == [3, 1, 2, 2]
    torch.testing.assert_close(out["confidence"], torch.tensor([0.1, 0.3, 0.575, 0.975], dtype=torch.float64))
    torch.testing.assert_close(out["accuracy"], torch.tensor([1 / 3, 0.0, 0.5, 1.0], dtype=torch.float64))
    ece = (3 * abs(1 / 3 - 0.1) + 1 * 0.3 + 2 * 0.075 + 2 * 0.025) / 8
    assert abs(float(out["ece"]) - ece) < 1e-12
    empty = reward.reliability_bins(torch.tensor([0.1, 0.2]), torch.tensor([0.0, 1.0]), n_bins=2)
    assert empty["count"].tolist() == [2, 0] and math.isnan(empty["accuracy"][1])
    with pytest.raises(ValueError):
        reward.reliability_bins(torch.tensor([1.5]), torch.tensor([1.0]))


# -- votes ----------------------------------------------------------------------------------------


def weighted_vote_by_hand(completions, weights):
    totals = {}
    for c, w in zip(completions, weights):
        a = tasks.extract_answer(c)
        if a is not None:
            totals[a] = totals.get(a, 0.0) + w
    if not totals:
        return completions[0]
    for c in completions:
        a = tasks.extract_answer(c)
        if a is not None and totals[a] == max(totals.values()):
            return c


def test_weighted_majority_vote_against_counting_by_hand():
    assert reward.weighted_majority_vote(["1,5.", "1,6.", "2,6."], [0.9, 0.3, 0.3]) == "1,5."  # 0.9 > 0.6
    assert reward.weighted_majority_vote(["1,5.", "1,6.", "2,6."], [0.5, 0.25, 0.25]) == "1,5."  # a tie: first
    assert reward.weighted_majority_vote(["12,", "3,7."], [5.0, 0.1]) == "3,7."  # no answer, no vote
    rng = random.Random(6)
    pool = ["5,7.", "5,007.", "5,8.", "4,8.", "9,", "3,9."]
    for _ in range(300):
        group = [rng.choice(pool) for _ in range(rng.randint(1, 6))]
        weights = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in group]
        assert reward.weighted_majority_vote(group, weights) == weighted_vote_by_hand(group, weights)
        assert reward.weighted_majority_vote(group, [1.0] * len(group)) == sampling.majority_vote(group)
    with pytest.raises(ValueError):
        reward.weighted_majority_vote(["1."], [-1.0])


# -- accuracy against N -------------------------------------------------------------------------


def test_accuracy_curve_by_hand():
    correct = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    tokens = torch.tensor([[4, 5, 6], [4, 4, 4], [7, 5, 5], [6, 6, 6]])

    def oracle(n, offset):  # the first correct candidate of the group, else its first
        return offset + reward.best_of_n_index(correct[:, offset:offset + n].float())

    curve = reward.accuracy_curve(oracle, correct, tokens, [1, 2, 3])
    # n = 1: three groups of one, the fraction correct per problem 2/3, 1/3, 1/3, 0
    # n = 2: one group, candidates 0 and 1: 1, 1, 0, 0; n = 3: 1, 1, 1, 0
    per_problem = [[2 / 3, 1 / 3, 1 / 3, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 0.0]]
    for got, se, want in zip(curve["accuracy"], curve["standard_error"], per_problem):
        assert abs(got - sum(want) / 4) < 1e-12
        assert abs(se - float(np.std(want, ddof=1)) / 2) < 1e-12  # sample std over sqrt(4)
    assert curve["groups"] == [3, 1, 1]
    assert curve["tokens"] == [62 / 4 / 3, 41 / 4, 62 / 4]
    with pytest.raises(ValueError):
        reward.accuracy_curve(oracle, correct, tokens, [4])
    with pytest.raises(ValueError):  # a pick outside its group
        reward.accuracy_curve(lambda n, offset: torch.zeros(4, dtype=torch.long), correct, tokens, [1])


# -- the reward model and its data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_gpt():
    torch.manual_seed(7)
    return lm.GPT(lm.GPTConfig(n_layer=1, n_head=2, n_embd=16)).eval()


def test_reward_model_copies_the_trunk_and_reads_the_last_token(tiny_gpt):
    rm = reward.RewardModel(tiny_gpt)
    prompts, completions = ["12+3:", "1+2+3:", "47+85="], ["15.", "3,6.", "132."]
    idx, lengths, starts = reward.encode_pairs(prompts, completions)
    assert starts.tolist() == [5, 6, 6] and lengths.tolist() == [8, 10, 10]
    # the trunk's last-token features times the LM's output layer are the LM's own logits there
    x = rm.tok_emb(idx) + rm.pos_emb(torch.arange(idx.shape[1]))
    for block in [*rm.frozen, *rm.trained]:
        x = block(x)
    features = rm.ln_f(x)[torch.arange(3), lengths - 1]
    logits, _ = tiny_gpt(idx)
    real = ~tiny_gpt.pad_mask  # the LM masks the padding token's logit
    torch.testing.assert_close((features @ tiny_gpt.head.weight.T)[:, real], logits[torch.arange(3), lengths - 1][:, real],
                               atol=1e-5, rtol=1e-5)
    # the score is the head on that feature; padding after the last token changes nothing
    torch.nn.init.normal_(rm.head.weight)
    s = reward.score(rm, prompts, completions)
    torch.testing.assert_close(s, rm.head(features).squeeze(-1).detach(), atol=1e-5, rtol=1e-5)
    wide = torch.cat([idx, torch.full((3, 4), tasks.PAD_ID)], 1)
    torch.testing.assert_close(rm(wide, lengths, starts).detach(), s, atol=1e-5, rtol=1e-5)
    # a copy: the language model's weights are not shared
    assert rm.trained[0].attn.qkv.weight.data_ptr() != tiny_gpt.blocks[-1].attn.qkv.weight.data_ptr()
    with pytest.raises(ValueError):
        rm(idx, lengths[:2], starts)
    with pytest.raises(ValueError):
        rm(idx, lengths, lengths)  # an empty completion
    with pytest.raises(ValueError):
        reward.RewardModel(tiny_gpt, trainable_blocks=2)  # the tiny GPT has one block
    with pytest.raises(ValueError):
        reward.RewardModel(tiny_gpt, readout="mean")


@pytest.mark.parametrize("trainable_blocks", [0, 1])
def test_likelihood_readout_is_the_generators_log_likelihood_rescaled(tiny_gpt, trainable_blocks):
    rm = reward.RewardModel(tiny_gpt, trainable_blocks, readout="likelihood")
    prompts, completions = ["12+3:", "1+2+3:", "47+85=", "9+9:"], ["15.", "3,6.", "132.", "18,7,."]
    # at the start (a = 1, b = 0) the score is lm.sequence_logprob, which scores the completion's
    # tokens one by one from the language model's own forward pass
    with torch.no_grad():
        expected = lm.sequence_logprob(tiny_gpt, prompts, completions)
    s = reward.score(rm, prompts, completions)
    torch.testing.assert_close(s, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        rm.scale.fill_(-2.0)
        rm.offset.fill_(0.5)
    torch.testing.assert_close(reward.score(rm, prompts, completions), -2.0 * expected + 0.5, atol=1e-4, rtol=1e-5)
    # one row at a time, and with extra padding, the same
    idx, lengths, starts = reward.encode_pairs(prompts, completions)
    wide = torch.cat([idx, torch.full((4, 3), tasks.PAD_ID)], 1)
    with torch.no_grad():
        torch.testing.assert_close(rm(wide, lengths, starts), -2.0 * expected + 0.5, atol=1e-4, rtol=1e-5)
        one = torch.stack([rm(idx[i:i + 1, :lengths[i]], lengths[i:i + 1], starts[i:i + 1])[0] for i in range(4)])
    torch.testing.assert_close(one, -2.0 * expected + 0.5, atol=1e-4, rtol=1e-5)
    # gradients reach the trained blocks and the readout, not the frozen embeddings
    rm.train()
    rm(idx, lengths, starts).sum().backward()
    assert rm.lm_head.weight.grad is not None and rm.scale.grad is not None
    assert rm.tok_emb.weight.grad is None
    assert all(p.grad is not None for p in rm.trained.parameters())


def test_fit_readout_is_the_logistic_regression_on_the_log_likelihood(tiny_gpt):
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(3)
    prompts = [f"{a}+{b}:" for a in range(10, 40) for b in (1, 2)]
    samples = reward.sample_and_label(tiny_gpt, prompts, 4, generator=g)
    # labels that depend on the log-likelihood, with noise, so that the fit is finite
    rm = reward.RewardModel(tiny_gpt, 1, readout="likelihood")
    flat_prompts, flat_completions, _ = samples.flat()
    logp = reward.score(rm, flat_prompts, flat_completions).double()
    noise = torch.rand(len(logp), generator=g, dtype=torch.float64)
    labels = (noise < torch.sigmoid(1.5 * (logp - logp.median()))).view(samples.correct.shape)
    samples = reward.LabelledSamples(samples.prompts, samples.completions, labels)
    reward.train_reward_model(rm, samples, "orm", reward.RewardConfig(steps=0), progress=False)
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=10_000).fit(logp[:, None].numpy(),
                                                                                 labels.flatten().numpy())
    assert abs(rm.scale.item() - reference.coef_[0, 0]) < 1e-3 * max(1, abs(reference.coef_[0, 0]))
    assert abs(rm.offset.item() - reference.intercept_[0]) < 1e-3 * max(1, abs(reference.intercept_[0]))
    # Bradley-Terry: a alone, by the pairs' logistic regression through the origin; b stays 0
    bt = reward.RewardModel(tiny_gpt, 1, readout="likelihood")
    reward.train_reward_model(bt, samples, "bt", reward.RewardConfig(steps=0), progress=False)
    chosen, rejected = reward.same_prompt_pairs(labels)
    diff = (logp[chosen] - logp[rejected])[:, None].numpy()
    # each pair once as (w, l) with label 1 and once as (l, w) with label 0: the symmetric fit has no intercept
    pairs = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(
        np.concatenate([diff, -diff]), np.concatenate([np.ones(len(diff)), np.zeros(len(diff))]))
    assert abs(bt.scale.item() - pairs.coef_[0, 0]) < 1e-3 * max(1, abs(pairs.coef_[0, 0]))
    assert bt.offset.item() == 0.0


@pytest.mark.slow  # about 20 s: four short training runs
@pytest.mark.parametrize("readout", ["head", "likelihood"])
def test_training_a_reward_model_learns_a_rule_it_can_see(tiny_gpt, readout):
    # labels: "the completion ends in 5." — visible at the last token, so both objectives learn it
    prompts = [f"{a}+{b}:" for a, b in itertools.product(range(10, 30), range(3))][:40]
    completions = [[f"{d}{e}." for e in (5, 6, 7, 5)] for d in range(1, 41)]
    correct = torch.tensor([[c.endswith("5.") for c in group] for group in completions])
    samples = reward.LabelledSamples(prompts, completions, correct)
    for objective in ("orm", "bt"):
        rm = reward.RewardModel(tiny_gpt, trainable_blocks=1, readout=readout)  # the embeddings stay frozen
        frozen = {k: v.clone() for k, v in rm.state_dict().items() if k.startswith(("tok_emb", "pos_emb"))}
        config = reward.RewardConfig(steps=60, batch_size=32, lr=3e-3)
        history = reward.train_reward_model(rm, samples, objective, config, progress=False)
        assert len(history["loss"]) == 60
        scores = reward.score(rm, *samples.flat()[:2]).view(40, 4)
        assert reward.within_prompt_accuracy(scores, correct) > 0.9, objective
        assert all(torch.equal(v, rm.state_dict()[k]) for k, v in frozen.items())  # frozen stays frozen
    with pytest.raises(ValueError):
        reward.train_reward_model(rm, samples, "mse", config, progress=False)


def test_labelled_samples_split_by_prompt(tiny_gpt):
    prompts = [f"{a}+1:" for a in range(20)]
    samples = reward.sample_and_label(tiny_gpt, prompts, 3, generator=torch.Generator().manual_seed(8))
    assert samples.correct.shape == (20, 3) and samples.tokens().shape == (20, 3)
    for p, group, verdicts in zip(samples.prompts, samples.completions, samples.correct.tolist()):
        assert verdicts == [tasks.verify(p, c) for c in group]
    train, held_out = reward.split(samples, 0.25)
    assert len(held_out.prompts) == 5 and set(train.prompts).isdisjoint(held_out.prompts)
    assert sorted(train.prompts + held_out.prompts) == sorted(prompts)
    with pytest.raises(ValueError):
        reward.split(samples, 1.0)
    with pytest.raises(ValueError):
        reward.LabelledSamples(prompts[:2], [["1."], ["2.", "3."]], torch.zeros(2, 1, dtype=torch.bool))
