r"""Projecting Conflicting Gradients (PCGrad; Yu et al. 2020): gradient surgery for multi-task.

Multi-task training follows the sum of the task gradients :math:`g = \sum_k g_k`; when two of them
conflict (:math:`\langle g_i, g_j\rangle < 0`), progress on one task undoes progress on the other.
PCGrad projects each task's gradient onto the normal plane of every other task's gradient it
conflicts with, visiting the others in a random order,

.. math:: g_i \leftarrow g_i - \frac{\langle g_i, g_j\rangle}{\lVert g_j\rVert^2}\, g_j
          \quad\text{if } \langle g_i, g_j\rangle < 0,

and steps along :math:`\sum_k g_k^{\mathrm{PC}}`. Here it runs on joint training's stream (all tasks
seen so far, mixed in every batch); each task's loss is weighted by its share of the batch, so
without conflicts the step is exactly that of :class:`~cfutils.methods.Joint`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..gradients import grad_vector, write_grad
from .joint import Joint


def project_conflicts(grads: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    r"""PCGrad's surgery on the rows :math:`g_1..g_T` of ``grads``, against the originals."""
    out = grads.clone()
    for i in range(len(grads)):
        for j in [j for j in torch.randperm(len(grads), generator=generator).tolist() if j != i]:
            dot = out[i] @ grads[j]
            if dot < 0:
                out[i] -= dot / (grads[j] @ grads[j]) * grads[j]
    return out


class PCGrad(Joint):
    """Joint training whose step is the sum of the task gradients after PCGrad's surgery."""

    name = "pcgrad"

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_k \frac{n_k}{B}\,\ell_k` (the batch's mean loss); keeps every :math:`g_k`.

        One backward pass per task in the batch; the trainer's own backward of the sum is then
        replaced in :meth:`after_backward`.
        """
        out = self.logits(model, x, t)
        losses = [F.cross_entropy(out[t == k], y[t == k], reduction="sum") / len(y)
                  for k in t.unique()]
        params = list(self.parameters(model))
        self.task_grads = torch.stack([grad_vector(ell, params, retain_graph=True)
                                       for ell in losses])
        return torch.stack(losses).sum()

    def after_backward(self, model: nn.Module) -> None:
        r""":math:`\tilde g = \sum_k g_k^{\mathrm{PC}}`."""
        surgery = project_conflicts(self.task_grads, self.generator)
        write_grad(list(self.parameters(model)), surgery.sum(0))

    def stored_bytes(self) -> int:
        """Bytes kept between tasks: the training data of every task seen so far (as joint)."""
        seen = self.stream.tasks[: self.task.index + 1] if self.task is not None else ()
        return sum(d.numel() * d.element_size() for s in seen for d in (s.x_train, s.y_train))
