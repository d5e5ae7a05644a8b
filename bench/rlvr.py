"""RLVR on the shipped base model: held-out pass@1 before and after, time and tokens.

Usage: ``.venv/bin/python bench/rlvr.py [--lr 1e-3] [--steps 150] [--prompts 16] [--group 8]
[--optimizer sgd] [--objective scalerl] [--eval-n 1000]``. Appends a row to ``bench/results.md``.
pass@1 is one completion sampled at temperature 1 per held-out problem, with the same random
draws before and after training (a paired comparison); greedy is greedy decoding.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import time
from pathlib import Path

import torch

from gencore import lm, rl

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--optimizer", default="sgd")
    parser.add_argument("--objective", default="scalerl")
    parser.add_argument("--eval-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = lm.load_base_model()
    config = rl.RLConfig.for_scale("small", lr=args.lr, steps=args.steps, prompts_per_step=args.prompts,
                                   group_size=args.group, optimizer=args.optimizer, objective=args.objective,
                                   eval_n=args.eval_n, eval_every=args.steps)
    started = time.perf_counter()
    history = rl.train_rlvr(model, config, seed=args.seed)
    seconds = time.perf_counter() - started
    before, after = history["pass@1"][0], history["pass@1"][-1]
    se = math.sqrt((before * (1 - before) + after * (1 - after)) / args.eval_n)
    row = (f"| {config.task} | {args.objective}, {args.optimizer} lr {args.lr:g}, {args.steps} steps of "
           f"{args.prompts}x{args.group} | {before:.3f} -> {after:.3f} (s.e. of the difference < {se:.3f}) | "
           f"{history['greedy'][0]:.3f} -> {history['greedy'][-1]:.3f} | {history['kl'][-1]:.4f} | "
           f"{history['tokens'][-1]:,} | {seconds:.0f} |")
    print(row)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"{os.cpu_count()} cores, no GPU"
    header = (f"\n## RLVR on the base model ({datetime.datetime.now():%Y-%m-%d %H:%M}): {platform.machine()}, {device}, "
              f"{torch.get_num_threads()} torch threads\n\n| task | run | held-out pass@1 (T = 1) | greedy | KL per token | "
              "tokens generated | seconds |\n| --- | --- | --- | --- | ---: | ---: | ---: |\n")
    with open(ROOT / "bench" / "results.md", "a") as results:
        results.write(header + row + "\n")


if __name__ == "__main__":
    main()
