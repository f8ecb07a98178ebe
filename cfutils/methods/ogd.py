r"""Orthogonal Gradient Descent (OGD; Farajtabar et al. 2020), ground-truth-logit variant (GTL).

After task :math:`k`, OGD stores for :math:`m` of its samples the gradient of the network's output
on the true class, :math:`\nabla_\theta f_\theta(x_n)_{y_n}`: the directions in which a step would
change what the network answers on that task. Their span is kept as an orthonormal basis
:math:`Q \in \mathbb R^{r\times P}` (rows :math:`q_i`, :math:`QQ^\top = I`), grown task by task by
Gram-Schmidt: new vectors :math:`V` lose their components along the basis,
:math:`V \leftarrow V - VQ^\top Q` (twice, which is enough in floating point), and what remains is
orthonormalised and appended. Later tasks step along the part of the gradient orthogonal to it,

.. math:: \tilde g = g - Q^\top Q\, g = \Big(I - \sum_i q_i q_i^\top\Big) g,

so, to first order, no stored output moves:
:math:`\langle\nabla_\theta f(x_n)_{y_n}, \tilde g\rangle = 0`. The guarantee holds for small steps
of plain SGD, and the memory grows by :math:`mP` numbers per task.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task, TaskStream
from ..gradients import flat_grad, per_sample_grads, write_grad
from ..repro import check_int
from .base import Method
from .episodic import episode


def ground_truth_logit(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`f_\theta(x)_y`: the output unit of the true class."""
    return z.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def extend_basis(Q: torch.Tensor, V: torch.Tensor, rtol: float = 1e-5) -> torch.Tensor:
    """The rows of ``Q`` (orthonormal) plus an orthonormal basis of what the rows of ``V`` add.

    The new block is orthonormalised by an SVD of the residual, which drops the (numerically)
    dependent directions -- singular values below ``rtol`` times the largest row norm of ``V`` --
    where a plain QR would keep an arbitrary unit vector for each of them.
    """
    scale = V.norm(dim=1).max()
    for _ in range(2):  # Gram-Schmidt against the basis, twice
        V = V - (V @ Q.T) @ Q
    _, s, Wt = torch.linalg.svd(V, full_matrices=False)
    return torch.cat([Q, Wt[s > rtol * scale]])


class OGD(Method):
    """OGD-GTL: logit gradients of ``memory_per_task`` samples per task; step orthogonally."""

    name = "ogd"

    def __init__(self, memory_per_task: int = 200, seed: int = 0):
        check_int("memory_per_task", memory_per_task, minimum=1)
        self.memory_per_task = memory_per_task
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        n = sum(p.numel() for p in self.parameters(model))
        self.basis = torch.zeros((0, n), device=next(model.parameters()).device)  # Q, row by row
        self.rank: list[int] = []  # rows of Q after each task

    def after_task(self, model: nn.Module, task: Task) -> None:
        r"""Add the span of :math:`\nabla_\theta f(x_n)_{y_n}` on ``memory_per_task`` samples."""
        if task.index == len(self.stream) - 1:  # nothing is learned after the last task
            return
        x, y, *_ = episode(task, self.memory_per_task, self.generator)
        self.basis = extend_basis(self.basis, per_sample_grads(model, x, y, ground_truth_logit))
        self.rank.append(len(self.basis))

    def after_backward(self, model: nn.Module) -> None:
        r""":math:`\tilde g = g - Q^\top Q g`."""
        if len(self.basis):
            params = list(self.parameters(model))
            g = flat_grad(params)
            write_grad(params, g - self.basis.T @ (self.basis @ g))

    def extras(self) -> dict:
        """How many directions the basis holds after each task."""
        return {"rank": self.rank}

    def stored_bytes(self) -> int:
        r"""Bytes kept between tasks: the basis :math:`Q` (:math:`r \times P` numbers)."""
        return self.basis.numel() * self.basis.element_size()
