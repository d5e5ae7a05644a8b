"""Check your assignment: run a notebook's visible tests and say, part by part, where it stands.

    .venv/bin/python -m gencore.check notebooks/gan/gan.ipynb

(with the course's environment activated, ``python -m gencore.check ...`` is the same; inside a
notebook, ``import sys; !{sys.executable} -m gencore.check gan.ipynb``). It runs the notebook's
code cells in order, in a fresh Python shell, from the first cell to the last test cell (the
training at the end is left for you to run), exactly as your notebook would run them after
"Restart and run all". Each part's function is then reported as passing its visible tests, failing
them (with the assertion's message and where it is: the cell as JupyterLab counts cells, and
the line), or not written yet. Hidden tests are not here: they run when you submit, on the same
functions.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

CELL_SECONDS = 120  # a visible test takes seconds; a cell that runs longer is probably stuck


@dataclass
class Part:
    number: int
    title: str
    function: str  # the grade_id of its answer cell: the function you write
    answer: int | None = None  # the answer cell's number (1-based, all cells counted)
    tests: list[int] = field(default_factory=list)  # its visible test cells
    outcome: str = "not run"
    detail: str = ""


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def read(path: Path) -> list[dict]:
    """The notebook's cells, or a SystemExit with a message that says what to type instead."""
    if not path.exists():
        near = sorted(Path("notebooks").glob("*/*.ipynb")) if Path("notebooks").is_dir() else []
        hint = f" The assignments here: {', '.join(map(str, near))}." if near else ""
        raise SystemExit(f"no file {path}.{hint} Give the path to your notebook, e.g. "
                         "python -m gencore.check notebooks/gan/gan.ipynb")
    if path.suffix != ".ipynb":
        raise SystemExit(f"{path} is not a notebook (.ipynb): give the assignment notebook you work in")
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
        return list(notebook["cells"])
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"{path} could not be read as a notebook (is it saved, and complete?)") from None


def parts_of(cells: list[dict]) -> list[Part]:
    """The graded parts: each answer cell (nbgrader's metadata names its function) with the
    visible test cells after it, and the heading above it."""
    parts, heading = [], ""
    for number, cell in enumerate(cells, start=1):
        meta = _meta(cell)
        if cell.get("cell_type") == "markdown" and (found := re.search(r"^#+\s+(.+)$", _source(cell), flags=re.M)):
            heading = re.sub(r"\s*\(\d+(\.\d+)? points?\)\s*$", "", found.group(1)).strip()
        elif meta.get("solution") and cell.get("cell_type") == "code":
            parts.append(Part(len(parts) + 1, heading, meta.get("grade_id", f"cell {number}"), answer=number))
        elif meta.get("grade") and cell.get("cell_type") == "code" and parts:
            parts[-1].tests.append(number)
    return parts


class CellTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise CellTimeout(f"the cell ran for more than {CELL_SECONDS} s: an endless loop?")


def _shell():
    try:
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config
    except ImportError:  # no IPython: plain Python, magics (%...) and shell escapes (!...) skipped
        return None
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.user_ns["__name__"] = "__main__"
    return shell


def _line(error: BaseException) -> int | None:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(("<ipython-input", "<cell"))]
    if frames:
        return frames[-1].lineno
    return getattr(error, "lineno", None)


def describe(error: BaseException) -> str:
    """An error as a student should read it: never an empty message."""
    if isinstance(error, NotImplementedError):
        return f"{type(error).__name__}: not written yet (put your code in place of the line that raises it)"
    if isinstance(error, SyntaxError):
        return f"{type(error).__name__}: {error.msg}"
    text = str(error).strip()
    if isinstance(error, AssertionError) and not text:
        return "AssertionError (an assert without a message failed: look at that line of the test)"
    return f"{type(error).__name__}: {text}" if text else f"{type(error).__name__} (no message)"


def run(cells: list[dict], last: int, quiet: bool = True) -> dict[int, BaseException]:
    """Run code cells 1..last in order; returns the error of each cell that raised."""
    import contextlib
    import io
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    shell, namespace, errors = _shell(), {"__name__": "__main__"}, {}
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for number, cell in enumerate(cells[:last], start=1):
            if cell.get("cell_type") != "code":
                continue
            sink = io.StringIO()
            signal.alarm(CELL_SECONDS)
            try:
                with contextlib.redirect_stdout(sink if quiet else sys.stdout), contextlib.redirect_stderr(sink if quiet else sys.stderr):
                    if shell is not None:
                        result = shell.run_cell(_source(cell), store_history=False)
                        error = result.error_before_exec or result.error_in_exec
                    else:
                        source = re.sub(r"^\s*[%!].*$", "", _source(cell), flags=re.M)
                        try:
                            exec(compile(source, f"<cell {number}>", "exec"), namespace)
                            error = None
                        except Exception as raised:  # noqa: BLE001 (the student's code)
                            error = raised
            except CellTimeout as raised:
                error = raised
            finally:
                signal.alarm(0)
            if error is not None:
                errors[number] = error
    finally:
        signal.signal(signal.SIGALRM, previous)
    return errors


def check(path: Path, quiet: bool = True) -> int:
    cells = read(path)
    parts = parts_of(cells)
    if not parts:
        raise SystemExit(f"{path} has no graded parts (no answer cells with nbgrader's metadata): is it an assignment notebook?")
    last = max([p.answer for p in parts] + [t for p in parts for t in p.tests])
    started = time.perf_counter()
    errors = run(cells, last, quiet)
    for part in parts:
        answer_error = errors.get(part.answer)
        test_errors = [(n, errors[n]) for n in part.tests if n in errors]
        if answer_error is not None:
            part.outcome, part.detail = "FAIL", f"cell {part.answer} (your answer), line {_line(answer_error)}: {describe(answer_error)}"
        elif any(isinstance(e, NotImplementedError) for _, e in test_errors):
            part.outcome, part.detail = "to do", f"{part.function}() is not written yet (cell {part.answer})"
        elif test_errors:
            number, error = test_errors[0]
            where = f"cell {number}" + (f", line {_line(error)}" if _line(error) else "")
            part.outcome, part.detail = "FAIL", f"{where}: {describe(error)}"
        elif not part.tests:
            part.outcome, part.detail = "ran", "no visible test for this part"
        else:
            part.outcome = "pass"
    print(f"{path}: the visible tests, run in order (cells 1 to {last} of {len(cells)}; {time.perf_counter() - started:.0f} s)\n")
    width = max(len(p.function) for p in parts)
    for part in parts:
        print(f"  part {part.number}  {part.function:<{width}}  {part.outcome:<6} {part.detail}")
    passed = sum(p.outcome == "pass" for p in parts)
    print(f"\n{passed} of {len(parts)} parts pass their visible tests. The hidden tests check the same functions "
          "more thoroughly when you submit.")
    return 0 if passed == len(parts) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gencore.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path, help="your assignment notebook, e.g. notebooks/gan/gan.ipynb")
    parser.add_argument("--show-output", action="store_true", help="show what the cells print")
    args = parser.parse_args(argv)
    return check(args.notebook, quiet=not args.show_output)


if __name__ == "__main__":
    sys.exit(main())
