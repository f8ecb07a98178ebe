r"""Gradient Episodic Memory (GEM; Lopez-Paz & Ranzato 2017): one constraint per past task.

With :math:`g_k` the gradient of the loss on the episodic memory of past task :math:`k` (the
rows of :math:`G \in \mathbb R^{t\times P}`), GEM follows the closest gradient that increases no
past loss:

.. math:: \tilde g = \arg\min_z \tfrac12 \lVert z - g\rVert^2 \quad\text{s.t.}\quad Gz \ge 0 .

This QP has :math:`P` variables (the parameters); its dual has one per past task. The
Lagrangian :math:`\tfrac12\lVert z-g\rVert^2 - v^\top G z` is minimised by :math:`z = g + G^\top v`,
which leaves

.. math:: v^* = \arg\min_{v \ge 0}\ \tfrac12 v^\top G G^\top v + g^\top G^\top v,
          \qquad \tilde g = g + G^\top v^* .

The margin :math:`\gamma` replaces :math:`v \ge 0` by :math:`v \ge \gamma` (as the authors' code
does, here for unit-length rows of :math:`G`), which pushes :math:`\tilde g` into the cone of
updates that *help* the past tasks. GEM projects only when some :math:`\langle g, g_k\rangle < 0`;
otherwise :math:`\tilde g = g`. With one past task the dual has one variable and a closed form,
:math:`v^* = \max(\gamma, -\langle \hat g_1, g\rangle)` for the unit row :math:`\hat g_1`,
which for :math:`\gamma = 0` is A-GEM's projection.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..gradients import memory_grads, mlp_memory_grads
from ..repro import check_float
from .episodic import EpisodicProjection

try:
    import quadprog
except ImportError:  # reported when a GEM is built, so importing cfutils.methods never fails
    quadprog = None


def solve_dual(GGt: torch.Tensor, Gg: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    r""":math:`v^* = \arg\min_{v\ge\gamma} \frac12 v^\top GG^\top v + (Gg)^\top v` by quadprog.

    Rounding can leave a Gram matrix of (nearly) parallel rows slightly indefinite; it is lifted by
    its most negative eigenvalue, if any, plus a ridge of :math:`10^{-10}\,\mathrm{tr}(GG^\top)`,
    so that quadprog always gets a positive definite matrix.
    """
    P, q = GGt.double().cpu().numpy(), Gg.double().cpu().numpy()
    eye = np.eye(len(q))
    lift = max(0.0, -np.linalg.eigvalsh(P)[0]) + 1e-10 * P.trace()
    # quadprog.solve_qp(P, a, C, b) minimises 1/2 v'Pv - a'v subject to C'v >= b
    v = quadprog.solve_qp(P + lift * eye, -q, eye, np.full(len(q), float(margin)))[0]
    return torch.from_numpy(v).to(Gg)


class GEM(EpisodicProjection):
    r"""GEM: ``memory_per_task`` samples per past task, margin :math:`\gamma` = ``margin``.

    ``project=False`` (with ``record=True``) trains like fine-tuning and measures its interference.
    """

    name = "gem"

    def __init__(self, memory_per_task: int = 256, margin: float = 0.5, record: bool = False,
                 seed: int = 0, project: bool = True):
        if quadprog is None:
            raise ImportError("GEM solves a quadratic program with the quadprog package, which is "
                              "missing: pip install quadprog")
        check_float("margin", margin, minimum=0.0)
        super().__init__(memory_per_task, record, seed, project)
        self.margin = margin

    def references(self, model: nn.Module, params: list[nn.Parameter]) -> torch.Tensor:
        """:math:`g_k` for every past task: for an MLP all memories in one pass with the
        back-propagation written out, otherwise one autograd pass per task's memory."""
        if self.layers is not None and len(set(self.sizes)) == 1:
            x, y, t = self.memory[:3]
            return mlp_memory_grads(self.layers, params, x, y, t, len(self.sizes), self.masks)
        return memory_grads(model, params, self.loss, self.memories())

    def project(self, g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        r""":math:`\tilde g = g + G^\top D v^*` if a constraint is violated, else :math:`g`.

        The constraints :math:`\langle z, g_k\rangle \ge 0` do not depend on the length of each
        :math:`g_k`, so the QP is solved with unit-length rows :math:`DG`,
        :math:`D = \mathrm{diag}(1/\lVert g_k\rVert)`: a memory the network has nearly fitted (a
        tiny :math:`g_k`) then counts as much as the others, and the dual's matrix
        :math:`DGG^\top D` holds the cosines between the references (the margin applies to
        unit-length references). One :math:`t\times P` product gives :math:`GG^\top`.
        """
        Gg = G @ g
        if bool((Gg >= 0).all()):
            return g
        if len(G) == 1:  # one variable: v* = max(γ, -<g_1/|g_1|, g>), A-GEM's formula when γ = 0
            norm = float(G[0].norm())
            return g.add(G[0], alpha=max(self.margin, -float(Gg[0]) / norm) / norm)
        gram = (G @ G.T).double()
        d = gram.diagonal().sqrt().clamp_min(torch.finfo(G.dtype).tiny)  # the norms
        v = solve_dual(gram / torch.outer(d, d), Gg.double() / d, self.margin)
        return torch.addmv(g, G.T, (v / d).to(g.dtype))
