"""Joint training: learn every task seen so far together (the offline upper bound)."""
from __future__ import annotations

import torch

from ..data import Task
from .base import Method


class Joint(Method):
    """While learning task :math:`t`, train on the union :math:`D_1 \\cup \\dots \\cup D_t`.

    It needs all past data, so it is no continual learner; its last row of the accuracy matrix is the
    multi-task accuracy that the continual methods try to reach.
    """

    name = "joint"

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        seen = self.stream.tasks[: task.index + 1]
        x = torch.cat([s.x_train for s in seen])
        y = torch.cat([s.y_train for s in seen])
        t = torch.cat([torch.full_like(s.y_train, s.index) for s in seen])
        return x, y, t
