"""Grading checks per unit: what each graded piece is, and how its verdicts are decided.

A unit ``<name>`` has two modules here:

- ``<name>_probes.py`` runs in the sandbox: one function per nbgrader test cell, which calls the
  student's function on the grader's inputs and returns plain data;
- ``<name>.py`` stays with the grader: ``UNIT``, a :class:`Unit` whose checks turn that data into
  a verdict against a reference computed here, outside the student's process.

A check's ``name`` is the ``grade_id`` of the nbgrader test cell it replaces and carries that
cell's points, so the gradebook, ``nbgrader export`` and plain ``nbgrader autograde`` agree.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class CheckFailed(Exception):
    """A check's verdict: the student's data do not match; the message is shown to the student."""


def require(condition, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


@dataclass(frozen=True)
class Check:
    name: str  # grade_id of the nbgrader test cell
    points: float
    visible: bool  # the students see this test in their notebook
    verdict: Callable[[dict], None]  # raises CheckFailed (or anything) when the data are wrong
    description: str  # what is checked, in words for students (all a hidden check shows)


@dataclass(frozen=True)
class Piece:
    name: str  # the function the student writes (also the grade_id of its solution cell)
    title: str
    anchor: str  # section of the unit's chapter with the equation, or "book/<page>.html#<section>"
    checks: tuple[Check, ...]
    forbidden: tuple[str, ...] = ()  # dotted names that earn no credit when called for this piece

    @property
    def points(self) -> float:
        return sum(check.points for check in self.checks)


@dataclass(frozen=True)
class Unit:
    assignment: str
    notebook: str  # the notebook's name, without .ipynb
    chapter: str  # the chapter's page in the built book, relative to _build/html
    pieces: tuple[Piece, ...]
    probes: Path  # the sandbox-side module

    @property
    def points(self) -> float:
        return sum(piece.points for piece in self.pieces)

    def checks(self) -> list[Check]:
        return [check for piece in self.pieces for check in piece.checks]


def load_unit(assignment: str) -> Unit:
    try:
        module = importlib.import_module(f"autograder.units.{assignment}")
    except ModuleNotFoundError as error:
        raise ValueError(f"no grading checks for {assignment!r}: write autograder/units/{assignment}.py") from error
    return module.UNIT


def run_in_notebook(assignment: str, check_name: str, namespace: dict) -> None:
    """Run one check inside a notebook (a hidden-test cell): the probe on the notebook's own
    functions, then the verdict, in this process. Raises ``AssertionError`` with the check's
    message when it fails, which is how plain ``nbgrader autograde`` takes points away.

    This makes ``autograder/units/<unit>.py`` the single source of a unit's hidden tests: the
    nbgrader source notebook's hidden cell is one call of this function, and the sandboxed
    grader runs the same probe and verdict split across the sandbox boundary.
    """
    import random

    import numpy as np
    import torch

    from autograder import grade

    unit = load_unit(assignment)
    checks = {check.name: check for check in unit.checks()}
    if check_name not in checks:
        raise ValueError(f"{assignment} has no check {check_name!r}; it has {sorted(checks)}")
    probes = importlib.import_module(f"autograder.units.{assignment}_probes")
    reference = types.SimpleNamespace(**vars(importlib.import_module(probes.LIBRARY)))
    threads = torch.get_num_threads()
    from autograder import worker  # the same plain-data encoding as the sandbox's (sets 1 thread)

    torch.set_num_threads(threads)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    data = grade._decode_value(worker.encode(getattr(probes, check_name)(namespace, reference)))
    try:
        checks[check_name].verdict(data)
    except CheckFailed as failure:
        raise AssertionError(str(failure)) from None
