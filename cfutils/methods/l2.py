r"""L2 towards the previous solution: the quadratic family with the same importance for every parameter.

.. math::  \mathcal{L} = \ell_t(\theta) + s \sum_i (\theta_i - \theta^{t-1}_i)^2

Kirkpatrick et al. (2017)'s baseline for EWC: it asks whether *which* parameters are held matters, or
only *that* they are held. One anchor, the parameters at the end of the latest task.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task
from .quadratic import QuadraticPenalty


class L2(QuadraticPenalty):
    """Uniform importance 1 for every parameter, anchored at the end of the latest task."""

    name = "l2"

    def after_task(self, model: nn.Module, task: Task) -> None:
        anchor = self.snapshot(model)
        self.terms = [({n: torch.ones_like(p) for n, p in anchor.items()}, anchor)]

    def stored_bytes(self) -> int:
        """Bytes of the anchor (the uniform importance is a constant, not knowledge to keep)."""
        return sum(v.numel() * v.element_size() for _, anchor in self.terms for v in anchor.values())
