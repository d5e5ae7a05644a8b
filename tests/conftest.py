"""Shared fixtures. The suite runs at GENCORE_SCALE=smoke (set by `make test`) unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Notebooks and chapters executed by the tests run at the smoke scale without progress bars,
# whatever the caller's environment says, so that the suite's time does not depend on it.
os.environ.setdefault("GENCORE_SCALE", "smoke")
os.environ.setdefault("GENCORE_PROGRESS", "0")

# Under pytest-xdist every worker is a process of its own: one thread each (the environment
# variable reaches the kernels that run notebooks), or the workers fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; run `pytest -m gpu` on a GPU machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
