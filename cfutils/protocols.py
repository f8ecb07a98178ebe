"""The book's standard protocols at the ``book`` scale: base specs that chapters vary one field at a time.

Using the same base everywhere lets chapter 9 compare every method on records the chapters already
made. Each follows a protocol of the literature in miniature (named in its docstring); the budgets are
the smallest that pass the book's convergence check (joint training within 0.02 of its accuracy at 4x
the epochs), which every image chapter shows.
"""
from __future__ import annotations

from .runs import RunSpec

SEEDS = (0, 1, 2)

SPLIT = RunSpec(method="naive", stream="split", scenario="class", n_tasks=5, widths=(400, 400),
                epochs=4, lr=0.05, batch_size=128, optimizer="sgd")
"""Split Fashion-MNIST, 5 tasks of 2 classes, all 60,000 training images: van de Ven & Tolias (2019)'s
split-MNIST protocol (MLP 2 x 400, one task after the other) with plain SGD. ``scenario`` is "class" or "task"."""

PERMUTED = RunSpec(method="naive", stream="permuted", scenario="domain", n_tasks=10, n_train=10_000,
                   widths=(400, 400), epochs=2, lr=0.05, batch_size=128, optimizer="sgd")
"""Permuted Fashion-MNIST, 10 tasks (the first unpermuted), 10,000 training images per task (1,000 per
class; all 10,000 test images): the permuted-MNIST protocol of Kirkpatrick et al. (2017) and van de Ven &
Tolias (2019) with fewer images per task, as in Lopez-Paz & Ranzato (2017)'s GEM protocol."""


def smoke(spec: RunSpec) -> RunSpec:
    """The smoke-profile version of a protocol: a few hundred images, a small network, one epoch."""
    return spec.replace(n_train=600, n_test=300, widths=(32,), epochs=1, n_tasks=min(spec.n_tasks, 3)
                        if spec.stream == "permuted" else spec.n_tasks)
