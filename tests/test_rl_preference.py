"""gencore.rl and gencore.preference against independent references: scipy's optimiser, exact
gradients by enumeration, explicit loops over groups and tokens, autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from gencore import preference, rl

# ---------------------------------------------------------------------------------------------
# the KL-regularised optimum and the score-function estimator
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_kl_regularized_optimum_maximises_the_objective(beta):
    ref = torch.tensor([0.5, 0.2, 0.2, 0.1], dtype=torch.float64)
    r = torch.tensor([0.0, 1.0, 0.3, 2.0], dtype=torch.float64)
    optimum = rl.kl_regularized_optimum(ref, r, beta)

    def negative(logits):  # the objective over the simplex, parameterised by softmax logits
        p = torch.softmax(torch.tensor(logits), 0)
        return -float(rl.kl_regularized_objective(p, ref, r, beta))

    found = scipy.optimize.minimize(negative, np.zeros(4), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000})
    assert torch.allclose(torch.softmax(torch.tensor(found.x), 0), optimum, atol=1e-4)
    # the optimal value is beta log Z
    z = (ref * torch.exp(r / beta)).sum()
    assert float(rl.kl_regularized_objective(optimum, ref, r, beta)) == pytest.approx(beta * math.log(z), rel=1e-9)


def test_kl_regularized_optimum_limits_and_zero_reference_mass():
    ref = torch.tensor([0.0, 0.6, 0.4])
    r = torch.tensor([9.0, 0.0, 1.0])
    assert rl.kl_regularized_optimum(ref, r, 0.01)[0] == 0  # outside the reference's support: never
    assert torch.allclose(rl.kl_regularized_optimum(ref, r, 0.01), torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)  # beta -> 0: argmax
    assert torch.allclose(rl.kl_regularized_optimum(ref, r, 1e4), ref, atol=1e-4)  # beta -> inf: the reference
    batch = rl.kl_regularized_optimum(ref.expand(3, 3), torch.randn(3, 3), 1.0)
    assert batch.shape == (3, 3) and torch.allclose(batch.sum(-1), torch.ones(3))


def test_score_function_estimator_is_unbiased_for_the_exact_gradient():
    # E_{y~softmax(theta)}[f(y)] over 4 outcomes: exact gradient by enumeration and autograd
    theta = torch.tensor([0.3, -0.2, 0.5, 0.0], requires_grad=True)
    f = torch.tensor([1.0, 0.0, 2.0, -1.0])
    (exact,) = torch.autograd.grad((torch.softmax(theta, 0) * f).sum(), theta)
    g = torch.Generator().manual_seed(0)
    y = torch.multinomial(torch.softmax(theta, 0).detach(), 200_000, replacement=True, generator=g)
    logp = torch.log_softmax(theta, 0)[y]
    (estimate,) = torch.autograd.grad(rl.reinforce_surrogate(logp, f[y]), theta, retain_graph=True)
    assert torch.allclose(estimate, exact, atol=0.01)  # Monte Carlo s.e. about 0.003 per entry
    # a constant baseline changes nothing in expectation (E[grad log p] = 0)
    (with_baseline,) = torch.autograd.grad(rl.reinforce_surrogate(logp, f[y], baseline=0.75), theta)
    assert torch.allclose(with_baseline, exact, atol=0.01)


# ---------------------------------------------------------------------------------------------
# advantages and filters
# ---------------------------------------------------------------------------------------------


def test_group_advantages_against_a_loop_over_groups():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    got = rl.group_advantages(rewards, 4)
    for k in range(3):
        group = rewards[4 * k: 4 * k + 4].numpy()
        expected = (group - group.mean()) / (group.std() + 1e-6)  # numpy's std divides by N
        assert np.allclose(got[4 * k: 4 * k + 4].numpy(), expected, atol=1e-6)
    assert torch.equal(got[4:8], torch.zeros(4))  # all passed: no signal
    batch = rl.group_advantages(rewards, 4, scale="batch")
    centred = np.concatenate([g - g.mean() for g in rewards.numpy().reshape(3, 4)])
    assert np.allclose(batch.numpy(), centred / (rewards.numpy().std() + 1e-6), atol=1e-6)
    # the baseline is the mean of the whole group, the completion itself included: (G - 1) / G times
    # the leave-one-out (RLOO) difference r_i - mean of the other G - 1
    loo = np.array([r - np.delete(g, i).mean() for g in rewards.numpy().reshape(3, 4) for i, r in enumerate(g)])
    assert np.allclose(rl.group_advantages(rewards, 4, scale="none").numpy(), 3 / 4 * loo, atol=1e-6)


def test_informative_groups_and_pass_rate_filter():
    rewards = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0, 1]).float()
    assert rl.informative_groups(rewards, 3).tolist() == [False, False, True]
    pass_filter = rl.PassRateFilter(threshold=0.9)
    pass_filter.update(["a", "b", "c"], torch.tensor([1.0] * 10 + [0.0] * 10 + [1.0] * 9 + [0.0]), 10)
    # a passed 10/10 and c 9/10: both reach 0.9 and are not sampled again; b (0/10) and d (unseen) stay
    assert pass_filter.keep(["a", "b", "c", "d"]) == ["b", "d"]


# ---------------------------------------------------------------------------------------------
# per-token objectives
# ---------------------------------------------------------------------------------------------


def _token_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    n, t = 6, 5
    logprobs = (-torch.rand(n, t, generator=g) * 3).requires_grad_()
    gen = logprobs.detach() + 0.3 * torch.randn(n, t, generator=g)
    ref = logprobs.detach() + 0.2 * torch.randn(n, t, generator=g)
    lengths = torch.tensor([5, 3, 1, 4, 5, 2])
    mask = (torch.arange(t)[None] < lengths[:, None]).float()
    advantages = torch.randn(n, generator=g)
    return logprobs, gen, ref, mask, advantages


def test_scalerl_loss_matches_a_loop_over_prompts_and_its_gradient_is_the_weighted_score():
    # three prompts of two completions each; their token counts 8, 5 and 7 differ, so the prompt
    # average (ScaleRL) differs from the token average and from the per-completion mean
    logprobs, gen, _, mask, adv = _token_batch()
    loss, stats = rl.scalerl_loss(logprobs, gen, adv, mask, 2, max_weight=1.2)
    per_prompt, truncated, all_tokens = [], 0, 0
    for prompt in range(3):
        total, tokens = 0.0, 0
        for i in (2 * prompt, 2 * prompt + 1):
            for t in range(int(mask[i].sum())):
                rho = math.exp(logprobs[i, t].item() - gen[i, t].item())
                truncated += rho > 1.2
                total += min(rho, 1.2) * adv[i].item() * logprobs[i, t].item()
                tokens += 1
        per_prompt.append(-total / tokens)
        all_tokens += tokens
    assert loss.item() == pytest.approx(sum(per_prompt) / 3, rel=1e-6)
    assert stats["truncated_fraction"] == pytest.approx(truncated / all_tokens)
    # the weight is a constant: d loss / d log pi(y_it) = -min(rho, w_max) A_i / (P sum_g |y_g| of i's prompt)
    (grad,) = torch.autograd.grad(loss, logprobs)
    rho = torch.exp(logprobs.detach() - gen).clamp_max(1.2)
    prompt_tokens = mask.view(3, -1).sum(1).repeat_interleave(2)[:, None]  # (6, 1)
    assert torch.allclose(grad, -rho * adv[:, None] * mask / (3 * prompt_tokens), atol=1e-7)
    # the other aggregations give other numbers on this batch
    terms = rho * adv[:, None] * logprobs.detach()
    assert abs(loss.item() + rl.token_average(terms, mask).item()) > 1e-3
    assert abs(loss.item() + rl.sample_average(terms, mask).item()) > 1e-3


def test_prompt_average_weighs_prompts_equally_and_tokens_equally_within_a_prompt():
    # prompt 0: completions of 4 and 1 tokens; prompt 1: completions of 1 and 1 token
    per_token = torch.zeros(4, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]])
    (grad,) = torch.autograd.grad(rl.prompt_average(per_token, mask, 2), per_token)
    assert torch.allclose(grad[:2][mask[:2].bool()], torch.full((5,), 1 / (2 * 5)))  # 1 / (P sum_g |y_g|)
    assert torch.allclose(grad[2:][mask[2:].bool()], torch.full((2,), 1 / (2 * 2)))
    (token_grad,) = torch.autograd.grad(rl.token_average(per_token, mask), per_token)
    assert torch.allclose(token_grad[mask.bool()], torch.full((7,), 1 / 7))  # every token of the batch alike
    with pytest.raises(ValueError, match="does not divide"):
        rl.prompt_average(per_token, mask, 3)


def test_grpo_loss_matches_a_loop():
    logprobs, old, ref, mask, adv = _token_batch(1)
    loss, stats = rl.grpo_loss(logprobs, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.1)
    per_sequence, clipped, tokens, kl_total = [], 0, 0, 0.0
    for i in range(6):
        terms = []
        for t in range(int(mask[i].sum())):
            ratio = math.exp(logprobs[i, t].item() - old[i, t].item())
            a = adv[i].item()
            surrogate = min(ratio * a, min(max(ratio, 0.8), 1.2) * a)
            d = ref[i, t].item() - logprobs[i, t].item()
            kl = math.exp(d) - d - 1
            terms.append(-(surrogate - 0.1 * kl))
            clipped += not (0.8 <= ratio <= 1.2)
            kl_total += kl
            tokens += 1
        per_sequence.append(sum(terms) / len(terms))
    assert loss.item() == pytest.approx(sum(per_sequence) / 6, abs=1e-6)
    assert stats["clip_fraction"] == pytest.approx(clipped / tokens)
    assert stats["kl"] == pytest.approx(kl_total / tokens, rel=1e-6)


def test_k3_is_an_unbiased_nonnegative_kl_estimate():
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.5, 0.3])
    y = torch.multinomial(p, 400_000, replacement=True, generator=torch.Generator().manual_seed(0))
    k3 = rl.k3_kl(p.log()[y], q.log()[y])
    exact = float((p * (p / q).log()).sum())
    assert (k3 >= 0).all() and k3.mean().item() == pytest.approx(exact, abs=3e-3)


# ---------------------------------------------------------------------------------------------
# preferences
# ---------------------------------------------------------------------------------------------


def test_bradley_terry_against_a_bernoulli_likelihood():
    rw, rl_ = torch.tensor([2.0, -1.0, 0.0, 30.0]), torch.tensor([1.0, 1.0, 0.0, -30.0])
    expected = -torch.distributions.Bernoulli(logits=rw - rl_).log_prob(torch.ones(4))
    assert torch.allclose(preference.bradley_terry_loss(rw, rl_), expected)
    p = preference.bradley_terry_probability(rw, rl_)
    assert torch.allclose(p, torch.exp(rw) / (torch.exp(rw) + torch.exp(rl_)))


def test_dpo_loss_is_bradley_terry_on_implicit_rewards_and_the_partition_function_cancels():
    g = torch.Generator().manual_seed(0)
    pw, pl, rw, rl_ = (torch.randn(8, generator=g) * 5 - 20 for _ in range(4))
    beta = 0.3
    loss = preference.dpo_loss(pw, pl, rw, rl_, beta)
    margin = beta * ((pw - rw) - (pl - rl_))
    assert torch.allclose(loss, torch.log1p(torch.exp(-margin)), atol=1e-6)
    # adding the same per-prompt constant (beta log Z) to both implicit rewards changes nothing
    shifted = preference.bradley_terry_loss(preference.implicit_rewards(pw, rw, beta) + 7.0, preference.implicit_rewards(pl, rl_, beta) + 7.0)
    assert torch.allclose(shifted, loss, atol=1e-6)


def test_dpo_hand_derived_gradient_matches_autograd():
    g = torch.Generator().manual_seed(1)
    pw, pl = torch.randn(6, generator=g).requires_grad_(), torch.randn(6, generator=g).requires_grad_()
    rw, rl_ = torch.randn(6, generator=g), torch.randn(6, generator=g)
    loss = preference.dpo_loss(pw, pl, rw, rl_, beta=0.5)
    grad_w, grad_l = torch.autograd.grad(loss.sum(), (pw, pl))
    hand_w, hand_l = preference.dpo_loss_gradients(pw, pl, rw, rl_, beta=0.5)
    assert torch.allclose(hand_w, grad_w, atol=1e-6) and torch.allclose(hand_l, grad_l, atol=1e-6)
    # the reference is a constant: no gradient reaches it
    rw2 = rw.clone().requires_grad_()
    preference.dpo_loss(pw, pl, rw2, rl_, beta=0.5).sum().backward()
    assert rw2.grad is None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: rl.kl_regularized_optimum(torch.tensor([0.5, 0.6]), torch.zeros(2), 1.0), "sum to 1"),
        (lambda: rl.kl_regularized_optimum(torch.tensor([0.5, 0.5]), torch.zeros(2), 0.0), "beta"),
        (lambda: rl.kl_regularized_optimum(torch.tensor([1.5, -0.5]), torch.zeros(2), 1.0), "negative"),
        (lambda: rl.group_advantages(torch.zeros(10), 3), "does not divide"),
        (lambda: rl.group_advantages(torch.zeros(9), 3, scale="prompt"), "scale"),
        (lambda: rl.scalerl_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3), 1), "shape of mask"),
        (lambda: preference.dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(4), 0.1), "one shape"),
        (lambda: preference.dpo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), -1.0), "beta"),
    ],
)
def test_bad_input_raises_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# rollouts and the RLVR loop on the shipped base model
# ---------------------------------------------------------------------------------------------


def test_rollout_masks_exactly_the_completion_tokens_and_scores_them():
    from gencore import lm, tasks

    model = lm.load_base_model(device="cpu")
    prompts = [p for p, _ in tasks.make_problems("sum_steps", 3, "train", 0)]
    batch = rl.rollout(model, prompts, 4, generator=torch.Generator().manual_seed(0))
    assert batch.prompts == [p for p in prompts for _ in range(4)] and len(batch.completions) == 12
    for i, (prompt, completion) in enumerate(zip(batch.prompts, batch.completions)):
        assert int(batch.mask[i].sum()) == len(completion)  # every completion token, "." included
        assert batch.rewards[i].item() == float(tasks.verify(prompt, completion))
        # the generator's log-probabilities of the row add up to log p(completion | prompt)
        expected = lm.sequence_logprob(model, prompt, completion).item()
        assert torch.where(batch.mask[i].bool(), batch.gen_logprobs[i], 0.0).sum().item() == pytest.approx(expected, abs=1e-4)


def test_train_rlvr_runs_and_reports_its_history():
    from gencore import lm

    model = lm.load_base_model(device="cpu")
    config = rl.RLConfig.for_scale("smoke")
    history = rl.train_rlvr(model, config, progress=False)
    assert history["step"] == list(range(1, config.steps + 1))
    assert len(history["pass@1"]) == len(history["eval_step"]) == len(history["greedy"]) >= 2
    assert all(0 <= r <= 1 for r in history["reward"]) and all(k >= 0 for k in history["kl"])
    assert history["tokens"] == sorted(history["tokens"]) and history["tokens"][-1] > 0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_pass_rates_monte_carlo_against_the_exact_probability_of_the_correct_completion():
    from gencore import lm, tasks

    model = lm.load_base_model(device="cpu")
    problems = tasks.make_problems("sum_steps", 3, "test", 0)
    answers = dict(problems)
    prompts = list(answers)
    k = 1500
    rates = rl.pass_rates(model, prompts, k=k, verify=lambda p, c: c == answers[p],
                          max_new_tokens=tasks.max_completion_length("sum_steps"))
    for prompt, rate in zip(prompts, rates.tolist()):
        exact = math.exp(lm.sequence_logprob(model, prompt, answers[prompt]).item())  # the only accepted completion
        se = math.sqrt(max(exact * (1 - exact), 1e-4) / k)
        assert abs(rate - exact) < 4 * se + 1e-6, (prompt, rate, exact)
    # greedy decoding passes a prompt always or never; the same seed gives the same draws
    greedy = rl.pass_rates(model, prompts, k=3, temperature=0.0)
    expected = [float(tasks.verify(p, c)) for p, c in zip(prompts, lm.generate(model, prompts, None, 0.0))]
    assert greedy.tolist() == expected
    assert torch.equal(rl.pass_rates(model, prompts, k=4, seed=5), rl.pass_rates(model, prompts, k=4, seed=5))


def test_paired_difference_is_the_paired_t_statistic_standard_error():
    import scipy.stats

    g = torch.Generator().manual_seed(0)
    before = torch.rand(50, generator=g)
    after = (before + 0.05 + 0.1 * torch.randn(50, generator=g)).clamp(0, 1)
    mean, se = rl.paired_difference(before, after)
    t = scipy.stats.ttest_rel(after.numpy(), before.numpy()).statistic
    assert mean == pytest.approx(float((after - before).double().mean()), abs=1e-12)
    assert se == pytest.approx(mean / t, rel=1e-6)
    with pytest.raises(ValueError, match="one shape"):
        rl.paired_difference(before, after[:10])
