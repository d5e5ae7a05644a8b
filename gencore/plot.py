"""Figures shared by the chapters and the notebooks.

Every function draws on a matplotlib ``Axes`` (made if not given) and returns it, so figures
can be composed. ``FrameSlider`` builds an interactive figure that works in a static web page:
the frames are rendered in advance and ``gencore.interactive`` swaps them as a slider moves.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _as_images(images, side: int | None = None) -> np.ndarray:
    """(N, D) or (N, H, W) or (N, 1, H, W) tensors/arrays to a float array (N, H, W)."""
    a = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, float)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim == 2:
        side = side or int(round(a.shape[1] ** 0.5))
        if side * side != a.shape[1]:
            raise ValueError(f"cannot view {a.shape[1]} pixels as square images")
        a = a.reshape(len(a), side, side)
    if a.ndim != 3:
        raise ValueError(f"expected images of shape (N, D), (N, H, W) or (N, 1, H, W), got {a.shape}")
    return a


def image_grid(images, nrow: int = 8, pad: int = 1) -> np.ndarray:
    """Tile N images into one array with ``nrow`` images per row and ``pad`` pixels between."""
    a = _as_images(images)
    n, h, w = a.shape
    rows = int(np.ceil(n / nrow))
    grid = np.zeros((rows * (h + pad) + pad, nrow * (w + pad) + pad))  # 0 is white in gray_r
    for i, img in enumerate(a):
        r, c = divmod(i, nrow)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = img
    return grid


def sample_grid(images, nrow: int = 8, title: str | None = None, ax=None):
    """Show images (pixel values in [0, 1]) as a grid, dark ink on white."""
    ax = ax or plt.subplots(figsize=(4, 4 * max(1, int(np.ceil(len(images) / nrow))) / nrow))[1]
    ax.imshow(image_grid(images, nrow), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def training_curves(history: dict, ax=None, title: str | None = None):
    """Reconstruction term and KL term of the negative ELBO against steps, on two y-axes."""
    ax = ax or plt.subplots(figsize=(6, 3.2))[1]
    steps = history["eval_step"]
    ax.plot(steps, history["recon"], color="tab:blue", label="reconstruction  E_q[-log p(x|z)]")
    ax.set_xlabel("step")
    ax.set_ylabel("reconstruction (nats)", color="tab:blue")
    twin = ax.twinx()
    twin.plot(steps, history["kl"], color="tab:orange", label="KL(q(z|x) || p(z))")
    twin.set_ylabel("KL (nats)", color="tab:orange")
    lines = ax.get_lines() + twin.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper center", bbox_to_anchor=(0.5, -0.22),
              ncol=2, fontsize=8, frameon=False)
    if title:
        ax.set_title(title)
    return ax


def latent_scatter(z, labels=None, ax=None, title: str | None = None, s: float = 6):
    """A 2-D latent code per point, coloured by label (digits 0-9 get a legend)."""
    z = z.detach().cpu().numpy() if isinstance(z, torch.Tensor) else np.asarray(z)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"latent_scatter needs 2-D codes of shape (N, 2), got {z.shape}")
    ax = ax or plt.subplots(figsize=(4.5, 4.5))[1]
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=s, alpha=0.6)
    else:
        labels = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        points = ax.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=s, alpha=0.7, vmin=-0.5, vmax=9.5)
        plt.colorbar(points, ax=ax, ticks=range(10), fraction=0.046, pad=0.04)
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$")
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    return ax


@torch.no_grad()
def interpolation_strip(decode, z_start, z_end, steps: int = 10, ax=None, title: str | None = None):
    """Decode the straight line from ``z_start`` to ``z_end`` in ``steps`` images, one row.

    ``decode`` maps latents (n, K) to pixel logits (n, D); the sigmoid gives pixel means.
    """
    if z_start.shape != z_end.shape or z_start.dim() != 1:
        raise ValueError(f"z_start and z_end must be vectors of one shape, got {tuple(z_start.shape)} and {tuple(z_end.shape)}")
    t = torch.linspace(0, 1, steps, device=z_start.device)[:, None]  # (steps, 1)
    images = torch.sigmoid(decode((1 - t) * z_start + t * z_end))
    ax = ax or plt.subplots(figsize=(steps * 0.6, 0.9))[1]
    return sample_grid(images, nrow=steps, title=title, ax=ax)


def figure_to_png(fig, dpi: int = 100) -> bytes:
    """The PNG bytes of a matplotlib figure (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def FrameSlider(frames: Sequence[bytes], labels: Sequence[str], title: str = "", start: int = 0, play: bool = False):
    """Pre-rendered frames with one slider (and a play button if ``play``); works without a kernel.

    Each frame is PNG bytes and ``labels`` name them. The HTML is ``gencore.interactive.Explorer``'s:
    in Jupyter and in a Jupyter Book page it renders through ``_repr_html_``.
    """
    from gencore.interactive import Control, Explorer

    if len(frames) == 0 or len(frames) != len(labels):
        raise ValueError(f"need one label per frame and at least one frame, got {len(frames)} frames and {len(labels)} labels")
    return Explorer(frames, [Control("", tuple(labels))], title=title, start=[start], play="" if play else None)
