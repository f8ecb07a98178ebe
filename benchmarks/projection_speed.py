"""What gradient projection costs per training step, as ratios to fine-tuning measured in one run.

    OMP_NUM_THREADS=1 python benchmarks/projection_speed.py [--tasks 6] [--rounds 15] [--memory 256]

Permuted Fashion-MNIST (domain-IL), MLP 784-100-100-10 (the GEM paper's), plain SGD, one torch
thread, batch 10 (the GEM protocol) and 128. For each number k of past tasks, every method is first
trained on tasks 1..k (so it holds k tasks' memories, bases or constraints); then the methods take
training steps of task k+1 in turns of five steps (the first of each turn not counted), and a
method's time is the median CPU time of its steps (``interleave.py``: taking turns keeps the ratios
stable on a shared machine).

Targets (relative to fine-tuning): GEM <= 1 + k c with k past tasks, A-GEM <= 1 + 1.5 c, where c is
the cost of a fine-tuning step on a batch as large as the memory batch (GEM: samples per task;
A-GEM: reference batch) relative to one at the batch size timed; c = 1 when the memory batch equals
the batch (GEM <= 1 + k, A-GEM <= 2.5). They hold when each memory gradient is one batched pass;
for this MLP GEM computes all k of them in one pass with the back-propagation written out
(``cfutils.gradients.mlp_memory_grads``), A-GEM its reference the same way, and with k = 1 GEM's QP
has a closed form (no quadprog call).
Misses are marked with ``!``. OGD and GPM have no target: OGD's step is a product with a basis that
grows by ``memory_per_task`` rows (of P numbers) per task.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from cfutils.data import Dataset, TaskStream, load_dataset, permuted_stream
from cfutils.methods import AGEM, GEM, GPM, OGD, Method, Naive
from cfutils.models import MLP
from cfutils.repro import seed_everything
from interleave import Runner, interleaved

WIDTHS, LR, PREPARE_STEPS = (100, 100), 0.01, 20


def warm_up() -> float:
    """Seconds of the one-off costs paid before any timing (the first torch.optim step imports
    torch._dynamo)."""
    start = time.perf_counter()
    model = MLP(784, WIDTHS)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(20):
        opt.zero_grad()
        model(torch.randn(10, 784)).sum().backward()
        opt.step()
    return time.perf_counter() - start


def runner(make: Callable[[], tuple[Method, int]], stream: TaskStream, k: int) -> Runner:
    """A :class:`Runner` for the (method, batch size) that ``make`` returns, on the book's MLP."""
    method, batch = make()
    return Runner(method, MLP(784, WIDTHS), stream, k, batch, LR)


def report(data: Dataset, batch: int, memory: int, tasks: int, rounds: int) -> None:
    """One table: ratios to fine-tuning for k = 1 .. tasks-1 past tasks (OGD, GPM: if c = 1)."""
    n_train = max(batch * PREPARE_STEPS, 2 * memory)
    stream = permuted_stream(data.subset(n_train, 500, seed_everything(0)), tasks)
    makers = {"fine-tuning": lambda: (Naive(), batch),
              "A-GEM": lambda: (AGEM(memory_per_task=memory, memory_batch=memory), batch),
              "GEM": lambda: (GEM(memory_per_task=memory, margin=0.5), batch)}
    if memory == batch:
        makers["OGD (200 per task)"] = lambda: (OGD(memory_per_task=200), batch)
        makers["GPM (threshold 0.97)"] = lambda: (GPM(threshold=0.97), batch)
    else:
        makers["fine-tuning, memory batch"] = lambda: (Naive(), memory)
    times = [interleaved({name: partial(runner, make, stream, k) for name, make in makers.items()},
                         rounds) for k in range(1, tasks)]
    ft = [t["fine-tuning"] for t in times]
    c = [t.get("fine-tuning, memory batch", t["fine-tuning"]) / t["fine-tuning"] for t in times]
    print(f"\nbatch {batch}, memory batch {memory}: fine-tuning {np.mean(ft) * 1e3:.2f} ms/step, "
          f"c = {np.mean(c):.2f}; ratio to fine-tuning with k past tasks (target)")
    print(f"{'':<22}" + "".join(f"{f'k={k}':>16}" for k in range(1, tasks)))
    targets = {"A-GEM": lambda k, ck: 1 + 1.5 * ck, "GEM": lambda k, ck: 1 + k * ck}
    for name in [name for name in makers if not name.startswith("fine-tuning")]:
        cells = []
        for k, (t, ck) in enumerate(zip(times, c), start=1):
            ratio = t[name] / t["fine-tuning"]
            if name in targets:
                target = targets[name](k, ck)
                cells.append(f"{ratio:.2f}{'!' if ratio > target else ' '}({target:.2f})")
            else:
                cells.append(f"{ratio:.2f}")
        print(f"{name:<22}" + "".join(f"{cell:>16}" for cell in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=15, help="turns of 5 steps of every method")
    parser.add_argument("--memory", type=int, default=256, help="the papers' memory batch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"MLP 784-{WIDTHS[0]}-{WIDTHS[1]}-10, permuted Fashion-MNIST, {args.tasks} tasks")
    print(f"warm-up first, excluded from every timing (the first torch.optim step imports "
          f"torch._dynamo): {warm_up():.1f} s")
    data = load_dataset("fashion_mnist")
    for batch in (10, 128):  # memory batch = batch (equal work, c = 1), then the papers' memory
        for memory in (batch, args.memory):
            report(data, batch, memory, args.tasks, args.rounds)
    print("\n! marks a miss of the target in brackets")


if __name__ == "__main__":
    main()
