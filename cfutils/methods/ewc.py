r"""Elastic Weight Consolidation (Kirkpatrick et al. 2017) and online EWC (Schwarz et al. 2018).

After task :math:`k` the posterior :math:`p(\theta\mid D_{1..k})` is replaced by a Gaussian (the Laplace
approximation) centred on :math:`\theta^*_k` with diagonal precision :math:`F_k`, the Fisher information.
Learning task :math:`t` then minimises

.. math::  \ell_t(\theta) + \frac{\lambda}{2} \sum_{k<t} \sum_i F_{k,i} (\theta_i - \theta^*_{k,i})^2
           \qquad\text{(EWC: one term per task)}

.. math::  \ell_t(\theta) + \frac{\lambda}{2} \sum_i \tilde F_{i} (\theta_i - \theta^*_{t-1,i})^2,
           \quad \tilde F \leftarrow \gamma \tilde F + F_{t-1}
           \qquad\text{(online EWC: one running Fisher, one anchor)}

:math:`F` is the *mean* over ``n_fisher`` training samples of the chosen estimator (:mod:`cfutils.fisher`).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task
from ..fisher import KINDS, fisher as diagonal_fisher
from ..repro import check_choice, check_float, check_int
from .quadratic import QuadraticPenalty


class EWC(QuadraticPenalty):
    """EWC with one penalty per past task; ``fisher`` picks the estimator, ``lam`` the strength :math:`\\lambda`."""

    name = "ewc"

    def __init__(self, lam: float, fisher: str = "exact", n_fisher: int = 250, seed: int = 0):
        check_float("lam", lam, minimum=0.0)
        check_choice("fisher", fisher, KINDS)
        check_int("n_fisher", n_fisher, minimum=1)
        super().__init__(strength=lam / 2)
        self.lam, self.fisher, self.n_fisher = lam, fisher, n_fisher
        self.generator = torch.Generator().manual_seed(seed)

    def estimate_fisher(self, model: nn.Module, task: Task) -> dict[str, torch.Tensor]:
        """The diagonal Fisher of ``task`` at the current parameters, on ``n_fisher`` random training samples."""
        pick = torch.randperm(task.n_train, generator=self.generator)[: self.n_fisher].to(task.y_train.device)
        mask = None if self.masks is None else self.masks[task.index]
        return diagonal_fisher(self.fisher, model, task.x_train[pick], task.y_train[pick], mask, self.generator)

    def after_task(self, model: nn.Module, task: Task) -> None:
        if task.index < len(self.stream) - 1:  # the last task's Fisher would never be used
            self.consolidate(self.estimate_fisher(model, task), self.snapshot(model))

    def consolidate(self, fisher_k: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> None:
        """Add the penalty term of the task just learned."""
        self.terms = (*self.terms, (fisher_k, anchor))


class OnlineEWC(EWC):
    """Online EWC: a running Fisher :math:`\\tilde F \\leftarrow \\gamma \\tilde F + F_k` and the latest anchor only."""

    name = "online_ewc"

    def __init__(self, lam: float, gamma: float = 1.0, **kwargs):
        check_float("gamma", gamma, minimum=0.0, maximum=1.0)
        super().__init__(lam, **kwargs)
        self.gamma = gamma

    def consolidate(self, fisher_k: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> None:
        if self.terms:
            running = self.terms[0][0]
            fisher_k = {n: self.gamma * running[n] + f for n, f in fisher_k.items()}
        self.terms = [(fisher_k, anchor)]
