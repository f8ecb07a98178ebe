r"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017): importance from the path of the parameters.

While learning task :math:`k`, every step adds the parameter's share of the loss decrease,
:math:`\omega_i \mathrel{+}= -g_i\,\Delta\theta_i` (:math:`g` the gradient, :math:`\Delta\theta` the step). At the end,

.. math::  \Omega_i \mathrel{+}= \frac{\omega_i}{(\theta_i^{k} - \theta_i^{k-1})^2 + \xi}, \qquad
           \mathcal{L} = \ell_t(\theta) + c \sum_i \Omega_i (\theta_i - \theta^{k}_i)^2 .

With plain SGD each :math:`\omega_i = \eta\, g_i^2 \ge 0`; with momentum or Adam a step can go uphill, so
:math:`\Omega` is clipped at zero (a negative importance would *push* a parameter away).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task, TaskStream
from ..fisher import trainable
from ..repro import check_float
from .quadratic import QuadraticPenalty


class SI(QuadraticPenalty):
    """SI with strength ``c`` and damping ``xi``; one accumulated importance and one anchor."""

    name = "si"

    def __init__(self, c: float, xi: float = 0.1):
        check_float("c", c, minimum=0.0)
        check_float("xi", xi, positive=True)
        super().__init__(strength=c)
        self.c, self.xi = c, xi

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        self.omega = {n: torch.zeros_like(p) for n, p in trainable(model).items()}
        self.start, self.previous = self.snapshot(model), self.snapshot(model)
        self._step = {n: torch.empty_like(p) for n, p in self.previous.items()}  # Δθ, reused

    def after_step(self, model: nn.Module) -> None:
        r""":math:`\omega \mathrel{-}= g\,\Delta\theta`, with the step's gradient (still in ``.grad``)."""
        with torch.no_grad():
            for n, p in model.named_parameters():
                if p.grad is not None:
                    step = torch.sub(p, self.previous[n], out=self._step[n])
                    self.omega[n].addcmul_(p.grad, step, value=-1.0)
                    self.previous[n].copy_(p)

    def after_task(self, model: nn.Module, task: Task) -> None:
        anchor = self.snapshot(model)
        old = self.terms[0][0] if self.terms else {n: torch.zeros_like(w) for n, w in self.omega.items()}
        importance = {n: (old[n] + self.omega[n] / ((anchor[n] - self.start[n]) ** 2 + self.xi)).clamp(min=0)
                      for n in self.omega}
        self.terms = [(importance, anchor)]
        self.omega = {n: torch.zeros_like(w) for n, w in self.omega.items()}
        self.start, self.previous = anchor, self.snapshot(model)
