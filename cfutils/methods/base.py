"""The hooks a continual-learning method can override; the trainer knows nothing else about methods.

The trainer calls, for every task of the stream::

    method.before_task(model, task)
    for each mini-batch (x, y, t) of method.training_data(task):   # t: task index of every sample
        loss = method.loss(model, x, y, t); loss.backward()
        method.after_backward(model)                                # e.g. project gradients (GEM)
        optimizer.step(); method.after_step(model)                  # e.g. path integrals (SI)
    method.after_task(model, task)                                  # e.g. Fisher information (EWC)

and evaluates with ``method.predict``. ``self.task`` is the task being learned, ``self.stream`` the stream.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Task, TaskStream


class Method:
    """Plain fine-tuning behaviour; subclasses override only the hooks their idea needs."""

    name = "method"

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        """Called once before the first task."""
        self.stream = stream
        self.masks = stream.masks if stream.scenario == "task" else None
        self.task: Task | None = None

    def parameters(self, model: nn.Module) -> Iterator[nn.Parameter]:
        """The parameters the optimizer updates."""
        return (p for p in model.parameters() if p.requires_grad)

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, labels and task index of every sample trained on while learning ``task``."""
        return task.x_train, task.y_train, torch.full_like(task.y_train, task.index)

    def logits(self, model: nn.Module, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The model's outputs with the units a sample's task may not use set to a very negative value.

        In task-IL that keeps each task to its own head; in domain- and class-IL nothing is masked.
        """
        out = model(x)
        if self.masks is None:
            return out
        return out.masked_fill(~self.masks[t], torch.finfo(out.dtype).min / 2)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Cross-entropy on the current batch: :math:`\\ell(\\theta) = -\\frac1B\\sum_b \\log p_\\theta(y_b\\mid x_b)`."""
        return F.cross_entropy(self.logits(model, x, t), y)

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
        """Predicted labels for inputs of ``task``."""
        return self.logits(model, x, task.index).argmax(dim=1)

    def before_task(self, model: nn.Module, task: Task) -> None:
        """Called before training on ``task``."""

    def after_backward(self, model: nn.Module) -> None:
        """Called after ``loss.backward()``, before the optimizer step."""

    def after_step(self, model: nn.Module) -> None:
        """Called after every optimizer step."""

    def after_task(self, model: nn.Module, task: Task) -> None:
        """Called once ``task`` is learned, before the evaluation."""

    def stored_bytes(self) -> int:
        """Bytes the method keeps besides the model (buffers, anchors, importances, teachers)."""
        return 0

    def extras(self) -> dict[str, Any]:
        """Small JSON-ready results of the method itself that a run record keeps (e.g. what a memory holds)."""
        return {}

    def divergence_hint(self, lr: float) -> str:
        """What to check when the loss of this method stops being finite (the trainer says it)."""
        return "lower the learning rate"
