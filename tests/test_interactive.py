"""The static-page demos of gencore.interactive: validation, layout and the geometry the page's
JavaScript relies on. Their behaviour in a browser is tested on the built book (test_book.py)."""

import base64
import io
import json
import re
import zlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from gencore.interactive import (
    Control,
    Explorer,
    LatentExplorer,
    compact_png,
    decoding_grid,
    figure_with_axes_box,
    interpolate_grid,
)
from gencore.plot import figure_to_png


def tiny_png(value: float) -> bytes:
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.imshow([[value]], cmap="gray", vmin=0, vmax=1)
    return figure_to_png(fig, dpi=20)


def spec_of(explorer) -> dict:
    page = explorer._repr_html_()
    match = re.search(r"window\.courseDemo\(document\.getElementById\(\"[^\"]+\"\), (\{.*\})\);</script>", page)
    return json.loads(match.group(1))


def test_controls_are_sliders_or_toggles_with_labels():
    with pytest.raises(ValueError, match="slider"):
        Control("x", ["a"], kind="dial")
    with pytest.raises(ValueError, match="at least one label"):
        Control("x", [])
    assert Control("h", [0.1, 2]).labels == ("0.1", "2")


def test_explorer_needs_one_frame_per_combination_in_row_major_order():
    controls = [Control("model", ["a", "b"], kind="toggle"), Control("h", ["1", "2", "3"])]
    frames = [tiny_png(i / 6) for i in range(6)]
    with pytest.raises(ValueError, match=r"2 x 3 = 6"):
        Explorer(frames[:5], controls)
    with pytest.raises(ValueError, match="start"):
        Explorer(frames, controls, start=[0, 3])
    with pytest.raises(ValueError, match="play must name one of the sliders"):
        Explorer(frames, controls, play="model")  # a toggle cannot play
    spec = spec_of(Explorer(frames, controls, start=[1, 2], play="h", compact=False))
    # the last control varies fastest, as itertools.product lists the combinations
    assert spec["alts"] == [f"model: {m}, h: {h}" for m in "ab" for h in "123"]
    assert spec["frames"][4] == "data:image/png;base64," + base64.b64encode(frames[4]).decode()
    assert spec["start"] == [1, 2] and spec["play"] == 1


def test_explorer_html_is_self_contained():
    page = Explorer([tiny_png(0), tiny_png(1)], [Control("step", ["0", "1"])], play="step")._repr_html_()
    assert "<script" in page and 'class="demo-play"' in page and page.count("data:image/png;base64,") == 2
    # nothing is fetched: no external script, stylesheet or image
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_compact_png_keeps_the_picture_and_shrinks_it():
    fig, ax = plt.subplots(figsize=(4, 3))
    for k in range(5):
        ax.plot(np.sin(np.linspace(0, 6, 200) + k), label=f"curve {k}")
    ax.legend()
    png = figure_to_png(fig)
    small = compact_png(png)
    assert len(small) < 0.6 * len(png)
    before = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    after = np.asarray(Image.open(io.BytesIO(small)).convert("RGB"), dtype=float)
    assert before.shape == after.shape
    assert np.abs(before - after).mean() < 2.0  # out of 255
    # a picture with transparency is left alone
    fig, ax = plt.subplots(figsize=(2, 2))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", transparent=True)
    plt.close(fig)
    assert compact_png(buffer.getvalue()) == buffer.getvalue()


def test_decoding_grid_runs_along_z1_within_a_row_from_the_bottom():
    points = decoding_grid((-1.0, 1.0, 10.0, 20.0), 3).view(3, 3, 2)
    assert torch.allclose(points[0, :, 0], torch.tensor([-1.0, 0.0, 1.0]))  # a row: z1 varies
    assert torch.allclose(points[:, 0, 1], torch.tensor([10.0, 15.0, 20.0]))  # rows go up in z2


def test_interpolation_is_exact_on_bilinear_functions_and_hits_the_grid_points():
    extent = (-4.0, 4.0, -2.0, 6.0)
    points = decoding_grid(extent, 9)

    def f(z):  # bilinear in (z1, z2), two "pixels"
        return torch.stack([1 + 2 * z[:, 0] - z[:, 1] + 0.5 * z[:, 0] * z[:, 1], z[:, 0] * z[:, 1]], dim=1)

    grid = f(points).view(9, 9, 2)
    z = torch.rand(500, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([8.0, 8.0]) + torch.tensor([-4.0, -2.0])
    assert torch.allclose(interpolate_grid(grid, extent, z), f(z), atol=1e-4)
    assert torch.allclose(interpolate_grid(grid, extent, points), grid.view(-1, 2), atol=1e-5)
    # not bilinear: the interpolation is exact at the grid points only
    bumpy = torch.sin(3 * points[:, :1]).view(9, 9, 1)
    assert not torch.allclose(interpolate_grid(bumpy, extent, z), torch.sin(3 * z[:, :1]), atol=1e-2)


def test_latent_explorer_validates_and_stores_pixel_major_deflated_grids():
    frames = [tiny_png(0), tiny_png(1)]
    controls = [Control("step", ["0", "1"])]
    decodings = torch.rand(2, 5, 5, 2, 3)
    with pytest.raises(ValueError, match="shape"):
        LatentExplorer(frames, controls, decodings[:1], (-1, 1, -1, 1), (0.1, 0.1, 0.9, 0.9))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        LatentExplorer(frames, controls, decodings * 2, (-1, 1, -1, 1), (0.1, 0.1, 0.9, 0.9))
    with pytest.raises(ValueError, match="extent"):
        LatentExplorer(frames, controls, decodings, (1, -1, -1, 1), (0.1, 0.1, 0.9, 0.9))
    with pytest.raises(ValueError, match="boxes"):
        LatentExplorer(frames, controls, decodings, (-1, 1, -1, 1), (0.9, 0.1, 0.1, 0.9))
    spec = spec_of(LatentExplorer(frames, controls, decodings, (-1, 1, -1, 1), (0.1, 0.1, 0.9, 0.9)))
    decode = spec["decode"]
    assert (decode["side"], decode["height"], decode["width"]) == (5, 2, 3)
    assert decode["boxes"] == [[0.1, 0.1, 0.9, 0.9]] * 2
    stored = np.frombuffer(zlib.decompress(base64.b64decode(decode["grids"][1])), np.uint8).reshape(2, 3, 5, 5)
    expected = np.round(decodings[1].numpy() * 255).astype(np.uint8).transpose(2, 3, 0, 1)
    assert np.array_equal(stored, expected)


def test_axes_box_locates_a_plotted_point_in_the_picture():
    fig, ax = plt.subplots(figsize=(4, 3))
    fig.subplots_adjust(left=0.2, right=0.7, bottom=0.25, top=0.85)  # an off-centre box
    ax.plot([3.0], [-1.0], "s", color=(1, 0, 0), ms=5)
    ax.set_xlim(0, 4)
    ax.set_ylim(-2, 2)
    png, (left, top, right, bottom) = figure_with_axes_box(fig, ax)
    picture = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    red = (picture[..., 0] > 230) & (picture[..., 1] < 60) & (picture[..., 2] < 60)
    rows, columns = red.nonzero()
    u, v = (columns.mean() + 0.5) / picture.shape[1], (rows.mean() + 0.5) / picture.shape[0]
    x = 0 + 4 * (u - left) / (right - left)
    y = 2 - 4 * (v - top) / (bottom - top)
    assert abs(x - 3.0) < 0.05 and abs(y + 1.0) < 0.05
