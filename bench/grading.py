"""Grading speed: plain serial `nbgrader autograde` vs `python -m autograder grade` (sandbox on),
and the grader of an earlier commit against today's.

40 VAE submissions (16 correct, 18 with one of the nine typical mistakes, 6 released/untouched),
graded in one run on this machine; the scores of these well-behaved submissions must agree.
Appends a section to bench/results.md.

    .venv/bin/python bench/grading.py                      # plain nbgrader vs the autograder
    .venv/bin/python bench/grading.py --before REV --no-plain --rounds 2
        # the autograder at REV (a git worktree) vs today's, alternating, on the same submissions
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.plain_nbgrader import autograde, fill_answers, prepare_course, solution_answers  # noqa: E402
from tests.test_vae_assignment import WRONG  # noqa: E402


def autograder_seconds(root: Path, folder: Path, out: Path) -> tuple[float, dict[str, float]]:
    """Time `python -m autograder grade vae` run from ``root`` (this checkout or a worktree)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", "grade", "vae", str(folder), "--out", str(out), "--no-progress"],
                   check=True, cwd=root, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, {row["student"]: float(row["total"]) for row in csv.DictReader((out / "grades.csv").open())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", help="also time the autograder of this git revision (in a worktree)")
    parser.add_argument("--no-plain", action="store_true", help="skip plain nbgrader (about 7 minutes)")
    parser.add_argument("--rounds", type=int, default=1, help="timed runs of each autograder, alternating")
    args = parser.parse_args()
    os.environ.setdefault("GENCORE_SCALE", "smoke")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        released = nbformat.read(prepare_course("vae", tmp / "course") / "vae.ipynb", as_version=4)
        solution = solution_answers("vae")
        names = list(WRONG)
        submissions = {}
        for i in range(40):
            if i % 20 < 8:
                submissions[f"s{i:02d}"] = fill_answers(released, solution)
            elif i % 20 < 17:
                piece, code, _ = WRONG[names[i % len(names)]]
                submissions[f"s{i:02d}"] = fill_answers(released, {**solution, piece: code.strip()})
            else:
                submissions[f"s{i:02d}"] = released
        folder = tmp / "subs"
        for student, nb in submissions.items():
            (folder / student).mkdir(parents=True)
            nbformat.write(nb, folder / student / "vae.ipynb")

        plain_seconds, plain_totals = None, None
        if not args.no_plain:
            started = time.perf_counter()
            plain = autograde("vae", submissions, tmp / "course")
            plain_seconds = time.perf_counter() - started
            plain_totals = {s: sum(v.values()) for s, v in plain.items()}
        roots = {"today": ROOT}
        if args.before:
            worktree = tmp / "before"
            subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], check=True, cwd=ROOT,
                           capture_output=True)
            # the environment's editable gencore is this checkout's: an older grader that mounts its own
            # checkout's gencore in the sandbox is pointed at this one (its speed is not affected)
            old = worktree / "autograder" / "sandbox.py"
            old.write_text(old.read_text().replace('str(ROOT / "gencore")', repr(str(ROOT / "gencore"))))
            roots = {f"at {args.before}": worktree, "today": ROOT}
        times: dict[str, list[float]] = {name: [] for name in roots}
        totals: dict[str, dict[str, float]] = {}
        try:
            for round_ in range(args.rounds):
                for name, root in roots.items():
                    seconds, totals[name] = autograder_seconds(root, folder, tmp / f"out-{name}-{round_}".replace(" ", "-"))
                    times[name].append(seconds)
        finally:
            if args.before:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
        reference = plain_totals or totals[next(iter(roots))]
        mismatches = {name: {s: (reference[s], got[s]) for s in reference if reference[s] != got.get(s)} for name, got in totals.items()}
        mismatches = {name: m for name, m in mismatches.items() if m}

    rows = []
    if plain_seconds is not None:
        rows.append(f"| plain serial `nbgrader autograde` | {plain_seconds:.1f} | {plain_seconds / 40:.2f} |")
    for name, seconds in times.items():
        best = min(seconds)
        rows.append(f"| `python -m autograder grade` {name} (sandbox, {os.cpu_count()} workers, warm fork) | "
                    f"{best:.1f} (runs: {', '.join(f'{t:.1f}' for t in seconds)}) | {best / 40:.2f} |")
    line = (f"\n## Grading 40 VAE submissions ({datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"GENCORE_SCALE={os.environ['GENCORE_SCALE']})\n\n"
            "| grader | seconds (best) | per submission |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
            + (f"Speed-up over plain nbgrader {plain_seconds / min(times['today']):.1f}x; " if plain_seconds else "")
            + f"score mismatches: {mismatches or 'none'}. "
            "The autograder's time includes its start (imports, gradebook, warm workers).\n")
    print(line)
    with open(ROOT / "bench" / "results.md", "a") as results:
        results.write(line)
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
