"""Grading speed: plain serial `nbgrader autograde` vs `python -m autograder grade` (sandbox on).

40 VAE submissions (16 correct, 18 with one of the nine typical mistakes, 6 released/untouched),
graded both ways in one run on this machine; the scores of these well-behaved submissions must
agree. Appends a section to bench/results.md. Run: `.venv/bin/python bench/grading.py`.
"""

from __future__ import annotations

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


def main() -> None:
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

        started = time.perf_counter()
        plain = autograde("vae", submissions, tmp / "course")
        plain_seconds = time.perf_counter() - started

        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "autograder", "grade", "vae", str(folder), "--out", str(tmp / "out"), "--no-progress"],
                       check=True, cwd=ROOT)
        ours_seconds = time.perf_counter() - started
        import csv

        ours = {row["student"]: float(row["total"]) for row in csv.DictReader((tmp / "out" / "grades.csv").open())}
        plain_totals = {s: sum(v.values()) for s, v in plain.items()}
        mismatches = {s: (plain_totals[s], ours[s]) for s in plain_totals if plain_totals[s] != ours[s]}

    line = (f"\n## Grading 40 VAE submissions ({datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, "
            f"GENCORE_SCALE={os.environ['GENCORE_SCALE']})\n\n"
            "| grader | seconds | per submission |\n| --- | --- | --- |\n"
            f"| plain serial `nbgrader autograde` | {plain_seconds:.1f} | {plain_seconds / 40:.2f} |\n"
            f"| `python -m autograder grade` (sandbox, {os.cpu_count()} workers, warm fork) | {ours_seconds:.1f} | {ours_seconds / 40:.2f} |\n\n"
            f"Speed-up {plain_seconds / ours_seconds:.1f}x; score mismatches: {mismatches or 'none'}. "
            "The autograder's time includes its start (imports, gradebook, warm workers).\n")
    print(line)
    with open(ROOT / "bench" / "results.md", "a") as results:
        results.write(line)
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
