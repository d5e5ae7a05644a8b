"""The course's graded units: ``autograder/units/<unit>.py`` declares each assignment's checks.

A unit ``<name>`` is two modules here:

- ``<name>.py`` stays with the grader: ``UNIT``, a :class:`~autograder.spec.Unit` whose checks are
  declared once, by decorating each verdict with ``@visible(probe)`` or ``@hidden(probe)``
  (``autograder/spec.py``), with the references and tolerances the verdicts use;
- ``<name>_probes.py`` is the only file the sandbox receives: the probes, which call the student's
  functions on the grader's inputs and return plain data, and the input builders both sides use.

:func:`load_unit` checks what the declaration cannot express by itself, with a message that
names what is missing. The grader's guide is ``autograder/README.md``.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
from pathlib import Path

from autograder.spec import DeclarationError, Unit

HERE = Path(__file__).resolve().parent


def names() -> list[str]:
    """Every unit with a declaration here."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem != "__init__" and not p.stem.endswith("_probes"))


def _imports_the_grader(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "autograder"]
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "autograder"):
            found.append("." * node.level + (node.module or ""))
    return found


@functools.cache
def load_unit(assignment: str) -> Unit:
    """The declared unit, checked: it exists, names an importable reference module, and its probes
    are top-level functions of one sandbox module that does not import the grader."""
    path = HERE / f"{assignment}.py"
    if not path.exists():
        raise DeclarationError(f"no grading checks for {assignment!r}: write autograder/units/{assignment}.py "
                               f"(see autograder/README.md); the units are {', '.join(names())}")
    module = importlib.import_module(f"autograder.units.{assignment}")
    unit = getattr(module, "UNIT", None)
    if not isinstance(unit, Unit):
        raise DeclarationError(f"autograder/units/{assignment}.py defines no UNIT = Unit(...)")
    if unit.assignment != assignment:
        raise DeclarationError(f"autograder/units/{assignment}.py declares the assignment {unit.assignment!r}")
    probes_path = unit.probes
    if probes_path.parent != HERE:
        raise DeclarationError(f"unit {assignment}: its probes live in {probes_path}, outside autograder/units/")
    check_unit(unit, importlib.import_module(f"autograder.units.{probes_path.stem}"))
    return unit


def check_unit(unit: Unit, probes) -> None:
    """What the declaration cannot enforce by itself: the reference module imports, and every
    probe is a top-level ``(student, ref)`` function of ``probes``, a module that does not import
    the grader (the sandbox receives that one file)."""
    try:
        importlib.import_module(unit.library)
    except ImportError as error:
        raise DeclarationError(f"unit {unit.assignment}: its reference module {unit.library!r} (Unit(library=...)) "
                               f"cannot be imported: {error}") from None
    name = Path(probes.__file__).name
    for check in unit.checks():
        if getattr(probes, check.probe.__name__, None) is not check.probe:
            raise DeclarationError(f"unit {unit.assignment}: the probe of {check.grade_id} ({check.probe.__qualname__}) "
                                   f"is not a top-level function of {name}")
        if len(inspect.signature(check.probe).parameters) != 2:
            raise DeclarationError(f"unit {unit.assignment}: the probe {check.probe.__name__} should take (student, ref)")
    if imported := _imports_the_grader(Path(probes.__file__)):
        raise DeclarationError(f"{name} runs in the sandbox and must not import the grader ({', '.join(imported)})")
