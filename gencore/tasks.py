"""Synthetic reasoning tasks with a verifier, generated offline, and a character-level tokenizer.

Every problem is a *prompt* and a *completion*, both short strings over the alphabet
``0-9 + = : , .``. A completion ends with ``.``, the end-of-sequence character.

- ``add``: two-digit addition answered directly, ``"47+85="`` -> ``"132."``;
- ``sum_steps``: a sum of three numbers written as a chain of running totals (a short chain of
  thought), ``"23+45+67:"`` -> ``"68,135."``; the last total is the answer;
- ``sum_direct``: the same sums answered in one go, ``"23+45+67="`` -> ``"135."``, which is
  what the intermediate steps are compared against.

``verify(prompt, completion)`` is the reward: 1 when the final number of the completion is the
true sum (the intermediate totals are not graded, as with a verifiable reward on final answers).
Train and test problems never overlap: a prompt belongs to the test split when a hash of it
falls in one tenth of the buckets (``is_test_prompt``), whatever the seed.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

import torch

# ---------------------------------------------------------------------------------------------
# 1. Tokenizer
# ---------------------------------------------------------------------------------------------

PAD = "_"  # pads batches on the right; never part of a prompt or completion
EOS = "."  # ends every completion
ALPHABET = "0123456789+=:,."
VOCAB = PAD + ALPHABET  # token id = position in this string; PAD is id 0
PAD_ID = 0
EOS_ID = VOCAB.index(EOS)
VOCAB_SIZE = len(VOCAB)
_CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB)}


def encode(text: str) -> list[int]:
    """The token ids of ``text``, one per character; ``ValueError`` on a character outside ``ALPHABET``."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    unknown = sorted({c for c in text if c not in _CHAR_TO_ID or c == PAD})
    if unknown:
        raise ValueError(f"unknown characters {unknown!r} in {text!r}; the alphabet is {ALPHABET!r}")
    return [_CHAR_TO_ID[c] for c in text]


def decode(ids) -> str:
    """The string of a sequence of token ids (a list or a 1-D tensor); padding ids are dropped."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    out = []
    for i in ids:
        if not 0 <= int(i) < VOCAB_SIZE:
            raise ValueError(f"token id {i} outside the vocabulary 0..{VOCAB_SIZE - 1}")
        if int(i) != PAD_ID:
            out.append(VOCAB[int(i)])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# 2. Tasks
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskSpec:
    n_terms: tuple[int, int]  # how many numbers are summed (inclusive range)
    max_value: int  # every number is drawn uniformly from 0..max_value
    steps: bool  # write running totals (``:``) or answer directly (``=``)


TASKS = {
    "add": TaskSpec(n_terms=(2, 2), max_value=99, steps=False),
    "sum_steps": TaskSpec(n_terms=(3, 3), max_value=99, steps=True),
    "sum_direct": TaskSpec(n_terms=(3, 3), max_value=99, steps=False),
}


def _check_task(task: str) -> TaskSpec:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[task]


def format_problem(numbers: list[int], steps: bool) -> tuple[str, str]:
    """The (prompt, completion) of summing ``numbers``, with or without running totals."""
    if len(numbers) < 2 or any(not isinstance(n, int) or n < 0 for n in numbers):
        raise ValueError(f"need at least two non-negative ints, got {numbers!r}")
    prompt = "+".join(str(n) for n in numbers) + (":" if steps else "=")
    totals, acc = [], numbers[0]
    for n in numbers[1:]:
        acc += n
        totals.append(str(acc))
    completion = (",".join(totals) if steps else totals[-1]) + EOS
    return prompt, completion


def is_test_prompt(prompt: str) -> bool:
    """Whether ``prompt`` belongs to the held-out split (a fixed tenth of all prompts, by hash)."""
    return zlib.crc32(prompt.encode()) % 10 == 0


def make_problems(task: str, n: int, split: str = "train", seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (prompt, completion) pairs of ``task`` from ``split`` (``"train"`` or ``"test"``).

    The same ``seed`` gives the same problems; different seeds give fresh ones. Train and test
    prompts are disjoint by construction (``is_test_prompt``). Problems may repeat within a split.
    """
    spec = _check_task(task)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    rng = random.Random(f"{task}/{split}/{seed}")
    want_test = split == "test"
    out: list[tuple[str, str]] = []
    while len(out) < n:
        k = rng.randint(*spec.n_terms)
        numbers = [rng.randint(0, spec.max_value) for _ in range(k)]
        prompt, completion = format_problem(numbers, spec.steps)
        if is_test_prompt(prompt) == want_test:
            out.append((prompt, completion))
    return out


def max_completion_length(task: str) -> int:
    """The longest completion (in tokens, ``.`` included) that ``task`` can have."""
    spec = _check_task(task)
    _, completion = format_problem([spec.max_value] * spec.n_terms[1], spec.steps)
    return len(completion)


# ---------------------------------------------------------------------------------------------
# 3. The verifier
# ---------------------------------------------------------------------------------------------


def parse_prompt(prompt: str) -> list[int]:
    """The numbers to add in ``prompt`` (``"12+3:"`` -> ``[12, 3]``); ``ValueError`` if malformed."""
    encode(prompt)  # unknown characters
    if len(prompt) < 2 or prompt[-1] not in "=:":
        raise ValueError(f"a prompt is numbers joined by '+' and ending in '=' or ':', got {prompt!r}")
    parts = prompt[:-1].split("+")
    if len(parts) < 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"a prompt is numbers joined by '+' and ending in '=' or ':', got {prompt!r}")
    return [int(p) for p in parts]


def extract_answer(completion: str) -> str | None:
    """The final answer of a completion: its last number before the first ``.``; None if there is none.

    ``"68,135,153."`` -> ``"153"``; ``"432."`` -> ``"432"``; a completion cut off before ``.``
    (ran out of tokens) or ending in a separator has no answer.
    """
    encode(completion)
    if EOS not in completion:
        return None
    body = completion[: completion.index(EOS)]
    last = body.split(",")[-1]
    if not last.isdigit():
        return None
    return str(int(last))  # "007" and "7" are the same answer


def verify(prompt: str, completion: str) -> bool:
    """The verifiable reward: whether the completion's final answer equals the sum in ``prompt``."""
    answer = extract_answer(completion)
    return answer is not None and int(answer) == sum(parse_prompt(prompt))


def accuracy(prompts: list[str], completions: list[str]) -> float:
    """The fraction of completions that ``verify`` accepts."""
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(
            f"need as many completions as prompts (at least one), got {len(prompts)} and {len(completions)}"
        )
    return sum(verify(p, c) for p, c in zip(prompts, completions)) / len(prompts)
