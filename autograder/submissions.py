"""From a folder or zip of submissions to the student's code, whatever shape the file is in.

Nothing here trusts the notebook's metadata: cells edited in VS Code or Colab lose it, students
duplicate and reorder cells. The student's code is found by what it defines. Every code cell
is parsed; the grader keeps the imports and, for each function a piece needs, its *last*
definition plus the top-level functions, classes and assignments it refers to (transitively).
Everything else (test cells, training runs, plots, stray ``sys.exit()``) is never executed:
the grader's own checks replace the student's copy of the tests.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import symtable
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

MAX_BYTES = 20 * 2**20  # a notebook larger than this is refused unread


@dataclass
class Source:
    """The code cells of one submission, and what reading it found."""

    cells: list[str]
    status: str = "ok"  # "ok", or "invalid" when no code could be read
    notes: list[str] = field(default_factory=list)


def read_submission(path: Path) -> Source:
    """Code cells from a notebook (nbformat 4, 3 or broken), a .py file; a clear status otherwise."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            return Source([], "invalid", [f"{path.name} is {size / 2**20:.0f} MiB, more than a notebook can be"])
        raw = path.read_bytes()
    except OSError as error:
        return Source([], "invalid", [f"cannot read {path.name}: {error.strerror}"])
    if not raw.strip():
        return Source([], "invalid", [f"{path.name} is empty"])
    if raw.startswith(b"%PDF"):
        return Source([], "invalid", [f"{path.name} is a PDF, not a notebook: submit the .ipynb file"])
    text = raw.decode("utf-8", errors="replace")
    if path.suffix == ".py":
        return Source([text], "ok", [f"graded the functions of {path.name}, a Python file, not a notebook"])
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        if _parses(text):
            return Source([text], "ok", [f"{path.name} holds Python code, not a notebook: graded its functions"])
        return Source([], "invalid", [f"{path.name} is not a notebook (invalid JSON at line {error.lineno}): it could not be read"])
    cells = _code_cells(document)
    if cells is None:
        return Source([], "invalid", [f"{path.name} is JSON but not a notebook (no cells)"])
    notes = []
    version = document.get("nbformat") if isinstance(document, dict) else None
    if version != 4:
        notes.append(f"notebook format {version}: read anyway")
    return Source(cells, "ok", notes)


def _code_cells(document) -> list[str] | None:
    if not isinstance(document, dict):
        return None
    if isinstance(document.get("cells"), list):  # nbformat 4
        cells = document["cells"]
    elif isinstance(document.get("worksheets"), list):  # nbformat 3
        cells = [c for sheet in document["worksheets"] if isinstance(sheet, dict) for c in sheet.get("cells", [])]
    else:
        return None
    sources = []
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list):
            source = "".join(s for s in source if isinstance(s, str))
        if isinstance(source, str):
            sources.append(CellSource(source, number))
    return sources


class CellSource(str):
    """A code cell's source that knows its number in the notebook (all cells counted, from 1, as
    JupyterLab shows them), so that messages point where the student looks."""

    def __new__(cls, source: str, number: int):
        self = super().__new__(cls, source)
        self.number = number
        return self


# CPython before 3.11.8 can fail with "AST constructor recursion depth mismatch" when two threads
# parse at once (python/cpython#106905): the grader's worker threads take turns
_PARSE_LOCK = threading.RLock()


def _parses(text: str) -> bool:
    try:
        with _PARSE_LOCK:
            ast.parse(text)
        return True
    except (SyntaxError, ValueError):
        return False


# ----------------------------------------------------------------------------------------------
# the statements to run
# ----------------------------------------------------------------------------------------------

_MAGIC = re.compile(r"^\s*[%!].*$", re.MULTILINE)


@dataclass
class StudentCode:
    statements: list[dict]  # {"source", "where"} in notebook order: what the sandbox runs
    defined: dict[str, ast.AST]  # last top-level definition of each name
    imported: dict[str, str]  # local name -> dotted origin, from top-level imports
    notes: list[str]
    sources: dict[str, str]  # name -> source of its definition


def _parse_cell(source: str) -> tuple[ast.Module, str] | None:
    # IPython magics and shell escapes (%matplotlib, !pip) are not Python: blank them out
    for text in (source, _MAGIC.sub("", source)):
        try:
            with _PARSE_LOCK:
                return ast.parse(text), text
        except (SyntaxError, ValueError):
            continue
    return None


def _bound_names(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if all(isinstance(t, ast.Name) for t in targets):
            return [t.id for t in targets]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [alias.asname or alias.name.split(".")[0] for alias in node.names if alias.name != "*"]
    return []


def _global_names(table: symtable.SymbolTable) -> set[str]:
    names = set()
    for symbol in table.get_symbols():
        if symbol.is_global() or (table.get_type() == "module" and symbol.is_referenced()):
            names.add(symbol.get_name())
    for child in table.get_children():
        names |= _global_names(child)
    return names


def _used_names(source: str) -> set[str]:
    """The global names a top-level statement refers to (not its parameters or local variables)."""
    try:
        with _PARSE_LOCK:
            table = symtable.symtable(source, "<statement>", "exec")
        return _global_names(table)
    except (SyntaxError, ValueError):
        return set()


def extract(cells: list[str], required: list[str]) -> StudentCode:
    notes, definitions = [], {}
    imported: dict[str, str] = {}
    order = 0
    for index, source in enumerate(cells):
        parsed = _parse_cell(source)
        if parsed is None:
            if any(re.search(rf"^\s*def\s+{name}\b", source, re.MULTILINE) for name in required):
                notes.append(f"cell {getattr(source, 'number', index + 1)} has a syntax error: its functions were not graded")
            continue
        tree, text = parsed
        lines = text.splitlines()
        for node in tree.body:
            order += 1
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            # the statement's own lines, padded so that tracebacks give the line in the cell
            segment = "\n" * (first - 1) + "\n".join(lines[first - 1:node.end_lineno])
            item = (order, f"cell {getattr(source, 'number', index + 1)}", node, segment)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    if isinstance(node, ast.ImportFrom):
                        imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                    else:
                        imported[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            for name in _bound_names(node):
                definitions.setdefault(name, []).append(item)
    # the closure of what the required functions refer to; the last definition of a name wins,
    # but every import of a name is kept (``import torch`` and ``import torch.nn.functional``)
    wanted, queue = {}, [name for name in required if name in definitions]
    while queue:
        name = queue.pop()
        if name in wanted:
            continue
        items = definitions[name]
        chosen = [i for i in items if isinstance(i[2], (ast.Import, ast.ImportFrom))] or [items[-1]]
        wanted[name] = chosen
        for item in chosen:
            queue.extend(n for n in _used_names(item[3]) if n in definitions and n not in wanted)
    unique = {item[0]: item for items in wanted.values() for item in items}
    statements = [{"source": item[3], "where": item[1]} for _, item in sorted(unique.items())]
    for name in required:
        if name not in definitions:
            notes.append(f"no function {name}() found in the notebook")
    defined = {name: items[-1][2] for name, items in wanted.items() if not isinstance(items[-1][2], (ast.Import, ast.ImportFrom))}
    sources = {name: items[-1][3] for name, items in wanted.items()}
    return StudentCode(statements, defined, imported, notes, sources)


def closure(code: StudentCode, name: str) -> list[ast.AST]:
    """The definition of ``name`` and of everything top-level it refers to."""
    seen, queue = {}, [name]
    while queue:
        current = queue.pop()
        if current in seen or current not in code.defined:
            continue
        seen[current] = code.defined[current]
        queue.extend(_used_names(code.sources[current]))
    return list(seen.values())


def static_forbidden(code: StudentCode, name: str, forbidden: tuple[str, ...]) -> list[str]:
    """Forbidden names the source of ``name`` (and its helpers) refers to: a check that needs no
    cooperation from the student's process, behind the wrappers the sandbox installs."""
    if name not in code.defined:
        return []
    attrs = {dotted.rsplit(".", 1)[1]: dotted for dotted in forbidden}
    found = set()
    for node in closure(code, name):
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and sub.attr in attrs:
                found.add(attrs[sub.attr])
            elif isinstance(sub, ast.Name) and sub.id in code.imported and code.imported[sub.id] in forbidden:
                found.add(code.imported[sub.id])
            elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub.value in attrs:
                found.add(attrs[sub.value])  # getattr(module, "gaussian_kl")
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# finding the submissions
# ----------------------------------------------------------------------------------------------

_SAFE = re.compile(r"[^A-Za-z0-9_.@+-]")


def safe_name(student: str) -> str:
    name = _SAFE.sub("_", student).strip(".") or "student"
    return name[:100]


def unpack(archive: Path, into: Path) -> Path:
    """Extract an LMS zip safely (no absolute paths, no ``..``, bounded size)."""
    total = 0
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            parts = [p for p in Path(info.filename).parts if p not in ("", ".", "/")]
            if info.is_dir() or not parts or ".." in parts or parts[0].startswith("__MACOSX"):
                continue
            total += info.file_size
            if info.file_size > MAX_BYTES or total > 50 * MAX_BYTES:
                continue
            target = into.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)
    entries = [p for p in into.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]  # a zip with one top folder holding the student folders
    return into


def discover(folder: Path, notebook: str) -> dict[str, Path | None]:
    """``{student: file}``: ``<student>/<notebook>.ipynb``, else the student's only or likeliest
    file (a renamed notebook, a .py, a PDF); a student folder with no file maps to ``None``.
    Files directly in ``folder`` are named as LMS exports name them, ``<student>_..._<name>``."""
    found: dict[str, Path | None] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found[entry.name] = _pick(entry, notebook)
        elif entry.is_file():
            found.setdefault(entry.name.split("_")[0] if "_" in entry.stem else entry.stem, entry)
    return found


def exchange_root(folder: Path, assignment: str) -> Path | None:
    """The folder of nbgrader's exchange layout (``<student>/<assignment>/<notebook>.ipynb`` with
    ``timestamp.txt``, as ``nbgrader collect`` leaves them in ``submitted/``), if ``folder`` is
    one (or a course folder holding ``submitted/``)."""
    for candidate in (folder / "submitted", folder):
        if candidate.is_dir() and any((student / assignment).is_dir() for student in candidate.iterdir() if student.is_dir()):
            return candidate
    return None


def discover_all(folder: Path, assignment: str, notebooks: tuple[str, ...]) -> dict[str, tuple[dict[str, Path | None], str | None]]:
    """``{student: ({notebook: file}, timestamp)}`` for every layout ``grade`` reads: nbgrader's
    exchange (with its timestamps), one folder per student, or an LMS export of flat files."""
    found: dict[str, tuple[dict[str, Path | None], str | None]] = {}
    exchange = exchange_root(folder, assignment)
    if exchange is not None:
        for student in sorted(p for p in exchange.iterdir() if p.is_dir() and not p.name.startswith(".")):
            where = student / assignment
            if not where.is_dir():
                continue
            stamp = where / "timestamp.txt"
            timestamp = stamp.read_text(errors="replace").strip() if stamp.is_file() else None
            found[student.name] = ({nb: _pick(where, nb, only=len(notebooks) == 1) for nb in notebooks}, timestamp)
        return found
    if len(notebooks) == 1:
        return {student: ({notebooks[0]: path}, None) for student, path in discover(folder, notebooks[0]).items()}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found[entry.name] = ({nb: _pick(entry, nb, only=False) for nb in notebooks}, None)
        elif entry.is_file():
            student = entry.name.split("_")[0] if "_" in entry.stem else entry.stem
            paths = found.setdefault(student, (dict.fromkeys(notebooks), None))[0]
            for nb in notebooks:
                if entry.name == f"{nb}.ipynb" or entry.name.endswith(f"_{nb}.ipynb"):
                    paths[nb] = entry
    return found


def _pick(folder: Path, notebook: str, only: bool = True) -> Path | None:
    expected = folder / f"{notebook}.ipynb"
    if expected.is_file():
        return expected
    if not only:  # one of several notebooks: only its own name will do
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."))
    if not files:
        return None
    rank = {".ipynb": 0, ".py": 1, ".json": 2}
    return min(files, key=lambda p: (rank.get(p.suffix, 3), notebook not in p.stem, p.name))
