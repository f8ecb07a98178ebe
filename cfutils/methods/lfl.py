r"""Less-Forgetting Learning (LFL; Jung et al. 2016): keep the features and the decision boundaries.

The network frozen at the end of the previous task gives the last hidden layer
:math:`h^*(x)` (``model.features``) of the new task's inputs, and learning task :math:`t` minimises

.. math:: L(\theta) = \mathbb E_{(x,y)\sim D_t}\big[\ell(f_\theta(x), y)
          + \lambda\,\lVert h_\theta(x) - h^*(x) \rVert_2^2\big],

while the output units of the earlier tasks' classes are frozen (Jung et al. freeze the softmax
layer): the old decision boundaries stay in place, so inputs whose features stay put keep their old
outputs. In domain-IL every unit is old after the first task and only the features learn. Where LwF
constrains the outputs, LFL constrains the representation underneath them.
"""
from __future__ import annotations

import torch
from torch import nn

from ..repro import check_float
from .teacher import FrozenTeacher, keep_output_rows


class LFL(FrozenTeacher):
    """CE plus ``lam`` times the squared distance to the teacher's features; old units frozen."""

    name = "lfl"

    def __init__(self, lam: float):
        check_float("lam", lam, minimum=0.0)
        self.lam = lam

    def penalty(self, model: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:math:`\\lambda \\lVert h_\\theta(x) - h^*(x)\\rVert^2`, averaged over the batch."""
        with torch.no_grad():
            h_old = self.teacher.features(x)
        return self.lam * (model.features(x) - h_old).pow(2).sum(dim=1).mean()

    def after_backward(self, model: nn.Module) -> None:
        """Freeze the old units: their rows of the output layer get no gradient."""
        if self.teacher is not None:
            keep_output_rows(model, ~self.old_units)
