r"""The family EWC, online EWC, SI and MAS share: a quadratic pull towards old solutions.

.. math::  \mathcal{L}(\theta) = \ell_t(\theta) + s \sum_{k} \sum_i \Omega_{k,i}\,(\theta_i - \theta^*_{k,i})^2

Each term :math:`k` holds an importance :math:`\Omega_k` (Fisher, path integral, output sensitivity) and an
anchor :math:`\theta^*_k` (the parameters at the end of an earlier task). The methods differ only in how
they measure :math:`\Omega`, in the strength :math:`s`, and in whether they keep one term or one per task.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import TaskStream
from ..fisher import Params, trainable
from ..repro import check_float
from .base import Method


class QuadraticPenalty(Method):
    """Cross-entropy plus ``strength`` times the importance-weighted squared distance to every anchor."""

    def __init__(self, strength: float):
        check_float("strength", strength, minimum=0.0)
        self.strength = strength

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        self.terms: list[tuple[Params, Params]] = []  # (importance, anchor) per term

    def penalty(self, model: nn.Module) -> torch.Tensor:
        r""":math:`s \sum_k \sum_i \Omega_{k,i} (\theta_i - \theta^*_{k,i})^2` (zero before the first term)."""
        total = torch.zeros((), device=next(model.parameters()).device)
        params = dict(model.named_parameters())
        for importance, anchor in self.terms:
            for n, omega in importance.items():
                total = total + (omega * (params[n] - anchor[n]) ** 2).sum()
        return self.strength * total

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return super().loss(model, x, y, t) + self.penalty(model)

    def stored_bytes(self) -> int:
        """Bytes of the tensors the method keeps between tasks (importances and anchors)."""
        return sum(v.numel() * v.element_size() for term in self.terms for d in term for v in d.values())

    @staticmethod
    def snapshot(model: nn.Module) -> Params:
        """A copy of the current trainable parameters (an anchor)."""
        return {n: p.clone() for n, p in trainable(model).items()}
