"""Device selection, seeding, and the scale switch that sizes every demo.

The scale is read from the environment variable ``GENCORE_SCALE``:

- ``smoke``: a handful of steps on tiny models, so that every code path runs in seconds
  (what the test suite and continuous integration use);
- ``small``: the default on a CPU, about a minute per notebook on a 2-core laptop;
- ``full``: the default on CUDA, larger models and more steps, visibly better results.

A demo never hard-codes its sizes: it asks ``pick(smoke=..., small=..., full=...)`` or
builds its config with ``SomeConfig.for_scale()``.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

SCALES = ("smoke", "small", "full")
T = TypeVar("T")


def get_device() -> torch.device:
    """CUDA if present, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def configure_backend(device: torch.device | None = None) -> None:
    """Turn on TF32 matmuls on CUDA (free speed on Ampere and later; no effect elsewhere)."""
    device = device or get_device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast(device: torch.device | None = None):
    """bf16 autocast on CUDA, a no-op context elsewhere (CPU bf16 is slower than fp32 here)."""
    device = device or get_device()
    enabled = device.type == "cuda"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (every device) so that a run can be repeated."""
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_scale() -> str:
    """The current scale: ``GENCORE_SCALE`` if set, else ``full`` on CUDA and ``small`` otherwise."""
    value = os.environ.get("GENCORE_SCALE", "").strip().lower()
    if not value:
        return "full" if torch.cuda.is_available() else "small"
    if value not in SCALES:
        raise ValueError(
            f"GENCORE_SCALE must be one of {', '.join(SCALES)}; got {os.environ['GENCORE_SCALE']!r}"
        )
    return value


def progress_enabled() -> bool:
    """Whether training loops show progress bars: off when ``GENCORE_PROGRESS=0``.

    The book turns them off (a static page cannot animate a bar); notebooks keep them.
    """
    return os.environ.get("GENCORE_PROGRESS", "1").strip().lower() not in ("0", "false", "no", "off")


def progress_bar(iterable, total: int, desc: str, enabled: bool | None = None):
    """A tqdm bar (a widget in Jupyter, text elsewhere); ``enabled=None`` follows ``progress_enabled()``."""
    from tqdm.auto import tqdm

    enabled = progress_enabled() if enabled is None else enabled
    return tqdm(iterable, total=total, desc=desc, disable=not enabled)


def pick(*, smoke: T, small: T, full: T, scale: str | None = None) -> T:
    """The value for the current scale (or for ``scale`` if given)."""
    scale = get_scale() if scale is None else scale
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return {"smoke": smoke, "small": small, "full": full}[scale]
