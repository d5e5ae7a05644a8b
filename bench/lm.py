"""Throughput of gencore.lm and gencore.sampling: training and sampling tokens per second.

1. training: SFT steps of the scale's ``GPTConfig`` on the task mixture, completion tokens
   (the ones in the loss) and all tokens (prompt included) per second; on CUDA also the model
   FLOPs utilisation, 6 N tokens/s (plus attention) over the GPU's bf16 dense peak;
2. sampling with the shipped base model: plain batched sampling, low-temperature sampling,
   beam search and power sampling, in generated tokens per second (rejected proposals included).

Usage: ``.venv/bin/python bench/lm.py [--steps 50] [--record]``; ``--record`` appends the table
to ``bench/results.md``. Use ``OMP_NUM_THREADS`` to fix the CPU threads.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from gencore import lm, sampling, tasks
from gencore.device import autocast, configure_backend, get_device, get_scale

ROOT = Path(__file__).resolve().parents[1]
BF16_PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense bf16 FLOP/s


def machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {gpu}, "
            f"torch {torch.__version__}")


def bench_training(steps: int, device: torch.device) -> dict:
    config = lm.GPTConfig.for_scale(steps=steps)
    model = lm.make_gpt(config, device=device)
    problems = {t: tasks.make_problems(t, 5000, "train", 0) for t in config.mixture}
    batches = []
    g = torch.Generator().manual_seed(0)
    pool = [pb for t in config.mixture for pb in problems[t]]
    for _ in range(steps):
        idx = torch.randint(len(pool), (config.batch_size,), generator=g).tolist()
        batches.append(lm.make_sft_batch([pool[i] for i in idx]))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()

    def step(x, y):
        with autocast(device):
            loss = lm.sft_loss(model, x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for x, y in batches[:3]:  # warm-up
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    all_tokens = sum(x.numel() for x, _ in batches)
    loss_tokens = sum(int((y != tasks.PAD_ID).sum()) for _, y in batches)
    out = {"steps/s": steps / seconds, "tokens/s": all_tokens / seconds, "loss tokens/s": loss_tokens / seconds,
           "parameters": model.num_params(), "config": config}
    if device.type == "cuda":
        n, L, T, C = model.num_params(), config.n_layer, batches[0][0].shape[1], config.n_embd
        flops_per_token = 6 * n + 12 * L * T * C  # Kaplan et al. 2020 / PaLM appendix B
        peak = next((v for k, v in BF16_PEAK.items() if k in torch.cuda.get_device_name(0)), None)
        out["MFU"] = flops_per_token * out["tokens/s"] / peak if peak else float("nan")
    return out


def bench_sampling(device: torch.device, n_prompts: int) -> list[tuple[str, float, float]]:
    model = lm.load_base_model(device)
    prompts = [p for p, _ in tasks.make_problems("sum_steps", n_prompts, "test", 0)]
    T = tasks.max_completion_length("sum_steps")
    g = torch.Generator(device=device).manual_seed(0) if device.type == "cuda" else torch.Generator().manual_seed(0)
    rows = []

    def plain():
        completions = lm.generate(model, prompts, T, 1.0, generator=g)
        return sampling.Samples(completions, [len(c) for c in completions])

    methods = {
        "sampling, temperature 1": plain,
        "low temperature (alpha 4)": lambda: sampling.low_temperature_sampling(model, prompts, 4.0, T, g),
        "beam search (width 4)": lambda: sampling.beam_search(model, prompts[: max(1, n_prompts // 8)], 4, T),
        "power sampling (alpha 4, B 4, 4 MCMC)": lambda: sampling.power_sampling_mcmc(model, prompts, 4.0, 4, 4, T, g),
    }
    for name, run in methods.items():
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
        rows.append((name, sum(result.tokens) / seconds, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="training steps timed")
    parser.add_argument("--prompts", type=int, default=256, help="prompts sampled in one batch")
    parser.add_argument("--record", action="store_true", help="append the table to bench/results.md")
    args = parser.parse_args()
    device = get_device()
    configure_backend(device)
    train = bench_training(args.steps, device)
    samp = bench_sampling(device, args.prompts)
    c = train["config"]
    lines = [
        f"## gencore.lm throughput ({datetime.datetime.now():%Y-%m-%d %H:%M}): {machine()}, "
        f"GENCORE_SCALE={get_scale()}",
        "",
        f"Training: GPT of {train['parameters']:,} parameters ({c.n_layer} layers, {c.n_embd} channels), "
        f"batch {c.batch_size}, {args.steps} timed steps (`bench/lm.py`).",
        "",
        "| what | figure |",
        "| --- | ---: |",
        f"| training steps/s | {train['steps/s']:.2f} |",
        f"| training tokens/s (prompt + completion) | {train['tokens/s']:,.0f} |",
        f"| training tokens/s in the loss (completions) | {train['loss tokens/s']:,.0f} |",
    ]
    if "MFU" in train:
        lines.append(f"| model FLOPs utilisation (bf16 dense peak) | {100 * train['MFU']:.2f}% |")
    for name, rate, seconds in samp:
        lines.append(f"| {name}: generated tokens/s | {rate:,.0f} ({seconds:.1f} s) |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        with open(ROOT / "bench" / "results.md", "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
