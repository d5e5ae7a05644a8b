"""How an assignment's graded checks are declared: once, in ``autograder/units/<unit>.py``.

A **check** pairs a *probe* (a function of the unit's sandbox module ``<unit>_probes.py``, run
in the sandbox on the student's namespace, returning plain data) with a *verdict* (a function in
the unit module, run in the grader, raising :class:`~autograder.verdicts.CheckFailed`). It is
declared by decorating the verdict::

    @hidden(probes.kl_random_batches)
    def kl_random_batches(d):
        '''random batches against torch.distributions, the gradients in mu and logvar'''
        ...

Everything else is derived from that declaration: the description shown to students is the
verdict's docstring; the points follow the course's pattern (a visible test 1 point, a hidden
test 2) unless ``points=`` says otherwise; the grade_id is ``test_<piece>_visible`` or
``test_<piece>_hidden`` (then ``_2``, ``_3`` ... for further checks of the same kind) from the
piece the check is listed in. ``release`` writes the grade_ids, the points and the hidden cells
into the nbgrader source notebook from here.

The sandbox boundary is a property of the declaration: a probe must be a top-level function of
the unit's probes module, which is the only file of the grader the sandbox receives, and which
must not import the ``autograder`` package (``load_unit`` refuses a unit that breaks either rule).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POINTS = {True: 1.0, False: 2.0}  # the course's pattern: visible test 1 point, hidden test 2


class DeclarationError(ValueError):
    """A unit's declaration is incomplete or inconsistent; the message names what to fix."""


@dataclass(frozen=True)
class Check:
    probe: Callable  # sandbox side: probe(student_namespace, reference_module) -> plain data
    verdict: Callable  # grader side: verdict(data) returns, or raises CheckFailed
    visible: bool  # the students see this test in their notebook
    points: float  # what the check is worth
    description: str  # what is checked, in words for students (the verdict's docstring)
    grade_id: str = ""  # the nbgrader test cell's id, given by the piece that lists the check

    @property
    def name(self) -> str:
        return self.grade_id


def _declare(visible: bool, probe: Callable, points: float | None, description: str | None):
    def decorate(verdict: Callable) -> Check:
        text = description or inspect.getdoc(verdict) or ""
        if not text:
            raise DeclarationError(f"check {verdict.__qualname__} ({verdict.__module__}): give the verdict a docstring "
                                   "(the description students read) or pass description=")
        return Check(probe, verdict, visible, float(POINTS[visible] if points is None else points), " ".join(text.split()))

    if not callable(probe):
        raise DeclarationError(f"@{'visible' if visible else 'hidden'}(...) takes the probe function, got {probe!r}")
    return decorate


def visible(probe: Callable, points: float | None = None, description: str | None = None):
    """Declare a visible check (1 point unless ``points``): decorate its verdict."""
    return _declare(True, probe, points, description)


def hidden(probe: Callable, points: float | None = None, description: str | None = None):
    """Declare a hidden check (2 points unless ``points``): decorate its verdict."""
    return _declare(False, probe, points, description)


@dataclass(frozen=True)
class Piece:
    name: str  # the function the student writes (also the grade_id of its solution cell)
    title: str
    anchor: str  # section of the unit's chapter with the equation, or "book/<page>.html#<section>"
    checks: tuple[Check, ...]
    forbidden: tuple[str, ...] = ()  # dotted names that earn no credit when called for this piece

    def __post_init__(self):
        named, seen = [], {True: 0, False: 0}
        for check in self.checks:
            if not isinstance(check, Check):
                raise DeclarationError(f"piece {self.name}: {check!r} is not a check; decorate its verdict with @visible(probe) or @hidden(probe)")
            seen[check.visible] += 1
            suffix = "" if seen[check.visible] == 1 else f"_{seen[check.visible]}"
            named.append(dataclasses.replace(check, grade_id=f"test_{self.name}_{'visible' if check.visible else 'hidden'}{suffix}"))
        object.__setattr__(self, "checks", tuple(named))
        object.__setattr__(self, "forbidden", tuple(self.forbidden))

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)


@dataclass(frozen=True)
class Unit:
    assignment: str
    library: str  # the gencore module whose functions the probes receive as ``ref``
    chapter: str  # the chapter's page in the built book, relative to _build/html
    pieces: tuple[Piece, ...]
    notebook: str = ""  # the notebook's name without .ipynb (default: the assignment's name)

    def __post_init__(self):
        if not self.notebook:
            object.__setattr__(self, "notebook", self.assignment)
        object.__setattr__(self, "pieces", tuple(self.pieces))
        ids = [check.grade_id for check in self.checks()]
        if len(ids) != len(set(ids)):
            raise DeclarationError(f"unit {self.assignment}: two pieces share a name")

    @property
    def points(self) -> float:
        return sum(piece.points for piece in self.pieces)

    @property
    def notebooks(self) -> tuple[str, ...]:
        return (self.notebook,)

    def checks(self) -> list[Check]:
        return [check for piece in self.pieces for check in piece.checks]

    def check(self, grade_id: str) -> Check:
        for check in self.checks():
            if check.grade_id == grade_id:
                return check
        raise DeclarationError(f"{self.assignment} has no check {grade_id!r}; it has {[c.grade_id for c in self.checks()]}")

    @property
    def probes(self) -> Path:
        """The sandbox module: the one file every probe of this unit is defined in."""
        files = {Path(inspect.getfile(check.probe)).resolve() for check in self.checks()}
        if len(files) != 1:
            raise DeclarationError(f"unit {self.assignment}: the probes must all live in one module "
                                   f"(autograder/units/{self.assignment}_probes.py), found {sorted(map(str, files))}")
        return files.pop()
