r"""What LwF and LFL share: a teacher, the network frozen at the end of the previous task.

After task :math:`t-1` the network is copied and frozen (:func:`cfutils.distill.frozen_copy`); while
task :math:`t` is learned, the loss is the new task's cross-entropy plus a penalty that keeps the
student close to that teacher *on the new task's inputs*:

.. math:: L(\theta) = \mathbb E_{(x,y)\sim D_t}\big[\ell(f_\theta(x), y)
          + \Omega_\theta(x)\big].

No old sample is stored, only one network; the methods differ in :math:`\Omega` (the outputs for
LwF, the features for LFL).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Task, TaskStream
from ..distill import frozen_copy
from .base import Method


class FrozenTeacher(Method):
    """Cross-entropy plus :meth:`penalty`, with a teacher frozen at the end of the previous task."""

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        self.teacher: nn.Module | None = None

    def before_task(self, model: nn.Module, task: Task) -> None:
        """The output units of the earlier tasks' classes (``old_units``) and of this task's."""
        super().before_task(model, task)
        self.old_units = self.units(c for s in self.stream.tasks[:task.index] for c in s.classes)
        self.new_units = self.units(task.classes)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """:math:`\\ell(f_\\theta(x), y) + \\Omega_\\theta(x)`, one forward pass for both terms."""
        out = model(x)
        loss = F.cross_entropy(self._mask(out, t), y)
        return loss if self.teacher is None else loss + self.penalty(model, x, out)

    def penalty(self, model: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:math:`\\Omega_\\theta(x)`, given the student's outputs ``out`` (there is a teacher)."""
        raise NotImplementedError

    def after_task(self, model: nn.Module, task: Task) -> None:
        super().after_task(model, task)
        self.teacher = frozen_copy(model)

    def stored_bytes(self) -> int:
        """What the method keeps between tasks: the teacher's parameters."""
        if self.teacher is None:
            return 0
        return sum(p.numel() * p.element_size() for p in self.teacher.parameters())

    def units(self, classes: Iterable[int]) -> torch.Tensor:
        """A boolean mask over the output units, True at ``classes``."""
        device = self.stream[0].y_train.device
        mask = torch.zeros(self.stream.n_classes, dtype=torch.bool, device=device)
        mask[list(classes)] = True
        return mask

    def _mask(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:meth:`Method.logits` for outputs already computed."""
        if self.masks is None:
            return out
        return out.masked_fill(~self.masks[t], torch.finfo(out.dtype).min / 2)


def keep_output_rows(model: nn.Module, keep: torch.Tensor) -> None:
    """Zero the gradient of the output units (rows of the output layer) not in ``keep``.

    The output layer ``model.head`` is one linear layer, or a list of heads whose outputs are
    concatenated (:class:`cfutils.models.MultiHeadMLP`).
    """
    heads = list(model.head) if isinstance(model.head, nn.ModuleList) else [model.head]
    for head, rows in zip(heads, keep.split([h.out_features for h in heads])):
        for p in head.parameters():
            if p.grad is not None:
                p.grad[~rows.to(p.device)] = 0
