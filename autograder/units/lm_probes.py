"""Sandbox side of the language-model checks: call the student's functions on the grader's inputs.

Each probe is declared with its verdict in ``autograder/units/lm.py``. It runs in the sandboxed
child, gets the student's namespace and gencore's own ``sampling`` functions (``ref``), and
returns only what the student's code produced (tensors, numbers, strings), deciding nothing; the
verdicts, references and tolerances never enter the sandbox. The inputs come from the functions
and constants below, which the grader uses too, so both sides see the same numbers.
"""

from __future__ import annotations

import torch

ALPHA = 4.0
N_CHAINS = 4000  # chains (or samples) of the exact-enumeration checks
N_MCMC = 30  # Metropolis-Hastings steps per chain in the enumeration check

# (prompt, completion) pairs scored on a GPT: short and long, the last one fills the context
# (24 positions) plus the final token, which a model call on the whole sequence cannot take
LOGPROB_PAIRS = (
    ("47+85=", "132."),
    ("23+45+67:", "68,135."),
    ("9+9=", "1"),
    ("5+60+7:", "65,72."),
    ("1+2+3+4+5+6:", "3,6,10,15,21."),
)

VOTE_VISIBLE = ("60,130.", "68,135.", "70,135.")
VOTE_HIDDEN = (
    ("1,5.", "1,6.", "2,6.", "2,5."),  # a tie between 5 and 6: the answer seen first wins
    ("12,", "12,", "12,", "3,7."),  # cut-off completions have no answer and do not vote
    ("1,", "2,"),  # nobody answers: the first completion
    ("5,007.", "5,7.", "5,8."),  # 007 and 7 are one answer
    ("3.",),
    ("68,135.", "70,135.", "68,130.", "68,130.", "9,130."),  # 130 wins on answers, not on strings
    ("0,11.", "0,12.", "0,12.", "0,11.", "0,13."),  # a tie again
)


def trap_conditional(prefix: str) -> list[float]:
    """'0' is likelier first, but its futures are spread out; '1' leads to one likely future, '100'."""
    return {"": [0.6, 0.4], "1": [0.95, 0.05], "10": [0.95, 0.05]}.get(prefix, [0.5, 0.5])


def trap_model(ref):
    return ref.TabularLM.from_function("01", 3, trap_conditional)


def random_table(ref):
    return ref.TabularLM.random("012", 3, seed=3, scale=1.5)


def small_gpt():
    """A randomly initialised GPT (seeded): its conditionals are far from any task's."""
    from gencore import lm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        return lm.GPT(lm.GPTConfig(n_layer=2, n_head=2, n_embd=32)).eval()


def temperature_inputs() -> dict:
    g = torch.Generator().manual_seed(21)
    flat = torch.zeros(2, 16)
    flat[:, 0] = 0.5  # near-uniform over 16 tokens: p^60 underflows in float32
    masked = 2 * torch.randn(3, 16, generator=g)
    masked[:, :5] = float("-inf")  # tokens a model rules out (the tabular models do this)
    return {
        "random": 3 * torch.randn(4, 16, generator=g),
        "alphas": (0.5, 1.0, 4.0),
        "large": torch.tensor([[1000.0, 999.0, -1000.0, 0.0], [-500.0, -501.0, -499.0, -2000.0]]),
        "flat": flat,
        "masked": masked,
    }


MH_VISIBLE = {"logp_proposal": [-2.0, -4.0], "logp_current": [-1.0, -4.0], "logq_proposal": [-3.0, -2.5],
              "logq_current": [-1.5, -2.5], "alpha": 2.0}


BON_VISIBLE = {"scores": [[0.1, 0.9, 0.3], [2.0, -1.0, 0.5]],
               "completions": [["60,130.", "68,135.", "70,135."], ["47.", "46.", "48."]]}


def bon_hidden_inputs() -> list[tuple[torch.Tensor, list[list[str]]]]:
    """(scores (P, N), completions) cases: ties, rows of equals, -inf, one candidate, a row whose best
    is far below another row's scores, and random integer scores (many ties)."""
    g = torch.Generator().manual_seed(25)
    inf = float("inf")
    cases = [
        torch.tensor([[0.0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 1]]),  # verifier verdicts: ties everywhere
        torch.tensor([[-inf, -inf, -1.0], [-inf, -inf, -inf], [-inf, 2.0, 2.0]]),  # candidates ruled out
        torch.tensor([[100.0, 99.0, 98.0], [-5.0, -1.0, -3.0], [0.5, 0.5, 0.7]], dtype=torch.float64),
        torch.tensor([[0.2], [-3.0], [7.0]]),  # one candidate per prompt
        torch.randint(0, 3, (40, 6), generator=g).float(),
        torch.randn(30, 8, generator=g) * torch.arange(1, 31).float()[:, None],  # rows on different scales
    ]
    return [(s, [[f"{p},{i}." for i in range(s.shape[1])] for p in range(s.shape[0])]) for s in cases]


def mh_hidden_inputs() -> dict:
    g = torch.Generator().manual_seed(22)
    return {name: -4 * torch.rand(50, generator=g, dtype=torch.float64)
            for name in ("logp_proposal", "logp_current", "logq_proposal", "logq_current")}


# -- part 1: sequence_logprob ------------------------------------------------------------------


def logprob_visible(student, ref):
    logprob = student["sequence_logprob"]
    trap = trap_model(ref)
    return {"100": logprob(trap, "=", "100"), "0": logprob(trap, "=", "0"), "two_token_prompt": logprob(trap, "+=", "10")}


def logprob_hidden(student, ref):
    from gencore import lm

    logprob = student["sequence_logprob"]
    out = {}
    for name, model in (("random", small_gpt()), ("base", lm.load_base_model("cpu"))):
        out[name] = [logprob(model, p, c) for p, c in LOGPROB_PAIRS]
    model = small_gpt()
    value = logprob(model, *LOGPROB_PAIRS[1])
    value.backward()
    out["grad"] = model.head.weight.grad
    table = random_table(ref)
    out["table"] = [logprob(table, "=", y) for y in ("012", "2", "21")]
    return out


# -- part 2: majority_vote ---------------------------------------------------------------------


def vote_visible(student, ref):
    vote = student["majority_vote"]
    return {"picked": vote(list(VOTE_VISIBLE)), "single": vote(["42."])}


def vote_hidden(student, ref):
    vote = student["majority_vote"]
    return {"picked": [vote(list(case)) for case in VOTE_HIDDEN]}


# -- part 3: low_temperature_probs ---------------------------------------------------------------


def temperature_visible(student, ref):
    probs = student["low_temperature_probs"]
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    return {"alpha2": probs(logits, 2.0), "alpha1": probs(logits, 1.0)}


def temperature_hidden(student, ref):
    probs = student["low_temperature_probs"]
    x = temperature_inputs()
    out = {"random": [probs(x["random"], a) for a in x["alphas"]], "large": probs(x["large"], ALPHA),
           "flat": probs(x["flat"], 60.0), "masked": probs(x["masked"], ALPHA)}
    # the sequences drawn token by token with these conditionals, on the trap model
    samples = ref.low_temperature_sampling(trap_model(ref), ["="] * N_CHAINS, ALPHA, max_new_tokens=3,
                                           generator=torch.Generator().manual_seed(23), probs_fn=probs)
    out["samples"] = samples.completions
    return out


# -- part 4: mh_log_acceptance -----------------------------------------------------------------


def mh_visible(student, ref):
    accept = student["mh_log_acceptance"]
    args = {k: torch.tensor(v) for k, v in MH_VISIBLE.items() if k != "alpha"}
    return {"log_a": accept(**args, alpha=MH_VISIBLE["alpha"])}


def mh_hidden(student, ref):
    accept = student["mh_log_acceptance"]
    x = mh_hidden_inputs()
    out = {"formula": [accept(x["logp_proposal"], x["logp_current"], x["logq_proposal"], x["logq_current"], a)
                       for a in (1.0, ALPHA)]}
    # Algorithm 1 of Karan & Du with the student's acceptance, on a model small enough to enumerate
    result = ref.power_sampling_mcmc(random_table(ref), ["="] * N_CHAINS, ALPHA, block_size=3, n_mcmc=N_MCMC,
                                     max_new_tokens=3, generator=torch.Generator().manual_seed(24),
                                     acceptance_fn=accept)
    out["samples"] = result.completions
    return out


# -- part 5: best_of_n ---------------------------------------------------------------------------


def bon_visible(student, ref):
    best = student["best_of_n"]
    return {"picked": best(torch.tensor(BON_VISIBLE["scores"]), [list(c) for c in BON_VISIBLE["completions"]]),
            "single": best(torch.tensor([[0.3]]), [["5."]])}


def bon_hidden(student, ref):
    best = student["best_of_n"]
    return {"picked": [best(scores.clone(), [list(c) for c in completions]) for scores, completions in bon_hidden_inputs()]}


def warm() -> None:
    """Run once in the template before any fork: the model's imports and the shipped checkpoint."""
    from gencore import lm

    lm.load_base_model("cpu")(torch.zeros(1, 4, dtype=torch.long))
