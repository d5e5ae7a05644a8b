"""gencore.ssl against independent references: closed forms (the mutual information of correlated
Gaussians from their entropies, the density ratio from torch.distributions), brute-force loops over
every pairing, numpy's correlation coefficients, finite differences and autograd for gradients,
Monte Carlo with stated tolerances, and the EMA rule written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal
from torch.nn import functional as F

from gencore import ssl

# -- InfoNCE on correlated Gaussians ------------------------------------------------------------


@pytest.mark.parametrize("rho, dim", [(0.3, 1), (0.8, 3), (-0.95, 2)])
def test_mutual_information_from_entropies(rho, dim):
    # I(X; Y) = h(X) + h(Y) - h(X, Y), with the joint covariance [[I, rho I], [rho I, I]]
    eye = torch.eye(dim, dtype=torch.float64)
    joint = torch.cat([torch.cat([eye, rho * eye], 1), torch.cat([rho * eye, eye], 1)])
    marginal = MultivariateNormal(torch.zeros(dim, dtype=torch.float64), eye)
    expected = 2 * marginal.entropy() - MultivariateNormal(torch.zeros(2 * dim, dtype=torch.float64), joint).entropy()
    assert ssl.gaussian_mutual_information(rho, dim) == pytest.approx(expected.item(), rel=1e-12)


def test_correlated_gaussians_have_the_stated_correlation(generator):
    x, y = ssl.correlated_gaussians(200_000, 0.6, dim=2, generator=generator)
    assert x.shape == y.shape == (200_000, 2)
    # sample moments within 5 standard errors (the correlation's is about (1 - rho^2) / sqrt(n))
    corr = torch.stack([torch.corrcoef(torch.stack([x[:, k], y[:, k]]))[0, 1] for k in range(2)])
    assert (corr - 0.6).abs().max() < 5 * (1 - 0.36) / math.sqrt(200_000)
    assert (y.var(0) - 1).abs().max() < 5 * math.sqrt(2 / 200_000)


def test_log_ratio_matches_torch_distributions(generator):
    rho = 0.7
    x, y = ssl.correlated_gaussians(5, rho, dim=3, generator=generator)
    y = y[:4]
    scores = ssl.gaussian_log_ratio(x, y, rho)
    assert scores.shape == (5, 4)
    conditional = Normal(rho * x[:, None, :], math.sqrt(1 - rho**2))  # p(y | x_i), broadcast over j
    expected = (conditional.log_prob(y[None]) - Normal(0.0, 1.0).log_prob(y[None])).sum(-1)
    torch.testing.assert_close(scores, expected)


def test_mutual_information_is_the_mean_log_ratio(generator):
    # I = E_p(x,y)[log p(y|x)/p(y)]: Monte Carlo over the positive pairs, 5 standard errors
    rho, dim = 0.9, 2
    x, y = ssl.correlated_gaussians(20_000, rho, dim, generator=generator)
    terms = _diagonal_log_ratio(x, y, rho)
    se = terms.std() / math.sqrt(len(terms))
    assert abs(terms.mean() - ssl.gaussian_mutual_information(rho, dim)) < 5 * se


def _diagonal_log_ratio(x, y, rho):
    """log p(y_i | x_i) / p(y_i) for the positive pairs only, in blocks (the full matrix is N^2)."""
    return torch.cat([ssl.gaussian_log_ratio(x[i:i + 500], y[i:i + 500], rho).diagonal() for i in range(0, len(x), 500)])


def test_infonce_loss_brute_force():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(5, 5, generator=g, dtype=torch.float64) * 3
    expected = 0.0
    for i in range(5):  # every row: the positive against all N candidates, in plain floats
        expected -= math.log(math.exp(scores[i, i].item()) / sum(math.exp(scores[i, j].item()) for j in range(5)))
    assert ssl.infonce_loss(scores).item() == pytest.approx(expected / 5, rel=1e-12)


def test_infonce_bound_never_exceeds_log_n_and_ignores_functions_of_x(generator):
    scores = 50 * torch.randn(16, 16, generator=generator, dtype=torch.float64)
    assert math.log(16) - ssl.infonce_loss(scores).item() <= math.log(16) + 1e-12
    # adding c(x_i) to row i cancels in the softmax over the candidates y_j
    shifted = scores + torch.randn(16, 1, generator=generator, dtype=torch.float64) * 10
    assert ssl.infonce_loss(shifted).item() == pytest.approx(ssl.infonce_loss(scores).item(), rel=1e-12)
    # a function of y_j does not cancel
    assert abs(ssl.infonce_loss(scores + torch.randn(1, 16, generator=generator, dtype=torch.float64)).item()
               - ssl.infonce_loss(scores).item()) > 1e-3


def _bound_samples(rho, dim, n, batches, generator, critic_scale=1.0):
    values = []
    for _ in range(batches):
        x, y = ssl.correlated_gaussians(n, rho, dim, generator=generator)
        values.append(math.log(n) - ssl.infonce_loss(critic_scale * ssl.gaussian_log_ratio(x, y, rho)).item())
    return torch.tensor(values, dtype=torch.float64)


def test_infonce_bound_with_the_optimal_critic(generator):
    # below the true information (5 standard errors), close to it when I << log N
    rho, dim = 0.6, 1
    info = ssl.gaussian_mutual_information(rho, dim)  # 0.22 nats
    bound = _bound_samples(rho, dim, 256, 200, generator)
    se = bound.std() / math.sqrt(len(bound))
    assert bound.mean() < info + 5 * se
    assert bound.mean() > info - 0.02
    # saturation: with 8 candidates and 6 nats of information the bound stays under log 8
    high = _bound_samples(math.sqrt(1 - math.exp(-2 * 6.0 / 4)), 4, 8, 200, generator)
    assert high.max() <= math.log(8) and high.mean() < math.log(8) < 6.0


def test_the_density_ratio_is_the_best_critic():
    # common random numbers: the same batches for every scale of the critic
    losses = {}
    for scale in (0.5, 0.8, 1.0, 1.25, 2.0):
        losses[scale] = -_bound_samples(0.8, 2, 64, 100, torch.Generator().manual_seed(7), critic_scale=scale).mean()
    assert min(losses, key=losses.get) == 1.0


# -- the losses -----------------------------------------------------------------------------------


def _cos(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def test_nt_xent_brute_force_over_all_pairings():
    g = torch.Generator().manual_seed(1)
    z_a, z_b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64)
    views = [row.tolist() for row in torch.cat([z_a, z_b])]  # 2B = 6 views
    temperature, total = 0.3, 0.0
    for i in range(6):
        positive = (i + 3) % 6
        numerator = math.exp(_cos(views[i], views[positive]) / temperature)
        denominator = sum(math.exp(_cos(views[i], views[k]) / temperature) for k in range(6) if k != i)
        total -= math.log(numerator / denominator)
    assert ssl.nt_xent_loss(z_a, z_b, temperature).item() == pytest.approx(total / 6, rel=1e-12)


def test_nt_xent_is_symmetric_and_scale_free(generator):
    z_a, z_b = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    loss = ssl.nt_xent_loss(z_a, z_b, 0.5)
    torch.testing.assert_close(ssl.nt_xent_loss(z_b, z_a, 0.5), loss)
    torch.testing.assert_close(ssl.nt_xent_loss(3 * z_a, 0.2 * z_b, 0.5), loss)  # cosine similarities


def test_loss_gradients_against_finite_differences(generator):
    z_a = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    z_b = torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssl.nt_xent_loss(a, b, 0.4), (z_a, z_b))
    assert torch.autograd.gradcheck(lambda a, b: ssl.barlow_twins_loss(a, b, 0.1), (z_a, z_b))
    assert torch.autograd.gradcheck(lambda p: ssl.byol_loss(p, z_b.detach()), (z_a,))


def test_nt_xent_gradient_in_the_logits(generator):
    # dL/ds_ik = (softmax_k - [k = positive]) / (2B): the autograd gradient through the similarity matrix
    z_a, z_b = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    sims = (z @ z.T).requires_grad_()
    temperature = 0.5
    logits = (sims / temperature).masked_fill(torch.eye(8, dtype=torch.bool), float("-inf"))
    positives = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    F.cross_entropy(logits, positives).backward()
    expected = (logits.softmax(1) - F.one_hot(positives, 8)) / (8 * temperature)
    torch.testing.assert_close(sims.grad, expected)
    # and the library's loss takes the same value on these projections
    assert ssl.nt_xent_loss(z_a, z_b, temperature).item() == pytest.approx(F.cross_entropy(logits, positives).item(), rel=1e-6)


def test_byol_loss_is_the_normalised_squared_error_with_a_stop_gradient(generator):
    p = torch.randn(6, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = ssl.byol_loss(p, z)
    expected = (p / p.norm(dim=1, keepdim=True) - z / z.norm(dim=1, keepdim=True)).pow(2).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    loss.backward()
    assert z.grad is None  # no gradient reaches the target
    # d/dp (2 - 2 cos(p, z)) = -2 (z/|z| - cos p/|p|) / |p|, averaged over the batch
    pn, zn = p.detach() / p.detach().norm(dim=1, keepdim=True), z.detach() / z.detach().norm(dim=1, keepdim=True)
    cos = (pn * zn).sum(1, keepdim=True)
    torch.testing.assert_close(p.grad, -2 * (zn - cos * pn) / p.detach().norm(dim=1, keepdim=True) / 6)


def test_ema_update_by_hand():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    theta = [p.detach().clone() for p in online.parameters()]
    xi = [p.detach().clone() for p in target.parameters()]
    ssl.ema_update(target, online, 0.9)
    for new, old, current in zip(target.parameters(), xi, theta):
        torch.testing.assert_close(new.detach(), 0.9 * old + 0.1 * current)
    for p, before in zip(online.parameters(), theta):
        assert torch.equal(p.detach(), before)  # the online network is untouched
    ssl.ema_update(target, online, 0.0)  # decay 0 copies the online weights
    for p, q in zip(target.parameters(), online.parameters()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError):
        ssl.ema_update(target, online, 1.5)


def test_barlow_twins_against_numpy_correlations(generator):
    z_a, z_b = torch.randn(10, 4, generator=generator, dtype=torch.float64), torch.randn(10, 4, generator=generator, dtype=torch.float64)
    z_b = z_b + 0.8 * z_a
    a, b = z_a.numpy(), z_b.numpy()
    c = np.array([[np.corrcoef(a[:, i], b[:, j])[0, 1] for j in range(4)] for i in range(4)])
    torch.testing.assert_close(ssl.cross_correlation(z_a, z_b), torch.from_numpy(c))
    lam = 0.3
    expected = sum((1 - c[i, i]) ** 2 for i in range(4)) + lam * sum(c[i, j] ** 2 for i in range(4) for j in range(4) if i != j)
    assert ssl.barlow_twins_loss(z_a, z_b, lam).item() == pytest.approx(expected, rel=1e-12)
    # standardised per dimension: rescaling and shifting a dimension changes nothing
    scale = torch.tensor([1.0, 10.0, 0.1, 3.0], dtype=torch.float64)
    assert ssl.barlow_twins_loss(z_a * scale + 5, z_b, lam).item() == pytest.approx(expected, rel=1e-10)
    # identical views with centred, orthogonal (so uncorrelated) dimensions give C = I and a loss of 0
    a = torch.randn(16, 4, generator=generator, dtype=torch.float64)
    white = torch.linalg.qr(a - a.mean(0)).Q
    assert ssl.barlow_twins_loss(white, white, lam).item() < 1e-20


def test_effective_rank():
    q, _ = torch.linalg.qr(torch.randn(50, 7, dtype=torch.float64))
    assert ssl.effective_rank(3 * q) == pytest.approx(7.0, rel=1e-9)  # seven equal singular values
    one = torch.ones(40, 1) @ torch.randn(1, 16)  # every row the same vector
    assert ssl.effective_rank(one) == pytest.approx(1.0, abs=1e-3)
    z = torch.randn(30, 5, dtype=torch.float64)
    s = np.linalg.svd(z.numpy(), compute_uv=False)
    p = s / s.sum()
    assert ssl.effective_rank(z) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-10)


# -- views, probes, training ----------------------------------------------------------------------


def test_augment_and_resample():
    from gencore.data import load_digits

    x = load_digits("train", device="cpu").x[:16]
    still = dict(shift=0.0, degrees=0.0, scale=0.0, dropout=0.0, noise=0.0)
    torch.testing.assert_close(ssl.augment(x, torch.Generator().manual_seed(0), **still), x)
    views = ssl.augment(x, torch.Generator().manual_seed(0))
    assert views.shape == x.shape and views.min() >= 0 and views.max() <= 1
    assert (views - x).abs().mean() > 0.05
    torch.testing.assert_close(ssl.augment(x, torch.Generator().manual_seed(0)), views)  # reproducible
    # exact moves, against the images rolled by hand with a blank row or column coming in
    images, zeros, ones = x.view(-1, 8, 8), torch.zeros(16), torch.ones(16)
    right = torch.cat([torch.zeros(16, 8, 1), images[:, :, :7]], 2).view(-1, 64)
    down = torch.cat([torch.zeros(16, 1, 8), images[:, :7, :]], 1).view(-1, 64)
    torch.testing.assert_close(ssl.resample(x, zeros, ones, torch.tensor([[1.0, 0.0]]).expand(16, 2)), right)
    torch.testing.assert_close(ssl.resample(x, zeros, ones, torch.tensor([[0.0, 1.0]]).expand(16, 2)), down)
    # a quarter turn is a rotation of the pixel grid (exact: the 8x8 grid maps onto itself)
    quarter = ssl.resample(x, torch.full((16,), math.pi / 2), ones, torch.zeros(16, 2)).view(-1, 8, 8)
    assert any(torch.allclose(quarter, torch.rot90(images, k, dims=(1, 2)), atol=1e-5) for k in (1, 3))
    with pytest.raises(ValueError):
        ssl.augment(x.view(-1, 8, 8))


def _knn_by_hand(features, labels, test, test_labels, k, cosine):
    if cosine:
        near = (F.normalize(test, dim=1) @ F.normalize(features, dim=1).T).topk(k, dim=1).indices
    else:
        near = torch.cdist(test, features).topk(k, dim=1, largest=False).indices
    predicted = torch.mode(labels[near], dim=1).values  # ties: the smallest label, as scikit-learn
    return (predicted == test_labels).float().mean().item()


def test_probes_against_brute_force(generator):
    centres = torch.randn(3, 6, generator=generator) * 5
    labels = torch.arange(3).repeat(20)
    features = centres[labels] + 0.1 * torch.randn(60, 6, generator=generator)
    assert ssl.linear_probe_accuracy(features, labels, features, labels) == 1.0
    # k-NN under cosine similarity, on points whose norms vary so that cosine and distance disagree
    features = torch.randn(80, 4, generator=generator) * torch.rand(80, 1, generator=generator) * 5
    labels = torch.randint(0, 3, (80,), generator=generator)
    test = torch.randn(50, 4, generator=generator)
    test_labels = torch.randint(0, 3, (50,), generator=generator)
    cosine = _knn_by_hand(features, labels, test, test_labels, 5, cosine=True)
    assert cosine != _knn_by_hand(features, labels, test, test_labels, 5, cosine=False)
    assert ssl.knn_accuracy(features, labels, test, test_labels, k=5) == pytest.approx(cosine)
    with pytest.raises(ValueError):
        ssl.linear_probe_accuracy(features, labels[:-1], features, labels)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        ssl.nt_xent_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError):
        ssl.nt_xent_loss(torch.randn(4, 3), torch.randn(4, 3), temperature=0.0)
    with pytest.raises(ValueError):
        ssl.byol_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError):
        ssl.barlow_twins_loss(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError):
        ssl.infonce_loss(torch.randn(4, 5))
    with pytest.raises(ValueError):
        ssl.gaussian_mutual_information(1.0)
    with pytest.raises(ValueError):
        ssl.effective_rank(torch.randn(5))


def test_training_loops_use_the_pluggable_pieces():
    x = torch.rand(64, 64)
    config = ssl.SSLConfig.for_scale("smoke", batch_size=16, steps=3)
    calls = {"loss": 0, "ema": 0}

    def counting_loss(p, z):
        calls["loss"] += 1
        return ssl.byol_loss(p, z)

    def counting_ema(target, online, decay):
        calls["ema"] += 1
        assert decay == config.decay and target is not online
        ssl.ema_update(target, online, decay)

    model = ssl.make_ssl_net(config, device="cpu")
    history = ssl.train_byol(model, x, config=config, loss_fn=counting_loss, ema_fn=counting_ema, progress=False)
    assert calls == {"loss": 6, "ema": 3} and len(history["loss"]) == 3  # two directions per step
    before = [p.detach().clone() for p in model.encoder.parameters()]
    arguments = []

    def recording(loss_fn):
        def recorded(z_a, z_b, argument):
            arguments.append(argument)
            return loss_fn(z_a, z_b, argument)
        return recorded

    history = ssl.train_simclr(model, x, config=config, loss_fn=recording(ssl.nt_xent_loss), progress=False)
    assert all(math.isfinite(v) for v in history["loss"]) and len(history["std"]) == 3
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, model.encoder.parameters()))
    ssl.train_barlow_twins(model, x, config=config, loss_fn=recording(ssl.barlow_twins_loss), progress=False)
    assert arguments == [config.temperature] * 3 + [config.lambda_offdiag] * 3
    ssl.train_supervised(model, x, torch.randint(0, 10, (64,)), config=config, progress=False)
    assert ssl.representations(model, x).shape == (64, config.rep_dim)
    with pytest.raises(ValueError):
        ssl.train_simclr(model, x[:, :10], config=config, progress=False)


def test_byol_target_moves_only_by_the_moving_average():
    # with decay 1 the target must keep the online network's initial weights through training:
    # no gradient and no optimiser step may reach it
    x = torch.rand(64, 64)
    config = ssl.SSLConfig.for_scale("smoke", batch_size=16, steps=3, decay=1.0)
    model = ssl.make_ssl_net(config, device="cpu")
    initial = [p.detach().clone() for p in (*model.encoder.parameters(), *model.projector.parameters())]
    seen = []

    def watching_ema(target, online, decay):
        ssl.ema_update(target, online, decay)
        assert all(m.training for m in target.modules())  # batch statistics, as in the online network
        seen.append([p.detach().clone() for p in target.parameters()])

    model.eval()  # a model left in eval mode by an earlier run
    ssl.train_byol(model, x, config=config, ema_fn=watching_ema, progress=False)
    assert len(seen) == 3
    for weights in seen:
        for got, want in zip(weights, initial, strict=True):
            assert torch.equal(got, want)
    assert any(not torch.equal(p.detach(), q) for p, q in zip(model.encoder.parameters(), initial))


@pytest.mark.slow
def test_byol_without_stop_gradient_collapses():
    from gencore.data import load_digits

    x = load_digits("train", device="cpu").x
    config = ssl.SSLConfig.for_scale("small", steps=200, decay=0.0)

    def no_stop_gradient(p, z):
        return (2 - 2 * F.cosine_similarity(p, z, dim=-1)).mean()

    ranks = {}
    for name, loss_fn in (("stop-gradient", ssl.byol_loss), ("none", no_stop_gradient)):
        model = ssl.make_ssl_net(config, device="cpu")
        ssl.train_byol(model, x, config=config, loss_fn=loss_fn, progress=False)
        with torch.no_grad():
            ranks[name] = ssl.effective_rank(F.normalize(model(x[:500]), dim=1))
    assert ranks["none"] < 3 < 10 < ranks["stop-gradient"]
