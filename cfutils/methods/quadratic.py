r"""The family EWC, online EWC, SI and MAS share: a quadratic pull towards old solutions.

.. math::  \mathcal{L}(\theta) = \ell_t(\theta) + s \sum_{k} \sum_i \Omega_{k,i}\,(\theta_i - \theta^*_{k,i})^2

Each term :math:`k` holds an importance :math:`\Omega_k` (Fisher, path integral, output sensitivity) and an
anchor :math:`\theta^*_k` (the parameters at the end of an earlier task). The methods differ only in how
they measure :math:`\Omega`, in the strength :math:`s`, and in whether they keep one term or one per task.

A sum of quadratics is one quadratic. Per parameter, with :math:`A = \sum_k \Omega_k` and the
precision-weighted centre :math:`m = \sum_k \Omega_k \theta^*_k / A`,

.. math::  \sum_k \Omega_k (\theta - \theta^*_k)^2 = A\,(\theta - m)^2 + \underbrace{\textstyle\sum_k \Omega_k
           \theta^{*2}_k - A m^2}_{c\ \text{(constant)}},

so training keeps only :math:`(A, m, c)`, merged whenever the terms change, and adds the penalty's gradient
:math:`2 s A (\theta - m)` directly: one step costs the same however many terms are stored.
:meth:`QuadraticPenalty.penalty_per_term` keeps the literal sum for teaching and checking.
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
        self.terms = ()

    @property
    def terms(self) -> tuple[tuple[Params, Params], ...]:
        """The (importance, anchor) pairs; assigning new ones re-merges the penalty."""
        return self._terms

    @terms.setter
    def terms(self, value: tuple[tuple[Params, Params], ...] | list[tuple[Params, Params]]) -> None:
        self._terms = tuple(value)
        self.merge()

    def merge(self) -> None:
        """Fold :attr:`terms` into the precision :math:`A`, centre :math:`m` and constant :math:`c`."""
        self.precision: Params = {}
        self.centre: Params = {}
        self.constant = 0.0
        for n in (self.terms[0][0] if self.terms else {}):  # float64: one term gives m = θ* exactly
            omegas = [omega[n].double() for omega, _ in self.terms]
            anchors = [anchor[n].double() for _, anchor in self.terms]
            a = sum(omegas)
            m = torch.where(a > 0, sum(o * t for o, t in zip(omegas, anchors)) / a.clamp(min=1e-300), 0.0)
            second_moment = sum((o * t ** 2).sum() for o, t in zip(omegas, anchors))
            self.constant += float(second_moment - (a * m ** 2).sum())
            self.precision[n], self.centre[n] = a.float(), m.float()
        # work buffers for every step's θ - m and A(θ - m): no allocation on the training path
        self._diff = {n: torch.empty_like(a) for n, a in self.precision.items()}
        self._pull = {n: torch.empty_like(a) for n, a in self.precision.items()}
        self._pull_is_fresh = False

    def penalty(self, model: nn.Module) -> torch.Tensor:
        r""":math:`s\,[\sum_i A_i (\theta_i - m_i)^2 + c]`: the merged penalty (no graph is built)."""
        return self._value_and_pull(model)[0]

    def _value_and_pull(self, model: nn.Module) -> tuple[torch.Tensor, Params]:
        r"""The penalty and :math:`A(\theta - m)` per parameter (written into the work buffers)."""
        params = dict(model.named_parameters())
        total = torch.zeros((), device=next(model.parameters()).device)
        with torch.no_grad():
            for n, a in self.precision.items():
                d = torch.sub(params[n], self.centre[n], out=self._diff[n])
                pull = torch.mul(a, d, out=self._pull[n])
                total += torch.dot(pull.view(-1), d.view(-1))
        return self.strength * (total + self.constant), self._pull

    def penalty_per_term(self, model: nn.Module) -> torch.Tensor:
        r""":math:`s \sum_k \sum_i \Omega_{k,i} (\theta_i - \theta^*_{k,i})^2`, term by term, through autograd."""
        total = torch.zeros((), device=next(model.parameters()).device)
        params = dict(model.named_parameters())
        for importance, anchor in self.terms:
            for n, omega in importance.items():
                total = total + (omega * (params[n] - anchor[n]) ** 2).sum()
        return self.strength * total

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Task loss plus the penalty's value; its gradient is added in :meth:`after_backward`."""
        loss = super().loss(model, x, y, t)
        if not self.precision:
            return loss
        value, _ = self._value_and_pull(model)
        self._pull_is_fresh = True
        return loss + value

    def after_backward(self, model: nn.Module) -> None:
        r"""Add :math:`\nabla_\theta\, s A (\theta - m)^2 = 2 s A (\theta - m)` to every gradient."""
        if not self.precision:
            return
        pull = self._pull if self._pull_is_fresh else self._value_and_pull(model)[1]  # this step's
        self._pull_is_fresh = False
        for n, p in model.named_parameters():
            if n in pull:
                p.grad = 2 * self.strength * pull[n] if p.grad is None else p.grad.add_(pull[n],
                                                                                    alpha=2 * self.strength)

    def stiffness(self) -> float:
        r"""The penalty's largest curvature :math:`2 s \max_i A_i`; plain SGD is stable below :math:`2/\eta`."""
        return 2 * self.strength * max((float(a.max()) for a in self.precision.values()), default=0.0)

    def divergence_hint(self, lr: float) -> str:
        return (f"the penalty's curvature 2·s·max(A) = {self.stiffness():.3g} against the SGD stability "
                f"bound 2/lr = {2 / lr:.3g}: lower the strength or the learning rate")

    def stored_bytes(self) -> int:
        """Bytes of the tensors the method keeps between tasks (importances and anchors)."""
        return sum(v.numel() * v.element_size() for term in self.terms for d in term for v in d.values())

    @staticmethod
    def snapshot(model: nn.Module) -> Params:
        """A copy of the current trainable parameters (an anchor)."""
        return {n: p.detach().clone() for n, p in trainable(model).items()}
