r"""Projecting Conflicting Gradients (PCGrad; Yu et al. 2020): gradient surgery for multi-task learning.

Multi-task training sums per-task gradients :math:`g = \sum_k g_k`; when two of them conflict
(:math:`\langle g_i, g_j\rangle < 0`) one task's progress undoes the other's. PCGrad projects each
task's gradient onto the normal plane of every other task's gradient it conflicts with, visiting the
others in a random order,

.. math:: g_i \leftarrow g_i - \frac{\langle g_i, g_j\rangle}{\lVert g_j\rVert^2}\, g_j
          \quad\text{if } \langle g_i, g_j\rangle < 0,

and steps along :math:`\sum_k g_k^{\text{PC}}`. Here it runs on joint training's stream (all tasks
seen so far, mixed in every batch): each task's loss is weighted by its share of the batch, so without
conflicts the step is exactly :class:`~cfutils.methods.Joint`'s.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..gradients import grad_vector, write_grad
from .joint import Joint


def project_conflicts(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PCGrad's surgery on the rows :math:`g_1..g_T` of ``grads``: each against the others' originals."""
    out = grads.clone()
    for i in range(len(grads)):
        for j in [j for j in torch.randperm(len(grads), generator=generator).tolist() if j != i]:
            dot = out[i] @ grads[j]
            if dot < 0:
                out[i] -= dot / (grads[j] @ grads[j]) * grads[j]
    return out


class PCGrad(Joint):
    """Joint training whose step is the sum of the per-task gradients after PCGrad's surgery."""

    name = "pcgrad"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\sum_k \\frac{n_k}{B}\\,\\ell_k` (the batch's mean loss); keeps each task's gradient.

        One backward pass per task present in the batch; the trainer's own backward of the sum is
        then replaced in :meth:`after_backward`.
        """
        out = self.logits(model, x, t)
        losses = [F.cross_entropy(out[t == k], y[t == k], reduction="sum") / len(y) for k in t.unique()]
        params = list(self.parameters(model))
        self.task_grads = torch.stack([grad_vector(loss, params, retain_graph=True) for loss in losses])
        return torch.stack(losses).sum()

    def after_backward(self, model: nn.Module) -> None:
        """:math:`\\tilde g = \\sum_k g_k^{\\text{PC}}`."""
        write_grad(list(self.parameters(model)), project_conflicts(self.task_grads, self.generator).sum(0))

    def stored_bytes(self) -> int:
        """Bytes kept between tasks: the training data of every task seen so far (joint training's)."""
        seen = self.stream.tasks[: self.task.index + 1] if self.task is not None else ()
        return sum(d.numel() * d.element_size() for s in seen for d in (s.x_train, s.y_train))
