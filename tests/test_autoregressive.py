"""gencore.autoregressive against independent references: a brute-force mask definition,
autograd (no pixel sees its future), torch.distributions, enumeration of every 2x2 image."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats
from torch.distributions import Bernoulli

from gencore import autoregressive as ar


def brute_force_mask(k: int, mask_type: str) -> torch.Tensor:
    # keep kernel offset (i, j) iff its raster index comes before the centre's (or equals it for B)
    centre = (k // 2) * k + k // 2
    return torch.tensor([[float(i * k + j < centre or (mask_type == "B" and i * k + j == centre))
                          for j in range(k)] for i in range(k)])


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("mask_type", ["A", "B"])
def test_mask_matches_brute_force(k, mask_type):
    torch.testing.assert_close(ar.causal_conv_mask(k, mask_type), brute_force_mask(k, mask_type))


def test_mask_3x3_by_hand():
    a = torch.tensor([[1.0, 1, 1], [1, 0, 0], [0, 0, 0]])
    torch.testing.assert_close(ar.causal_conv_mask(3, "A"), a)
    b = a.clone()
    b[1, 1] = 1
    torch.testing.assert_close(ar.causal_conv_mask(3, "B"), b)


@pytest.mark.parametrize("args, match", [
    ((4, "A"), "odd"), ((0, "B"), "odd"), ((3, "C"), "'A' or 'B'"), ((3, "a"), "'A' or 'B'"),
])
def test_mask_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        ar.causal_conv_mask(*args)


def leaking_pairs(model: torch.nn.Module, size: int) -> list[tuple[int, int]]:
    """(i, j) with j >= i in raster order such that output logit i has a nonzero gradient wrt input j."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((1, 1, size, size), 0.5)).requires_grad_(True)
    logits = model(x).flatten()
    pairs = []
    for i in range(size * size):
        (grad,) = torch.autograd.grad(logits[i], x, retain_graph=True)
        pairs += [(i, j) for j in range(i, size * size) if grad.flatten()[j] != 0]
    return pairs


def test_pixelcnn_has_no_leak_and_does_see_the_past():
    model = ar.make_pixelcnn(ar.PixelCNNConfig(channels=8, n_layers=3), device="cpu")
    assert leaking_pairs(model, 8) == []
    # and it is not trivially blind: the last pixel depends on its left neighbour and the pixel above
    x = torch.zeros(1, 1, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(model(x)[0, 0, 7, 7], x)
    assert grad[0, 0, 7, 6] != 0 and grad[0, 0, 6, 7] != 0


def test_a_type_b_first_layer_leaks():
    mask_b_everywhere = lambda k, mask_type: ar.causal_conv_mask(k, "B")  # noqa: E731
    model = ar.make_pixelcnn(ar.PixelCNNConfig(channels=8, n_layers=1), mask_fn=mask_b_everywhere, device="cpu")
    assert (0, 0) in leaking_pairs(model, 8)  # pixel 0 sees itself


def test_fully_visible_logistic_has_no_leak():
    model = ar.FullyVisibleLogistic(4)
    torch.nn.init.normal_(model.weight)
    assert leaking_pairs(model, 4) == []


def test_bits_per_dim_matches_hand_and_torch_distributions(generator):
    x = torch.bernoulli(torch.full((5, 1, 3, 3), 0.4), generator=generator)
    logits = 3 * torch.randn(5, 1, 3, 3, generator=generator)
    expected_nats = -Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(ar.negative_log_likelihood(logits, x), expected_nats)
    torch.testing.assert_close(ar.bits_per_dim(logits, x), expected_nats / (9 * math.log(2)))
    # by hand: one pixel, p = 1/2, costs exactly one bit; p(x=1) = 1/4 with x = 1 costs two
    assert ar.bits_per_dim(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1)).item() == pytest.approx(1.0)
    assert ar.bits_per_dim(torch.full((1, 1, 1, 1), -math.log(3)), torch.ones(1, 1, 1, 1)).item() == pytest.approx(2.0)


def test_nll_is_stable_at_extreme_logits():
    x = torch.tensor([[[[1.0, 0.0]]]])
    nll = ar.negative_log_likelihood(torch.tensor([[[[100.0, -100.0]]]]), x)
    assert torch.isfinite(nll).all() and nll.item() == pytest.approx(0.0, abs=1e-6)


def test_nll_rejects_bad_input():
    x = torch.ones(2, 1, 2, 2)
    with pytest.raises(ValueError, match="0, 1"):
        ar.negative_log_likelihood(torch.zeros(2, 1, 2, 2), 0.5 * x)
    with pytest.raises(ValueError, match="shape of x"):
        ar.negative_log_likelihood(torch.zeros(2, 4), x)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        ar.bits_per_dim(torch.zeros(2, 4), x.view(2, 4))
    with pytest.raises(ValueError, match="floating-point"):
        ar.negative_log_likelihood(torch.zeros(2, 1, 2, 2), x.long())


def test_model_rejects_wrong_shapes():
    model = ar.make_pixelcnn(ar.PixelCNNConfig(channels=4, n_layers=1), device="cpu")
    with pytest.raises(ValueError, match=r"\(B, 1, 8, 8\)"):
        model(torch.zeros(3, 64))
    with pytest.raises(ValueError, match="odd"):
        ar.MaskedConv2d(1, 1, 4, "A")
    with pytest.raises(ValueError, match="mask"):
        ar.MaskedConv2d(1, 1, 3, "A", mask_fn=lambda k, t: torch.ones(2, 2))


@pytest.mark.parametrize("make", [
    lambda: ar.make_pixelcnn(ar.PixelCNNConfig(image_size=2, channels=8, first_kernel=3, n_layers=2),
                             seed=3, device="cpu"),
    lambda: ar.FullyVisibleLogistic(2),
])
def test_chain_rule_probabilities_of_all_2x2_images_sum_to_one(make):
    model = make()
    if isinstance(model, ar.FullyVisibleLogistic):
        torch.nn.init.normal_(model.weight, std=2.0)
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    with torch.no_grad():
        p = torch.exp(-ar.negative_log_likelihood(model(images), images).double())
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert p.min() > 0


def test_a_leaking_model_is_not_normalised():
    mask_b_everywhere = lambda k, mask_type: ar.causal_conv_mask(k, "B")  # noqa: E731
    model = ar.make_pixelcnn(ar.PixelCNNConfig(image_size=2, channels=8, first_kernel=3, n_layers=1),
                             mask_fn=mask_b_everywhere, seed=3, device="cpu")
    images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
    with torch.no_grad():
        p = torch.exp(-ar.negative_log_likelihood(model(images), images))
    assert abs(p.sum().item() - 1.0) > 1e-3


def test_sample_shapes_values_and_frames():
    model = ar.make_pixelcnn(ar.PixelCNNConfig(channels=4, n_layers=1), device="cpu")
    images, frames = ar.sample(model, 3, generator=torch.Generator().manual_seed(0), progress=False)
    assert images.shape == (3, 1, 8, 8) and frames.shape == (65, 3, 1, 8, 8)
    assert set(images.unique().tolist()) <= {0.0, 1.0}
    assert (frames[0] == -1).all() and torch.equal(frames[-1], images)
    assert (frames[10] == -1).flatten(1).sum(1).eq(54).all()  # 10 pixels drawn, 54 to go
    with pytest.raises(ValueError, match="positive int"):
        ar.sample(model, 0)


def test_sampling_follows_the_model_conditionals():
    # a model whose first pixel is 1 with probability sigmoid(b): the sample frequency matches
    model = ar.FullyVisibleLogistic(2)
    with torch.no_grad():
        model.bias.copy_(torch.tensor([1.0, -2.0, 0.0, 0.5]))
    images, _ = ar.sample(model, 20000, generator=torch.Generator().manual_seed(0), progress=False)
    freq = images.flatten(1).mean(0)
    expected = torch.sigmoid(model.bias.detach())
    assert (freq - expected).abs().max() < 5 * math.sqrt(0.25 / 20000)


def test_sampling_follows_the_joint_law_of_dependent_pixels():
    # strong hand-set dependencies: the frequency of each of the 16 images against its enumerated p(x)
    model = ar.FullyVisibleLogistic(2)
    with torch.no_grad():
        model.weight.copy_(3 * torch.randn(4, 4, generator=torch.Generator().manual_seed(0)))
        model.bias.copy_(torch.randn(4, generator=torch.Generator().manual_seed(1)))
        images = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4))).view(16, 1, 2, 2)
        p = torch.exp(-ar.negative_log_likelihood(model(images), images)).double()
    n = 40_000
    draws, _ = ar.sample(model, n, generator=torch.Generator().manual_seed(2), progress=False)
    index = (draws.flatten(1) * torch.tensor([8.0, 4.0, 2.0, 1.0])).sum(1).long()
    counts = torch.bincount(index, minlength=16).double()
    # chi-square goodness of fit; two of the 16 images are expected less than once in n draws, so
    # the cells expected fewer than 5 times are pooled into the rarest of the other cells
    expected = n * p / p.sum()
    small = expected < 5
    assert 0 < expected[small].sum() < 5  # the pool alone would still be too rare
    observed, expected_kept = counts[~small].clone(), expected[~small].clone()
    rarest = expected_kept.argmin()
    observed[rarest] += counts[small].sum()
    expected_kept[rarest] += expected[small].sum()
    assert stats.chisquare(observed.numpy(), expected_kept.numpy()).pvalue > 1e-3


def test_baseline_logits_are_smoothed_pixel_frequencies():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]).view(3, 1, 1, 2)
    p = torch.sigmoid(ar.independent_bernoulli_logits(x)).flatten()
    torch.testing.assert_close(p, torch.tensor([3 / 5, 1 / 5]))


def test_trained_pixelcnn_beats_the_independent_pixel_baseline():
    train, test = ar.binary_digits("train", device="cpu"), ar.binary_digits("test", device="cpu")
    config = ar.PixelCNNConfig(channels=16, n_layers=2, steps=250, batch_size=64)
    model = ar.make_pixelcnn(config, device="cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster, and immune to a busy machine
    try:
        history = ar.train_pixelcnn(model, train, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(history["loss"]) == 250
    baseline = ar.bits_per_dim(ar.independent_bernoulli_logits(train).expand_as(test), test).mean()
    with torch.no_grad():
        pixelcnn = ar.bits_per_dim(model(test), test).mean()
    assert pixelcnn < baseline - 0.05, (pixelcnn, baseline)


def test_train_pixelcnn_plugs_in_a_mask_fn():
    model = ar.make_pixelcnn(ar.PixelCNNConfig(channels=4, n_layers=1, steps=2, batch_size=8), device="cpu")
    ar.train_pixelcnn(model, ar.binary_digits("train", device="cpu")[:16], progress=False,
                      mask_fn=lambda k, mask_type: ar.causal_conv_mask(k, "B"))
    first = model.net[0]
    assert first.mask_type == "A" and first.mask[first.kernel_size[0] // 2, first.kernel_size[0] // 2] == 1
    assert (0, 0) in leaking_pairs(model, 8)
