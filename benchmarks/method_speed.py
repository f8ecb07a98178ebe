"""Time per training step of every method in ``cfutils.methods``, relative to fine-tuning, in one run.

Protocol (the same for every row): full Split Fashion-MNIST, 5 class-IL tasks of 2 classes, MLP
784-400-400-10, SGD lr 0.01, batch 128, one epoch per task, one torch thread. A step's time is the
median interval between consecutive optimizer steps on tasks 2-5 (so penalties, buffers and teachers
are active, and evaluations and end-of-task work are excluded).

Also measured: fine-tuning's throughput against a plain PyTorch loop over the same tensors (same model,
batch, optimizer), and the replay buffer's insertion + sampling against a step, at 5,000 samples.
The first ``torch.optim`` construction in a process imports ``torch._dynamo`` (seconds): a warm-up run
pays it before anything is timed.

Usage: ``python benchmarks/method_speed.py [--threads 1] [--repeats 2]``. Prints ratios; asserts nothing.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cfutils import methods as M
from cfutils.data import load_dataset, split_stream
from cfutils.methods.buffer import Buffer, eight_bit_range
from cfutils.models import MLP
from cfutils.runs import METHODS
from cfutils.train import train

BATCH, LR = 128, 0.01
# every registered method: (label, factory, target ratio to fine-tuning or None); SLOW ones are timed
# on tasks 1-2 only (their steps cost tens of fine-tuning steps)
SLOW = ("OGD", "MER")
CONFIGS: dict[str, list[tuple[str, Callable[[], M.Method], float | None]]] = {
    "naive": [("fine-tuning", M.Naive, None)],
    "joint": [("joint", M.Joint, None)],
    "ewc": [("EWC (4 separate terms by task 5)", lambda: M.EWC(100.0), 1.15)],
    "online_ewc": [("online EWC", lambda: M.OnlineEWC(100.0), 1.15)],
    "si": [("SI", lambda: M.SI(1.0), 1.15)],
    "mas": [("MAS", lambda: M.MAS(1.0), 1.15)],
    "l2": [("L2 (uniform importance)", lambda: M.L2(1.0), 1.15)],
    "replay": [("ER, replay batch 128", lambda: M.Replay(5000, 128), 2.0),
               ("ER, replay batch 32", lambda: M.Replay(5000, 32), 1.4)],
    "der": [("DER", lambda: M.DER(5000, 128), None),
            ("DER++", lambda: M.DER(5000, 128, beta=0.5), 2.6)],
    "generative_replay": [("generative replay", M.GenerativeReplay, None)],
    "icarl": [("iCaRL (2,000 exemplars)", lambda: M.ICaRL(2000), None)],
    "lwf": [("LwF (LwF.MC in class-IL)", lambda: M.LwF(1.0, 2.0), None)],
    "lwf_replay": [("LwF + ER (replay batch 32)", lambda: M.LwFReplay(500, 32), None)],
    "lfl": [("LFL", lambda: M.LFL(1.0), None)],
    "agem": [("A-GEM (memory batch 128)", lambda: M.AGEM(256, 128), 2.5)],
    "gem": [("GEM (128 per task; 1 + past tasks x step)", lambda: M.GEM(128), None)],
    "ogd": [("OGD (200 directions per task), tasks 1-2", lambda: M.OGD(200), None)],
    "gpm": [("GPM (threshold 0.97)", lambda: M.GPM(0.97), None)],
    "pcgrad": [("PCGrad (joint training)", M.PCGrad, None)],
    "mer": [("MER (replay 10, 1 batch), tasks 1-2", lambda: M.MER(500, 10, 1), None)],
}


def step_times(method: M.Method, stream, stop_after: int | None = None) -> list[float]:
    """Intervals between consecutive optimizer steps on tasks 2..T (boundaries dropped)."""
    stamps: list[tuple[int, float]] = []
    torch.manual_seed(0)
    result = train(method, MLP(), stream, batch_size=BATCH, lr=LR, stop_after=stop_after,
                   on_step=lambda step, _: stamps.append((step, time.perf_counter())))
    first_of_task = set(result.boundaries)
    return [b - a for (_, a), (step, b) in zip(stamps, stamps[1:])
            if step - 1 >= result.boundaries[0] and step - 1 not in first_of_task]


def plain_loop_times(stream) -> list[float]:
    """The same steps written as a bare PyTorch loop over the same tensors."""
    torch.manual_seed(0)
    model, g, times = MLP(), torch.Generator().manual_seed(0), []
    for task in stream:
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for idx in torch.randperm(task.n_train, generator=g).split(BATCH):
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(task.x_train[idx]), task.y_train[idx]).backward()
            opt.step()
            if task.index:
                times.append(time.perf_counter() - start)
    return times


def buffer_share(step: float, images: torch.Tensor, uint8: bool) -> float:
    """Reservoir insertion of one batch plus one 128-sample draw, at 5,000 stored samples, per step
    (``uint8``: the images stored as 8-bit codes, as the replay methods do for 8-bit data)."""
    buf = Buffer(5000, (1, 28, 28), 10, 5, value_range=eight_bit_range([images]) if uint8 else None)
    y, t = torch.randint(0, 10, (BATCH,)), torch.zeros(BATCH).long()
    batches = images[: len(images) // BATCH * BATCH].split(BATCH)
    for x in batches[:60]:  # fill the memory (5,000 < 60 x 128)
        buf.add(x, y, t)
    start = time.perf_counter()
    for k in range(200):
        buf.add(batches[60 + k % (len(batches) - 60)], y, t)
        buf.sample(128)
    return (time.perf_counter() - start) / 200 / step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats; medians are reported")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stream = split_stream(load_dataset("fashion_mnist"), 5, "class")
    start = time.perf_counter()
    step_times(M.Naive(), stream)  # warm-up: pays the one-time torch._dynamo import
    print(f"warm-up run (includes the one-time torch._dynamo import): {time.perf_counter() - start:.1f} s,"
          " excluded from every figure below")
    missing = sorted(set(METHODS) - set(CONFIGS))
    rows = [row for name in CONFIGS for row in CONFIGS[name]]
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    plain: list[float] = []
    for _ in range(args.repeats):
        plain += plain_loop_times(stream)
        for label, make, _ in rows:
            slow = any(label.startswith(name) for name in SLOW)
            times[label] += step_times(make(), stream, stop_after=2 if slow else None)
    base = statistics.median(times["fine-tuning"])
    loop = statistics.median(plain)
    print(f"\nfine-tuning {BATCH / base:,.0f} samples/s; plain PyTorch loop {BATCH / loop:,.0f} samples/s; "
          f"throughput ratio {loop / base:.2f} (target >= 0.95) {'ok' if loop / base >= 0.95 else 'MISS'}")
    images = stream[0].x_train
    for uint8 in (False, True):
        share = buffer_share(base, images, uint8)
        print(f"replay buffer insert + sample at 5,000 samples ({'uint8' if uint8 else 'float32'}): "
              f"{share:.1%} of a fine-tuning step (target <= 5%) {'ok' if share <= 0.05 else 'MISS'}")
    print(f"\n{'method':38s} {'ms/step':>8s} {'ratio':>6s}  target")
    for label, _, target in rows:
        t = statistics.median(times[label])
        verdict = "" if target is None else f"<= {target:.2f} {'ok' if t / base <= target else 'MISS'}"
        print(f"{label:38s} {1e3 * t:8.2f} {t / base:6.2f}  {verdict}")
    for name in missing:
        print(f"{name:38s} no benchmark configuration: add one to CONFIGS (MISS)")


if __name__ == "__main__":
    main()
