"""How much replay costs: one buffer step (insert + sample) per buffer size, and a whole ER run vs fine-tuning.

    OMP_NUM_THREADS=1 python benchmarks/replay_speed.py [--n-train 20000] [--epochs 1]

Prints CPU seconds (``time.process_time``, robust to other jobs on a shared machine) and ratios.
The buffer step should not grow with the buffer size (O(batch)), and the buffer's bookkeeping should be a
small share of a run: ER's extra cost is the forward/backward pass over the replayed samples, so a replay
batch as large as the new batch costs up to 2x fine-tuning and a smaller one proportionally less.
"""
from __future__ import annotations

import argparse
import time

import torch

from cfutils.data import load_dataset, split_stream
from cfutils.methods import DER, Buffer, Naive, Replay
from cfutils.models import MLP
from cfutils.repro import seed_everything
from cfutils.train import train

SIZES = (50, 500, 5000, 50000)


def buffer_step_cost(capacity: int, policy: str, batch: int = 128, repeats: int = 300) -> float:
    """Mean CPU seconds of ``add`` + ``sample`` of one batch into a full buffer."""
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(10, (batch,))
    t = torch.zeros(batch, dtype=torch.long)
    buf = Buffer(capacity, (1, 28, 28), n_classes=10, policy=policy)
    while len(buf) < capacity:  # fill it first: the steady state is what matters
        buf.add(x, y if policy == "reservoir" else torch.arange(batch) % 10, t)
    start = time.process_time()
    for _ in range(repeats):
        buf.add(x, y, t)
        buf.sample(batch)
    return (time.process_time() - start) / repeats


def run_cost(method, n_train: int, epochs: int) -> tuple[float, float]:
    """CPU seconds and final ACC of one class-IL split Fashion-MNIST run."""
    g = seed_everything(0)
    stream = split_stream(load_dataset().subset(n_train, 2000, g), 5, "class")
    start = time.process_time()
    result = train(method, MLP(), stream, epochs=epochs, batch_size=128, lr=0.01, generator=g)
    return time.process_time() - start, result.summary()["ACC"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("\none replay step (insert 128 + sample 128) into a full buffer")
    print(f"{'buffer size':>12} {'reservoir us':>13} {'class-bal. us':>14} {'vs size 50':>11}")
    base = None
    for size in SIZES:
        res, cb = buffer_step_cost(size, "reservoir"), buffer_step_cost(size, "class_balanced")
        base = base or res
        print(f"{size:>12} {res * 1e6:>13.0f} {cb * 1e6:>14.0f} {res / base:>10.2f}x")
    print(f"\nwhole class-IL run, {args.n_train} training samples, {args.epochs} epoch(s)")
    naive_s, naive_acc = run_cost(Naive(), args.n_train, args.epochs)
    print(f"{'method':>18} {'CPU s':>7} {'ACC':>6} {'vs fine-tuning':>15}")
    print(f"{'fine-tuning':>18} {naive_s:>7.1f} {naive_acc:>6.3f} {1:>14.2f}x")
    for label, method in (("ER 500 (128+32)", Replay(500, replay_batch=32)), ("ER 500 (128+128)", Replay(500)),
                          ("ER 5000 (128+128)", Replay(5000)), ("DER++ 500", DER(500, alpha=0.3, beta=1.0))):
        s, acc = run_cost(method, args.n_train, args.epochs)
        print(f"{label:>18} {s:>7.1f} {acc:>6.3f} {s / naive_s:>14.2f}x")
    steps = args.epochs * -(-args.n_train // 5 // 128) * 5
    share = steps * buffer_step_cost(500, "reservoir") / naive_s
    print(f"\nbuffer bookkeeping of ER 500 ({steps} steps x insert+sample): {share:.0%} of a fine-tuning run")


if __name__ == "__main__":
    main()
