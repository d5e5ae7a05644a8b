"""gencore.lm against independent references: a hand-written attention, a token-by-token loop
with log_softmax, exact softmax probabilities by Monte Carlo, and the shipped checkpoint's card."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from gencore import lm, tasks


@pytest.fixture(scope="module")
def model() -> lm.GPT:
    config = lm.GPTConfig.for_scale("smoke", n_layer=2, n_embd=32, n_head=4, block_size=24)
    m = lm.make_gpt(config, seed=0, device="cpu")
    with torch.no_grad():  # larger weights than the init, so that the conditionals are far from uniform
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m.eval()


def test_attention_matches_a_hand_written_causal_softmax(model):
    attn = model.blocks[0].attn
    x = torch.randn(3, 7, model.config.n_embd)
    B, T, C = x.shape
    H = attn.n_head
    q, k, v = attn.qkv(x).split(C, dim=2)
    q, k, v = (t.reshape(B, T, H, C // H).permute(0, 2, 1, 3) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(C // H)
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    y = (scores.softmax(-1) @ v).permute(0, 2, 1, 3).reshape(B, T, C)
    torch.testing.assert_close(attn(x), attn.proj(y), atol=1e-5, rtol=1e-5)


def test_causal_masking_later_tokens_do_not_change_earlier_logits(model):
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(1, tasks.VOCAB_SIZE, (4, 20), generator=g)
    changed = idx.clone()
    changed[:, 12:] = torch.randint(1, tasks.VOCAB_SIZE, (4, 8), generator=g)
    a, _ = model(idx)
    b, _ = model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def manual_logprob(model, prompt: str, completion: str) -> float:
    """One forward pass per completion token on the growing prefix, log_softmax of the last logits."""
    total = 0.0
    for t, char in enumerate(completion):
        prefix = torch.tensor([tasks.encode(prompt + completion[:t])])
        logits, _ = model(prefix)
        total += F.log_softmax(logits[0, -1].double(), dim=-1)[tasks.encode(char)[0]].item()
    return total


def test_cached_next_token_logits_match_the_full_forward_pass(model):
    # key-value caching: the prefix once, then one position at a time, against forward on the
    # whole prefix at every step
    idx = torch.randint(1, tasks.VOCAB_SIZE, (5, 20), generator=torch.Generator().manual_seed(3))
    caches = [{} for _ in model.blocks]
    logits = model.next_token_logits(idx[:, :6], 0, caches)
    for t in range(6, 20):
        full, _ = model(idx[:, :t])
        torch.testing.assert_close(logits, full[:, -1], atol=1e-5, rtol=1e-5)
        logits = model.next_token_logits(idx[:, t:t + 1], t, caches)
    assert caches[0]["k"].shape[2] == 20
    with pytest.raises(ValueError):
        model.next_token_logits(idx[:, :2], 20, caches)  # two positions at once after the prefix
    with pytest.raises(ValueError):
        model.next_token_logits(idx[:, :1], 0, caches[:1])


class _Wrapped(torch.nn.Module):
    """The same GPT behind another module: sampling cannot use the cache and runs the prefix."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt, self.config = gpt, gpt.config

    def forward(self, idx, targets=None):
        return self.gpt(idx, targets)


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3), (0.0, None)])
def test_sampling_with_the_cache_draws_what_the_full_prefix_draws(model, temperature, top_k):
    prompts = ["12+3:", "1+2+3:", "47+85=", "9+9:"] * 50  # prompts of different lengths
    ids = lm.check_prompts(prompts, lm.context_length(model), 9)
    lens = torch.tensor([len(p) for p in ids])
    idx = lm.pad_batch(ids, int(lens.max()) + 9)
    draws = [lm.sample_continuations(m, idx, lens, lens + 9, temperature, top_k, torch.Generator().manual_seed(0))
             for m in (model, _Wrapped(model))]
    assert torch.equal(draws[0], draws[1])
    assert (draws[0][:, 9] != tasks.PAD_ID).any()  # something was drawn


def test_sequence_logprob_matches_a_token_by_token_loop(model):
    prompts = ["12+3=", "7+45+8+0:", "1=", "999+999="]
    completions = ["15.", "52,60,60.", "1,2", "1998."]
    got = lm.sequence_logprob(model, prompts, completions)
    assert got.shape == (4,)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        assert got[i].item() == pytest.approx(manual_logprob(model, p, c), abs=1e-4)
    # one pair gives a 0-d tensor with the same value as in the batch (padding does not leak)
    single = lm.sequence_logprob(model, prompts[1], completions[1])
    assert single.shape == () and single.item() == pytest.approx(got[1].item(), abs=1e-5)


def test_sequence_logprob_is_a_log_probability(model):
    # summed over every continuation of at most two tokens (the first may end the sequence),
    # the probabilities add up to 1: the chain rule, enumerated; padding has probability 0
    chars = tasks.ALPHABET
    completions = [tasks.EOS] + [a + b for a in chars if a != tasks.EOS for b in chars]
    logp = lm.sequence_logprob(model, ["3+4="] * len(completions), completions)
    assert torch.exp(logp.double()).sum().item() == pytest.approx(1.0, abs=1e-5)
    logits, _ = model(torch.tensor([tasks.encode("3+4=")]))
    assert torch.softmax(logits[0, -1], -1)[tasks.PAD_ID].item() == 0.0


def test_sft_batch_trains_on_the_completion_only(model):
    problems = [("12+3=", "15."), ("7+45+8+0:", "52,60,60.")]
    x, y = lm.make_sft_batch(problems)
    # the loss is the mean NLL of the completion tokens: total -log p over the token count
    logp = lm.sequence_logprob(model, [p for p, _ in problems], [c for _, c in problems])
    n_tokens = sum(len(c) for _, c in problems)
    assert lm.sft_loss(model, x, y).item() == pytest.approx(-logp.sum().item() / n_tokens, rel=1e-5)
    assert (y != tasks.PAD_ID).sum().item() == n_tokens


def test_top_k_one_is_greedy_and_greedy_is_argmax(model):
    prompts = ["12+3=", "45+67+1+0:", "9="]
    greedy = lm.generate(model, prompts, max_new_tokens=6, temperature=0)
    g = torch.Generator().manual_seed(5)
    top1 = lm.generate(model, prompts, max_new_tokens=6, temperature=1.3, top_k=1, generator=g)
    assert greedy == top1
    for prompt, completion in zip(prompts, greedy):  # the argmax, token by token, one prompt at a time
        text = prompt
        while len(text) - len(prompt) < 6 and not text.endswith(tasks.EOS):
            logits, _ = model(torch.tensor([tasks.encode(text)]))
            text += tasks.VOCAB[logits[0, -1].argmax().item()]
        assert completion == text[len(prompt):].replace(tasks.PAD, "")


def test_temperature_and_top_k_match_the_exact_softmax_by_monte_carlo(model):
    prompt, n = "5+5=", 20_000
    logits, _ = model(torch.tensor([tasks.encode(prompt)]))
    logits = logits[0, -1].double()
    for temperature, top_k in [(0.7, None), (1.0, None), (2.0, 4)]:
        exact = torch.softmax(logits / temperature, -1)
        if top_k is not None:
            keep = torch.zeros_like(exact, dtype=torch.bool)
            keep[torch.topk(logits, top_k).indices] = True
            exact = torch.where(keep, exact, 0.0)
            exact /= exact.sum()
        g = torch.Generator().manual_seed(1)
        firsts = [c[:1] for c in lm.generate(model, [prompt] * n, 1, temperature, top_k, g)]
        freq = torch.zeros_like(exact)
        for c in firsts:
            freq[tasks.VOCAB.index(c) if c else tasks.PAD_ID] += 1.0 / n
        se = torch.sqrt(exact * (1 - exact) / n)
        assert torch.all((freq - exact).abs() <= 5 * se + 1e-3), (temperature, top_k, freq, exact)


def test_generation_stops_at_the_end_of_sequence_and_respects_the_limit(model):
    out = lm.generate(model, ["1+1="] * 200, max_new_tokens=5, generator=torch.Generator().manual_seed(0))
    for c in out:
        assert len(c) <= 5
        assert tasks.EOS not in c[:-1]  # '.' can only be the last character


def test_bad_input_raises(model):
    with pytest.raises(ValueError, match="empty prompt"):
        lm.generate(model, [""])
    with pytest.raises(ValueError, match="context"):
        lm.generate(model, ["1+" * 12 + "1="], max_new_tokens=2)
    with pytest.raises(ValueError, match="unknown characters"):
        lm.generate(model, ["1+x="])
    with pytest.raises(ValueError, match="unknown characters"):
        lm.sequence_logprob(model, "1+2=", "3!")
    with pytest.raises(ValueError, match="context"):
        lm.sequence_logprob(model, "1+" * 12 + "1=", "3.")
    with pytest.raises(ValueError):
        lm.generate(model, ["1+2="], temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        lm.generate(model, ["1+2="], top_k=0)
    with pytest.raises(ValueError):
        lm.sequence_logprob(model, ["1+2="], ["3.", "4."])


def test_save_and_load_round_trip(model, tmp_path):
    lm.save_checkpoint(model, tmp_path / "m.pt", card={"note": "test"})
    loaded = lm.load_checkpoint(tmp_path / "m.pt", device="cpu")
    idx = torch.randint(1, tasks.VOCAB_SIZE, (2, 10))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    assert (tmp_path / "m.json").exists()
    with pytest.raises(ValueError, match="no checkpoint"):
        lm.load_checkpoint(tmp_path / "missing.pt")


def test_training_runs_at_smoke_scale_and_records_history():
    config = lm.GPTConfig.for_scale("smoke", steps=5)
    model = lm.make_gpt(config, device="cpu")
    history = lm.train_lm(model, config=config, progress=False)
    assert history["step"] == [1, 2, 3, 4, 5]
    assert all(math.isfinite(v) for v in history["loss"])


def test_shipped_checkpoint_reaches_its_card_accuracy():
    card = lm.base_model_card()
    model = lm.load_base_model(device="cpu")
    assert lm.BASE_CHECKPOINT.stat().st_size < 5 * 2**20  # a few MB at most
    assert model.num_params() == card["parameters"]
    n = card["smoke_eval"]["n"]
    for task, stated in card["smoke_eval"]["greedy_accuracy"].items():
        got = lm.evaluate(model, task, n=n, seed=card["eval_seed"])
        # the same problems and greedy decoding: equal up to rare argmax ties across machines
        assert abs(got - stated) <= 0.03, (task, got, stated)
        # and consistent with the larger evaluation, within 4 standard errors
        big = card["greedy_accuracy"][task]
        se = math.sqrt(max(big * (1 - big), 0.01) / n)
        assert abs(got - big) <= 4 * se, (task, got, big)
    # competent but imperfect on the task with steps, so that sampling strategies matter
    assert 0.3 <= card["greedy_accuracy"]["sum_steps"] <= 0.8
