"""Interactive figures that work in a static web page, and their live versions for a kernel.

A static page has no Python behind it, so every picture a reader can ask for is computed when the
chapter runs: ``Explorer`` holds one pre-rendered PNG frame per combination of its controls
(sliders, toggles, a play button that steps one slider) and about a hundred lines of JavaScript
show the frame the controls select. ``LatentExplorer`` adds decoding under the pointer: for each
frame it carries the decoder's images on a grid of latent points and draws, as the pointer moves
over the latent-space axes, the bilinear interpolation of the four decodings around it.

Why not a library: matplotlib's ``Animation.to_jshtml`` gives a frame player, but its buttons
are Font Awesome icons fetched from a CDN (blank, and a failed request, offline) and it has one
axis of frames only; Plotly and Bokeh can do all of this but add 1 to 4 MB of JavaScript to every
page, or fetch it from the network. The frames here are plain PNGs, so the page weighs what its
pictures weigh. The same HTML renders in Jupyter, in a Jupyter Book page and in any browser with
JavaScript; nothing is fetched.

Where a kernel runs, ``live_latent_explorer`` and ``live_frames`` give ipywidgets versions that
compute on the reader's own model.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import math
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = [
    "Control",
    "Explorer",
    "LatentExplorer",
    "compact_png",
    "decoding_grid",
    "figure_with_axes_box",
    "interpolate_grid",
    "live_frames",
    "live_latent_explorer",
]


@dataclass(frozen=True)
class Control:
    """One control of an ``Explorer``: a ``slider`` or a ``toggle`` (radio buttons) over ``labels``."""

    name: str
    labels: tuple[str, ...]
    kind: str = "slider"

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if self.kind not in ("slider", "toggle"):
            raise ValueError(f"a control is a 'slider' or a 'toggle', got {self.kind!r}")
        if not self.labels:
            raise ValueError(f"control {self.name!r} needs at least one label")


# The runtime: one function, defined once per page however many explorers it holds. ``spec``
# carries the frames (data URIs, row-major over the controls), the controls and, for a latent
# explorer, the decodings (base64 uint8, one grid per frame) with the geometry that maps a point
# of the picture to a latent point.
_RUNTIME = r"""
window.courseDemo = window.courseDemo || function(root, spec) {
  var img = root.querySelector("img.demo-frame");
  root.demoSpec = spec;  // for tests in a browser
  var index = spec.start.slice(), timer = null, pointer = null, cache = {};
  function flat() {
    var k = 0;
    for (var i = 0; i < spec.controls.length; i++) k = k * spec.controls[i].labels.length + index[i];
    return k;
  }
  function show() {
    var k = flat();
    img.src = spec.frames[k];
    img.alt = spec.alts[k];
    root.dataset.frame = k;
    spec.controls.forEach(function(c, i) {
      var box = root.querySelector('[data-control="' + i + '"]');
      box.querySelector("output").textContent = c.labels[index[i]];
      if (c.kind === "slider") box.querySelector("input").value = index[i];
      else box.querySelectorAll("input").forEach(function(r) { r.checked = (+r.value === index[i]); });
    });
    if (spec.decode && pointer) decodeAt(pointer[0], pointer[1]);
  }
  spec.controls.forEach(function(c, i) {
    var box = root.querySelector('[data-control="' + i + '"]');
    box.querySelectorAll("input").forEach(function(input) {
      input.addEventListener(c.kind === "slider" ? "input" : "change", function() {
        index[i] = parseInt(input.value); show();
      });
    });
  });
  var play = root.querySelector("button.demo-play");
  if (play) {
    var p = spec.play, n = spec.controls[p].labels.length;
    play.addEventListener("click", function() {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "\u25B6 play"; return; }
      if (index[p] === n - 1) { index[p] = 0; show(); }
      play.textContent = "\u275A\u275A pause";
      timer = setInterval(function() {
        index[p] += 1; show();
        if (index[p] === n - 1) { clearInterval(timer); timer = null; play.textContent = "\u25B6 play"; }
      }, spec.interval);
    });
  }
  // each frame's grid arrives deflated, pixel-major (pixel, row, column): inflated once, on first use
  function grid(k) {
    if (!cache[k]) {
      var s = atob(spec.decode.grids[k]), a = new Uint8Array(s.length);
      for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
      var stream = new Blob([a]).stream().pipeThrough(new DecompressionStream("deflate"));
      cache[k] = new Response(stream).arrayBuffer().then(function(b) { return new Uint8Array(b); });
    }
    return cache[k];
  }
  var request = 0;
  function decodeAt(fx, fy) {
    var d = spec.decode, k = flat(), b = d.boxes[k], e = d.extent;
    var u = (fx - b[0]) / (b[2] - b[0]), v = (fy - b[1]) / (b[3] - b[1]);
    if (u < 0 || u > 1 || v < 0 || v > 1) return false;
    var z1 = e[0] + u * (e[1] - e[0]), z2 = e[3] - v * (e[3] - e[2]);
    var G = d.side, P = d.height * d.width, GG = G * G, mine = ++request;
    var ix = Math.min(Math.floor(u * (G - 1)), G - 2), iy = Math.min(Math.floor((1 - v) * (G - 1)), G - 2);
    var tx = u * (G - 1) - ix, ty = (1 - v) * (G - 1) - iy;
    var label = "z = (" + z1.toFixed(2) + ", " + z2.toFixed(2) + ")";
    grid(k).then(function(g) {
      if (mine !== request) return;  // the pointer has moved on
      var canvas = root.querySelector("canvas"), ctx = canvas.getContext("2d");
      var picture = ctx.createImageData(d.width, d.height), at = iy * G + ix;
      for (var p = 0; p < P; p++) {
        var o = p * GG + at;
        var value = (1 - ty) * ((1 - tx) * g[o] + tx * g[o + 1]) + ty * ((1 - tx) * g[o + G] + tx * g[o + G + 1]);
        var ink = Math.round(255 - value);
        picture.data[4 * p] = ink; picture.data[4 * p + 1] = ink; picture.data[4 * p + 2] = ink;
        picture.data[4 * p + 3] = 255;
      }
      ctx.putImageData(picture, 0, 0);
      root.querySelector(".demo-decoded figcaption").textContent = "decoded at " + label;
      root.dataset.z = z1.toFixed(3) + "," + z2.toFixed(3);
    });
    var mark = root.querySelector(".demo-marker");
    mark.style.display = "block";
    mark.style.left = (100 * fx) + "%"; mark.style.top = (100 * fy) + "%";
    return true;
  }
  if (spec.decode) {
    var move = function(event) {
      var r = img.getBoundingClientRect();
      var fx = (event.clientX - r.left) / r.width, fy = (event.clientY - r.top) / r.height;
      if (decodeAt(fx, fy)) pointer = [fx, fy];
    };
    img.addEventListener("pointermove", move);
    img.addEventListener("pointerdown", move);
    var b = spec.decode.boxes[flat()];
    pointer = [(b[0] + b[2]) / 2, (b[1] + b[3]) / 2];
  }
  show();
};
"""

_STYLE = """
<style>
.course-demo { margin: 0.5em 0 1em; }
.course-demo .demo-title { font-weight: 600; }
.course-demo .demo-controls { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center;
  margin: 0.3em 0; }
.course-demo .demo-control { display: flex; gap: 0.5em; align-items: center; flex: 1 1 16em;
  margin: 0; border: 0; padding: 0; }
.course-demo .demo-control > span { white-space: nowrap; }
.course-demo .demo-control input[type=range] { flex: 1; min-width: 6em; }
.course-demo .demo-control output { min-width: 5em; font-variant-numeric: tabular-nums; }
.course-demo .demo-control label { margin-right: 0.6em; white-space: nowrap; }
.course-demo .demo-stage { display: flex; flex-wrap: wrap; gap: 0.8em; align-items: flex-start; }
.course-demo .demo-picture { position: relative; max-width: 100%; }
.course-demo .demo-picture img { display: block; max-width: 100%; height: auto; touch-action: none; }
.course-demo .demo-marker { display: none; position: absolute; width: 12px; height: 12px;
  margin: -6px 0 0 -6px; border: 2px solid #000; border-radius: 50%; pointer-events: none;
  box-shadow: 0 0 0 1px #fff; }
.course-demo .demo-decoded { margin: 0; text-align: center; }
.course-demo .demo-decoded canvas { width: 144px; height: 144px; image-rendering: pixelated;
  border: 1px solid #bbb; }
.course-demo .demo-decoded figcaption { font-size: 0.85em; font-variant-numeric: tabular-nums; }
</style>
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def compact_png(png: bytes, colors: int = 64) -> bytes:
    """The same picture as an 8-bit palette PNG, a third to a quarter of the size of matplotlib's.

    Figures have few distinct colours (lines, markers, grey digits), so a palette of ``colors``
    entries chosen by median cut shows no difference; a picture with any transparency, or that
    would not get smaller, is returned unchanged.
    """
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    if image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255:
        return png
    small = image.convert("RGB").quantize(colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")  # optimize=True: 2x the time for 10% less
    return buffer.getvalue() if buffer.tell() < len(png) else png


def _script_json(value) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(value, separators=(",", ":")).replace("</", "<\\/")


class Explorer:
    """Pre-rendered frames chosen by sliders and toggles; self-contained HTML, no kernel needed.

    ``frames`` holds PNG bytes, one per combination of the controls' labels in row-major order
    (the last control varies fastest), as ``itertools.product`` lists them. ``start`` picks the
    first frame shown (one index per control, default all zeros). ``play``, the name of a slider,
    adds a button that steps through that slider's labels every ``interval`` milliseconds.
    ``compact`` stores the frames as palette PNGs (``compact_png``), which keeps a page with many
    frames light.
    """

    def __init__(
        self,
        frames: Sequence[bytes],
        controls: Sequence[Control],
        *,
        title: str = "",
        start: Sequence[int] | None = None,
        play: str | None = None,
        interval: int = 400,
        compact: bool = True,
    ):
        self.controls = list(controls)
        if not self.controls:
            raise ValueError("an Explorer needs at least one control")
        shape = [len(c.labels) for c in self.controls]
        if len(frames) != math.prod(shape):
            raise ValueError(
                f"need one frame per combination of the controls ({' x '.join(map(str, shape))}"
                f" = {math.prod(shape)}), got {len(frames)}"
            )
        self.frames = [compact_png(f) for f in frames] if compact else list(frames)
        self.start = [0] * len(shape) if start is None else [int(i) for i in start]
        if len(self.start) != len(shape) or any(not 0 <= i < n for i, n in zip(self.start, shape)):
            raise ValueError(f"start must give one index per control within {shape}, got {start}")
        names = [c.name for c in self.controls]
        if play is not None and (play not in names or self.controls[names.index(play)].kind != "slider"):
            raise ValueError(f"play must name one of the sliders {names}, got {play!r}")
        self.play = None if play is None else names.index(play)
        self.title, self.interval = title, int(interval)

    def _alts(self) -> list[str]:
        return [
            ", ".join(f"{c.name}: {label}" if c.name else label for c, label in zip(self.controls, combo))
            for combo in itertools.product(*(c.labels for c in self.controls))
        ]

    def _spec(self) -> dict:
        return dict(
            frames=[_data_uri(f) for f in self.frames],
            alts=self._alts(),
            controls=[dict(name=c.name, labels=list(c.labels), kind=c.kind) for c in self.controls],
            start=self.start,
            play=self.play,
            interval=self.interval,
            decode=None,
        )

    def _control_html(self, uid: str) -> str:
        parts = []
        for i, c in enumerate(self.controls):
            first = html.escape(c.labels[self.start[i]])
            if c.kind == "slider":
                parts.append(
                    f'<label class="demo-control" data-control="{i}"><span>{html.escape(c.name)}</span>'
                    f'<input type="range" min="0" max="{len(c.labels) - 1}" step="1" value="{self.start[i]}"'
                    f' aria-label="{html.escape(c.name)}"><output>{first}</output></label>'
                )
            else:
                radios = "".join(
                    f'<label><input type="radio" name="{uid}-{i}" value="{j}"'
                    f'{" checked" if j == self.start[i] else ""}> {html.escape(label)}</label>'
                    for j, label in enumerate(c.labels)
                )
                parts.append(
                    f'<fieldset class="demo-control" data-control="{i}"><span>{html.escape(c.name)}</span>'
                    f'{radios}<output hidden>{first}</output></fieldset>'
                )
        if self.play is not None:
            parts.append('<button type="button" class="demo-play">\u25b6 play</button>')
        return "".join(parts)

    def _stage_html(self) -> str:
        return '<div class="demo-stage"><div class="demo-picture"><img class="demo-frame" alt=""></div></div>'

    def _repr_html_(self) -> str:
        uid = "demo-" + uuid.uuid4().hex[:10]
        title = f'<div class="demo-title">{html.escape(self.title)}</div>' if self.title else ""
        return (
            f'{_STYLE}<div class="course-demo" id="{uid}">{title}'
            f'<div class="demo-controls">{self._control_html(uid)}</div>{self._stage_html()}</div>'
            f"<script>{_RUNTIME}\nwindow.courseDemo(document.getElementById({json.dumps(uid)}),"
            f" {_script_json(self._spec())});</script>"
        )


class LatentExplorer(Explorer):
    """An ``Explorer`` whose frames show a 2-D latent space, with decoding under the pointer.

    ``decodings`` has shape (frames, G, G, H, W), pixel means in [0, 1]: frame f's decoder applied
    on the G x G grid of ``decoding_grid(extent, G)`` (rows along z2 from ``extent``'s bottom,
    columns along z1). ``boxes`` gives, per frame (or one for all), where the latent axes lie in
    the picture: (left, top, right, bottom) as fractions of its width and height, as
    ``figure_with_axes_box`` returns them. The page shows the bilinear interpolation of the grid
    (``interpolate_grid`` is the same formula in Python) at the point under the pointer.
    """

    def __init__(self, frames, controls, decodings, extent, boxes, **kwargs):
        super().__init__(frames, controls, **kwargs)
        d = decodings.detach().cpu().numpy() if isinstance(decodings, torch.Tensor) else np.asarray(decodings)
        if d.ndim != 5 or d.shape[0] != len(self.frames) or d.shape[1] != d.shape[2] or d.shape[1] < 2:
            raise ValueError(f"decodings must have shape (frames={len(self.frames)}, G, G, H, W), got {d.shape}")
        if d.min() < 0 or d.max() > 1:
            raise ValueError("decodings are pixel means in [0, 1]")
        self.decodings = np.round(d * 255).astype(np.uint8)
        self.extent = [float(v) for v in extent]
        if len(self.extent) != 4 or self.extent[0] >= self.extent[1] or self.extent[2] >= self.extent[3]:
            raise ValueError(f"extent is (z1 min, z1 max, z2 min, z2 max), got {extent}")
        boxes = np.asarray(boxes, float)
        boxes = np.broadcast_to(boxes, (len(self.frames), 4)) if boxes.ndim == 1 else boxes
        if boxes.shape != (len(self.frames), 4) or not ((boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])).all():
            raise ValueError(f"boxes are (left, top, right, bottom) fractions, one per frame or one for all, got {boxes.shape}")
        self.boxes = boxes.tolist()

    def _spec(self) -> dict:
        spec = super()._spec()
        _, side, _, height, width = self.decodings.shape
        spec["decode"] = dict(
            # pixel-major, so that neighbouring grid points sit side by side: deflate halves it
            grids=[
                base64.b64encode(zlib.compress(g.transpose(2, 3, 0, 1).tobytes(), 9)).decode()
                for g in self.decodings
            ],
            side=side, height=height, width=width, extent=self.extent, boxes=self.boxes,
        )
        return spec

    def _stage_html(self) -> str:
        _, _, _, height, width = self.decodings.shape
        return (
            '<div class="demo-stage"><div class="demo-picture"><img class="demo-frame" alt="">'
            '<div class="demo-marker"></div></div>'
            f'<figure class="demo-decoded"><canvas width="{width}" height="{height}"></canvas>'
            "<figcaption>point into the latent space</figcaption></figure></div>"
        )


def decoding_grid(extent: Sequence[float], side: int) -> torch.Tensor:
    """The (side * side, 2) latent points of a ``LatentExplorer`` grid, row by row from the bottom."""
    z1 = torch.linspace(extent[0], extent[1], side)
    z2 = torch.linspace(extent[2], extent[3], side)
    return torch.stack(torch.meshgrid(z2, z1, indexing="ij")[::-1], dim=-1).reshape(-1, 2)


def interpolate_grid(grid: torch.Tensor, extent: Sequence[float], z: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of decodings on a grid at latent points ``z`` (n, 2); (n, ...) out.

    ``grid`` has shape (G, G, ...) laid out as ``decoding_grid`` lists the points; the page's
    JavaScript uses the same formula.
    """
    side = grid.shape[0]
    u = ((z[:, 0] - extent[0]) / (extent[1] - extent[0])).clamp(0, 1) * (side - 1)
    v = ((z[:, 1] - extent[2]) / (extent[3] - extent[2])).clamp(0, 1) * (side - 1)
    ix, iy = u.floor().long().clamp(max=side - 2), v.floor().long().clamp(max=side - 2)
    tx, ty = u - ix, v - iy
    shape = (-1,) + (1,) * (grid.dim() - 2)
    tx, ty = tx.view(shape), ty.view(shape)
    return (1 - ty) * ((1 - tx) * grid[iy, ix] + tx * grid[iy, ix + 1]) + ty * (
        (1 - tx) * grid[iy + 1, ix] + tx * grid[iy + 1, ix + 1]
    )


def figure_with_axes_box(
    fig, ax, dpi: int = 80, close: bool = True
) -> tuple[bytes, tuple[float, float, float, float]]:
    """The PNG of ``fig`` and where ``ax``'s data area lies in it: (left, top, right, bottom) fractions.

    The figure is saved whole (no tight bounding box), so the fractions hold in the picture at any
    displayed size. The figure is closed unless ``close`` is false (to redraw it for the next
    frame, which is several times faster than making a new figure).
    """
    fig.canvas.draw()
    box = ax.get_window_extent().transformed(fig.dpi_scale_trans.inverted())
    width, height = fig.get_size_inches()
    fractions = (box.x0 / width, 1 - box.y1 / height, box.x1 / width, 1 - box.y0 / height)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    if close:
        plt.close(fig)
    return buffer.getvalue(), fractions


def live_frames(render: Callable[[int], None], count: int, *, description: str = "frame", interval: int = 300):
    """An ipywidgets player over ``count`` frames; ``render(k)`` draws frame k with matplotlib.

    For a kernel: the frames are computed when asked for, from live objects (a model being
    trained, a history). Returns the widget (display it, or let the notebook show it).
    """
    import ipywidgets as widgets
    from IPython.display import display

    if count < 1:
        raise ValueError(f"need at least one frame, got {count}")
    player = widgets.Play(min=0, max=count - 1, interval=interval, description=description)
    slider = widgets.IntSlider(min=0, max=count - 1, description=description)
    widgets.jslink((player, "value"), (slider, "value"))
    out = widgets.Output()

    def draw(change=None):
        with out:
            out.clear_output(wait=True)
            render(slider.value)
            display(plt.gcf())
            plt.close("all")

    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([player, slider]), out])


@torch.no_grad()
def live_latent_explorer(decode: Callable, codes=None, labels=None, *, extent: float = 4.0, image_side: int = 8):
    """An ipywidgets latent explorer for a model with a 2-D code: sliders pick z, the model decodes it.

    ``decode`` maps (n, 2) latents to pixel logits (n, D); ``codes`` (N, 2) and ``labels`` (N,)
    are drawn behind the chosen point when given.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from gencore.plot import latent_scatter

    z1 = widgets.FloatSlider(min=-extent, max=extent, step=0.05, value=0.0, description="z1")
    z2 = widgets.FloatSlider(min=-extent, max=extent, step=0.05, value=0.0, description="z2")
    out = widgets.Output()

    device = codes.device if isinstance(codes, torch.Tensor) else None

    def draw(change=None):
        z = torch.tensor([[z1.value, z2.value]], device=device)
        image = torch.sigmoid(decode(z)).view(image_side, image_side).cpu()
        with out:
            out.clear_output(wait=True)
            fig, (ax_z, ax_x) = plt.subplots(1, 2, figsize=(7, 3.3), gridspec_kw=dict(width_ratios=[1.3, 1]))
            if codes is not None:
                latent_scatter(codes, labels, ax=ax_z, s=4)
            ax_z.plot([z1.value], [z2.value], "k*", ms=14)
            ax_z.set_xlim(-extent, extent)
            ax_z.set_ylim(-extent, extent)
            ax_x.imshow(image, cmap="gray_r", vmin=0, vmax=1)
            ax_x.set_axis_off()
            ax_x.set_title(f"decoded at z = ({z1.value:.2f}, {z2.value:.2f})")
            display(fig)
            plt.close(fig)

    z1.observe(draw, names="value")
    z2.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([z1, z2]), out])
