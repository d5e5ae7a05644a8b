"""Every unit of the course on one CUDA GPU, in fp32 and in bf16 with torch.compile: time, throughput, memory and
the quality figure of each chapter.

    .venv/bin/python bench/gpu.py --out bench/gpu [--fraction 0.1] [--units lm,rlvr] [--modes fp32,bf16+compile,bf16]
    GENCORE_PROGRESS=0 .venv/bin/python bench/gpu.py --scale smoke --allow-cpu --out /tmp/gpu_smoke  # check on a CPU

For each unit (autoregressive, vae, gan, diffusion, lm, rlvr, dpo) and mode, it trains the chapter's model with the
library's own loop at ``--scale`` (default ``full``; ``--fraction`` shortens every training run to fit a short lease),
samples and evaluates it as the chapter does, prints one line and rewrites ``OUT/gpu.json`` (everything) and
``OUT/gpu.md`` (the table), so a run killed by a time limit leaves the runs it finished; a run that raises is
recorded with its error and the next one starts. The columns:

- mode: ``fp32`` = GENCORE_PRECISION=fp32, GENCORE_COMPILE=0 (strict float32, TF32 off); ``bf16+compile`` =
  GENCORE_PRECISION=bf16 (TF32 matmuls, bf16 autocast), GENCORE_COMPILE=1 (the loops train compiled networks);
  ``bf16``: no compiling. The JSON has ``get_precision()`` and the fp32 matmul/conv precision after each run.
- steps: optimiser steps run, the full-scale count of the chapter's config times ``--fraction`` (at least 1).
- warm-up s: compile modes only, the same loop on a throwaway model for 3% of the steps (at least 10) before the
  timed run. Compiled code is cached by code and structure, not by instance: on a CPU (torch 2.13, gencore's loops at
  smoke) every compile run compiled its 1-2 graphs in the warm-up and none in the timed run, and a second PixelCNN
  ran 10 steps in 0.4 s against 28 s for the first. So the warm-up takes compilation out of train s; the JSON's
  ``graphs_compiled`` counts graphs still compiled in the timed run (shapes the warm-up did not see), and a compile
  run that compiled nothing is flagged (``Module.compile()`` of a bare ``nn.Sequential`` compiles nothing: dynamo
  skips torch's own frames). Each run starts with ``torch._dynamo.reset()``. Inductor keeps kernels on disk
  (TORCHINDUCTOR_CACHE_DIR; after a reset a graph recompiled in 1 s, not 28 s): warm-up s is cold only on an empty cache.
- train s: the training call; sample+eval s: sampling and the quality figure; total s: both (``wall_s`` in the JSON
  adds set-up and warm-up). CUDA is synchronised before every reading of the clock.
- throughput: images/s = steps x batch / train s (GAN: generator steps, each after 5 critic steps); LM tokens/s
  (padded prompt + completion tokens, what the network computes); RLVR rollouts/s, generated tokens/s; DPO pairs/s.
- MFU (LM): (6 N + 12 L C T) tokens/s over the card's dense bf16 peak (H100 SXM, H200: 989 TFLOP/s; H100 PCIe: 756;
  or ``--peak-tflops``); N the weights of every ``nn.Linear`` (no embeddings, norms, biases), T the mean padded length
  of ``make_sft_batch`` batches (Chowdhery et al. 2022, App. B; nanoGPT). fp32 runs are labelled: same bf16 peak.
- peak MiB: ``torch.cuda.max_memory_allocated()`` over training and evaluation (reset after the warm-up).
- quality +- SE, as the chapter computes it: PixelCNN held-out bits/dim, SE over test digits (book/autoregressive.md);
  VAE (16 latents, binarised digits) test log-likelihood by importance sampling, k = 5000 at full, and ELBO (book/vae.md); digits
  Frechet distance of 1000 samples, no SE, for the WGAN-GP (book/gan.md) and DDPM with 1000 steps (book/diffusion.md;
  DDIM 50 and 20 in the notes); LM greedy accuracy, 1000 held-out problems per task, SE sqrt(p (1 - p) / n)
  (book/lm.md); RLVR gain in held-out pass@1, 500 problems x 8 samples, paired SE (book/rl.md; ``eval_every=0,
  eval_n=50`` in the loop, as bench/rlvr.py); DPO held-out greedy and preference accuracy (book/dpo.md): its train s
  holds ``train_preference``'s evaluations at step 0 and the end, its sample+eval s the sampling of the pairs.
- speed-up: the fp32 run's train s over this run's.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import functools
import gc
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from gencore import autoregressive, diffusion, gan, lm, metrics, preference, rl, tasks, vae
from gencore import device as gencore_device
from gencore.data import Digits, binarize, load_digits
from gencore.device import get_device, pick, seed_everything

ROOT = Path(__file__).resolve().parents[1]
UNITS = ("autoregressive", "vae", "gan", "diffusion", "lm", "rlvr", "dpo")
MODES = {"fp32": {"GENCORE_PRECISION": "fp32", "GENCORE_COMPILE": "0"},
         "bf16+compile": {"GENCORE_PRECISION": "bf16", "GENCORE_COMPILE": "1"},
         "bf16": {"GENCORE_PRECISION": "bf16", "GENCORE_COMPILE": "0"}}


def timed(fn):
    """``fn()`` and its wall time in seconds, CUDA synchronised before each reading of the clock."""
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def scaled(config, fraction: float):
    """The config with its steps multiplied by ``fraction`` (at least one)."""
    return dataclasses.replace(config, steps=max(1, round(config.steps * fraction)))


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    values = values.detach().double().cpu()
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


def proportion_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def result(config, throughput: dict, name: str, value: float, se: float | None, notes: dict | None = None) -> dict:
    return {"steps": config.steps, "throughput": throughput, "quality": {"name": name, "value": value, "se": se},
            "notes": notes or {}}


class Run:
    """One unit in one mode: its warm-up, timed sections (``train_s``, ``eval_s``) and the card's bf16 peak."""

    def __init__(self, compile_: bool, peak_flops: float | None):
        self.compile, self.peak_flops, self.record = compile_, peak_flops, {"warmup_s": None}
        self.graphs_before = counters["stats"]["unique_graphs"]

    def warm_up(self, train, config) -> None:
        """In compile modes ``train(config)`` for 3% of the steps (at least 10), so that the loop compiles the
        networks outside the timer; then reseed and reset the peak memory, so that every mode starts alike."""
        if self.compile:
            seed_everything(0)
            short = dataclasses.replace(config, steps=max(10, round(0.03 * config.steps)))
            _, self.record["warmup_s"] = timed(lambda: train(short))
        self.record["graphs_warmup"] = counters["stats"]["unique_graphs"] - self.graphs_before
        self.graphs_before = counters["stats"]["unique_graphs"]
        seed_everything(0)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def time(self, key: str, fn):
        out, seconds = timed(fn)
        self.record[key] = self.record.get(key, 0.0) + seconds
        return out

    def images_per_s(self, config) -> dict:
        return {"images/s": config.steps * config.batch_size / self.record["train_s"]}




def bench_autoregressive(run: Run, scale: str, fraction: float) -> dict:
    train, test = autoregressive.binary_digits("train"), autoregressive.binary_digits("test")
    config = scaled(autoregressive.PixelCNNConfig.for_scale(scale), fraction)
    fit = lambda model, c: autoregressive.train_pixelcnn(model, train, config=c, progress=False)  # noqa: E731
    run.warm_up(lambda c: fit(autoregressive.make_pixelcnn(c, seed=0), c), config)
    model = autoregressive.make_pixelcnn(config, seed=0)
    run.time("train_s", lambda: fit(model, config))

    @torch.no_grad()
    def evaluate():
        model.eval()
        autoregressive.sample(model, 64, generator=torch.Generator().manual_seed(0), progress=False)  # 64 passes
        return autoregressive.bits_per_dim(model(test), test)

    bpd, se = mean_se(run.time("eval_s", evaluate))
    return result(config, run.images_per_s(config), f"held-out bits/dim ({len(test)} digits)", bpd, se)


def bench_vae(run: Run, scale: str, fraction: float) -> dict:
    # binarised digits, as book/vae.md: the Bernoulli decoder is then a normalised likelihood
    train, test = (Digits(binarize(d.x), d.y) for d in (load_digits("train"), load_digits("test")))
    config = scaled(vae.VAEConfig.for_scale(scale, latent_dim=16), fraction)  # book/vae.md trains with 16 latents
    fit = lambda model, c: vae.train_vae(model, train.x, config=c, x_eval=test.x, progress=False)  # noqa: E731
    run.warm_up(lambda c: fit(vae.make_vae(c, seed=0), c), config)
    model = vae.make_vae(config, seed=0)
    run.time("train_s", lambda: fit(model, config))
    k = pick(smoke=100, small=1000, full=5000, scale=scale)

    @torch.no_grad()
    def evaluate():
        # 1. samples from the prior; 2. the ELBO: exact KL, reconstruction term averaged over many draws of z;
        # 3. log p(x) by importance sampling from q(z|x) (Burda et al. 2016), as book/vae.md computes them
        model.eval()
        model.sample(1000, generator=torch.Generator().manual_seed(0))
        torch.manual_seed(4)
        mu, logvar = model.encode(test.x)
        draws = pick(smoke=4, small=64, full=128, scale=scale)
        recon = torch.stack([vae.bernoulli_nll(test.x, model.decode(vae.reparameterize(mu, logvar))) for _ in range(draws)])
        log_px = torch.cat([vae.importance_log_likelihood(model, xb, k=k) for xb in test.x.split(64)])
        return -(recon.mean(0) + vae.gaussian_kl(mu, logvar)), log_px

    elbo, log_px = run.time("eval_s", evaluate)
    (value, se), (elbo_mean, elbo_se) = mean_se(log_px), mean_se(elbo)
    return result(config, run.images_per_s(config), f"test log p(x), nats (k = {k})", value, se,
                  {"test ELBO": elbo_mean, "test ELBO SE": elbo_se})


@functools.lru_cache(maxsize=None)
def fid_floor(n: int) -> float:
    """The digits Frechet distance of ``n`` real training digits: the floor a model is read against."""
    return metrics.digits_fid(load_digits("train", device="cpu").x[:n])


def bench_gan(run: Run, scale: str, fraction: float) -> dict:
    train = load_digits("train")
    config = scaled(gan.GANConfig.digits(scale), fraction)

    def fit(generator, critic, c):  # WGAN-GP, as book/gan.md trains the digits
        return gan.train_gan(generator, critic, train.x, config=c, d_loss_fn=gan.critic_loss_wasserstein,
                             g_loss_fn=gan.generator_loss_wasserstein, progress=False)

    run.warm_up(lambda c: fit(*gan.make_gan(c, seed=0), c), config)
    generator, critic = gan.make_gan(config, seed=0)
    run.time("train_s", lambda: fit(generator, critic, config))
    n = pick(smoke=64, small=1000, full=1000, scale=scale)
    samples = run.time("eval_s", lambda: generator.eval().sample(n, generator=torch.Generator().manual_seed(0)))
    fid = run.time("eval_s", lambda: metrics.digits_fid(samples))
    return result(config, run.images_per_s(config), f"digits FID ({n} samples)", fid, None,
                  {"FID of real digits": fid_floor(n)})


def bench_diffusion(run: Run, scale: str, fraction: float) -> dict:
    x_train = diffusion.digits_to_model(load_digits("train").x)
    config = scaled(diffusion.DiffusionConfig.for_scale("digits", scale), fraction)  # UNet8 at full
    schedule = diffusion.linear_schedule(1000).to(x_train.device)  # book/diffusion.md: T = 1000, linear betas
    fit = lambda model, c: diffusion.train_diffusion(model, x_train, schedule, config=c, progress=False)  # noqa: E731
    run.warm_up(lambda c: fit(diffusion.make_denoiser(c, seed=0), c), config)
    _, ema = run.time("train_s", lambda: fit(diffusion.make_denoiser(config, seed=0), config))
    n = pick(smoke=64, small=500, full=1000, scale=scale)
    samplers = {"DDPM 1000": lambda g: diffusion.ddpm_sample(ema, (n, 64), schedule, generator=g, progress=False),
                "DDIM 50": lambda g: diffusion.ddim_sample(ema, (n, 64), schedule, 50, generator=g, progress=False),
                "DDIM 20": lambda g: diffusion.ddim_sample(ema, (n, 64), schedule, 20, generator=g, progress=False)}
    samples = run.time("eval_s", lambda: {name: diffusion.model_to_digits(draw(torch.Generator().manual_seed(0)))
                                          for name, draw in samplers.items()})
    fid = run.time("eval_s", lambda: {name: metrics.digits_fid(x) for name, x in samples.items()})
    return result(config, run.images_per_s(config), f"digits FID, DDPM 1000 steps ({n} samples)", fid.pop("DDPM 1000"), None,
                  {**{f"FID {name}": value for name, value in fid.items()}, "FID of real digits": fid_floor(n)})


@functools.lru_cache(maxsize=None)
def lm_problems(n_train: int, names: tuple[str, ...]) -> dict[str, list[tuple[str, str]]]:
    """The pool ``train_lm`` draws from (seed 0), made once for every mode (1.5 M problems at full)."""
    return {t: tasks.make_problems(t, n_train, "train", 0) for t in names}


def mean_padded_length(problems, config: lm.GPTConfig, batches: int = 20) -> float:
    """The mean T of ``make_sft_batch`` inputs for batches drawn from the task mixture as ``train_lm`` draws them."""
    rng, names = random.Random(0), list(config.mixture)
    lengths = []
    for _ in range(batches):
        chosen = rng.choices(names, [config.mixture[t] for t in names], k=config.batch_size)
        lengths.append(lm.make_sft_batch([rng.choice(problems[t]) for t in chosen])[0].shape[1])
    return sum(lengths) / batches


def bench_lm(run: Run, scale: str, fraction: float) -> dict:
    config = scaled(lm.GPTConfig.for_scale(scale), fraction)
    problems = lm_problems(config.n_train, tuple(config.mixture))
    fit = lambda model, c: lm.train_lm(model, problems, config=c, seed=0, progress=False)  # noqa: E731
    run.warm_up(lambda c: fit(lm.make_gpt(c, seed=0), c), config)
    model = lm.make_gpt(config, seed=0)
    run.time("train_s", lambda: fit(model, config))
    n = pick(smoke=20, small=200, full=1000, scale=scale)  # book/lm.md's N_PROBLEMS
    accuracy = run.time("eval_s", lambda: {t: lm.evaluate(model, t, n) for t in tasks.TASKS})
    # model FLOPs per token: 6 N for the matmuls forward and backward, 12 L C T for attention's scores and values
    seq_len = mean_padded_length(problems, config)
    n_matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    flops_per_token = 6 * n_matmul + 12 * config.n_layer * config.n_embd * seq_len
    tokens_per_s = config.steps * config.batch_size * seq_len / run.record["train_s"]
    throughput = {"tokens/s": tokens_per_s, "model TFLOP/s": flops_per_token * tokens_per_s / 1e12}
    if run.peak_flops:
        fp32 = os.environ["GENCORE_PRECISION"] == "fp32"
        throughput["MFU (fp32 run, of the bf16 peak)" if fp32 else "MFU"] = flops_per_token * tokens_per_s / run.peak_flops
    p = accuracy.pop("sum_steps")
    return result(config, throughput, f"greedy acc. sum_steps ({n} held out)", p, proportion_se(p, n),
                  {**{f"acc. {t}": a for t, a in accuracy.items()}, "matmul params N": n_matmul,
                   "mean padded T": seq_len, "FLOPs per token": flops_per_token})


def bench_rlvr(run: Run, scale: str, fraction: float) -> dict:
    config = scaled(rl.RLConfig.for_scale(scale, eval_every=0, eval_n=50), fraction)  # the loop evaluates at step 0
    held_out = [p for p, _ in tasks.make_problems(config.task, 40 if scale == "smoke" else 500, "test", 1)]  # book/rl.md
    run.warm_up(lambda c: rl.train_rlvr(lm.load_base_model(), c, seed=0, progress=False), config)
    model = lm.load_base_model()
    history = run.time("train_s", lambda: rl.train_rlvr(model, config, seed=0, progress=False))
    before, after = run.time("eval_s", lambda: (rl.pass_rates(lm.load_base_model(), held_out, k=8),
                                                 rl.pass_rates(model, held_out, k=8)))
    gain, se = rl.paired_difference(before, after)
    seconds = run.record["train_s"]
    throughput = {"rollouts/s": config.steps * config.prompts_per_step * config.group_size / seconds,
                  "generated tokens/s": history["tokens"][-1] / seconds}
    return result(config, throughput, f"pass@1 gain ({before.mean():.3f} -> {after.mean():.3f}, {len(held_out)} x 8)",
                  gain, se, {"pass@1 before": float(before.mean()), "pass@1 after": float(after.mean()),
                             "pass@8 before": float((before > 0).float().mean()),
                             "pass@8 after": float((after > 0).float().mean()), "KL per token": history["kl"][-1]})


def bench_dpo(run: Run, scale: str, fraction: float) -> dict:
    config = scaled(preference.PreferenceConfig.for_scale(scale), fraction)
    config = dataclasses.replace(config, eval_every=config.steps)  # evaluate at step 0 and at the end only
    base = lm.load_base_model()
    train_pairs, held_out, _ = run.time("eval_s", lambda: preference.make_pair_data(base, config))

    def fit(c):
        return preference.train_dpo(copy.deepcopy(base), train_pairs, held_out, c, progress=False)

    run.warm_up(fit, config)
    history = run.time("train_s", lambda: fit(config))
    greedy, pref = history["greedy"][-1], history["pref_accuracy"][-1]
    return result(config, {"pairs/s": config.steps * config.batch_size / run.record["train_s"]},
                  f"greedy acc. (base {history['greedy'][0]:.3f}, {config.n_eval_prompts} held out)",
                  greedy, proportion_se(greedy, config.n_eval_prompts),
                  {"pref. acc.": pref, "pref. acc. SE": proportion_se(pref, len(held_out)), "held-out pairs": len(held_out),
                   "training pairs": len(train_pairs), "temp.-1 acc.": history["sampled"][-1],
                   "KL per token": history["kl"][-1]})


BENCHES = {"autoregressive": bench_autoregressive, "vae": bench_vae, "gan": bench_gan, "diffusion": bench_diffusion,
           "lm": bench_lm, "rlvr": bench_rlvr, "dpo": bench_dpo}




def run_one(unit: str, mode: str, args, peak_flops: float | None) -> dict:
    os.environ.update(MODES[mode])
    torch._dynamo.reset()  # no compiled code carried over from the previous run
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    record = {"unit": unit, "mode": mode, **MODES[mode]}
    run = Run(MODES[mode]["GENCORE_COMPILE"] == "1", peak_flops)
    try:
        seed_everything(0)
        out, record["wall_s"] = timed(lambda: BENCHES[unit](run, args.scale, args.fraction))
        record.update(out, **run.record, total_s=run.record["train_s"] + run.record["eval_s"],
                      graphs_compiled=counters["stats"]["unique_graphs"] - run.graphs_before)
        if torch.cuda.is_available():
            record["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as error:  # record it and go on to the next run
        record.update(run.record, error=f"{type(error).__name__}: {error}")
        traceback.print_exc()
    record["precision_reported"] = gencore_device.get_precision() if hasattr(gencore_device, "get_precision") else None
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9 (reading the legacy flags after the new ones can raise)
        record["fp32_precision"] = {"matmul": matmul.fp32_precision, "conv": conv.fp32_precision}
    return record


def bf16_peak_flops(peak_tflops: float | None) -> float | None:
    """The card's dense bf16 peak in FLOP/s: ``--peak-tflops``, else from the device's name (None if unknown)."""
    if peak_tflops:
        return peak_tflops * 1e12
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    if "H100" in name:
        return 756e12 if "PCIe" in name else 989e12
    return 989e12 if "H200" in name else None


def environment() -> dict:
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    cuda = torch.cuda.is_available()
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "gpu": torch.cuda.get_device_name(0) if cuda else "no GPU",
            "gpu_memory_mib": torch.cuda.get_device_properties(0).total_memory / 2**20 if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "python": platform.python_version(), "cpu": f"{platform.machine()}, {os.cpu_count()} cores",
            "gencore_commit": commit,
            "gencore_reads_precision_and_compile": all(hasattr(gencore_device, name)
                                                       for name in ("get_precision", "compile_enabled"))}


def number(value) -> str:
    if isinstance(value, int) or (isinstance(value, float) and abs(value) >= 100):
        return f"{value:,.0f}"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def row(record: dict, records: list[dict]) -> str:
    """The table's row of one run; the speed-up divides the train s of the same unit's fp32 run by this one's."""
    fp32 = next((r.get("train_s") for r in records if r["unit"] == record["unit"] and r["mode"] == "fp32"), None)
    seconds = {key: f"{record[key]:.1f}" if record.get(key) is not None else "-"
               for key in ("warmup_s", "train_s", "eval_s", "total_s")}
    throughput = ", ".join(f"{100 * v:.2f}% {k}" if "MFU" in k else f"{number(v)} {k}"
                           for k, v in record.get("throughput", {}).items()) or "-"
    quality = "-"
    if q := record.get("quality"):
        quality = f"{q['name']}: {q['value']:.4g}" + (f" ± {q['se']:.2g}" if q["se"] is not None else "")
    notes = "; ".join(f"{k} {number(v)}" for k, v in record.get("notes", {}).items())
    if record["GENCORE_COMPILE"] == "1" and "total_s" in record and not record["graphs_warmup"] + record["graphs_compiled"]:
        notes = "**no graph compiled**; " + notes
    if "error" in record:
        notes = f"**error** {record['error']}".replace("|", "/").replace("\n", " ")[:300]
    cells = [record["unit"], record["mode"], number(record.get("steps", "-")), *seconds.values(), throughput,
             f"{record['peak_mib']:,.0f}" if "peak_mib" in record else "-", quality,
             f"{fp32 / record['train_s']:.2f}x" if fp32 and record.get("train_s") else "-", notes]
    return "| " + " | ".join(cells) + " |"


def write_outputs(out: Path, env: dict, settings: dict, records: list[dict]) -> None:
    (out / "gpu.json").write_text(json.dumps({"environment": env, "settings": settings, "runs": records}, indent=2) + "\n")
    lines = [f"## Every unit on one GPU ({env['date'][:16].replace('T', ' ')}): {env['gpu']}", "",
             f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, Python {env['python']}, {env['cpu']}; "
             f"gencore {env['gencore_commit']}. GENCORE_SCALE={settings['scale']}, every training run's steps x "
             f"{settings['fraction']:g} (`--fraction`). Columns: the docstring of `bench/gpu.py`.", ""]
    if not env["gencore_reads_precision_and_compile"]:
        lines += ["This gencore does not read GENCORE_PRECISION and GENCORE_COMPILE: every mode ran the same code.", ""]
    lines += ["| unit | mode | steps | warm-up s | train s | sample+eval s | total s | throughput | peak MiB | "
              "quality ± SE | speed-up | notes |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: | --- |"]
    (out / "gpu.md").write_text("\n".join(lines + [row(r, records) for r in records]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default=",".join(UNITS), help=f"comma-separated, of {', '.join(UNITS)}")
    parser.add_argument("--modes", default="fp32,bf16+compile", help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--fraction", type=float, default=1.0, help="multiply every training run's steps by this")
    parser.add_argument("--scale", default="full", choices=("smoke", "small", "full"))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "gpu", help="folder for gpu.json and gpu.md")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, for the MFU")
    parser.add_argument("--allow-cpu", action="store_true", help="run without CUDA (with --scale smoke: a check)")
    args = parser.parse_args()
    units, modes = args.units.split(","), args.modes.split(",")
    for name, chosen, known in (("unit", units, UNITS), ("mode", modes, MODES)):
        if unknown := [c for c in chosen if c not in known]:
            parser.error(f"unknown {name} {', '.join(unknown)}; choose from {', '.join(known)}")
    if not 0 < args.fraction <= 1:
        parser.error(f"--fraction must lie in (0, 1], got {args.fraction}")
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit(f"bench/gpu.py measures a CUDA GPU, and torch {torch.__version__} sees none; "
                 "pass --allow-cpu (with --scale smoke) to check the script on a CPU.")
    os.environ["GENCORE_SCALE"] = args.scale  # for anything that sizes itself from the scale
    args.out.mkdir(parents=True, exist_ok=True)
    env, peak_flops = environment(), bf16_peak_flops(args.peak_tflops)
    settings = {"scale": args.scale, "fraction": args.fraction, "units": units, "modes": modes,
                "device": str(get_device()), "bf16_peak_flops": peak_flops}
    print(f"{env['gpu']}, torch {env['torch']}, scale {args.scale}, fraction {args.fraction:g}", flush=True)
    # outside every timer: the CUDA context and library handles, and the FID's feature network (trained on the CPU)
    if torch.cuda.is_available():
        x = torch.randn(64, 1, 8, 8, device="cuda")
        torch.nn.functional.conv2d(x, torch.randn(4, 1, 3, 3, device="cuda")).sum().item()
        (x.view(64, 64) @ x.view(64, 64)).sum().item()
    if {"gan", "diffusion"} & set(units):
        metrics.digits_classifier()
    records = []
    for unit in units:
        for mode in modes:
            records.append(run_one(unit, mode, args, peak_flops))
            write_outputs(args.out, env, settings, records)
            print(row(records[-1], records), flush=True)


if __name__ == "__main__":
    main()
