"""Precision, compilation and host-device traffic of the training loops (gencore.device).

On the CPU every loop runs a step under bf16 autocast (``GENCORE_PRECISION=bf16``), which catches
dtype mismatches without a GPU; forward hooks record the dtypes that the layers really produced,
so a loop that forgets its autocast fails here. The tests marked ``gpu`` run the same loops on
CUDA, compiled, and compare bf16 with float32; they are skipped on a machine without CUDA.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gencore import autoregressive, data, device, diffusion, gan, lm, preference, rl, vae

LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def finite_floats(values) -> bool:
    return len(values) > 0 and all(isinstance(v, float) and math.isfinite(v) for v in values)


# Each runner builds its models on ``dev``, trains a step or two and returns (models, losses).
def run_vae(dev):
    model = vae.make_vae(vae.VAEConfig.for_scale("smoke", steps=2), device=dev)
    x = data.load_digits("train", device=dev).x
    return [model], vae.train_vae(model, x, eval_every=1, progress=False)["loss"]


def run_autoencoder(dev):
    torch.manual_seed(0)
    model = vae.Autoencoder(vae.VAEConfig.for_scale("smoke", steps=2)).to(dev)
    return [model], vae.train_autoencoder(model, data.load_digits("train", device=dev).x, progress=False)["loss"]


def run_pixelcnn(dev):
    model = autoregressive.make_pixelcnn(autoregressive.PixelCNNConfig.for_scale("smoke", steps=2), device=dev)
    x = autoregressive.binary_digits("train", device=dev)
    return [model], autoregressive.train_pixelcnn(model, x, progress=False)["loss"]


def run_gan_digits(dev):
    config = gan.GANConfig.digits("smoke", steps=2, n_critic=2)
    g, c = gan.make_gan(config, device=dev)
    history = gan.train_gan(g, c, data.load_digits("train", device=dev).x, config=config, progress=False,
                            d_loss_fn=gan.critic_loss_wasserstein, g_loss_fn=gan.generator_loss_wasserstein)
    return [g, c], history["d_loss"] + history["g_loss"]


def run_gan_toy(dev):
    config = gan.GANConfig.for_scale("smoke", steps=2)
    g, c = gan.make_gan(config, device=dev)
    history = gan.train_gan(g, c, data.toy_2d("two_moons", 512, device=dev), config=config, progress=False)
    return [g, c], history["d_loss"] + history["g_loss"]


def run_critic(dev):
    torch.manual_seed(0)
    critic = gan.MLPCritic(gan.GANConfig.for_scale("smoke")).to(dev)
    real = data.toy_2d("two_moons", 256, device=dev)
    return [critic], gan.train_critic(critic, real, real + 1, gp_weight=1.0, steps=2, batch_size=64, progress=False)


def run_diffusion(dev, denoiser="mlp"):
    config = diffusion.DiffusionConfig.for_scale("digits", "smoke", steps=2, denoiser=denoiser)
    model = diffusion.make_denoiser(config, device=dev)
    x = diffusion.digits_to_model(data.load_digits("train", device=dev).x)
    history, _ema = diffusion.train_diffusion(model, x, config=config, progress=False)
    return [model], history["loss"]


def run_lm(dev):
    config = lm.GPTConfig.for_scale("smoke", steps=2)
    model = lm.make_gpt(config, device=dev)
    return [model], lm.train_lm(model, config=config, progress=False)["loss"]


def run_rlvr(dev):
    model = lm.load_base_model(dev)
    config = rl.RLConfig.for_scale("smoke", steps=1, eval_every=0)
    history = rl.train_rlvr(model, config, progress=False)
    return [model], history["reward"] + history["kl"]


def run_dpo(dev):
    model = lm.load_base_model(dev)
    config = preference.PreferenceConfig.for_scale("smoke", steps=2, eval_every=2)
    train, held_out, _ = preference.make_pair_data(model, config)
    return [model], preference.train_dpo(model, train, held_out, config, progress=False)["loss"]


RUNNERS = {
    "vae": run_vae, "autoencoder": run_autoencoder, "pixelcnn": run_pixelcnn, "gan_digits": run_gan_digits,
    "gan_toy": run_gan_toy, "critic": run_critic, "diffusion_mlp": run_diffusion,
    "diffusion_unet": lambda dev: run_diffusion(dev, "unet"), "lm": run_lm, "rlvr": run_rlvr, "dpo": run_dpo,
}


def hooked_run(name: str, dev: torch.device) -> tuple[set, list]:
    """Run one loop with a global forward hook that records the output dtype of every linear and
    convolutional layer it calls; returns (dtypes seen, the losses it logged)."""
    seen: set = set()

    def hook(module, _inputs, output):
        if isinstance(module, LAYERS):
            seen.add(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(hook)
    try:
        _models, losses = RUNNERS[name](dev)
    finally:
        handle.remove()
    return seen, losses


# ------------------------------------------------------------------ the switches
def test_precision_reads_environment(monkeypatch):
    monkeypatch.delenv("GENCORE_PRECISION", raising=False)
    assert device.get_precision(torch.device("cpu")) == "fp32"
    assert device.get_precision(torch.device("cuda")) == "bf16"  # the default on a GPU
    monkeypatch.setenv("GENCORE_PRECISION", " BF16 ")
    assert device.get_precision(torch.device("cpu")) == "bf16"
    monkeypatch.setenv("GENCORE_PRECISION", "fp16")
    with pytest.raises(ValueError, match="fp32, bf16.*'fp16'"):
        device.get_precision()


def test_compile_switch(monkeypatch):
    monkeypatch.delenv("GENCORE_COMPILE", raising=False)
    model = nn.Linear(2, 2)
    assert not device.compile_enabled() and device.compiled(model) is model
    device.compile_in_place(model)
    assert getattr(model, "_compiled_call_impl", None) is None
    monkeypatch.setenv("GENCORE_COMPILE", "1")
    assert device.compile_enabled()
    view = device.compiled(model)
    assert view is not model and view._orig_mod is model  # shares the parameters, leaves the module alone


def test_compile_in_place_traces_torch_containers(monkeypatch):
    """A compiled nn.Sequential really runs a captured graph (Module.compile() would capture none),
    and a deep copy of it (an EMA, a frozen reference) computes with its own weights."""
    import copy
    import functools

    from torch._dynamo.utils import counters

    monkeypatch.setenv("GENCORE_COMPILE", "1")
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))  # no C compiler needed
    torch._dynamo.reset()
    counters.clear()
    model = nn.Sequential(nn.Linear(4, 8), nn.SiLU(), nn.Linear(8, 2))
    device.compile_in_place(model)
    x = torch.randn(3, 4)
    model(x).sum().backward()
    assert counters["stats"]["unique_graphs"] >= 1
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.zero_()
    assert twin(x).abs().sum() == 0 and model(x).abs().sum() > 0


@pytest.mark.parametrize("precision, expected", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_autocast_follows_precision(monkeypatch, precision, expected):
    monkeypatch.setenv("GENCORE_PRECISION", precision)
    layer = nn.Linear(4, 4)
    with device.autocast(torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == expected
        with device.float32_region(torch.device("cpu")):
            assert layer(torch.randn(2, 4)).dtype == torch.float32


def test_step_log_defers_and_keeps_the_same_floats():
    history: dict[str, list] = {"loss": []}
    log = device.StepLog(history, every=3)
    values = [torch.tensor(v, dtype=torch.float32) for v in (0.1, 1 / 3, 2.5, 7.25)]
    for v in values[:2]:
        log.append(loss=v)
    assert history["loss"] == []  # nothing crossed to the host yet
    log.append(loss=values[2])
    assert history["loss"] == [v.item() for v in values[:3]]  # one copy for three steps, same floats
    log.append(loss=0.5)  # a plain float (a student's train_step returns one)
    log.flush()
    assert history["loss"] == [v.item() for v in values[:3]] + [0.5]


def test_to_device_copies_values():
    x = torch.arange(6)
    assert torch.equal(device.to_device(x, torch.device("cpu")), x)


# ------------------------------------------------------------------ every loop under bf16 on the CPU
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_loop_runs_a_step_under_bf16_autocast(monkeypatch, name):
    monkeypatch.setenv("GENCORE_PRECISION", "bf16")
    seen, losses = hooked_run(name, torch.device("cpu"))
    assert torch.bfloat16 in seen, f"{name}: no layer ran in bf16, so the loop never entered autocast"
    assert finite_floats(losses), losses


@pytest.mark.parametrize("name", ["vae", "lm", "gan_digits"])
def test_loop_stays_float32_by_default_on_the_cpu(monkeypatch, name):
    monkeypatch.delenv("GENCORE_PRECISION", raising=False)
    seen, losses = hooked_run(name, torch.device("cpu"))
    assert seen == {torch.float32} and finite_floats(losses)


def test_float32_where_the_numerics_need_it(monkeypatch):
    """Under bf16 autocast the networks still hand float32 to the losses: the GPT's final logits
    (and so every log-probability and ratio), the VAE's mu and logvar, scores and predicted noise."""
    monkeypatch.setenv("GENCORE_PRECISION", "bf16")
    cpu = torch.device("cpu")
    gpt = lm.make_gpt(lm.GPTConfig.for_scale("smoke"), device=cpu)
    idx = torch.randint(0, lm.tasks.VOCAB_SIZE, (3, 9))
    with device.autocast(cpu):
        logits, _ = gpt(idx)
        mu, logvar = vae.make_vae(vae.VAEConfig.for_scale("smoke"), device=cpu).encode(torch.rand(2, 64))
        eps = diffusion.make_denoiser(diffusion.DiffusionConfig.for_scale("digits", "smoke", denoiser="unet"),
                                      device=cpu)(torch.randn(2, 64), torch.tensor([3, 7]))
        g, c = gan.make_gan(gan.GANConfig.digits("smoke"), device=cpu)
        scores = c(g(torch.randn(2, 16)))
    assert {t.dtype for t in (logits, mu, logvar, eps, scores)} == {torch.float32}
    # the head in float32 keeps log-probabilities within bf16's trunk error of the float32 model
    reference, _ = gpt(idx)
    assert (logits - reference).abs().max() < 0.05


def test_float64_models_stay_float64():
    """The float32 cast is for 16-bit outputs only: the chapters' exact checks run models in float64."""
    cpu = torch.device("cpu")
    pixelcnn = autoregressive.make_pixelcnn(autoregressive.PixelCNNConfig.for_scale("smoke"), device=cpu).double()
    gpt = lm.make_gpt(lm.GPTConfig.for_scale("smoke"), device=cpu).double()
    model = vae.make_vae(vae.VAEConfig.for_scale("smoke"), device=cpu).double()
    g, c = gan.make_gan(gan.GANConfig.digits("smoke"), device=cpu)
    outputs = [pixelcnn(torch.zeros(1, 1, 8, 8, dtype=torch.float64)), gpt(torch.zeros(1, 3, dtype=torch.long))[0],
               *model.encode(torch.rand(2, 64, dtype=torch.float64)), c.double()(g.double()(torch.randn(2, 16).double()))]
    assert {t.dtype for t in outputs} == {torch.float64}


# ------------------------------------------------------------------ on a CUDA GPU (skipped elsewhere)
@pytest.mark.gpu
def test_backend_switches_tf32_with_the_precision(monkeypatch):
    cuda = torch.device("cuda")
    device.configure_backend(cuda, "bf16")
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    device.configure_backend(cuda, "fp32")
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    x = torch.randn(1024, 1024, device=cuda, dtype=torch.float64)
    exact = (x @ x).float()
    strict = x.float() @ x.float()
    device.configure_backend(cuda, "bf16")
    tf32 = x.float() @ x.float()
    device.configure_backend(cuda, "fp32")
    assert (strict - exact).abs().max() < (tf32 - exact).abs().max() / 10  # TF32 really was on, then off


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_loop_runs_on_cuda_in_bf16(monkeypatch, name):
    monkeypatch.setenv("GENCORE_PRECISION", "bf16")
    monkeypatch.delenv("GENCORE_COMPILE", raising=False)
    seen, losses = hooked_run(name, torch.device("cuda"))
    assert torch.bfloat16 in seen and finite_floats(losses)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["vae", "lm", "diffusion_unet"])
def test_loop_runs_on_cuda_compiled(monkeypatch, name):
    """The two ways a loop compiles: in place (the VAE's containers) and a compiled view (the rest)."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("GENCORE_PRECISION", "bf16")
    monkeypatch.setenv("GENCORE_COMPILE", "1")
    before = counters["stats"]["unique_graphs"]
    _models, losses = RUNNERS[name](torch.device("cuda"))
    assert finite_floats(losses) and counters["stats"]["unique_graphs"] > before


@pytest.mark.gpu
def test_bf16_loss_matches_float32_on_cuda(monkeypatch):
    """One batch through the full-size GPT: the bf16 loss is within 1% of the float32 loss."""
    cuda = torch.device("cuda")
    model = lm.make_gpt(lm.GPTConfig.for_scale("full"), device=cuda)
    problems = lm.tasks.make_problems("add", 256, "train", 0)
    x, y = (t.to(cuda) for t in lm.make_sft_batch(problems))
    with torch.no_grad():
        device.configure_backend(cuda, "fp32")
        _, exact = model(x, y)
        device.configure_backend(cuda, "bf16")
        with device.autocast(cuda, "bf16"):
            _, fast = model(x, y)
    assert abs(fast.item() / exact.item() - 1) < 0.01


@pytest.mark.gpu
def test_rollout_log_probs_agree_with_the_update_on_cuda(monkeypatch):
    """The log-probabilities saved at generation time and the ones the first update recomputes
    (another batch shape) agree closely under bf16: importance ratios start near 1."""
    monkeypatch.setenv("GENCORE_PRECISION", "bf16")
    cuda = torch.device("cuda")
    model = lm.load_base_model(cuda)
    prompts = [p for p, _ in lm.tasks.make_problems("sum_steps", 32, "train", 0)]
    with device.autocast(cuda):
        batch = rl.rollout(model, prompts, 4, generator=torch.Generator(device=cuda).manual_seed(0))
        again = rl.target_logprobs(model, batch.idx[: len(prompts)])
    mask = batch.mask[: len(prompts)].bool()
    log_ratio = (again - batch.gen_logprobs[: len(prompts)])[mask]
    assert log_ratio.abs().mean() < 0.02 and log_ratio.abs().max() < 0.25
