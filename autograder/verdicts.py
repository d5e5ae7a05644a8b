"""The verdict toolkit: how a check turns the data a probe sent back into pass or fail.

A verdict is a function of the decoded data (numpy arrays, numbers, lists, dicts) that returns
when the student's code is right and raises :class:`CheckFailed` with a message for the student
when it is not. It runs in the grader's process (or, for plain ``nbgrader autograde``, after the
probe in the notebook's), never in the sandbox. Anything else it raises (a ``KeyError`` on data
of an unexpected shape) fails the check with a generic message.

Tolerance policy
----------------
The student's tensors arrive as float32 (sometimes float64) and are compared in float64 against
references computed in float64. ``close`` passes when, elementwise,
``|got - expected| <= ATOL + RTOL * |expected|`` and the shapes are equal:

- ``RTOL = 1e-5``: a float32 result carries a relative round-off of about 6e-8 per operation;
  1e-5 leaves room for the few hundred operations of a loss over a batch, and is far below any
  mistake the checks look for (a missing factor, a wrong reduction, a sign).
- ``ATOL = 1e-6``: for entries that should be exactly zero, where relative error means nothing.

A verdict that needs a looser tolerance (a loss after several optimiser steps, a Monte Carlo
estimate) passes it explicitly, next to a comment that says why: a statistical tolerance is a
stated number of standard errors, never a guess.
"""

from __future__ import annotations

import math

import numpy as np
import torch

RTOL = 1e-5
ATOL = 1e-6


class CheckFailed(Exception):
    """A check's verdict: the student's data do not match; the message is shown to the student."""


def require(condition, message: str) -> None:
    """Fail the check with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CheckFailed(message)


def kind(value) -> str:
    """What a value is, in words for a message (``"None"``, ``"an object of type Foo"``, ``"float"``)."""
    if isinstance(value, dict) and "__object__" in value:
        return f"an object of type {value['__object__']}"
    return "None" if value is None else type(value).__name__


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def tensor(value, what: str) -> torch.Tensor:
    """The student's tensor as a float64 torch tensor. A Python number counts as a 0-d tensor
    (its shape is then checked like any other); anything else fails with ``what`` named."""
    if _number(value):
        return torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, np.ndarray):
        raise CheckFailed(f"{what} should return a tensor, got {kind(value)}")
    return torch.from_numpy(np.array(value, dtype=np.float64))


def array(value, what: str) -> np.ndarray:
    """Like :func:`tensor`, as a float64 numpy array."""
    return tensor(value, what).numpy()


def scalar(value, what: str, zero_dim: bool = False) -> float:
    """A single number: a one-element tensor, or with ``zero_dim`` a 0-d tensor only."""
    t = tensor(value, what)
    if zero_dim:
        require(t.dim() == 0, f"{what} should be a single number (a 0-d tensor: the batch mean), got shape {tuple(t.shape)}")
    require(t.numel() == 1, f"{what} should be a single number, got shape {tuple(t.shape)}")
    return t.item()


def close(got, expected, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """Equal shapes and elementwise ``|got - expected| <= atol + rtol |expected|`` (float64)."""
    got = torch.as_tensor(got, dtype=torch.float64)
    expected = torch.as_tensor(expected).to(torch.float64)
    return got.shape == expected.shape and bool(torch.allclose(got, expected, rtol=rtol, atol=atol))


def shape(got: torch.Tensor, expected: tuple, what: str) -> None:
    require(tuple(got.shape) == tuple(expected), f"{what} should have shape {tuple(expected)}, got {tuple(got.shape)}")


def finite(got, what: str) -> None:
    require(bool(np.isfinite(np.asarray(got)).all()), f"{what}: the result is not all finite (nan or inf)")


def floating(value, what: str) -> None:
    """The student returned a floating-point tensor (not an integer or boolean one)."""
    require(isinstance(value, np.ndarray) and value.dtype.kind == "f",
            f"{what} should be a floating-point tensor, got {value.dtype if isinstance(value, np.ndarray) else kind(value)}")


def assert_close(value, expected, what: str, rtol: float = RTOL, atol: float = ATOL, show: int = 8) -> np.ndarray:
    """Fail unless the student's tensor has ``expected``'s shape, is finite and is close to it;
    the message shows the first ``show`` values of both. Returns the student's values."""
    got = array(value, what.split(":")[0])
    expected = np.asarray(expected, dtype=np.float64)
    require(got.shape == expected.shape, f"{what}: expected shape {expected.shape}, got {got.shape}")
    finite(got, what)
    require(np.allclose(got, expected, atol=atol, rtol=rtol),
            f"{what}: expected {np.round(expected, 5).ravel().tolist()[:show]}, got {np.round(got, 5).ravel().tolist()[:show]}"
            + (f" (first {show} shown)" if expected.size > show else ""))
    return got


def standard_error(samples) -> float:
    """The standard error of the mean of ``samples`` (for Monte Carlo tolerances)."""
    samples = np.asarray(samples, dtype=np.float64)
    return float(samples.std(ddof=1) / math.sqrt(samples.size))
