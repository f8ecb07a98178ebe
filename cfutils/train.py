"""The one training loop of the book: a method over a task stream, evaluated after every task.

Mini-batches are sliced from tensors already in memory (one shuffled index per epoch, no per-sample
``DataLoader``), which is what makes it several times faster than framework loops on a CPU.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector

from . import metrics
from .data import Task, TaskStream, atomic_save
from .methods.base import Method
from .repro import check_choice, check_float, check_int, progress

OPTIMIZERS = ("sgd", "adam")
CHECK_EVERY = 50  # steps between finiteness checks of the loss (each check is one device sync)


class DivergenceError(RuntimeError):
    """The loss stopped being finite; the message names the method, step, task and what to change."""


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
    steps_done: int = 0
    travel: list[float] = field(default_factory=list)  # ||theta after - theta before|| of each task

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
          on_step: Callable[[int, nn.Module], None] | None = None,
          checkpoint: str | Path | None = None, stop_after: int | None = None,
          first_lr: float | None = None) -> RunResult:
    """Train ``model`` on each task of ``stream`` in turn with ``method``; return the accuracy matrix.

    ``eval_every`` (steps) also records test accuracy on every task along the way (``steps``,
    ``curves``); ``boundaries`` holds the step at which each task ended. ``on_step(step, model)`` is
    called after every optimizer step, for analyses that watch training (e.g. a loss on another task).
    With ``checkpoint`` (a file path) the state is saved after every task and an interrupted run
    resumes after the last task it finished. ``stop_after`` ends the run after that many tasks (the
    later rows of ``R`` stay zero): a cheap way to re-check the start of a long run. ``first_lr`` is the
    learning rate of the first task (default ``lr``): it separates how the first task is learned from
    how the later ones overwrite it. ``travel`` records how far the parameters moved during each task.

    The loss is checked every :data:`CHECK_EVERY` steps and at every task end (before anything is
    evaluated or saved): a non-finite loss raises :class:`DivergenceError` and nothing is written.
    """
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_float("lr", lr, positive=True)
    if first_lr is not None:
        check_float("first_lr", first_lr, positive=True)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if eval_every is not None:
        check_int("eval_every", eval_every, minimum=1)
    if stop_after is not None:
        check_int("stop_after", stop_after, minimum=1, maximum=len(stream))
    generator = generator or torch.Generator().manual_seed(0)
    run_id = dict(method=method.name, tasks=[t.name for t in stream], epochs=epochs, batch_size=batch_size, lr=lr,
                  optimizer=optimizer, momentum=momentum, eval_every=eval_every)
    if first_lr is not None:
        run_id["first_lr"] = first_lr
    method.setup(model, stream)
    T = len(stream)
    result = RunResult(method.name, np.zeros((T, T)), evaluate(method, model, stream))
    if eval_every:
        result.steps.append(0)
        result.curves = result.random_init[None]
    opt, done = None, 0
    if checkpoint is not None and Path(checkpoint).exists():
        result, opt_state, done = _resume(Path(checkpoint), run_id, method, model, generator)
        if opt_state is not None:
            opt = make_optimizer(optimizer, list(method.parameters(model)), lr, momentum)
            opt.load_state_dict(opt_state)
    start, seconds_before = time.perf_counter(), result.seconds
    model.train()
    for task in progress(stream.tasks[done:stop_after], desc=method.name, leave=False):
        method.task = task
        method.before_task(model, task)
        task_lr = first_lr if first_lr is not None and task.index == 0 else lr
        if opt is None or reset_optimizer:
            opt = make_optimizer(optimizer, list(method.parameters(model)), task_lr, momentum)
        for group in opt.param_groups:
            group["lr"] = task_lr
        start_theta = parameters_to_vector(model.parameters()).detach().clone()
        _learn(method, model, task, opt, result, epochs, batch_size, eval_every, generator, on_step, task_lr)
        result.travel.append(float((parameters_to_vector(model.parameters()).detach() - start_theta).norm()))
        method.after_task(model, task)
        result.boundaries.append(result.steps_done)
        result.R[task.index] = evaluate(method, model, stream)
        result.seconds = seconds_before + time.perf_counter() - start
        if checkpoint is not None:
            _save(Path(checkpoint), run_id, method, model, generator, result, None if reset_optimizer else opt)
    return result


def _learn(method: Method, model: nn.Module, task: Task, opt: torch.optim.Optimizer, result: RunResult,
           epochs: int, batch_size: int, eval_every: int | None, generator: torch.Generator,
           on_step: Callable[[int, nn.Module], None] | None, lr: float) -> None:
    """Every optimizer step of one task: shuffled mini-batches sliced from the task's tensors."""
    x, y, t = method.training_data(task)
    losses: list[torch.Tensor] = []
    checked = 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator).to(y.device)
        for idx in order.split(batch_size):
            opt.zero_grad(set_to_none=True)
            loss = method.loss(model, x[idx], y[idx], t[idx])
            loss.backward()
            method.after_backward(model)
            opt.step()
            method.after_step(model)
            result.steps_done += 1
            result.samples += len(idx)
            losses.append(loss.detach())
            if len(losses) - checked >= CHECK_EVERY:
                checked = _check_finite(losses, checked, method, task, result.steps_done, lr)
            if on_step is not None:
                on_step(result.steps_done, model)
            if eval_every and result.steps_done % eval_every == 0:
                result.steps.append(result.steps_done)
                result.curves = np.vstack([result.curves, evaluate(method, model, method.stream)])
    _check_finite(losses, checked, method, task, result.steps_done, lr)
    result.losses += torch.stack(losses).tolist()


def _check_finite(losses: list[torch.Tensor], checked: int, method: Method, task: Task, steps_done: int,
                  lr: float) -> int:
    """Raise :class:`DivergenceError` at the first non-finite loss after ``losses[checked]``."""
    if checked == len(losses):
        return checked
    recent = torch.stack(losses[checked:])
    bad = (~torch.isfinite(recent)).nonzero()
    if len(bad):
        step = steps_done - len(losses) + checked + int(bad[0, 0]) + 1
        raise DivergenceError(f"{method.name} diverged: loss {float(recent[bad[0, 0]])} at step {step} "
                              f"(task {task.index + 1}, lr {lr:g}); {method.divergence_hint(lr)}. "
                              "Nothing was recorded.")
    return len(losses)


_NOT_SAVED = ("stream", "masks", "task", "params", "layers")  # rebuilt by setup()


def _save(path: Path, run_id: dict, method: Method, model: nn.Module, generator: torch.Generator,
          result: RunResult, opt: torch.optim.Optimizer | None) -> None:
    state = {k: v for k, v in vars(method).items() if k not in _NOT_SAVED}
    atomic_save({"run_id": run_id, "model": model.state_dict(), "method": state, "rng": generator.get_state(),
                 "result": result, "optimizer": None if opt is None else opt.state_dict()}, path)


def _resume(path: Path, run_id: dict, method: Method, model: nn.Module,
            generator: torch.Generator) -> tuple[RunResult, dict | None, int]:
    try:
        saved = torch.load(path, weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(f"checkpoint {path} cannot be read ({type(err).__name__}); delete it to start afresh") from err
    if saved["run_id"] != run_id:
        raise ValueError(f"checkpoint {path} belongs to another run; delete it or pass another checkpoint path")
    model.load_state_dict(saved["model"])
    vars(method).update(saved["method"])
    generator.set_state(saved["rng"])
    return saved["result"], saved["optimizer"], len(saved["result"].boundaries)
