"""gencore.device, gencore.data, gencore.plot and the training loops."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gencore import data, device, plot, vae  # noqa: E402


# ------------------------------------------------------------------ device and scale
@pytest.mark.parametrize("value", ["smoke", "small", "full", " Small "])
def test_scale_reads_environment(monkeypatch, value):
    monkeypatch.setenv("GENCORE_SCALE", value)
    assert device.get_scale() == value.strip().lower()
    assert device.pick(smoke=1, small=2, full=3) == {"smoke": 1, "small": 2, "full": 3}[value.strip().lower()]


def test_scale_default_depends_on_cuda(monkeypatch):
    monkeypatch.delenv("GENCORE_SCALE", raising=False)
    assert device.get_scale() == ("full" if torch.cuda.is_available() else "small")


def test_unknown_scale_raises(monkeypatch):
    monkeypatch.setenv("GENCORE_SCALE", "huge")
    with pytest.raises(ValueError, match="smoke, small, full.*'huge'"):
        device.get_scale()
    with pytest.raises(ValueError):
        device.pick(smoke=1, small=2, full=3, scale="tiny")


def test_config_for_scale_grows_with_scale():
    smoke, small, full = (vae.VAEConfig.for_scale(s) for s in ("smoke", "small", "full"))
    assert smoke.steps < small.steps < full.steps
    assert smoke.hidden <= small.hidden <= full.hidden
    assert vae.VAEConfig.for_scale("small", latent_dim=2, beta=4.0).latent_dim == 2


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu"), (False, None, "cpu")],
)
def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    # the machine's own hardware does not matter: each backend's answer is set here (None: no MPS module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if mps is None:
        monkeypatch.delattr(torch.backends, "mps")
    else:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert device.get_device() == torch.device(expected)


def test_seed_everything_repeats():
    device.seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    device.seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError):
        device.seed_everything("7")


def test_progress_switch(monkeypatch):
    monkeypatch.setenv("GENCORE_PROGRESS", "0")
    assert not device.progress_enabled()
    monkeypatch.setenv("GENCORE_PROGRESS", "1")
    assert device.progress_enabled()


# ------------------------------------------------------------------ data
@pytest.mark.parametrize("name", data.TOY_NAMES)
def test_toys_shape_seed_and_device(name):
    a = data.toy_2d(name, 500, seed=3, device="cpu")
    b = data.toy_2d(name, 500, seed=3, device="cpu")
    c = data.toy_2d(name, 500, seed=4, device="cpu")
    assert a.shape == (500, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 5


def test_eight_gaussians_has_eight_balanced_modes():
    x = data.eight_gaussians(8000, seed=0, device="cpu")
    angle = torch.atan2(x[:, 1], x[:, 0])
    mode = torch.round(angle / (2 * math.pi / 8)) % 8
    counts = torch.bincount(mode.long(), minlength=8).float()
    # each mode has probability 1/8: counts within 5 binomial standard deviations of 1000
    assert ((counts - 1000).abs() < 5 * math.sqrt(8000 * 1 / 8 * 7 / 8)).all()
    assert (x.norm(dim=1) - 2).abs().max() < 0.6


def test_checkerboard_only_on_black_squares():
    x = data.checkerboard(5000, seed=0, device="cpu")
    column, row = torch.floor(x[:, 0] + 2), torch.floor(x[:, 1] + 2)
    assert ((column + row) % 2 == 0).all()
    assert x.min() >= -2 and x.max() <= 2


def test_unknown_toy_and_bad_n():
    with pytest.raises(ValueError, match="unknown toy"):
        data.toy_2d("spiral", 10)
    with pytest.raises(ValueError):
        data.two_moons(0)


def test_digits_scaled_and_split():
    all_ = data.load_digits(device="cpu")
    train, test = data.load_digits("train", device="cpu"), data.load_digits("test", device="cpu")
    assert all_.x.shape == (1797, 64) and all_.y.shape == (1797,)
    assert all_.x.min() == 0 and all_.x.max() == 1 and all_.x.dtype == torch.float32
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    # disjoint and complementary: every image of the full set is in exactly one split
    rows = lambda d: {tuple(r) for r in (d.x * 16).round().int().tolist()}  # noqa: E731
    assert rows(train) | rows(test) == rows(all_)
    assert sorted(torch.unique(all_.y).tolist()) == list(range(10))
    with pytest.raises(ValueError):
        data.load_digits("validation")


def test_digits_have_17_grey_levels():
    from sklearn.datasets import load_digits as sklearn_load_digits

    raw = sklearn_load_digits().data  # the integers 0..16 as scikit-learn ships them
    assert np.array_equal(np.unique(raw), np.arange(17))
    levels = torch.unique(data.load_digits(device="cpu").x)
    assert torch.equal(levels, torch.arange(17, dtype=torch.float32) / 16)


# ------------------------------------------------------------------ training
def test_train_vae_uses_the_pieces_it_is_given():
    config = vae.VAEConfig(latent_dim=2, hidden=16, steps=12, batch_size=32)
    model = vae.make_vae(config, device="cpu")
    calls = {"kl": 0, "reparam": 0}

    def counting_kl(mu, logvar):
        calls["kl"] += 1
        return vae.gaussian_kl(mu, logvar)

    def counting_reparam(mu, logvar):
        calls["reparam"] += 1
        return vae.reparameterize(mu, logvar)

    x = data.load_digits("train", device="cpu").x
    history = vae.train_vae(model, x, kl_fn=counting_kl, reparam_fn=counting_reparam, eval_every=5, progress=False)
    assert history["step"] == list(range(1, 13)) and len(history["loss"]) == 12
    assert history["eval_step"] == [5, 10, 12]
    assert calls["reparam"] == 12 + 3 and calls["kl"] == 12 + 3  # every step plus every evaluation
    assert all(math.isfinite(v) for v in history["loss"] + history["recon"] + history["kl"])


def test_train_vae_rejects_wrong_data():
    model = vae.make_vae(vae.VAEConfig(steps=1), device="cpu")
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        vae.train_vae(model, torch.rand(10, 8, 8), progress=False)


def test_train_vae_reduces_loss_and_sampling_shapes():
    config = vae.VAEConfig(latent_dim=2, hidden=64, steps=300, batch_size=64)
    model = vae.make_vae(config, device="cpu")
    history = vae.train_vae(model, data.load_digits("train", device="cpu").x, progress=False)
    first, last = np.mean(history["loss"][:20]), np.mean(history["loss"][-20:])
    assert last < first - 5  # a working loop, beyond noise (the loss starts near 44 nats)
    samples = model.sample(9)
    assert samples.shape == (9, 64) and samples.min() >= 0 and samples.max() <= 1


def test_autoencoder_trains():
    config = vae.VAEConfig(latent_dim=2, hidden=32, steps=100, batch_size=64)
    torch.manual_seed(0)
    model = vae.Autoencoder(config)
    history = vae.train_autoencoder(model, data.load_digits("train", device="cpu").x, progress=False)
    assert np.mean(history["loss"][-10:]) < np.mean(history["loss"][:10])


# ------------------------------------------------------------------ plots
def test_image_grid_layout():
    images = torch.arange(3 * 4, dtype=torch.float32).view(3, 4) / 12  # three 2x2 images
    grid = plot.image_grid(images, nrow=2, pad=1)
    assert grid.shape == (2 * 3 + 1, 2 * 3 + 1)
    np.testing.assert_allclose(grid[1:3, 4:6], images[1].view(2, 2).numpy())
    with pytest.raises(ValueError):
        plot.image_grid(torch.zeros(2, 10))


def test_plots_draw():
    history = {"eval_step": [1, 2], "recon": [40.0, 30.0], "kl": [1.0, 3.0]}
    plot.training_curves(history)
    plot.latent_scatter(torch.randn(50, 2), torch.randint(0, 10, (50,)))
    plot.interpolation_strip(lambda z: z @ torch.ones(2, 64), torch.zeros(2), torch.ones(2), steps=5)
    with pytest.raises(ValueError):
        plot.latent_scatter(torch.randn(5, 3))
    plt.close("all")


def test_frame_slider_html_holds_every_frame():
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = plot.figure_to_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = plot.FrameSlider([png, png, png], ["a", "b", "c"], title="t")._repr_html_()
    assert html.count("data:image/png;base64,") == 3 and 'type="range"' in html and 'max="2"' in html
    with pytest.raises(ValueError):
        plot.FrameSlider([png], ["a", "b"])
