"""gencore.tasks against Python's own arithmetic and string handling."""

from __future__ import annotations

import random

import pytest

from gencore import tasks


def test_tokenizer_round_trip_and_ids():
    text = tasks.ALPHABET + "12+345=357."
    ids = tasks.encode(text)
    assert len(ids) == len(text)
    assert tasks.decode(ids) == text
    assert all(0 < i < tasks.VOCAB_SIZE for i in ids)  # 0 is padding, never a character
    assert tasks.decode([tasks.PAD_ID] + ids + [tasks.PAD_ID] * 3) == text
    assert tasks.encode(".") == [tasks.EOS_ID]


@pytest.mark.parametrize("bad", ["12a+3=", "1 + 2=", "_", "x"])
def test_unknown_characters_raise(bad):
    with pytest.raises(ValueError, match="unknown characters"):
        tasks.encode(bad)


def test_decode_rejects_out_of_range_ids():
    with pytest.raises(ValueError):
        tasks.decode([tasks.VOCAB_SIZE])


@pytest.mark.parametrize("task", list(tasks.TASKS))
def test_problems_are_correct_by_python_arithmetic(task):
    for prompt, completion in tasks.make_problems(task, 300, "train", seed=1):
        body = prompt[:-1]
        numbers = [int(s) for s in body.split("+")]
        assert eval(body) == sum(numbers)  # Python's own reading of the expression
        answer = int(completion[:-1].split(",")[-1])
        assert answer == eval(body)
        if prompt.endswith(":"):  # the running totals, one per '+'
            totals = [int(s) for s in completion[:-1].split(",")]
            assert totals == [sum(numbers[: i + 1]) for i in range(1, len(numbers))]
        assert tasks.verify(prompt, completion)
        assert len(completion) <= tasks.max_completion_length(task)


def test_verify_against_python_on_random_answers():
    rng = random.Random(0)
    for _ in range(500):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        guess = a + b + rng.choice([0, 0, 1, -1, 10, 100])
        completion = f"{guess}." if guess >= 0 else "0."
        assert tasks.verify(f"{a}+{b}=", completion) == (int(completion[:-1]) == a + b)


def test_verify_edge_cases():
    assert tasks.verify("12+30+5:", "42,47.")
    assert tasks.verify("12+30+5:", "99,47.")  # only the final answer is graded
    assert tasks.verify("2+5=", "007.")  # leading zeros are the same number
    assert not tasks.verify("2+5=", "7")  # cut off before the end of the sequence
    assert not tasks.verify("2+5=", "7,.")  # no number after the last separator
    assert not tasks.verify("2+5=", ".")
    assert tasks.verify("2+5=", "7.123")  # whatever follows the end is ignored
    assert tasks.extract_answer("68,135,153.") == "153"
    with pytest.raises(ValueError):
        tasks.verify("2+5", "7.")  # not a prompt
    with pytest.raises(ValueError):
        tasks.verify("2+5=", "7a.")


def test_splits_are_disjoint_and_seeded():
    for task in tasks.TASKS:
        train = tasks.make_problems(task, 2000, "train", seed=0)
        test = tasks.make_problems(task, 500, "test", seed=0)
        assert not {p for p, _ in train} & {p for p, _ in test}
        assert all(tasks.is_test_prompt(p) for p, _ in test)
        assert tasks.make_problems(task, 50, "test", seed=0) == test[:50]  # same seed, same problems
        assert tasks.make_problems(task, 50, "test", seed=1) != test[:50]
    # about a tenth of all prompts are held out
    rng = random.Random(0)
    prompts = [f"{rng.randint(0, 999)}+{rng.randint(0, 999)}=" for _ in range(5000)]
    assert 0.08 < sum(map(tasks.is_test_prompt, prompts)) / 5000 < 0.12


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.make_problems("multiply", 3)
    with pytest.raises(ValueError, match="split"):
        tasks.make_problems("add", 3, split="valid")
    with pytest.raises(ValueError):
        tasks.accuracy(["1+1="], [])
