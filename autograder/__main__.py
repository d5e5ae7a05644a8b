"""Command line: ``python -m autograder release | grade | check | publish`` (see the README's "Grading")."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path

from autograder import ROOT
from autograder.release import assignments, release
from autograder.sandbox import Limits


def _add_limits(parser: argparse.ArgumentParser) -> None:
    for field in fields(Limits):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                            help=f"limit (default {field.default})")


def _limits(args) -> Limits:
    return Limits(**{field.name: getattr(args, field.name) for field in fields(Limits)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    release_parser = commands.add_parser("release", help="generate notebooks/ASSIGNMENT from solutions/ASSIGNMENT")
    release_parser.add_argument("assignment", nargs="?", help="a unit under solutions/")
    release_parser.add_argument("--all", action="store_true", help="release every unit")

    grade_parser = commands.add_parser("grade", help="grade a folder or zip of <student>/<notebook>.ipynb")
    grade_parser.add_argument("assignment")
    grade_parser.add_argument("submissions", type=Path, help="folder of <student>/<notebook>.ipynb, or an LMS zip")
    grade_parser.add_argument("--out", type=Path, required=True, help="grades.csv, feedback/, report.html, gradebook.db, journal")
    grade_parser.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: one per core)")
    grade_parser.add_argument("--db", default=None, help="gradebook SQLAlchemy URL (default: sqlite in --out)")
    grade_parser.add_argument("--no-sandbox", action="store_true", help="run student code unprotected (trusted code only)")
    grade_parser.add_argument("--scale", default="smoke", help="GENCORE_SCALE while grading (default smoke)")
    grade_parser.add_argument("--book-url", default=None,
                              help="address of the published book for feedback links (default: html.baseurl in _config.yml)")
    grade_parser.add_argument("--due", default=None, help="due date, e.g. '2026-12-01 17:00:00 UTC' (with nbgrader's timestamp.txt)")
    grade_parser.add_argument("--late-penalty", default="none", choices=["none", "zero"],
                              help="nbgrader's late-submission methods: none records lateness, zero scores late work 0")
    grade_parser.add_argument("--no-progress", action="store_true")
    _add_limits(grade_parser)

    publish_parser = commands.add_parser("publish", help="write the student edition (no solutions, no grader) into OUT")
    publish_parser.add_argument("out", type=Path, help="a new folder outside the repository (or under _build/)")
    publish_parser.add_argument("--repository", default=None,
                                help="the edition's public repository, for the book's launch buttons and install line")

    check_parser = commands.add_parser("check", help="run the visible checks of your notebook as the grader would")
    check_parser.add_argument("notebook", type=Path)
    check_parser.add_argument("--assignment", default=None, help="default: the notebook's folder or name")
    check_parser.add_argument("--no-sandbox", action="store_true", help="skip the sandbox (your own code, your own machine)")
    _add_limits(check_parser)
    args = parser.parse_args(argv)

    if args.command == "release":
        if args.all == bool(args.assignment):
            parser.error("release needs either ASSIGNMENT or --all")
        for name in assignments() if args.all else [args.assignment]:
            print(f"released {release(name).relative_to(ROOT)}")
        return 0

    if args.command == "publish":
        from autograder.edition import publish

        try:
            out = publish(args.out, repository=args.repository)
        except (FileExistsError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"student edition in {out}: see its README.md; publish it as its own repository")
        return 0

    from autograder.sandbox import SandboxUnavailable

    if args.command == "grade":
        from autograder.grade import grade

        summary: dict = {}
        try:
            records = grade(args.assignment, args.submissions, args.out, workers=args.workers, db=args.db,
                            limits=_limits(args), sandbox=not args.no_sandbox, scale=args.scale,
                            progress=not args.no_progress, book_url=args.book_url, due=args.due,
                            late_penalty=args.late_penalty, summary=summary)
        except (SandboxUnavailable, ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: what was graded is kept; run the same command again to resume", file=sys.stderr)
            return 130
        statuses: dict[str, int] = {}
        for record in records.values():
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1
        print(f"{len(records)} submissions: {summary['graded']} graded, {summary['regraded']} re-graded (changed since the last run), "
              f"{summary['skipped']} unchanged and skipped ({', '.join(f'{k}: {v}' for k, v in sorted(statuses.items()))}); "
              f"see {args.out}/report.html")
        return 0

    if args.command == "check":
        from autograder.check import check
        from autograder.spec import DeclarationError
        from autograder.units import names

        if not args.notebook.is_file():
            print(f"error: no file {args.notebook}; the assignments are notebooks/<name>/<name>.ipynb, e.g. "
                  "notebooks/gan/gan.ipynb", file=sys.stderr)
            return 2
        assignment = args.assignment or next((name for name in (args.notebook.parent.name, args.notebook.stem) if name in names()), None)
        if assignment is None:
            print(f"error: which assignment is {args.notebook}? Name it: --assignment NAME, one of {', '.join(names())} "
                  "(students: python -m gencore.check runs a notebook's visible tests without the grader)", file=sys.stderr)
            return 2
        try:
            return check(assignment, args.notebook, sandbox=not args.no_sandbox, limits=_limits(args))
        except (DeclarationError, FileNotFoundError) as error:
            print(f"error: {error}\n(students: python -m gencore.check {args.notebook} runs the visible tests without "
                  "the grader)", file=sys.stderr)
            return 2
    return 1


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
