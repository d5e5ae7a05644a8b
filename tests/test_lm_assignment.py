"""The language-model assignment, graded as an instructor would: by plain nbgrader and by the
sandboxed grader, which must agree cell by cell. Each plausible wrong answer loses the points
of its own piece and only those."""

from __future__ import annotations

import pytest

from tests import assignments

pytestmark = pytest.mark.slow
ASSIGNMENT = "lm"

# name -> (the piece it breaks, its code, the points it keeps on that piece out of 3)
WRONG = {
    "logprob_scores_the_prompt": ("sequence_logprob", '''
def sequence_logprob(model, prompt, completion):
    ids = torch.tensor([tasks.encode(prompt + completion)])
    logits, _ = model(ids[:, :-1])
    return F.log_softmax(logits.float(), dim=-1)[0].gather(-1, ids[0, 1:, None]).sum()
''', 0.0),  # the prompt's '=' after '+' has probability 0 in the visible test
    "logprob_off_by_one": ("sequence_logprob", '''
def sequence_logprob(model, prompt, completion):
    ids = torch.tensor([tasks.encode(prompt + completion)])
    logits, _ = model(ids)
    logp = F.log_softmax(logits.float(), dim=-1)[0].gather(-1, ids[0, :, None]).squeeze(-1)
    return logp[len(prompt):].sum()
''', 0.0),  # the logits at position t score the token at t instead of t + 1
    "logprob_runs_the_whole_sequence": ("sequence_logprob", '''
def sequence_logprob(model, prompt, completion):
    ids = torch.tensor([tasks.encode(prompt + completion)])
    logits, _ = model(ids)  # one position too many when the sequence fills the context
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)[0].gather(-1, ids[0, 1:, None]).squeeze(-1)
    return logp[len(prompt) - 1:].sum()
''', 1.0),  # right on short sequences; fails on a prompt + completion of context + 1 tokens
    "logprob_detached": ("sequence_logprob", '''
def sequence_logprob(model, prompt, completion):
    ids = torch.tensor([tasks.encode(prompt + completion)])
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    logp = F.log_softmax(logits.float(), dim=-1)[0].gather(-1, ids[0, 1:, None]).squeeze(-1)
    return logp[len(prompt) - 1:].sum()
''', 1.0),  # right values, no gradient
    "vote_on_whole_strings": ("majority_vote", '''
def majority_vote(completions):
    counts = {}
    for c in completions:
        counts[c] = counts.get(c, 0) + 1
    return max(counts, key=counts.get)
''', 0.0),
    "vote_counts_missing_answers": ("majority_vote", '''
def majority_vote(completions):
    answers = [tasks.extract_answer(c) for c in completions]
    counts = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    best = max(counts, key=counts.get)
    return completions[answers.index(best)]
''', 1.0),  # cut-off completions vote for "no answer" together
    "vote_ties_to_the_last": ("majority_vote", '''
def majority_vote(completions):
    answers = [tasks.extract_answer(c) for c in completions]
    counts = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return completions[0]
    best = sorted(counts.items(), key=lambda item: item[1])[-1][0]
    return completions[answers.index(best)]
''', 1.0),
    "temperature_divides_the_logits": ("low_temperature_probs", '''
def low_temperature_probs(logits, alpha):
    return torch.softmax(logits / alpha, dim=-1)
''', 0.0),  # temperature alpha instead of 1/alpha
    "temperature_powers_probabilities": ("low_temperature_probs", '''
def low_temperature_probs(logits, alpha):
    p = torch.softmax(logits.float(), dim=-1) ** alpha
    return p / p.sum(dim=-1, keepdim=True)
''', 1.0),  # p^60 underflows to 0/0
    "mh_without_proposal_ratio": ("mh_log_acceptance", '''
def mh_log_acceptance(logp_proposal, logp_current, logq_proposal, logq_current, alpha):
    return torch.clamp(alpha * (logp_proposal - logp_current), max=0.0)
''', 0.0),
    "mh_alpha_on_the_proposal_too": ("mh_log_acceptance", '''
def mh_log_acceptance(logp_proposal, logp_current, logq_proposal, logq_current, alpha):
    return torch.clamp(alpha * (logp_proposal - logp_current + logq_current - logq_proposal), max=0.0)
''', 0.0),
    "mh_without_the_min": ("mh_log_acceptance", '''
def mh_log_acceptance(logp_proposal, logp_current, logq_proposal, logq_current, alpha):
    return alpha * (logp_proposal - logp_current) + logq_current - logq_proposal
''', 1.0),  # samples the right law (u <= A > 1 always accepts), but log A > 0 is not a log-probability
    "best_of_n_argmin": ("best_of_n", '''
def best_of_n(scores, completions):
    return [group[i] for group, i in zip(completions, scores.argmin(dim=1).tolist())]
''', 0.0),
    "best_of_n_ties_to_the_last": ("best_of_n", '''
def best_of_n(scores, completions):
    last = scores.shape[1] - 1 - scores.flip(1).argmax(dim=1)  # the last of the tied
    return [group[i] for group, i in zip(completions, last.tolist())]
''', 1.0),  # the visible example has no ties
    "best_of_n_compares_across_prompts": ("best_of_n", '''
def best_of_n(scores, completions):
    i = int(scores.argmax()) % scores.shape[1]  # the best candidate of all prompts together
    return [group[i] for group in completions]
''', 0.0),
    "best_of_n_softmax_over_prompts": ("best_of_n", '''
def best_of_n(scores, completions):
    weights = torch.softmax(scores, dim=0)  # normalised over the prompts, not the candidates
    return [group[i] for group, i in zip(completions, weights.argmax(dim=1).tolist())]
''', 1.0),  # right on the visible example; scores of one prompt are compared with other prompts'
}


class TestLMAssignment(assignments.AssignmentTests):
    ASSIGNMENT = ASSIGNMENT
    WRONG = WRONG
    SECRETS = ("torch.softmax(alpha * logits", "torch.clamp(log_ratio", "scored[len(prompt) - 1:]",
               "scores.argmax(dim=1).tolist()")
