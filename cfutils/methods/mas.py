r"""Memory Aware Synapses (Aljundi et al. 2018): importance from the sensitivity of the output.

No labels are needed: after task :math:`k`, on its inputs,

.. math::  \Omega_i \mathrel{+}= \frac1N \sum_{n} \Big|\partial_{\theta_i} \lVert f_\theta(x_n) \rVert_2^2\Big|,
           \qquad \mathcal{L} = \ell_t(\theta) + \lambda \sum_i \Omega_i (\theta_i - \theta^{k}_i)^2 ,

with :math:`f_\theta(x)` the outputs the task uses (its head in task-IL) and one anchor, the latest parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task
from ..fisher import per_sample_reduce
from ..repro import check_float, check_int
from .quadratic import QuadraticPenalty


class MAS(QuadraticPenalty):
    """MAS with strength ``lam``, importances from ``n_samples`` training inputs of each task."""

    name = "mas"

    def __init__(self, lam: float, n_samples: int = 500, seed: int = 0):
        check_float("lam", lam, minimum=0.0)
        check_int("n_samples", n_samples, minimum=1)
        super().__init__(strength=lam)
        self.lam, self.n_samples = lam, n_samples
        self.generator = torch.Generator().manual_seed(seed)

    def importance(self, model: nn.Module, task: Task) -> dict[str, torch.Tensor]:
        """Mean absolute gradient of the squared output norm over ``n_samples`` inputs of ``task``."""
        pick = torch.randperm(task.n_train, generator=self.generator)[: self.n_samples].to(task.y_train.device)
        keep = None if self.masks is None else self.masks[task.index]

        def squared_norm(z: torch.Tensor, _: torch.Tensor) -> torch.Tensor:  # ||f(x)||^2 over the task's units
            return (z if keep is None else z.masked_fill(~keep, 0.0)).pow(2).sum()

        return per_sample_reduce(model, task.x_train[pick], task.y_train[pick], squared_norm, transform=torch.abs)

    def after_task(self, model: nn.Module, task: Task) -> None:
        new = self.importance(model, task)
        if self.terms:
            new = {n: self.terms[0][0][n] + w for n, w in new.items()}
        self.terms = [(new, self.snapshot(model))]
