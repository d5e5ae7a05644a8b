"""The code a reader sees fits the page: scripts/format_code.py --check on every chapter and
every assignment notebook (ruff format, lines of at most ruff.toml's line-length), and the
script itself against small chapters and notebooks with known problems."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "format_code.py"
SOURCES = sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "solutions").glob("*/*.ipynb"))


def check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--check", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_code_cells_are_formatted_to_the_page_width(path: Path):
    done = check(path)
    assert done.returncode == 0, (f"{path.relative_to(ROOT)}: run `python scripts/format_code.py "
                                  f"{path.relative_to(ROOT)}` and shorten what it lists:\n{done.stdout}{done.stderr}")


# ---------------------------------------------------------------------------- the script itself
CHAPTER = """\
# A chapter

```{code-cell} ipython3
:tags: [hide-input]

x = {'a':1}
```

Text with a long line that is not code, which is allowed to be as long as the writer likes it to be.

```{code-cell} ipython3
---
tags: [remove-cell]
---
y = 2
```

```{code-cell} ipython3
%matplotlib inline
z = f(1,2)
```
"""


def test_check_lists_unformatted_cells_and_long_lines(tmp_path: Path):
    limit = int(next(line.split("=")[1] for line in (ROOT / "ruff.toml").read_text().splitlines()
                     if line.startswith("line-length")))
    chapter = tmp_path / "chapter.md"
    long_line = 'message = "' + "m" * limit + '"'  # a string: ruff cannot split it
    chapter.write_text(CHAPTER + f"\n```{{code-cell}} ipython3\n{long_line}\n```\n")
    number = chapter.read_text().split("\n").index(long_line) + 1
    done = check(chapter)
    assert done.returncode == 1
    assert "chapter.md:line 6: not formatted" in done.stdout  # {'a':1}
    assert f"chapter.md:line {number}: {len(long_line)} > {limit} characters" in done.stdout
    assert done.stdout.count("chapter.md:") == 2  # y = 2 is fine; the magic's cell is left alone


def test_format_writes_cells_back_and_keeps_options(tmp_path: Path):
    chapter = tmp_path / "chapter.md"
    chapter.write_text(CHAPTER)
    subprocess.run([sys.executable, str(SCRIPT), str(chapter)], check=True, capture_output=True, timeout=120)
    text = chapter.read_text()
    assert ':tags: [hide-input]\n\nx = {"a": 1}\n```' in text
    assert "---\ntags: [remove-cell]\n---\ny = 2\n```" in text
    assert "%matplotlib inline\nz = f(1,2)\n```" in text  # not Python: untouched
    assert text.count("\n") == CHAPTER.count("\n")
    assert check(chapter).returncode == 0


def test_trailing_comments_move_up_and_comment_lines_wrap(tmp_path: Path):
    notebook = nbformat.v4.new_notebook()
    long_comment = "# " + " ".join(["word"] * 30)
    code = f"value = compute_something(first_argument, second_argument)  # a comment that does not fit\n{long_comment}"
    hidden = "### BEGIN HIDDEN TESTS\n" + "x = " + "1 + " * 40 + "1\n### END HIDDEN TESTS"
    notebook.cells = [nbformat.v4.new_code_cell(code), nbformat.v4.new_code_cell(hidden)]
    path = tmp_path / "assignment.ipynb"
    nbformat.write(notebook, path)
    subprocess.run([sys.executable, str(SCRIPT), str(path)], check=True, capture_output=True, timeout=120)
    cells = nbformat.read(path, as_version=4).cells
    lines = cells[0].source.split("\n")
    assert lines[:2] == ["# a comment that does not fit",
                         "value = compute_something(first_argument, second_argument)"]
    assert all(line.startswith("# word") for line in lines[2:]) and len(lines) > 3
    assert cells[1].source == hidden  # the grader's hidden tests are its own
    assert check(path).returncode == 0
