"""Format the code cells of the book's chapters and of the assignment notebooks to the page's width.

A chapter's code shows in a column that holds ``line-length`` characters (``ruff.toml``, where the
measurement is); a longer line is cut at the right edge. This script runs ``ruff format`` with
that configuration on the code of every ```` ```{code-cell} ```` block of a MyST Markdown chapter
and on every code cell of a notebook, and writes the result back in place.

ruff does not move or wrap comments, so first this script moves a trailing comment whose line is
too long onto its own line above (ruff would otherwise split the code to keep the comment where
it is) and reflows a block of comment lines that has a line too long. ruff does not split
strings either: a line still too long after all this is reported, to be rewritten by hand.

Cells left alone: the grader's hidden test cells (``### BEGIN HIDDEN TESTS``), which no reader
sees (nbgrader strips them from the student's notebook) and whose text ``python -m autograder
release`` may own; and cells with IPython magics or shell escapes (``%``, ``!``), which are not
Python: their lines are still measured.

Usage: ``python scripts/format_code.py [--check] [PATH ...]`` (default: ``book/*.md`` and
``solutions/*/*.ipynb``). ``--check`` changes nothing; it lists the cells ruff would change and
the lines over the limit, and exits 1 if there are any.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import textwrap
import tokenize
import tomllib
from io import StringIO
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "ruff.toml"
FENCE = re.compile(r"^(`{3,}|~{3,})\{code-cell\}")
MAGIC = re.compile(r"^\s*[%!]")
HIDDEN_TESTS = "### BEGIN HIDDEN TESTS"


def line_length() -> int:
    return tomllib.loads(CONFIG.read_text())["line-length"]


def ruff() -> str:
    """The ruff next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "ruff"
    return str(local) if local.exists() else "ruff"


@dataclass
class Cell:
    """The code of one cell, and where it is (for messages and for writing it back)."""

    path: Path
    where: str  # "line 12" (the chapter line of the cell's first code line) or "cell 3 (id)"
    first_line: int | None  # the chapter line of the first code line; None in a notebook
    code: str
    formatted: str | None = None  # set by format_cells; None: left alone

    @property
    def skip(self) -> str | None:
        if HIDDEN_TESTS in self.code:
            return "hidden tests"
        if any(MAGIC.match(line) for line in self.code.splitlines()):
            return "IPython magic"
        return None


# ---------------------------------------------------------------------------- reading and writing cells
def markdown_cells(path: Path) -> tuple[list[str], list[tuple[int, int, Cell]]]:
    """A chapter's lines, and each code cell with its code's [start, end) line range."""
    lines = path.read_text().split("\n")
    cells, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, start = opening.group(1), i + 1
        if start < len(lines) and lines[start].strip() == "---":  # a YAML block of options
            start = lines.index("---", start + 1) + 1
        else:  # ":key: value" options
            while start < len(lines) and lines[start].startswith(":"):
                start += 1
        while start < len(lines) and not lines[start].strip() and not lines[start].startswith(fence):
            start += 1  # the blank line after the options
        end = start
        while end < len(lines) and lines[end].rstrip() != fence:
            end += 1
        code = "\n".join(lines[start:end])
        cells.append((start, end, Cell(path, f"line {start + 1}", start + 1, code)))
        i = end + 1
    return lines, cells


def notebook_cells(path: Path) -> tuple[nbformat.NotebookNode, list[tuple[int, Cell]]]:
    notebook = nbformat.read(path, as_version=4)
    cells = [(index, Cell(path, f"cell {index} ({cell.get('id', '?')})", None, cell.source))
             for index, cell in enumerate(notebook.cells) if cell.cell_type == "code" and cell.source.strip()]
    return notebook, cells


# ---------------------------------------------------------------------------- comments that do not fit
def lift_comments(code: str, limit: int) -> str:
    """Move each trailing comment of a line longer than ``limit`` onto its own line above."""
    try:
        tokens = list(tokenize.generate_tokens(StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return code  # ruff will report it
    lines = code.split("\n")
    statement_start = {}  # physical line -> the line its first token starts on (multi-line strings)
    for token in tokens:
        for row in range(token.start[0], token.end[0] + 1):
            statement_start.setdefault(row, token.start[0])
    moves = []
    for token in tokens:
        row, column = token.start
        if token.type != tokenize.COMMENT or not lines[row - 1][:column].strip():
            continue  # not a trailing comment
        if len(lines[row - 1]) <= limit or statement_start.get(row) != row:
            continue  # it fits, or the line begins inside a multi-line string
        moves.append((row, column, token.string))
    for row, column, comment in reversed(moves):
        line = lines[row - 1]
        indent = line[: len(line) - len(line.lstrip())]
        lines[row - 1] = line[:column].rstrip()
        lines.insert(row - 1, indent + comment)
    return "\n".join(lines)


def wrap_comments(code: str, limit: int) -> str:
    """Reflow each block of comment lines (same indentation, one after the other) that has a line
    longer than ``limit``, so that a wrapped comment reads as one paragraph."""
    try:
        comment_rows = {t.start[0] for t in tokenize.generate_tokens(StringIO(code).readline)
                        if t.type == tokenize.COMMENT}
    except (tokenize.TokenError, SyntaxError):
        return code
    lines, out, row = code.split("\n"), [], 0

    def indent_of(line: str) -> str:
        return line[: len(line) - len(line.lstrip())]

    def is_prose(r: int) -> bool:  # a "# text" line; not "###" markers or "#!" lines
        return r + 1 in comment_rows and lines[r].lstrip().startswith("# ")

    while row < len(lines):
        if not is_prose(row):
            out.append(lines[row])
            row += 1
            continue
        end, indent = row + 1, indent_of(lines[row])
        while end < len(lines) and is_prose(end) and indent_of(lines[end]) == indent:
            end += 1
        block = lines[row:end]
        if any(len(line) > limit for line in block):
            text = " ".join(line.strip()[2:].strip() for line in block)
            out += textwrap.wrap(text, width=limit, initial_indent=indent + "# ", subsequent_indent=indent + "# ",
                                 break_long_words=False, break_on_hyphens=False)
        else:
            out += block
        row = end
    return "\n".join(out)


def ruff_format(codes: list[str]) -> list[str | None]:
    """ruff format over all the codes at once (one file each); None for a code ruff cannot parse."""
    if not codes:
        return []
    with tempfile.TemporaryDirectory() as folder:
        files = [Path(folder) / f"cell_{number}.py" for number in range(len(codes))]
        for file, code in zip(files, codes):
            file.write_text(code + "\n")
        done = subprocess.run([ruff(), "format", "--quiet", "--config", str(CONFIG), *map(str, files)],
                              capture_output=True, text=True)
        failed = set(re.findall(r"cell_(\d+)\.py", done.stderr))
        return [None if str(number) in failed else file.read_text().rstrip("\n")
                for number, file in enumerate(files)]


def format_cells(cells: list[Cell], limit: int) -> list[str]:
    """Comments that do not fit lifted and wrapped, then ruff format, until nothing changes; sets
    ``cell.formatted`` (None for a cell left alone), returns the cells ruff cannot parse."""
    todo = [cell for cell in cells if not cell.skip]
    codes = [cell.code for cell in todo]
    for _ in range(3):  # formatting can push a trailing comment past the limit: go round again
        prepared = [wrap_comments(lift_comments(code, limit), limit) for code in codes]
        formatted = ruff_format(prepared)
        settled = formatted == codes
        codes = [new if new is not None else old for new, old in zip(formatted, codes)]
        if settled or None in formatted:
            break
    errors = []
    for cell, code, result in zip(todo, codes, formatted):
        if result is None:
            errors.append(f"{relative(cell.path)}:{cell.where}: ruff cannot parse this cell")
        else:
            cell.formatted = code
    return errors


def long_lines(cell: Cell, limit: int) -> list[str]:
    if cell.skip == "hidden tests":
        return []
    code = cell.formatted if cell.formatted is not None else cell.code
    found = []
    for offset, line in enumerate(code.split("\n")):
        if len(line) > limit:
            where = f"line {cell.first_line + offset}" if cell.first_line else f"{cell.where}, line {offset + 1}"
            found.append(f"{relative(cell.path)}:{where}: {len(line)} > {limit} characters: {line.strip()[:60]}")
    return found


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------- main
def process(path: Path, check: bool, limit: int) -> list[str]:
    """Format one chapter or notebook (in place unless ``check``); returns what is wrong with it."""
    if path.suffix == ".ipynb":
        notebook, placed = notebook_cells(path)
        cells = [cell for _, cell in placed]
    else:
        lines, placed_md = markdown_cells(path)
        cells = [cell for _, _, cell in placed_md]
    problems = format_cells(cells, limit)
    changed = [cell for cell in cells if cell.formatted is not None and cell.formatted != cell.code]
    if check:
        problems += [f"{relative(cell.path)}:{cell.where}: not formatted (run scripts/format_code.py)" for cell in changed]
    elif changed:
        if path.suffix == ".ipynb":
            for index, cell in placed:
                if cell.formatted is not None:
                    notebook.cells[index].source = cell.formatted
            nbformat.write(notebook, path)
        else:
            for start, end, cell in reversed(placed_md):
                if cell.formatted is not None:
                    lines[start:end] = cell.formatted.split("\n")
            path.write_text("\n".join(lines))
    for cell in cells:
        problems += long_lines(cell, limit)
    return problems


def default_paths() -> list[Path]:
    return sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "solutions").glob("*/*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", type=Path, help="chapters (.md) and notebooks (.ipynb)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a cell needs formatting")
    args = parser.parse_args(argv)
    limit = line_length()
    problems = []
    for path in args.paths or default_paths():
        problems += process(path, args.check, limit)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s); code lines may hold at most {limit} characters (ruff.toml)")
        return 1
    print("every code cell is formatted and fits the page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
