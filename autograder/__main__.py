"""Command line: ``python -m autograder release (ASSIGNMENT | --all)``."""

from __future__ import annotations

import argparse

from autograder.release import ROOT, assignments, release


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    release_parser = commands.add_parser("release", help="generate notebooks/ASSIGNMENT from solutions/ASSIGNMENT")
    release_parser.add_argument("assignment", nargs="?", help="a unit under solutions/")
    release_parser.add_argument("--all", action="store_true", help="release every unit")
    args = parser.parse_args(argv)

    if args.command == "release":
        if args.all == bool(args.assignment):
            parser.error("release needs either ASSIGNMENT or --all")
        for name in assignments() if args.all else [args.assignment]:
            print(f"released {release(name).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
