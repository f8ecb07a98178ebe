r"""Knowledge distillation (Hinton et al. 2015): a student learns a teacher's softened outputs.

A temperature :math:`T > 0` softens the logits of the student (:math:`z`) and of the teacher
(:math:`v`) over :math:`N` output units:

.. math:: q = \operatorname{softmax}(z / T), \qquad p = \operatorname{softmax}(v / T).

The *forward* loss :math:`T^2\,\mathrm{KL}(p\,\|\,q) = T^2\sum_i p_i \log(p_i / q_i)` is the one LwF
minimises: it is large wherever the teacher puts mass and the student does not (mass-covering).
The *reverse* loss :math:`T^2\,\mathrm{KL}(q\,\|\,p)` punishes mass the student puts where the
teacher has none (mode-seeking).

**Why** :math:`T^2`. Since :math:`\partial \log q_j / \partial z_i = (\delta_{ij} - q_i) / T`,

.. math:: \frac{\partial}{\partial z_i}\, T^2\,\mathrm{KL}(p\,\|\,q) = T\,(q_i - p_i).

For large :math:`T`, :math:`e^{z_i/T} \approx 1 + z_i/T` gives
:math:`q_i \approx \big(1 + (z_i - \bar z)/T\big)/N` (:math:`\bar z`: the mean logit), so

.. math:: T\,(q_i - p_i) \approx \frac{(z_i - \bar z) - (v_i - \bar v)}{N},

which does not depend on :math:`T`: the soft term keeps its weight against the hard labels' loss
whatever the temperature, while without :math:`T^2` its gradient would shrink like :math:`1/T^2`.
The limit is the gradient of :math:`\frac{1}{2N}\lVert (z - \bar z) - (v - \bar v)\rVert^2`: at high
temperature distillation becomes *logit matching* (:func:`logit_matching`, DER's loss).
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .repro import check_choice, check_float

DIRECTIONS = ("forward", "reverse")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float,
            direction: str = "forward", scale_t2: bool = True,
            columns: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
    """:math:`T^2\\,\\mathrm{KL}(p\\,\\|\\,q)` (``"forward"``) or
    :math:`T^2\\,\\mathrm{KL}(q\\,\\|\\,p)` (``"reverse"``), summed over the units, averaged over
    the batch.

    ``columns`` (indices or a boolean mask) restricts both softmaxes to those output units, e.g. the
    old classes; ``scale_t2=False`` drops the :math:`T^2` factor.
    """
    check_float("T", T, positive=True)
    check_choice("direction", direction, DIRECTIONS)
    if columns is not None:
        student_logits, teacher_logits = student_logits[:, columns], teacher_logits[:, columns]
    log_q = F.log_softmax(student_logits / T, dim=1)
    log_p = F.log_softmax(teacher_logits / T, dim=1)
    if direction == "reverse":
        log_p, log_q = log_q, log_p
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()
    return kl * T ** 2 if scale_t2 else kl


def logit_matching(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Squared error of the logits, :math:`\\frac{1}{BN}\\sum_{b,i} (z_{bi} - v_{bi})^2` (DER).

    For logits centred per sample it is twice the :math:`T\\to\\infty` limit of :func:`kd_loss`.
    """
    return F.mse_loss(student_logits, teacher_logits)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A teacher: a deep copy of ``model`` in eval mode whose parameters take no gradient."""
    return copy.deepcopy(model).eval().requires_grad_(False)
