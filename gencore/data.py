"""Data sets that need no download: 2-D toy distributions and scikit-learn's 8x8 digits.

Every function returns float32 tensors on ``device`` (the library's default device if not
given). Randomness comes from an explicit ``torch.Generator`` built from ``seed``, so the same
seed gives the same points on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from gencore.device import get_device

TOY_NAMES = ("two_moons", "eight_gaussians", "swiss_roll", "checkerboard")


def _check_n(n: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def two_moons(n: int, noise: float = 0.05, seed: int = 0, device=None) -> torch.Tensor:
    """Two interleaved half circles, shape (n, 2), roughly centred and of unit scale."""
    _check_n(n)
    g = _generator(seed)
    upper = torch.rand(n, generator=g) < 0.5
    theta = torch.rand(n, generator=g) * math.pi
    x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5  # (n, 2)
    points = points + noise * torch.randn(n, 2, generator=g)
    return points.to(device or get_device())


def eight_gaussian_centers(radius: float = 2.0) -> torch.Tensor:
    """The eight means of :func:`eight_gaussians`, shape (8, 2), on a circle of ``radius`` (CPU)."""
    angle = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    return radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)


def eight_gaussians(n: int, radius: float = 2.0, std: float = 0.1, seed: int = 0, device=None):
    """A ring of eight equally weighted Gaussians, shape (n, 2); the classic mode-collapse test."""
    _check_n(n)
    g = _generator(seed)
    k = torch.randint(0, 8, (n,), generator=g)
    centres = eight_gaussian_centers(radius)[k]  # (n, 2)
    return (centres + std * torch.randn(n, 2, generator=g)).to(device or get_device())


def swiss_roll(n: int, noise: float = 0.05, seed: int = 0, device=None) -> torch.Tensor:
    """A 2-D spiral (the swiss roll seen from its side), shape (n, 2), scaled to about [-2, 2]."""
    _check_n(n)
    g = _generator(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    points = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 7.5  # (n, 2)
    return (points + noise * torch.randn(n, 2, generator=g)).to(device or get_device())


def checkerboard(n: int, seed: int = 0, device=None) -> torch.Tensor:
    """Uniform on the black squares of a 4x4 checkerboard over [-2, 2]^2, shape (n, 2)."""
    _check_n(n)
    g = _generator(seed)
    x = 4 * torch.rand(n, generator=g) - 2
    column = torch.floor(x + 2)  # 0..3
    # pick a row of the same parity as the column so that (row + column) is even
    row = 2 * torch.randint(0, 2, (n,), generator=g) + (column % 2)
    y = row + torch.rand(n, generator=g) - 2
    return torch.stack([x, y], dim=1).to(device or get_device())


def toy_2d(name: str, n: int, seed: int = 0, device=None) -> torch.Tensor:
    """One of the 2-D toys by name: ``two_moons``, ``eight_gaussians``, ``swiss_roll``, ``checkerboard``."""
    makers = {
        "two_moons": two_moons,
        "eight_gaussians": eight_gaussians,
        "swiss_roll": swiss_roll,
        "checkerboard": checkerboard,
    }
    if name not in makers:
        raise ValueError(f"unknown toy {name!r}; expected one of {', '.join(TOY_NAMES)}")
    return makers[name](n, seed=seed, device=device)


@dataclass
class Digits:
    """scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels: the integers 0 to 16), scaled to [0, 1].

    ``x`` has shape (N, 64) (flattened rows), ``y`` has shape (N,) with labels 0-9.
    Reshape with ``x.view(-1, 1, 8, 8)`` for images.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@lru_cache(maxsize=1)
def _digits_numpy() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as sklearn_load_digits

    images, labels = sklearn_load_digits(return_X_y=True)  # ships with scikit-learn
    return (images / 16.0).astype(np.float32), labels.astype(np.int64)  # pixels 0..16 -> 0, 1/16, ..., 1


def load_digits(split: str = "all", test_fraction: float = 0.2, seed: int = 0, device=None) -> Digits:
    """The 8x8 digits as tensors in [0, 1].

    ``split`` is ``all``, ``train`` or ``test``; the train/test split is a fixed random
    permutation drawn from ``seed`` (the same seed gives disjoint, complementary splits).
    """
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    images, labels = _digits_numpy()
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    if split != "all":
        order = torch.randperm(len(x), generator=_generator(seed))
        n_test = int(round(test_fraction * len(x)))
        index = order[:n_test] if split == "test" else order[n_test:]
        x, y = x[index], y[index]
    device = device or get_device()
    return Digits(x.to(device), y.to(device))


def binarize(x: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Pixels in [0, 1] to {0, 1} (as float) by thresholding."""
    return (x > threshold).to(x.dtype)
