"""Train the course's base language model and write it to gencore/checkpoints/.

    .venv/bin/python scripts/train_base_lm.py            # the small scale, a few minutes on a 2-core CPU

It trains ``gencore.lm.GPT`` by maximum likelihood on the completions of the three tasks of
``gencore.tasks`` (SFT), then measures greedy accuracy on held-out problems and writes
``base_lm.pt`` (weights and network config) and ``base_lm.json`` (the card: what was trained,
how long it took, the accuracies that ``tests/test_lm.py`` checks again).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from gencore import lm, tasks
from gencore.device import seed_everything

EVAL_N = 1000  # held-out problems per task for the card
SMOKE_N = 200  # the first problems of the same set, re-checked by the test suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small", choices=["smoke", "small", "full"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=lm.BASE_CHECKPOINT)
    args = parser.parse_args()

    seed_everything(args.seed)
    config = lm.GPTConfig.for_scale(args.scale)
    model = lm.make_gpt(config, seed=args.seed)
    problems = {t: tasks.make_problems(t, config.n_train, "train", args.seed) for t in config.mixture}
    start = time.perf_counter()
    history = lm.train_lm(model, problems, config=config, seed=args.seed)
    seconds = time.perf_counter() - start

    model.eval()
    accuracy, smoke = {}, {}
    for task in tasks.TASKS:
        accuracy[task] = lm.evaluate(model, task, n=EVAL_N, seed=0)
        smoke[task] = lm.evaluate(model, task, n=SMOKE_N, seed=0)
        print(f"{task:>10}: greedy accuracy {accuracy[task]:.3f} on {EVAL_N} held-out problems")
    card = {
        "what": "gencore.lm.GPT trained by maximum likelihood on completions (SFT) of gencore.tasks",
        "made_by": "scripts/train_base_lm.py",
        "scale": args.scale,
        "seed": args.seed,
        "parameters": model.num_params(),
        "network": config.model_dict(),
        "training": {"steps": config.steps, "batch_size": config.batch_size, "lr": config.lr,
                     "mixture": config.mixture, "n_train_per_task": config.n_train,
                     "final_loss_mean_last_100": sum(history["loss"][-100:]) / len(history["loss"][-100:]),
                     "seconds": round(seconds, 1),
                     "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {lm._device(model)}"},
        "tasks": {t: {"n_terms": list(s.n_terms), "max_value": s.max_value, "steps": s.steps}
                  for t, s in tasks.TASKS.items()},
        "eval_seed": 0,
        "eval_n": EVAL_N,
        "greedy_accuracy": accuracy,
        "smoke_eval": {"n": SMOKE_N, "greedy_accuracy": smoke},
        "torch": torch.__version__,
    }
    lm.save_checkpoint(model.cpu(), args.out, card)
    size = args.out.stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.2f} MB) and {args.out.with_suffix('.json').name}; trained in {seconds:.0f} s")


if __name__ == "__main__":
    main()
