"""A small GPT on the synthetic tasks of ``gencore.tasks``, top to bottom.

1. the model: ``GPTConfig``, causal self-attention through ``scaled_dot_product_attention`` and a
   pre-norm ``GPT`` (after nanoGPT, Radford et al. 2019) whose ``forward`` returns ``logits, loss``;
2. the math of a language model as an autoregressive density: ``token_logprobs`` and
   ``sequence_logprob``, log p(completion | prompt) = sum_t log p(y_t | prompt, y_<t);
3. sampling, batched, with temperature and top-k (``sample_continuations``, ``generate``);
4. training by maximum likelihood on the completion tokens (supervised fine-tuning):
   ``sft_loss``, ``train_lm``; checkpoints (``save_checkpoint``, ``load_checkpoint``,
   ``load_base_model``, the model shipped in ``gencore/checkpoints/``).

Shapes: B sequences, T positions, V = ``tasks.VOCAB_SIZE`` tokens, C = ``n_embd`` channels.
Batches are padded on the right with ``tasks.PAD_ID``; causal attention means padding after a
position never changes what the model computes there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from gencore import tasks
from gencore.device import (StepLog, autocast, compiled, configure_backend, float32_region, get_device, pick,
                            progress_bar, to_device)
from gencore.nn import at_least_float32

CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoints"
BASE_CHECKPOINT = CHECKPOINT_DIR / "base_lm.pt"
BASE_CARD = CHECKPOINT_DIR / "base_lm.json"

# ---------------------------------------------------------------------------------------------
# 1. The model
# ---------------------------------------------------------------------------------------------


@dataclass
class GPTConfig:
    vocab_size: int = tasks.VOCAB_SIZE
    block_size: int = 24  # context length: the longest problem (sum_steps) takes 17 tokens
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 64  # C, split over the heads
    # training
    steps: int = 2000  # optimiser steps
    batch_size: int = 128
    lr: float = 3e-3  # peak AdamW learning rate (linear warm-up, cosine decay)
    warmup: int = 100
    weight_decay: float = 0.01
    mixture: dict[str, float] = field(default_factory=lambda: {"add": 0.4, "sum_steps": 0.4, "sum_direct": 0.2})
    n_train: int = 50_000  # training problems per task (fixed pool, drawn from the train split)

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> GPTConfig:
        """Sizes for ``GENCORE_SCALE`` (or ``scale``); keyword overrides win."""
        sizes = pick(
            smoke=dict(n_layer=1, n_head=2, n_embd=32, steps=20, batch_size=32, n_train=500),
            small=dict(),
            full=dict(n_layer=6, n_head=8, n_embd=256, steps=10_000, batch_size=512, lr=1e-3, n_train=500_000),
            scale=scale,
        )
        return cls(**{**sizes, **overrides})

    def model_dict(self) -> dict:
        """The fields that define the network (what a checkpoint must store)."""
        return {k: getattr(self, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")}


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to positions <= t only."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if config.n_embd % config.n_head != 0:
            raise ValueError(f"n_embd ({config.n_embd}) must be divisible by n_head ({config.n_head})")
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """``x`` (B, T, C) -> (B, T, C). With a ``cache`` (a dict, empty at first), the keys and
        values of the positions seen before are kept there and ``x`` holds the positions after
        them: sampling then runs one new position per token instead of the whole prefix."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
        causal = True
        if cache is not None:
            if "k" in cache:  # earlier positions: every new one may attend to all of them
                if T != 1:
                    raise ValueError(f"after the first call a cache takes one position at a time, got {T}")
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                causal = False
            cache["k"], cache["v"] = k, v
        # softmax(q k^T / sqrt(d)) v with the upper triangle masked: the autoregressive factorisation
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # (B, H, T, C/H)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(), nn.Linear(4 * config.n_embd, config.n_embd)
        )

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and position embeddings, ``n_layer`` pre-norm blocks, a final norm and a linear head."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.register_buffer("pad_mask", torch.arange(config.vocab_size) == tasks.PAD_ID, persistent=False)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Next-token logits (B, T, V) for token ids ``idx`` (B, T); with ``targets`` (B, T) also the
        mean cross-entropy over the positions whose target is not ``PAD_ID``."""
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the context ({self.config.block_size})")
        pos = torch.arange(T, device=idx.device)
        x = self.tok_emb(idx) + self.pos_emb(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        with float32_region(idx.device):  # the final logits in float32, also under bf16 autocast:
            logits = self.head(at_least_float32(self.ln_f(x)))  # (B, T, V); log-probs and their ratios need it
        # padding is not a character: probability 0 (exp(-1e4) underflows), so p(. | prefix) sums
        # to 1 over real tokens; finite rather than -inf, so that a masked log-prob times 0 is 0
        logits = logits.masked_fill(self.pad_mask, -1e4)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=tasks.PAD_ID)
        return logits, loss

    @torch.no_grad()
    def next_token_logits(self, idx: torch.Tensor, position: int, caches: list[dict]) -> torch.Tensor:
        """Logits (B, V) of the token after ``idx`` (B, T), the tokens at positions ``position`` ..
        ``position`` + T - 1, given ``caches`` (one dict per block) that hold the positions before.

        ``forward`` on the whole prefix gives the same logits at its last position; this runs only
        the new positions (key-value caching), which makes sampling several times faster.
        """
        B, T = idx.shape
        if len(caches) != len(self.blocks) or position + T > self.config.block_size:
            raise ValueError(f"need one cache per block ({len(self.blocks)}) and position + T <= "
                             f"{self.config.block_size}, got {len(caches)} and {position} + {T}")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(position, position + T, device=idx.device))  # (B, T, C)
        for block, cache in zip(self.blocks, caches):
            x = block(x, cache)
        with float32_region(idx.device):
            logits = self.head(at_least_float32(self.ln_f(x[:, -1])))  # (B, V)
        return logits.masked_fill(self.pad_mask, -1e4)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def context_length(model: nn.Module) -> int:
    return int(model.config.block_size)


def _device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


# ---------------------------------------------------------------------------------------------
# 2. Log-probabilities of completions
# ---------------------------------------------------------------------------------------------


def _as_list(x, name: str) -> list[str]:
    if isinstance(x, str):
        return [x]
    if not isinstance(x, (list, tuple)) or not all(isinstance(s, str) for s in x):
        raise ValueError(f"{name} must be a string or a list of strings, got {type(x).__name__}")
    return list(x)


def check_prompts(prompts: list[str], context: int, room: int = 1) -> list[list[int]]:
    """Token ids of each prompt; ``ValueError`` if one is empty, holds an unknown character or
    ``.``, or leaves fewer than ``room`` positions of the ``context`` for the completion."""
    if not prompts:
        raise ValueError("need at least one prompt")
    out = []
    for p in prompts:
        if len(p) == 0:
            raise ValueError("empty prompt: the model needs at least one token to condition on")
        if tasks.EOS in p:
            raise ValueError(f"a prompt cannot contain the end-of-sequence character {tasks.EOS!r}: {p!r}")
        ids = tasks.encode(p)
        if len(ids) + room > context:
            raise ValueError(
                f"prompt {p!r} has {len(ids)} tokens; with {room} new token(s) that exceeds the context of {context}"
            )
        out.append(ids)
    return out


def pad_batch(seqs: list[list[int]], length: int | None = None) -> torch.Tensor:
    """Right-pad lists of token ids with ``PAD_ID`` into a (B, length) long tensor."""
    length = max(len(s) for s in seqs) if length is None else length
    if any(len(s) > length for s in seqs):
        raise ValueError(f"a sequence is longer than the padded length {length}")
    return torch.tensor([s + [tasks.PAD_ID] * (length - len(s)) for s in seqs], dtype=torch.long)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(targets[b, t] | ...) = log_softmax(logits[b, t])[targets[b, t]], shape (B, T)."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be targets {tuple(targets.shape)} plus a vocabulary axis")
    return F.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def sequence_logprob(model: nn.Module, prompt, completion) -> torch.Tensor:
    """log p(completion | prompt) = sum_t log p(y_t | prompt, y_<t), the completion's tokens only.

    The chain rule of probability (the autoregressive factorisation): one forward pass over
    prompt + completion gives every conditional, and the prompt's own tokens are not scored.
    ``prompt`` and ``completion`` are strings (a 0-d tensor comes back) or equal-length lists
    of strings (a (B,) tensor). Gradients flow when the model's parameters require them.
    """
    single = isinstance(prompt, str)
    prompts, completions = _as_list(prompt, "prompt"), _as_list(completion, "completion")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    prompt_ids = check_prompts(prompts, context_length(model), room=0)
    comp_ids = [tasks.encode(c) for c in completions]
    if any(len(c) == 0 for c in comp_ids):
        raise ValueError("empty completion: there is nothing to score")
    seqs = [p + c for p, c in zip(prompt_ids, comp_ids)]
    if max(len(s) for s in seqs) > context_length(model) + 1:
        raise ValueError(f"prompt + completion longer than the context ({context_length(model)}) + 1")
    device = _device(model)
    idx = to_device(pad_batch(seqs), device)  # (B, L); queued, so a training step does not wait here
    logits, _ = model(idx[:, :-1])  # (B, L-1, V): position t predicts token t+1
    logp = token_logprobs(logits, idx[:, 1:])  # (B, L-1)
    # keep target positions inside the completion: index j predicts token j+1
    j = torch.arange(idx.shape[1] - 1, device=idx.device)
    starts = to_device(torch.tensor([len(p) for p in prompt_ids]), device)
    ends = to_device(torch.tensor([len(s) for s in seqs]), device)
    mask = (j[None] + 1 >= starts[:, None]) & (j[None] + 1 < ends[:, None])
    total = torch.where(mask, logp, 0.0).sum(dim=1)  # where, not *: padding may score -inf
    return total[0] if single else total


# ---------------------------------------------------------------------------------------------
# 3. Sampling
# ---------------------------------------------------------------------------------------------


def next_token_distribution(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """Probabilities proportional to exp(logits / temperature), restricted to the ``top_k`` largest.

    temperature = 1/alpha gives p(v | ...)^alpha renormalised: low-temperature sampling.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (use greedy decoding for 0), got {temperature}")
    scaled = logits.float() / temperature
    if top_k is not None:
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        kth = torch.topk(scaled, min(top_k, scaled.shape[-1]), dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    return F.softmax(scaled, dim=-1)


@torch.no_grad()
def sample_continuations(
    model: nn.Module,
    idx: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    probs_fn: Callable | None = None,
) -> torch.Tensor:
    """Fill positions start[b] .. end[b]-1 of each row of ``idx`` (B, L) token by token.

    Row b keeps idx[b, :start[b]] and samples x_t ~ p(x_t | x_<t) (tempered, top-k) for
    t >= start[b]; after an end-of-sequence token the row is padding. ``temperature=0`` is
    greedy decoding. ``probs_fn(logits) -> probs`` (B, V), if given, replaces the tempered
    softmax (``temperature`` and ``top_k`` are then unused). Returns a new tensor; every row's
    positions from ``end[b]`` on are padding.
    """
    idx = idx.clone()
    B, L = idx.shape
    if int(start.min()) < 1 or int(end.max()) > min(L, context_length(model)):
        raise ValueError("need 1 <= start and end <= min(idx width, context)")
    ar = torch.arange(L, device=idx.device)
    idx[ar[None] >= end[:, None]] = tasks.PAD_ID
    spans = list(zip(start.tolist(), end.tolist()))  # on the host once, not a GPU round trip per token
    # the course GPT keeps the keys and values of the positions it has seen (one new position per
    # token, the same logits); any other model is run on the whole prefix at every step
    gpt = getattr(model, "_orig_mod", model)  # through torch.compile's wrapper
    caches = [{} for _ in gpt.blocks] if isinstance(gpt, GPT) else None
    seen = 0  # positions already in the caches
    for t in range(int(start.min()), int(end.max())):
        if caches is not None:  # every position up to t - 1 enters the caches, skipped steps too
            logits = gpt.next_token_logits(idx[:, seen:t], seen, caches)  # (B, V)
            seen = t
        if not any(s <= t < e for s, e in spans):
            continue
        write = (start <= t) & (t < end)  # (B,)
        if caches is None:
            logits, _ = model(idx[:, :t])
            logits = logits[:, -1]  # (B, V): the prediction for position t
        if temperature == 0 and probs_fn is None:
            token = logits.argmax(dim=-1)
        else:
            probs = next_token_distribution(logits, temperature, top_k) if probs_fn is None else probs_fn(logits)
            if generator is not None and generator.device != probs.device:  # e.g. a CPU generator, CUDA model
                token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(probs.device)
            else:
                token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        finished = (idx[:, t - 1] == tasks.EOS_ID) | (idx[:, t - 1] == tasks.PAD_ID)
        token = torch.where(finished, torch.full_like(token, tasks.PAD_ID), token)
        idx[:, t] = torch.where(write, token, idx[:, t])
    return idx


def completions_from(idx: torch.Tensor, prompt_lens: list[int]) -> list[str]:
    """The generated strings after each prompt (up to and including ``.`` if one was produced)."""
    return [tasks.decode(row[n:]) for row, n in zip(idx.tolist(), prompt_lens)]


def generate(
    model: nn.Module,
    prompts,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    probs_fn: Callable | None = None,
) -> list[str]:
    """Sample one completion per prompt, all prompts in one batch; ``temperature=0`` is greedy.

    A completion stops at ``.`` or after ``max_new_tokens`` tokens (default: what the context
    leaves after the longest prompt). Sampling with top_k=1 is greedy decoding.
    ``probs_fn(logits) -> probs`` replaces the tempered softmax (see ``sample_continuations``).
    """
    prompts = _as_list(prompts, "prompts")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    context = context_length(model)
    room = 1 if max_new_tokens is None else max_new_tokens
    if not isinstance(room, int) or room < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    ids = check_prompts(prompts, context, room)
    if max_new_tokens is None:
        max_new_tokens = context - max(len(p) for p in ids)
    lens = torch.tensor([len(p) for p in ids])
    idx = pad_batch(ids, int(lens.max()) + max_new_tokens).to(_device(model))
    lens = lens.to(idx.device)
    out = sample_continuations(model, idx, lens, lens + max_new_tokens, temperature, top_k, generator, probs_fn)
    return completions_from(out.cpu(), lens.tolist())


# ---------------------------------------------------------------------------------------------
# 4. Training by maximum likelihood on the completions (SFT), checkpoints
# ---------------------------------------------------------------------------------------------


def make_sft_batch(problems: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, L-1) and targets (B, L-1) for next-token prediction on prompt + completion,
    where a target is ``PAD_ID`` (ignored) unless it is a completion token."""
    return sft_batch_from(*encode_problems(problems))


def encode_problems(problems: list[tuple[str, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every problem's prompt + completion tokens once, right-padded: ids (N, L), prompt lengths
    (N,) and sequence lengths (N,). A training loop then draws batches by indexing these tensors."""
    seqs, n_prompt = [], []
    for prompt, completion in problems:
        p = tasks.encode(prompt)
        seqs.append(p + tasks.encode(completion))
        n_prompt.append(len(p))
    return pad_batch(seqs), torch.tensor(n_prompt), torch.tensor([len(q) for q in seqs])


def sft_batch_from(ids: torch.Tensor, n_prompt: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``make_sft_batch`` for rows of ``encode_problems``: the batch is cut to its longest sequence."""
    idx = ids[:, : int(lengths.max())]
    x, y = idx[:, :-1], idx[:, 1:].clone()
    j = torch.arange(y.shape[1], device=y.device)
    y[j[None] + 1 < n_prompt[:, None]] = tasks.PAD_ID  # do not train on the prompt
    return x, y


def sft_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the completion tokens: -1/N sum log p(y_t | prompt, y_<t)."""
    _, loss = model(x, y)
    return loss


def train_lm(
    model: GPT,
    problems: dict[str, list[tuple[str, str]]] | None = None,
    *,
    config: GPTConfig | None = None,
    loss_fn: Callable = sft_loss,
    eval_every: int = 0,
    eval_n: int = 100,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, list[float]]:
    """Train with AdamW on minibatches drawn from ``problems`` (task -> list of (prompt, completion))
    with the weights of ``config.mixture``; returns the history (``step``, ``loss``, ``lr``).

    ``loss_fn(model, x, y)`` is the objective (``sft_loss``: maximum likelihood of completions).
    With ``eval_every > 0``, the greedy accuracy on ``eval_n`` held-out problems of each task is
    recorded every ``eval_every`` steps (``eval_step`` and ``accuracy/<task>``).
    """
    config = config or model.config
    if problems is None:
        problems = {t: tasks.make_problems(t, config.n_train, "train", seed) for t in config.mixture}
    names = list(config.mixture)
    if any(not problems.get(t) for t in names):
        raise ValueError(f"need training problems for every task of the mixture {names}")
    weights = torch.tensor([config.mixture[t] for t in names], dtype=torch.float)
    # every problem tokenised once: a step then indexes tensors instead of encoding strings
    encoded = [encode_problems(problems[t]) for t in names]
    width = max(ids.shape[1] for ids, _, _ in encoded)
    pool_ids = torch.cat([F.pad(ids, (0, width - ids.shape[1]), value=tasks.PAD_ID) for ids, _, _ in encoded])
    pool_prompt, pool_len = torch.cat([e[1] for e in encoded]), torch.cat([e[2] for e in encoded])
    offsets = torch.tensor([0] + [len(problems[t]) for t in names]).cumsum(0).tolist()
    device = _device(model)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98))
    g = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "loss": [], "lr": [], "eval_step": []}
    history.update({f"accuracy/{t}": [] for t in names})
    bar = progress_bar(range(1, config.steps + 1), config.steps, "SFT", progress)
    log = StepLog(history, bar=bar, show=("loss",))
    configure_backend(device)
    net = compiled(model)  # evaluation and sampling use the plain model (their shapes vary)
    model.train()
    for step in bar:
        # 1. learning rate: linear warm-up then cosine decay to 10% of the peak
        warm = min(1.0, step / max(1, config.warmup))
        cos = 0.5 * (1 + math.cos(math.pi * min(1.0, step / config.steps)))
        lr = config.lr * warm * (0.1 + 0.9 * cos)
        for group in opt.param_groups:
            group["lr"] = lr
        # 2. a minibatch from the task mixture
        task_of = torch.multinomial(weights, config.batch_size, replacement=True, generator=g)
        rows = []
        for k, name in enumerate(names):
            n = int((task_of == k).sum())
            rows.append(offsets[k] + torch.randint(len(problems[name]), (n,), generator=g))
        rows = torch.cat(rows)
        x, y = sft_batch_from(pool_ids[rows], pool_prompt[rows], pool_len[rows])
        # 3. one step on the negative log-likelihood
        with autocast(device):
            loss = loss_fn(net, to_device(x, device), to_device(y, device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history["step"].append(step)
        log.append(loss=loss)
        history["lr"].append(lr)
        if eval_every and (step % eval_every == 0 or step == config.steps):
            log.flush()
            model.eval()
            history["eval_step"].append(step)
            for t in names:
                history[f"accuracy/{t}"].append(evaluate(model, t, eval_n))
            model.train()
    log.flush()
    model.eval()
    return history


def evaluate(model: nn.Module, task: str, n: int = 200, seed: int = 0, temperature: float = 0.0, batch: int = 500,
             generator: torch.Generator | None = None) -> float:
    """Accuracy on ``n`` held-out problems of ``task`` (greedy by default)."""
    problems = tasks.make_problems(task, n, "test", seed)
    prompts = [p for p, _ in problems]
    completions = []
    for i in range(0, n, batch):
        completions += generate(model, prompts[i : i + batch], tasks.max_completion_length(task), temperature,
                                generator=generator)
    return tasks.accuracy(prompts, completions)


def save_checkpoint(model: GPT, path, card: dict | None = None) -> None:
    """Save the weights and the network's config to ``path``; ``card`` (if given) goes beside it as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"config": model.config.model_dict(), "state_dict": state}, path)
    if card is not None:
        path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def load_checkpoint(path, device=None) -> GPT:
    """A ``GPT`` with the weights of ``path``, in eval mode, on ``device`` (default: ``get_device()``)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"no checkpoint at {path}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**blob["config"]))
    model.load_state_dict(blob["state_dict"])
    return model.to(device or get_device()).eval()


def load_base_model(device=None) -> GPT:
    """The base model that ships with the course (made by ``scripts/train_base_lm.py``)."""
    return load_checkpoint(BASE_CHECKPOINT, device)


def base_model_card() -> dict:
    """The measured accuracies and training facts stored beside the base checkpoint."""
    return json.loads(BASE_CARD.read_text())


def make_gpt(config: GPTConfig | None = None, seed: int = 0, device=None) -> GPT:
    """A freshly initialised ``GPT`` (seeded) on ``device``; the config defaults to the scale's."""
    torch.manual_seed(seed)
    return GPT(config or GPTConfig.for_scale()).to(device or get_device())
