"""The one training loop of the book: a method over a task stream, evaluated after every task.

Mini-batches are sliced from tensors already in memory (one shuffled index per epoch, no per-sample
``DataLoader``), which is what makes it several times faster than framework loops on a CPU.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import metrics
from .data import Task, TaskStream
from .methods.base import Method
from .repro import check_choice, check_float, check_int, progress

OPTIMIZERS = ("sgd", "adam")


@dataclass
class RunResult:
    """What one run produced: ``R[i, j]`` is the test accuracy on task j after learning task i."""

    method: str
    R: np.ndarray
    random_init: np.ndarray
    steps: list[int] = field(default_factory=list)
    curves: np.ndarray | None = None
    boundaries: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    samples: int = 0

    def summary(self) -> dict[str, float]:
        """ACC, BWT, FWT and forgetting of :attr:`R` (see :mod:`cfutils.metrics`)."""
        return metrics.summary(self.R, self.random_init)


def make_optimizer(name: str, params, lr: float, momentum: float = 0.0) -> torch.optim.Optimizer:
    """``"sgd"`` (optionally with momentum) or ``"adam"``."""
    check_choice("optimizer", name, OPTIMIZERS)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum)
    return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def evaluate(method: Method, model: nn.Module, tasks: list[Task] | TaskStream, batch_size: int = 2000) -> np.ndarray:
    """Test accuracy on every task, in the order given."""
    was_training = model.training
    model.eval()
    accs = []
    for task in tasks:
        correct = sum(int((method.predict(model, x, task) == y).sum())
                      for x, y in zip(task.x_test.split(batch_size), task.y_test.split(batch_size)))
        accs.append(correct / len(task.y_test))
    model.train(was_training)
    return np.array(accs)


def train(method: Method, model: nn.Module, stream: TaskStream, *, epochs: int = 1, batch_size: int = 128,
          lr: float = 0.01, optimizer: str = "sgd", momentum: float = 0.0, eval_every: int | None = None,
          generator: torch.Generator | None = None, reset_optimizer: bool = True,
          on_step: Callable[[int, nn.Module], None] | None = None) -> RunResult:
    """Train ``model`` on each task of ``stream`` in turn with ``method``; return the accuracy matrix.

    ``eval_every`` (steps) also records test accuracy on every task along the way (``steps``,
    ``curves``); ``boundaries`` holds the step at which each task ended. ``on_step(step, model)`` is
    called after every optimizer step, for analyses that watch training (e.g. a loss on another task).
    """
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_float("lr", lr, positive=True)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if eval_every is not None:
        check_int("eval_every", eval_every, minimum=1)
    generator = generator or torch.Generator().manual_seed(0)
    method.setup(model, stream)
    T = len(stream)
    result = RunResult(method.name, np.zeros((T, T)), evaluate(method, model, stream))
    curve: list[np.ndarray] = []
    if eval_every:
        result.steps.append(0)
        curve.append(result.random_init)
    step, opt, start = 0, None, time.perf_counter()
    model.train()
    for task in progress(stream.tasks, desc=method.name, leave=False):
        method.task = task
        method.before_task(model, task)
        if opt is None or reset_optimizer:
            opt = make_optimizer(optimizer, list(method.parameters(model)), lr, momentum)
        x, y, t = method.training_data(task)
        for _ in range(epochs):
            order = torch.randperm(len(y), generator=generator).to(y.device)
            for idx in order.split(batch_size):
                opt.zero_grad(set_to_none=True)
                loss = method.loss(model, x[idx], y[idx], t[idx])
                loss.backward()
                method.after_backward(model)
                opt.step()
                method.after_step(model)
                step += 1
                result.samples += len(idx)
                result.losses.append(float(loss.detach()))
                if on_step is not None:
                    on_step(step, model)
                if eval_every and step % eval_every == 0:
                    result.steps.append(step)
                    curve.append(evaluate(method, model, stream))
        method.after_task(model, task)
        result.boundaries.append(step)
        result.R[task.index] = evaluate(method, model, stream)
    result.seconds = time.perf_counter() - start
    result.curves = np.array(curve) if curve else None
    return result
