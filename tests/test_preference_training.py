"""Preference learning on pairs against independent references: the KL-regularised optimum
(scipy's optimiser on the exact expected DPO loss), a closed form for two outcomes, explicit
loops over sequences and prefixes, torch.distributions, autograd, and log 2."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import scipy.optimize
import torch
from torch.distributions import Categorical, kl_divergence

from gencore import lm, preference, rl, tasks


@pytest.fixture(scope="module")
def base():
    return lm.load_base_model(device="cpu")


@pytest.fixture(scope="module")
def pair_data(base):
    config = preference.PreferenceConfig.for_scale("smoke")
    return preference.make_pair_data(base, config)


# ---------------------------------------------------------------------------------------------
# the DPO optimum on a tabular policy
# ---------------------------------------------------------------------------------------------


def _minimise_over_tabular_policy(objective, k: int) -> torch.Tensor:
    """argmin over softmax(logits) of ``objective(log pi)`` with scipy's L-BFGS, gradients by autograd."""

    def value_and_grad(x):
        logits = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        value = objective(torch.log_softmax(logits, 0))
        (grad,) = torch.autograd.grad(value, logits)
        return value.item(), grad.numpy()

    found = scipy.optimize.minimize(value_and_grad, np.zeros(k), jac=True, method="L-BFGS-B",
                                    options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
    return torch.softmax(torch.tensor(found.x), 0)


@pytest.mark.parametrize("beta", [0.3, 1.0, 3.0])
def test_expected_dpo_loss_is_minimised_by_the_kl_regularised_optimum(beta):
    # pairs (y, y') drawn from mu x mu, labelled by Bradley-Terry with a known reward: the exact
    # expected loss (infinite data) is a sum over ordered pairs weighted by how often y beats y'
    ref = torch.tensor([0.4, 0.25, 0.15, 0.12, 0.08], dtype=torch.float64)
    r = torch.tensor([0.0, 1.5, -0.5, 2.0, 0.7], dtype=torch.float64)
    mu = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=torch.float64)  # which answers get compared
    w, l = torch.meshgrid(torch.arange(5), torch.arange(5), indexing="ij")
    w, l = w.flatten(), l.flatten()
    weight = mu[w] * mu[l] * torch.sigmoid(r[w] - r[l])  # P(the pair is (y_w, y_l) in this order)

    def expected_loss(log_pi):
        return (weight * preference.dpo_loss(log_pi[w], log_pi[l], ref.log()[w], ref.log()[l], beta)).sum()

    found = _minimise_over_tabular_policy(expected_loss, 5)
    assert torch.allclose(found, rl.kl_regularized_optimum(ref, r, beta), atol=1e-6)
    # the reference matters: another pi_ref gives another optimum, pi_ref' exp(r / beta) / Z
    ref2 = torch.full((5,), 0.2, dtype=torch.float64)

    def expected_loss2(log_pi):
        return (weight * preference.dpo_loss(log_pi[w], log_pi[l], ref2.log()[w], ref2.log()[l], beta)).sum()

    assert torch.allclose(_minimise_over_tabular_policy(expected_loss2, 5), rl.kl_regularized_optimum(ref2, r, beta), atol=1e-6)


def test_dpo_on_finite_data_fits_the_empirical_win_rate():
    # two answers compared n times, answer 0 winning m times: the minimiser of the mean DPO loss
    # sets beta log[pi(0) pi_ref(1) / (pi(1) pi_ref(0))] = logit(m / n), the data's maximum-likelihood reward gap
    beta, n, m = 0.5, 40, 29
    ref = torch.tensor([0.3, 0.7], dtype=torch.float64)
    winners = torch.tensor([0] * m + [1] * (n - m))
    losers = 1 - winners

    def mean_loss(log_pi):
        return preference.dpo_loss(log_pi[winners], log_pi[losers], ref.log()[winners], ref.log()[losers], beta).mean()

    found = _minimise_over_tabular_policy(mean_loss, 2)
    odds = ref[0] / ref[1] * (m / (n - m)) ** (1 / beta)
    assert found[0].item() == pytest.approx((odds / (1 + odds)).item(), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# pairs from the model's samples, their log-probabilities, the KL
# ---------------------------------------------------------------------------------------------


def test_build_preference_pairs_against_a_brute_force_count(base):
    prompts = [p for p, _ in tasks.make_problems("sum_direct", 12, "train", 3)]
    pairs, counts = preference.build_preference_pairs(base, prompts, k=4, max_new_tokens=5,
                                                      generator=torch.Generator().manual_seed(7))
    # the same draws, redone by hand: one generate call over the repeated prompts
    samples = lm.generate(base, [p for p in prompts for _ in range(4)], 5, 1.0, generator=torch.Generator().manual_seed(7))
    expected_pairs, right_total = [], 0
    for i, prompt in enumerate(prompts):
        group = samples[4 * i: 4 * i + 4]
        right = [c for c in group if tasks.verify(prompt, c)]
        right_total += len(right)
        if 0 < len(right) < 4:
            expected_pairs.append(prompt)
            assert pairs.chosen[len(expected_pairs) - 1] in group and pairs.rejected[len(expected_pairs) - 1] in group
    assert pairs.prompts == expected_pairs and counts["with_pair"] == len(expected_pairs)
    assert counts["with_pair"] + counts["all_correct"] + counts["all_wrong"] == len(prompts)
    assert counts["samples_correct"] == pytest.approx(right_total / 48)
    assert all(tasks.verify(p, c) for p, c in zip(pairs.prompts, pairs.chosen))
    assert not any(tasks.verify(p, c) for p, c in zip(pairs.prompts, pairs.rejected))


def test_pair_logprobs_match_a_loop_over_sequences(base, pair_data):
    train, _, _ = pair_data
    policy = copy.deepcopy(base).requires_grad_(True)
    with torch.no_grad():  # a policy that differs from the reference
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = train.subset(range(min(5, len(train))))
    pc, pr, rc, rr = preference.pair_logprobs(policy, base, batch)
    for i in range(len(batch)):
        x, yw, yl = batch.prompts[i], batch.chosen[i], batch.rejected[i]
        assert pc[i].item() == pytest.approx(lm.sequence_logprob(policy, x, yw).item(), abs=1e-5)
        assert pr[i].item() == pytest.approx(lm.sequence_logprob(policy, x, yl).item(), abs=1e-5)
        assert rc[i].item() == pytest.approx(lm.sequence_logprob(base, x, yw).item(), abs=1e-5)
        assert rr[i].item() == pytest.approx(lm.sequence_logprob(base, x, yl).item(), abs=1e-5)
    assert pc.requires_grad and pr.requires_grad and not rc.requires_grad and not rr.requires_grad


def test_mean_token_kl_against_categorical_kl_prefix_by_prefix(base):
    other = copy.deepcopy(base)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.02 * torch.randn_like(p, generator=None))
    prompts = ["12+34+56=", "7+8+9=", "99+1+40="]
    completions = ["102.", "24.", "140,"]  # the last one has no end-of-sequence: still scored
    got = preference.mean_token_kl(base, other, prompts, completions)
    terms = []
    with torch.no_grad():
        for prompt, completion in zip(prompts, completions):
            ids = tasks.encode(prompt + completion)
            for t in range(len(prompt), len(ids)):  # the distribution of each completion token
                context = torch.tensor([ids[:t]])
                p = Categorical(logits=base(context)[0][0, -1])
                q = Categorical(logits=other(context)[0][0, -1])
                terms.append(kl_divergence(p, q).item())
    assert got == pytest.approx(sum(terms) / len(terms), rel=1e-4)
    assert preference.mean_token_kl(base, base, prompts, completions) == pytest.approx(0.0, abs=1e-7)


def test_hand_derived_dpo_gradient_through_the_gpt_matches_autograd(base, pair_data):
    # chain rule: grad_theta sum_i loss_i = sum_i [dl/dlog pi(y_w)] grad log pi(y_w) + [dl/dlog pi(y_l)] grad log pi(y_l)
    train, _, _ = pair_data
    policy = copy.deepcopy(base).requires_grad_(True)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = train.subset(range(min(6, len(train))))
    params = list(policy.parameters())
    pc, pr, rc, rr = preference.pair_logprobs(policy, base, batch)
    auto = torch.autograd.grad(preference.dpo_loss(pc, pr, rc, rr, 0.7).sum(), params, retain_graph=True)
    d_w, d_l = preference.dpo_loss_gradients(pc, pr, rc, rr, 0.7)
    hand = torch.autograd.grad((d_w * pc + d_l * pr).sum(), params)
    scale = max(float(a.abs().max()) for a in auto)
    for a, h in zip(auto, hand):
        assert torch.allclose(a, h, atol=1e-5 * scale)  # float32 rounding


def test_training_with_the_hand_gradient_follows_autograd_and_uses_only_the_hand_gradient(base, pair_data):
    train, _, _ = pair_data
    batch = train.subset(range(min(6, len(train))))
    policy = copy.deepcopy(base).requires_grad_(True)
    params = list(policy.parameters())
    hand_loss = preference.hand_gradient_loss(preference.dpo_loss, preference.dpo_loss_gradients)
    pc, pr, rc, rr = preference.pair_logprobs(policy, base, batch)
    value = hand_loss(pc, pr, rc, rr, 0.7)
    assert torch.allclose(value, preference.dpo_loss(pc, pr, rc, rr, 0.7))  # the forward value is the loss's
    hand = torch.autograd.grad(value.mean(), params, retain_graph=True)
    auto = torch.autograd.grad(preference.dpo_loss(pc, pr, rc, rr, 0.7).mean(), params, retain_graph=True)
    scale = max(float(a.abs().max()) for a in auto)
    for a, h in zip(auto, hand):
        assert torch.allclose(a, h, atol=1e-5 * scale)
    # a deliberately wrong "gradient" (twice the right one) is what flows back, not autograd's
    doubled = preference.hand_gradient_loss(preference.dpo_loss,
                                            lambda *args: tuple(2 * g for g in preference.dpo_loss_gradients(*args)))
    twice = torch.autograd.grad(doubled(pc, pr, rc, rr, 0.7).mean(), params)
    for a, t in zip(auto, twice):
        assert torch.allclose(2 * a, t, atol=2e-5 * scale)


def test_idea0_gradient_never_fades_while_dpo_weights_saturate():
    pc = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    pr = torch.tensor([-1.0, -20.0, -60.0], requires_grad=True)  # pairs ranked ever more clearly
    ref = torch.tensor([-1.0, -2.0, -3.0])
    gw, gl = torch.autograd.grad(preference.unreferenced_margin_loss(pc, pr, ref, ref, 1.0).sum(), (pc, pr))
    assert torch.equal(gw, -torch.ones(3)) and torch.equal(gl, torch.ones(3))
    gw, gl = torch.autograd.grad(preference.dpo_loss(pc, pr, ref, ref, 1.0).sum(), (pc, pr))
    expected = torch.sigmoid(-torch.tensor([0.0, 18.0, 57.0]))  # sigma(r_hat_l - r_hat_w)
    assert torch.allclose(-gw, expected) and torch.allclose(gl, expected)
    (g_sft,) = torch.autograd.grad(preference.chosen_nll_loss(pc, pr, ref, ref, 1.0).sum(), pc)
    assert torch.equal(g_sft, -torch.ones(3))


# ---------------------------------------------------------------------------------------------
# the training loops
# ---------------------------------------------------------------------------------------------


def test_tr_dpo_with_tau_one_always_sees_a_loss_of_log_two(base, pair_data):
    # the reference is the policy itself at every step: every implicit reward is 0, every loss log 2
    train, held_out, _ = pair_data
    config = preference.PreferenceConfig.for_scale("smoke", tau=1, lr=1e-3)
    history = preference.train_tr_dpo(copy.deepcopy(base), train, held_out, config, progress=False)
    assert history["loss"] == pytest.approx([math.log(2)] * config.steps, abs=1e-6)
    dpo = preference.train_dpo(copy.deepcopy(base), train, held_out, config, progress=False)
    assert dpo["loss"][0] == pytest.approx(math.log(2), abs=1e-6) and dpo["loss"][-1] != pytest.approx(math.log(2), abs=1e-4)
    # a reference refreshed less often than there are steps is DPO's frozen one
    late = preference.PreferenceConfig.for_scale("smoke", tau=100, lr=1e-3)
    assert preference.train_tr_dpo(copy.deepcopy(base), train, held_out, late, progress=False)["loss"] == dpo["loss"]


def test_a_plugged_in_loss_is_the_one_trained_on(base, pair_data):
    # DPO's loop with SFT's objective plugged in is SFT on winners, step for step
    train, held_out, _ = pair_data
    config = preference.PreferenceConfig.for_scale("smoke", lr=1e-3)
    plugged = preference.train_dpo(copy.deepcopy(base), train, held_out, config, loss_fn=preference.chosen_nll_loss, progress=False)
    sft = preference.train_sft_winners(copy.deepcopy(base), train, held_out, config, progress=False)
    assert plugged == sft


@pytest.mark.parametrize("train_fn", [preference.train_idea0, preference.train_sft_winners, preference.train_dpo,
                                      preference.train_tr_dpo])
def test_training_loops_record_their_history(base, pair_data, train_fn):
    train, held_out, _ = pair_data
    config = preference.PreferenceConfig.for_scale("smoke")
    model = copy.deepcopy(base)
    history = train_fn(model, train, held_out, config, progress=False)
    assert history["step"] == list(range(1, config.steps + 1)) and len(history["loss"]) == config.steps
    assert history["eval_step"] == [0, 2, 4]
    for key in ("greedy", "sampled", "chosen_logp", "rejected_logp", "margin", "pref_accuracy", "kl"):
        assert len(history[key]) == 3 and all(math.isfinite(v) for v in history[key])
    # at step 0 the policy is the starting model: no KL, no margin; the likelihoods by a plain loop
    assert history["kl"][0] == pytest.approx(0.0, abs=1e-7) and history["margin"][0] == pytest.approx(0.0, abs=1e-6)
    chosen = [lm.sequence_logprob(base, x, y).item() for x, y in zip(held_out.prompts, held_out.chosen)]
    assert history["chosen_logp"][0] == pytest.approx(sum(chosen) / len(chosen), abs=1e-4)
    greedy = lm.evaluate(base, config.task, config.n_eval_prompts)
    assert history["greedy"][0] == pytest.approx(greedy)
    assert all(k >= 0 for k in history["kl"]) and all(0 <= a <= 1 for a in history["pref_accuracy"])
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), base.parameters()))  # it trained


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: preference.PreferenceConfig(beta=0.0), "beta"),
        (lambda: preference.PreferenceConfig(beta=-0.5), "beta"),
        (lambda: preference.PreferenceConfig(tau=0), "tau"),
        (lambda: preference.PreferenceConfig(k=1), "k must"),
        (lambda: preference.PreferencePairs(["1+2="], ["3."], []), "one chosen and one rejected"),
        (lambda: preference.unreferenced_margin_loss(torch.zeros(3), torch.zeros(2), torch.zeros(3), torch.zeros(3), 1.0), "one shape"),
        (lambda: preference.chosen_nll_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1), 1.0), "one shape"),
        (lambda: preference.dpo_loss_gradients(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), 0), "beta"),
        (lambda: preference.pair_logprobs(None, None, [("1+2=", "3.", "4.")]), "PreferencePairs"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_bad_input_on_the_model_raises_value_error(base, pair_data):
    with pytest.raises(ValueError, match="k must"):
        preference.build_preference_pairs(base, ["1+2="], k=1)
    train, held_out, _ = pair_data
    with pytest.raises(ValueError, match="tau"):
        preference.train_preference(copy.deepcopy(base), train, held_out, preference.PreferenceConfig.for_scale("smoke"), tau=0)
    with pytest.raises(ValueError, match="held-out pairs"):
        preference.train_dpo(copy.deepcopy(base), train, preference.PreferencePairs([], [], []),
                             preference.PreferenceConfig.for_scale("smoke"))
