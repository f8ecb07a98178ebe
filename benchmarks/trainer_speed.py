"""Samples per second: cfutils' trainer vs plain torch ``DataLoader`` loops, on one Split Fashion-MNIST run.

Same model (MLP 784-400-400-10), optimizer (SGD, lr 0.01), batch size (128), epochs, stream (5 class-IL
tasks) and evaluation (every task after every task) in all three loops:

* ``cfutils``       -- :func:`cfutils.train.train`: batches sliced from tensors already in memory;
* ``tensor-loader`` -- ``DataLoader(TensorDataset(...), shuffle=True)`` over the same tensors;
* ``torchvision``   -- the tutorial loop: ``torchvision.datasets.FashionMNIST`` with ``ToTensor`` and
  ``Normalize`` per sample, through a ``DataLoader`` (what most continual-learning libraries do).

Usage: ``python benchmarks/trainer_speed.py [--epochs 1] [--threads 1]``. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset, TensorDataset

from cfutils.data import SYSTEM_DIRS, IDX_FILES, load_dataset, split_stream
from cfutils.methods import Naive
from cfutils.models import MLP
from cfutils.repro import seed_everything
from cfutils.train import train

BATCH, LR, TASKS = 128, 0.01, 5


def run_cfutils(stream, epochs: int) -> tuple[float, int, float]:
    g = seed_everything(0)
    res = train(Naive(), MLP(), stream, epochs=epochs, batch_size=BATCH, lr=LR, generator=g)
    return res.seconds, res.samples, res.summary()["ACC"]


def plain_loop(train_loaders, test_loaders, epochs: int) -> tuple[float, int, float]:
    """The textbook loop: for each task, iterate its DataLoader; evaluate every task after each."""
    seed_everything(0)
    model = MLP()
    samples, start = 0, time.perf_counter()
    for loader in train_loaders:
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for _ in range(epochs):
            for x, y in loader:
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                opt.step()
                samples += len(y)
        accs = evaluate(model, test_loaders)
    return time.perf_counter() - start, samples, sum(accs) / len(accs)


@torch.no_grad()
def evaluate(model, loaders) -> list[float]:
    model.eval()
    accs = []
    for loader in loaders:
        correct = total = 0
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
        accs.append(correct / total)
    model.train()
    return accs


def tensor_loaders(stream):
    g = torch.Generator().manual_seed(0)
    return ([DataLoader(TensorDataset(t.x_train, t.y_train), batch_size=BATCH, shuffle=True, generator=g)
             for t in stream],
            [DataLoader(TensorDataset(t.x_test, t.y_test), batch_size=1000) for t in stream])


def torchvision_loaders(root: Path):
    import torchvision
    from torchvision import transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))])
    train_set = torchvision.datasets.FashionMNIST(root, train=True, transform=tf, download=False)
    test_set = torchvision.datasets.FashionMNIST(root, train=False, transform=tf, download=False)
    g = torch.Generator().manual_seed(0)

    def split(ds, **kw):
        return [DataLoader(Subset(ds, torch.nonzero((ds.targets == 2 * t) | (ds.targets == 2 * t + 1))
                                  .squeeze(1).tolist()), **kw) for t in range(TASKS)]

    return split(train_set, batch_size=BATCH, shuffle=True, generator=g), split(test_set, batch_size=1000)


def raw_fashion_mnist(tmp: Path) -> Path | None:
    """torchvision reads uncompressed files from ROOT/FashionMNIST/raw; unpack Debian's copies there."""
    src = SYSTEM_DIRS["fashion_mnist"]
    if not src.is_dir():
        return None
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in IDX_FILES.values():
        with gzip.open(src / f"{stem}.gz") as fin, open(raw / stem, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stream = split_stream(load_dataset("fashion_mnist"), TASKS, "class")
    rows = {"cfutils": run_cfutils(stream, args.epochs),
            "tensor-loader": plain_loop(*tensor_loaders(stream), args.epochs)}
    with tempfile.TemporaryDirectory() as tmp:
        root = raw_fashion_mnist(Path(tmp))
        if root is not None:
            rows["torchvision"] = plain_loop(*torchvision_loaders(root), args.epochs)
    base = rows["cfutils"][1] / rows["cfutils"][0]
    print(f"Split Fashion-MNIST, {TASKS} class-IL tasks, MLP 784-400-400-10, batch {BATCH}, "
          f"{args.epochs} epoch(s), {args.threads} thread(s); wall time includes evaluation after every task")
    print(f"{'loop':<15}{'seconds':>9}{'samples/s':>12}{'cfutils speed-up':>18}{'final ACC':>11}")
    for name, (seconds, samples, acc) in rows.items():
        rate = samples / seconds
        print(f"{name:<15}{seconds:>9.2f}{rate:>12.0f}{base / rate:>17.1f}x{acc:>11.3f}")


if __name__ == "__main__":
    main()
