"""RLVR on the shipped base model: held-out pass@1 and pass@8 before and after, over seeds, with
the generation and training throughput.

Usage: ``.venv/bin/python bench/rlvr.py [--scale small] [--seeds 0 1 2] [--lr 3e-5] [--optimizer adam]
[--steps N] [--prompts P] [--group G] [--objective scalerl] [--problems 500] [--samples 8]``.
Appends a table to ``bench/results.md``. Each held-out problem is answered ``--samples`` times at
temperature 1 by the base model and by the trained one, on the same random draws; the gain in
pass@1 is the mean over problems of the difference of their pass rates, with its paired standard
error (``gencore.rl.paired_difference``). Rollouts/s counts sampled completions per second of
the whole run (generation, scoring and updates); tokens/s counts the completion tokens.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import torch

from gencore import lm, rl, tasks

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small", choices=("smoke", "small", "full"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lr", type=float)
    parser.add_argument("--optimizer")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--prompts", type=int)
    parser.add_argument("--group", type=int)
    parser.add_argument("--objective", default="scalerl")
    parser.add_argument("--problems", type=int, default=500)
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()

    overrides = {k: v for k, v in dict(lr=args.lr, optimizer=args.optimizer, steps=args.steps, prompts_per_step=args.prompts,
                                       group_size=args.group).items() if v is not None}
    config = rl.RLConfig.for_scale(args.scale, objective=args.objective, eval_every=0, eval_n=50, **overrides)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    held_out = [p for p, _ in tasks.make_problems(config.task, args.problems, "test", 1)]
    base = lm.load_base_model(device)
    before = rl.pass_rates(base, held_out, k=args.samples)
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = lm.load_base_model(device)
        started = time.perf_counter()
        history = rl.train_rlvr(model, config, seed=seed)
        seconds = time.perf_counter() - started
        after = rl.pass_rates(model, held_out, k=args.samples)
        gain, se = rl.paired_difference(before, after)
        rollouts = config.steps * config.prompts_per_step * config.group_size
        rows.append(f"| {seed} | {before.mean():.3f} -> {after.mean():.3f} | {gain:+.3f} +- {se:.3f} | "
                    f"{(before > 0).float().mean():.3f} -> {(after > 0).float().mean():.3f} | {history['kl'][-1]:.4f} | "
                    f"{rollouts / seconds:,.0f} | {history['tokens'][-1] / seconds:,.0f} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    hardware = torch.cuda.get_device_name(0) if device.type == "cuda" else f"{os.cpu_count()} cores, no GPU"
    header = (f"\n## RLVR on the base model ({datetime.datetime.now():%Y-%m-%d %H:%M}): {platform.machine()}, {hardware}, "
              f"{torch.get_num_threads()} torch threads\n\n"
              f"`{config.task}`, {args.objective}, {config.optimizer} lr {config.lr:g}, {config.steps} steps of "
              f"{config.prompts_per_step}x{config.group_size} completions ({args.scale} scale); held out: {len(held_out)} "
              f"problems x {args.samples} samples at T = 1, the same draws before and after.\n\n"
              f"| seed | pass@1 | gain (paired s.e.) | pass@{args.samples} | KL per token | rollouts/s | tokens/s | seconds |\n"
              "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |\n")
    with open(ROOT / "bench" / "results.md", "a") as results:
        results.write(header + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
