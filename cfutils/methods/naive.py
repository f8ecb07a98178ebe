"""Fine-tuning: train on each new task with nothing to protect the old ones (the lower bound)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..repro import check_choice
from .base import Method


class Naive(Method):
    """Plain sequential fine-tuning; every hook keeps the behaviour of :class:`Method`.

    In class-IL the softmax covers every output unit from the first task on (the book's convention).
    ``active_classes=True`` trains each task with a softmax over the classes seen so far instead, as
    van de Ven et al.'s code does; predictions still use every unit. Other scenarios are unaffected.
    """

    name = "naive"

    def __init__(self, active_classes: bool = False):
        check_choice("active_classes", active_classes, (False, True))
        self.active_classes = active_classes

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.active_classes or self.masks is not None:
            return super().loss(model, x, y, t)
        logits = model(x)
        seen = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
        seen[[c for task in self.stream.tasks[: self.task.index + 1] for c in task.classes]] = True
        return F.cross_entropy(logits.masked_fill(~seen, torch.finfo(logits.dtype).min / 2), y)
