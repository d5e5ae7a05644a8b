"""Autoregressive models of binary images (PixelCNN: van den Oord et al. 2016a), top to bottom.

1. the math, as pure functions: ``causal_conv_mask`` (PixelCNN's masks of type A and B),
   ``negative_log_likelihood`` and ``bits_per_dim`` of binary pixels under per-pixel logits;
2. the models: ``MaskedConv2d``, a small ``PixelCNN``, a fully visible logistic model
   (``FullyVisibleLogistic``, one set of weights per pixel) and the independent-pixel baseline;
3. training (``train_pixelcnn``, taking the loss as an argument) and pixel-by-pixel ``sample``.

Shapes: images ``x`` are (B, 1, H, W) with pixels in {0, 1}; the models return logits of the
same shape, where ``logits[:, 0, r, c]`` parameterises p(x_rc = 1 | pixels before (r, c) in
raster order: rows top to bottom, left to right within a row).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from gencore.data import binarize, load_digits
from gencore.device import StepLog, autocast, compiled, configure_backend, get_device, pick, progress_bar, to_device
from gencore.nn import at_least_float32

MASK_TYPES = ("A", "B")

# ---------------------------------------------------------------------------------------------
# 1. The math
# ---------------------------------------------------------------------------------------------


def causal_conv_mask(kernel_size: int, mask_type: str) -> torch.Tensor:
    """The (k, k) 0/1 mask of a PixelCNN convolution (van den Oord et al. 2016a, Sec. 3.4).

    A kernel position (i, j) is kept when it comes before the centre in raster order (a row
    above, or the centre row and a column to the left). Type ``"A"`` (first layer) also drops
    the centre, so a pixel never sees its own value; type ``"B"`` (later layers) keeps it.
    """
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int (the mask needs a centre), got {kernel_size!r}")
    if mask_type not in MASK_TYPES:
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    c = kernel_size // 2
    mask = torch.zeros(kernel_size, kernel_size)
    mask[:c, :] = 1.0  # every row above the centre
    mask[c, :c] = 1.0  # the centre row, left of the centre
    if mask_type == "B":
        mask[c, c] = 1.0
    return mask


def _check_binary_images(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be binary images of shape (B, 1, H, W), got {shape}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if not bool(((x == 0) | (x == 1)).all()):
        raise ValueError(f"{name} must hold pixels in {{0, 1}} (binarise it first, e.g. gencore.data.binarize)")


def negative_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image, (B,): the chain rule turns it into a sum over pixels.

    -log p(x) = -sum_i log p(x_i | x_<i), each factor a Bernoulli with logit ``logits_i``;
    binary cross-entropy with logits computes -log p(x_i | x_<i) without overflow.
    """
    _check_binary_images("x", x)
    if not isinstance(logits, torch.Tensor) or logits.shape != x.shape:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must have the shape of x, {tuple(x.shape)}, got {shape}")
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(dim=1)


def bits_per_dim(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log2 p(x) / d per image, (B,): the NLL in nats divided by d ln 2 (d = pixels per image).

    One bit per dimension is what a fair coin per pixel costs; lower is better.
    """
    d = x[0].numel() if isinstance(x, torch.Tensor) and x.dim() == 4 else 1
    return negative_log_likelihood(logits, x) / (d * math.log(2))


# ---------------------------------------------------------------------------------------------
# 2. Models
# ---------------------------------------------------------------------------------------------


class MaskedConv2d(nn.Conv2d):
    """A same-padded convolution whose kernel is multiplied by a causal mask in every forward.

    ``mask_fn(kernel_size, mask_type)`` gives the (k, k) mask (``causal_conv_mask`` by default;
    a notebook passes its own). The mask is a buffer, so it moves with the module.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, mask_type: str, mask_fn: Callable = causal_conv_mask):
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        super().__init__(in_ch, out_ch, kernel_size, padding=kernel_size // 2)
        mask = torch.as_tensor(mask_fn(kernel_size, mask_type), dtype=torch.float32)
        if mask.shape != (kernel_size, kernel_size):
            raise ValueError(f"mask_fn must return a ({kernel_size}, {kernel_size}) mask, got {tuple(mask.shape)}")
        self.mask_type = mask_type
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)  # mask broadcasts over (out, in)


@dataclass
class PixelCNNConfig:
    image_size: int = 8  # H = W (8 for the digits; 2 for the chapter's enumeration example)
    channels: int = 32  # feature maps of every hidden layer
    first_kernel: int = 7  # the type-A layer; a wide first kernel widens the receptive field cheaply
    n_layers: int = 3  # type-B 3x3 layers after the first one
    steps: int = 800  # optimiser steps
    batch_size: int = 128
    lr: float = 3e-3  # Adam learning rate

    @classmethod
    def for_scale(cls, scale: str | None = None, **overrides) -> PixelCNNConfig:
        """Sizes for ``GENCORE_SCALE`` (or ``scale``); keyword overrides win."""
        sizes = pick(
            smoke=dict(channels=8, n_layers=2, steps=20, batch_size=64),
            small=dict(channels=32, n_layers=3, steps=800, batch_size=128),
            full=dict(channels=64, n_layers=6, steps=6000, batch_size=256, lr=1e-3),
            scale=scale,
        )
        return cls(**{**sizes, **overrides})


class PixelCNN(nn.Module):
    """One masked convolution of type A, ``n_layers`` of type B (ReLU between), a 1x1 output.

    ``forward(x)`` maps binary images (B, 1, H, W) to logits (B, 1, H, W) in one parallel pass;
    output (r, c) depends only on input pixels before (r, c) in raster order.
    """

    def __init__(self, config: PixelCNNConfig, mask_fn: Callable = causal_conv_mask):
        super().__init__()
        self.config = config
        c = config
        layers: list[nn.Module] = [MaskedConv2d(1, c.channels, c.first_kernel, "A", mask_fn), nn.ReLU()]
        for _ in range(c.n_layers):
            layers += [MaskedConv2d(c.channels, c.channels, 3, "B", mask_fn), nn.ReLU()]
        layers.append(nn.Conv2d(c.channels, 1, 1))  # 1x1: mixes channels, never positions
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.image_size
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, s, s):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"PixelCNN expects images of shape (B, 1, {s}, {s}), got {shape}")
        # pixels to {-1, +1}, so the zero padding reads as "no pixel"; float32 logits under autocast
        return at_least_float32(self.net(2 * x - 1))


class FullyVisibleLogistic(nn.Module):
    """p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j): one weight per pair of pixels.

    The fully visible sigmoid belief network (Frey 1998): position-specific parameters,
    d (d - 1) / 2 weights and d biases, a strictly lower-triangular W keeping it causal.
    """

    def __init__(self, image_size: int = 8):
        super().__init__()
        self.image_size = image_size
        d = image_size * image_size
        self.weight = nn.Parameter(torch.zeros(d, d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.register_buffer("mask", torch.tril(torch.ones(d, d), diagonal=-1))  # j < i only

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, s, s):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"FullyVisibleLogistic expects images of shape (B, 1, {s}, {s}), got {shape}")
        flat = x.flatten(1)  # (B, d) in raster order
        return (flat @ (self.weight * self.mask).T + self.bias).view_as(x)


def independent_bernoulli_logits(x_train: torch.Tensor) -> torch.Tensor:
    """The baseline that ignores every other pixel: p(x_i = 1) = pixel i's training frequency.

    Add-one (Laplace) smoothing keeps every probability inside (0, 1). Returns logits (1, 1, H, W).
    """
    _check_binary_images("x_train", x_train)
    p = (x_train.sum(0, keepdim=True) + 1) / (len(x_train) + 2)  # (1, 1, H, W)
    return torch.log(p) - torch.log1p(-p)


def make_pixelcnn(
    config: PixelCNNConfig | None = None, mask_fn: Callable = causal_conv_mask, seed: int = 0, device=None
) -> PixelCNN:
    """A freshly initialised ``PixelCNN`` (seeded) on ``device``; the config defaults to the scale's."""
    torch.manual_seed(seed)
    return PixelCNN(config or PixelCNNConfig.for_scale(), mask_fn).to(device or get_device())


def binary_digits(split: str = "all", device=None) -> torch.Tensor:
    """scikit-learn's 8x8 digits thresholded at 0.5, as images (N, 1, 8, 8) in {0, 1}."""
    return binarize(load_digits(split, device=device).x).view(-1, 1, 8, 8)


# ---------------------------------------------------------------------------------------------
# 3. Training and sampling
# ---------------------------------------------------------------------------------------------


def train_pixelcnn(
    model: nn.Module,
    x_train: torch.Tensor,
    *,
    config: PixelCNNConfig | None = None,
    mask_fn: Callable | None = None,
    loss_fn: Callable = negative_log_likelihood,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, list[float]]:
    """Adam on the batch mean of ``loss_fn(logits, x)`` for ``config.steps`` steps.

    All pixels' conditionals come out of one forward pass (the inputs are known), so one step
    trains every factor of the chain rule at once. Returns the history ``step``, ``loss``.
    ``mask_fn`` (a notebook's mask) replaces the mask of every ``MaskedConv2d`` before training.
    """
    config = config or getattr(model, "config", None) or PixelCNNConfig.for_scale()
    _check_binary_images("x_train", x_train)
    if mask_fn is not None:
        for layer in model.modules():
            if isinstance(layer, MaskedConv2d):
                k = layer.kernel_size[0]
                layer.mask.copy_(torch.as_tensor(mask_fn(k, layer.mask_type), dtype=torch.float32).view(k, k))
    configure_backend(x_train.device)
    net = compiled(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    n = len(x_train)
    bar = progress_bar(range(1, config.steps + 1), config.steps, type(model).__name__, progress)
    log = StepLog(history, bar=bar, show=("loss",))
    for step in bar:
        index = to_device(torch.randint(0, n, (min(config.batch_size, n),), generator=generator), x_train.device)
        x = x_train[index]
        optimizer.zero_grad()
        with autocast(x.device):  # bf16 convolutions on a GPU, float32 logits and loss
            loss = loss_fn(net(x), x).mean()
        loss.backward()
        optimizer.step()
        history["step"].append(step)
        log.append(loss=loss)
    log.flush()
    return history


@torch.no_grad()
def sample(model: nn.Module, n: int, generator: torch.Generator | None = None, progress: bool | None = None):
    """n images drawn pixel by pixel in raster order: x_i ~ Bernoulli(sigmoid(logit_i(x_<i))).

    One forward pass per pixel (H W passes): the price of the chain rule at generation time.
    Returns ``images`` (n, 1, H, W) in {0, 1} and ``frames`` (H W + 1, n, 1, H, W), the canvas
    after 0, 1, ..., H W pixels, with -1 marking the pixels not drawn yet.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    size = model.config.image_size if hasattr(model, "config") else model.image_size
    device = next(model.parameters()).device
    x = torch.zeros(n, 1, size, size, device=device)
    frames = [torch.full_like(x, -1.0)]
    bar = progress_bar(range(size * size), size * size, "sampling pixels", progress)
    for i in bar:
        r, c = divmod(i, size)
        p = torch.sigmoid(model(x)[:, 0, r, c])  # only pixels before (r, c) matter, the rest are 0
        x[:, 0, r, c] = torch.bernoulli(p.cpu(), generator=generator).to(device)
        frame = frames[-1].clone()
        frame[:, 0, r, c] = x[:, 0, r, c]
        frames.append(frame)
    return x, torch.stack(frames)
