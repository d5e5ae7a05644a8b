"""What a hidden-test cell runs: one declared check, probe then verdict, in the notebook's kernel.

The hidden cell that ``release`` writes into the nbgrader source notebook is::

    from autograder.notebook import run_in_notebook
    run_in_notebook("<unit>", "<grade_id>", globals())

so plain ``nbgrader autograde`` runs exactly the check the sandboxed grader runs, split there
across the sandbox boundary. This module imports only the declarations and the wire encoding
(not the grader, the sandbox or nbgrader), and leaves the student's kernel as it found it: the
random generators (Python's, numpy's, torch's), torch's thread count, default dtype and
gradient mode, and the warning filters are restored when the check ends.
"""

from __future__ import annotations

import contextlib
import random
import types
import warnings


@contextlib.contextmanager
def _kernel_state_kept():
    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    threads, dtype, grad = torch.get_num_threads(), torch.get_default_dtype(), torch.is_grad_enabled()
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
            torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad)


def run_in_notebook(assignment: str, grade_id: str, namespace: dict) -> None:
    """Run one check on the notebook's own functions; raise ``AssertionError`` with the check's
    message when it fails, which is how plain ``nbgrader autograde`` takes the cell's points."""
    import importlib

    import numpy as np
    import torch

    from autograder import wire
    from autograder.units import load_unit
    from autograder.verdicts import CheckFailed

    unit = load_unit(assignment)
    check = unit.check(grade_id)
    reference = types.SimpleNamespace(**vars(importlib.import_module(unit.library)))
    with _kernel_state_kept():
        random.seed(0)  # the sandbox's child starts from these seeds too
        np.random.seed(0)
        torch.manual_seed(0)
        data = wire.decode(wire.encode(check.probe(namespace, reference)))
        try:
            check.verdict(data)
        except CheckFailed as failure:
            raise AssertionError(str(failure)) from None
