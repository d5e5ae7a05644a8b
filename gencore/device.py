"""Device selection, seeding, and the scale switch that sizes every demo.

The scale is read from the environment variable ``GENCORE_SCALE``:

- ``smoke``: a handful of steps on tiny models, so that every code path runs in seconds
  (what the test suite and continuous integration use);
- ``small``: the default on a CPU, about a minute per notebook on a 2-core laptop;
- ``full``: the default on CUDA, larger models and more steps, visibly better results.

A demo never hard-codes its sizes: it asks ``pick(smoke=..., small=..., full=...)`` or
builds its config with ``SomeConfig.for_scale()``.

Two more switches set how the training loops run (``get_precision``, ``compile_enabled``):
``GENCORE_PRECISION`` (``fp32`` or ``bf16``; bf16 on CUDA by default) and ``GENCORE_COMPILE=1``.
Every loop calls ``configure_backend``, wraps its forward passes in ``autocast``, trains the
``compiled`` view of its networks, and logs its losses through a ``StepLog``.
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


PRECISIONS = ("fp32", "bf16")


def get_precision(device: torch.device | None = None) -> str:
    """The training precision: ``GENCORE_PRECISION`` if set, else ``bf16`` on CUDA and ``fp32`` elsewhere.

    - ``fp32``: strict float32 everywhere (TF32 off on CUDA), what the book's CPU numbers use;
    - ``bf16``: TF32 matrix multiplies and bf16 autocast around every network's forward pass. The
      networks return float32 outputs and the losses, log-probabilities and their ratios, the
      language model's final logits and the diffusion schedule stay in float32.
    """
    value = os.environ.get("GENCORE_PRECISION", "").strip().lower()
    if not value:
        device = device or get_device()
        return "bf16" if device.type == "cuda" else "fp32"
    if value not in PRECISIONS:
        raise ValueError(
            f"GENCORE_PRECISION must be one of {', '.join(PRECISIONS)}; got {os.environ['GENCORE_PRECISION']!r}"
        )
    return value


def compile_enabled() -> bool:
    """Whether training loops ``torch.compile`` their networks: ``GENCORE_COMPILE=1`` (off by default).

    Compilation takes tens of seconds per network and pays off on a GPU in runs of thousands of
    steps; on a CPU it also needs a C compiler.
    """
    return os.environ.get("GENCORE_COMPILE", "0").strip().lower() in ("1", "true", "yes", "on")


def configure_backend(device: torch.device | None = None, precision: str | None = None) -> None:
    """On CUDA, TF32 matrix multiplies and convolutions for ``bf16`` and strict IEEE float32 for ``fp32``.

    A no-op on other devices. Training loops call it when they start.
    """
    device = device or get_device()
    if device.type != "cuda":
        return
    mode = "tf32" if (precision or get_precision(device)) == "bf16" else "ieee"
    if hasattr(torch.backends.cuda.matmul, "fp32_precision"):  # torch >= 2.9
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    else:  # pragma: no cover - older torch
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"


def autocast(device: torch.device | None = None, precision: str | None = None):
    """bf16 autocast when the precision is ``bf16`` (on any device), a no-op context for ``fp32``.

    On a CPU the default precision is ``fp32``, so this changes nothing unless
    ``GENCORE_PRECISION=bf16`` asks for it (the tests do, to catch dtype mismatches without a GPU).
    """
    device = device or get_device()
    enabled = (precision or get_precision(device)) == "bf16"
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def float32_region(device: torch.device):
    """A region where autocast is off, for the computations that must stay in float32."""
    return torch.autocast(device_type=device.type, enabled=False)


def compiled(module: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(module)`` when ``compile_enabled()``, else ``module`` itself.

    The compiled module shares the parameters of ``module`` and leaves it untouched: a training
    loop calls the compiled one, while sampling, evaluation and copies of the model (a frozen
    reference, an EMA) keep the plain module, whose input shapes vary.
    """
    return torch.compile(module) if compile_enabled() else module


def compile_in_place(*modules: torch.nn.Module) -> None:
    """Compile each module's ``forward`` in place when ``compile_enabled()``, for loops that reach the
    networks through the model's methods (the VAE's ``encode``/``decode``).

    This is ``Module.compile()`` applied to ``forward`` rather than to the call machinery, which
    torch's tracer skips for its own containers (a compiled ``nn.Sequential`` would trace nothing).
    The modules keep their identity, parameters and ``state_dict`` keys; a deep copy computes with
    its own weights.
    """
    if not compile_enabled():
        return
    for module in modules:
        if getattr(module, "_compiled_call_impl", None) is None:
            module._compiled_call_impl = torch.compile(module.forward)


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device`` without making the host wait for the GPU.

    A plain ``.to("cuda")`` from pageable memory blocks until every queued kernel has run; from
    pinned memory with ``non_blocking=True`` the copy is queued behind them instead.
    """
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


class StepLog:
    """Per-step values (losses) kept as device tensors and copied to the host in batches.

    ``loss.item()`` at every step makes the host wait for the GPU at every step; here the values
    wait on the device and cross in one copy every ``every`` steps (and at ``flush()``), so the
    history holds the same Python floats as before. Plain numbers are accepted too.
    """

    def __init__(self, history: dict[str, list], every: int = 50, bar=None, show: tuple[str, ...] = ()):
        self.history, self.every, self.bar, self.show = history, every, bar, show
        self._pending: dict[str, list] = {}
        self._count = 0

    def append(self, **values) -> None:
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach()
            self._pending.setdefault(key, []).append(value)
        self._count += 1
        if self._count % self.every == 0:
            self.flush()

    def flush(self) -> None:
        for key, values in self._pending.items():
            self.history.setdefault(key, []).extend(host_floats(values))
        self._pending = {}
        if self.bar is not None and self.show:
            self.bar.set_postfix({k: f"{self.history[k][-1]:.3f}" for k in self.show if self.history.get(k)})


def host_floats(values: list) -> list[float]:
    """Python floats of a list of 0-d tensors and numbers, with one device-to-host copy."""
    tensors = [i for i, v in enumerate(values) if isinstance(v, torch.Tensor)]
    out = [float(v) if not isinstance(v, torch.Tensor) else 0.0 for v in values]
    if tensors:
        # float64 holds every float32 (and bf16) value exactly: the same floats as .item()
        host = torch.stack([values[i].reshape(()).double() for i in tensors]).cpu().tolist()
        for i, value in zip(tensors, host):
            out[i] = value
    return out


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
