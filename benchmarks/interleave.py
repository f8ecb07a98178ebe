"""Timing the training steps of several methods in turn, the way the benchmarks compare them.

Each method is first trained with :func:`cfutils.train.train` on the first k tasks of a stream
(so it holds k tasks' memories, penalties or bases); then the methods take the steps of task k+1 in
turns of a few steps each, exactly as the trainer's loop takes them (the method's hooks around one
optimizer step), and a method's time is the median CPU time (``time.process_time``) of its steps.
Taking short turns keeps ratios stable on a shared machine, where other jobs slow whole stretches of
a run down: a slow stretch slows every method alike.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cfutils.data import TaskStream
from cfutils.methods import Method
from cfutils.repro import seed_everything
from cfutils.train import train


class Runner:
    """A method, model and optimizer after k >= 1 tasks of ``stream``, stepping through task k+1."""

    def __init__(self, method: Method, model: nn.Module, stream: TaskStream, k: int, batch: int,
                 lr: float):
        self.method, self.model = method, model
        train(method, model, stream, batch_size=batch, lr=lr, stop_after=k,
              generator=seed_everything(0))
        task = stream[k]
        method.task = task
        method.before_task(model, task)
        self.x, self.y, self.t = method.training_data(task)
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(0))
        self.batches = order.split(batch)[: len(self.y) // batch]  # full batches only
        self.opt = torch.optim.SGD(list(method.parameters(model)), lr=lr)
        self.seconds: list[float] = []

    def step(self, r: int) -> None:
        """The trainer's step on the r-th batch of the task (cycling), timed."""
        idx = self.batches[r % len(self.batches)]
        start = time.process_time()
        self.opt.zero_grad(set_to_none=True)
        self.method.loss(self.model, self.x[idx], self.y[idx], self.t[idx]).backward()
        self.method.after_backward(self.model)
        self.opt.step()
        self.method.after_step(self.model)
        self.seconds.append(time.process_time() - start)


def interleaved(makers: dict[str, Callable[[], Runner]], rounds: int,
                turn: int = 5) -> dict[str, float]:
    """Median seconds of a step of every runner, the runners taking ``turn`` steps each per round.

    The first step of a turn finds the caches full of the previous runner's tensors; it is not
    counted, so the medians are those of a run that has the machine to itself (steady state).
    """
    runners = {name: make() for name, make in makers.items()}
    for r in range(rounds):
        for runner in runners.values():
            for s in range(turn):
                runner.step(r * turn + s)
    return {name: float(np.median([sec for i, sec in enumerate(run.seconds) if i % turn]))
            for name, run in runners.items()}
