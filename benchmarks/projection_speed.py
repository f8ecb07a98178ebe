"""What gradient projection costs per training step, as ratios to fine-tuning measured in one run.

    python benchmarks/projection_speed.py [--tasks 6] [--steps 60] [--memory 256]

Permuted Fashion-MNIST (domain-IL), MLP 784-100-100-10 (the GEM paper's), plain SGD, one torch
thread. Every method runs through :func:`cfutils.train.train`; an ``on_step`` callback reads the
CPU clock (``time.process_time``, robust to other jobs on a shared machine) after every step, and a
step's time is the gap to the previous step of the same task (the first steps of a task, which
follow its evaluation and set-up, are left out). While task :math:`k+1` trains, GEM has :math:`k`
past tasks, so one run gives GEM's cost for 1, 2, ... past tasks.

Targets (per step, relative to fine-tuning): GEM <= 1 + k c for k past tasks and A-GEM <= 1 + 1.5 c,
where c is what one fine-tuning step costs on a batch as large as the memory batch, relative to the
batch size being timed (c = 1 when the memory batch is the batch size: GEM <= 1 + k, A-GEM <= 2.5).
That holds when each memory gradient is one batched pass; misses are marked. OGD and GPM have no
target: OGD's step is a product with a basis that grows by ``memory_per_task`` rows per task.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from cfutils.data import Dataset, TaskStream, load_dataset, permuted_stream
from cfutils.methods import AGEM, GEM, GPM, OGD, Naive
from cfutils.models import MLP
from cfutils.repro import seed_everything
from cfutils.train import train

WIDTHS, LR = (100, 100), 0.01


def warm_up() -> float:
    """Seconds of one-off costs paid before any timing (the first ``torch.optim`` step imports
    torch._dynamo)."""
    start = time.perf_counter()
    model = MLP(784, WIDTHS)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(20):
        opt.zero_grad()
        model(torch.randn(10, 784)).sum().backward()
        opt.step()
    return time.perf_counter() - start


def step_times(method, stream, batch: int, skip: int = 1) -> list[float]:
    """Median CPU seconds of a step while each task trains (index = number of past tasks).

    The median, not the mean: on a shared machine a few steps are slowed down by other jobs.
    """
    ticks: list[float] = []

    def tick(step: int, model: torch.nn.Module) -> None:
        ticks.append(time.process_time())

    result = train(method, MLP(784, WIDTHS), stream, batch_size=batch, lr=LR,
                   generator=seed_everything(0), on_step=tick)
    starts = [0, *result.boundaries[:-1]]
    return [float(np.median(np.diff(ticks[s + skip:e]))) for s, e in zip(starts, result.boundaries)]


def stream_for(data: Dataset, batch: int, tasks: int, steps: int) -> TaskStream:
    """``tasks`` permuted tasks of ``batch * steps`` training samples each."""
    return permuted_stream(data.subset(batch * steps, 500, seed_everything(0)), tasks)


def fine_tuning(stream: TaskStream, batch: int) -> float:
    """Median CPU seconds of a fine-tuning step."""
    return float(np.median(step_times(Naive(), stream, batch)))


def timed(method, stream: TaskStream, batch: int) -> tuple[list[float], float]:
    """Step times of ``method`` per task, and of fine-tuning run just before it on the same stream.

    Each method gets its own fine-tuning reference, so a shared machine's drift cancels in ratios.
    """
    naive = fine_tuning(stream, batch)
    return step_times(method, stream, batch), naive


def report(data: Dataset, batch: int, memories: tuple[int, ...], tasks: int, steps: int) -> None:
    """Step times of every method at one batch size, for each memory batch size."""
    stream = stream_for(data, batch, tasks, steps)
    rows = []
    for name, method in (("OGD (200 per task), mean", OGD(memory_per_task=200)),
                         ("GPM (threshold 0.97), mean", GPM(threshold=0.97))):
        times, naive = timed(method, stream, batch)
        rows.append((name, float(np.mean(times[1:])), naive, None))
    for memory in memories:
        c = 1.0
        if memory != batch:
            big = stream_for(data, memory, tasks, steps)
            c = fine_tuning(big, memory) / fine_tuning(stream, batch)
        label = f"memory batch {memory}, c = {c:.2f}"
        agem, naive = timed(AGEM(memory_per_task=memory, memory_batch=memory), stream, batch)
        rows.append((f"A-GEM, {label}", float(np.mean(agem[1:])), naive, 1 + 1.5 * c))
        gem, naive = timed(GEM(memory_per_task=memory, margin=0.5), stream, batch)
        rows += [(f"GEM {k} past, {label}", gem[k], naive, 1 + k * c) for k in range(1, tasks)]
    print(f"\nbatch {batch}: fine-tuning {np.mean([r[2] for r in rows]) * 1e3:.2f} ms/step")
    print(f"{'method':<36}{'ms/step':>9}{'vs fine-tuning':>16}{'target':>9}")
    for name, seconds, naive, target in rows:
        ratio = seconds / naive
        mark = "" if target is None else f"{target:>8.2f}x" + ("  MISS" if ratio > target else "")
        print(f"{name:<36}{seconds * 1e3:>9.2f}{ratio:>15.2f}x{mark}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--steps", type=int, default=60, help="training steps per task")
    parser.add_argument("--memory", type=int, default=256, help="the papers' memory batch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, "
          f"MLP 784-{WIDTHS[0]}-{WIDTHS[1]}-10, permuted Fashion-MNIST, {args.tasks} tasks")
    print(f"warm-up first, excluded from every timing (the first torch.optim step imports "
          f"torch._dynamo): {warm_up():.1f} s")
    data = load_dataset("fashion_mnist")
    for batch in (10, 128):  # memory batch = batch (equal work: c = 1), then the papers' memory
        report(data, batch, (batch, args.memory), args.tasks, args.steps)


if __name__ == "__main__":
    main()
