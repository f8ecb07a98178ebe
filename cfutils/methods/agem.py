r"""Averaged GEM (A-GEM; Chaudhry et al. 2019): one constraint on the average past loss.

Instead of one constraint per past task, A-GEM only asks that the *average* loss on the episodic
memory does not increase. Its reference :math:`g_{\text{ref}}` is the gradient on one random batch
drawn from the memories of all past tasks, and the QP

.. math:: \tilde g = \arg\min_z \tfrac12\lVert z - g\rVert^2 \quad\text{s.t.}\quad
          \langle z, g_{\text{ref}}\rangle \ge 0

has a closed form: a gradient that satisfies the constraint is left untouched, otherwise its
component against :math:`g_{\text{ref}}` is removed,

.. math:: \tilde g = g - \frac{\langle g, g_{\text{ref}}\rangle}{\lVert g_{\text{ref}}\rVert^2}\,
          g_{\text{ref}} \qquad\text{if } \langle g, g_{\text{ref}}\rangle < 0 .

That costs one extra forward/backward pass per step, whatever the number of past tasks.
"""
from __future__ import annotations

import torch
from torch import nn

from ..gradients import memory_grads, mlp_memory_grads
from ..repro import check_int
from .episodic import EpisodicProjection


class AGEM(EpisodicProjection):
    """A-GEM: ``memory_per_task`` samples per past task, references on ``memory_batch`` of them."""

    name = "agem"

    def __init__(self, memory_per_task: int = 256, memory_batch: int = 256, record: bool = False,
                 seed: int = 0):
        check_int("memory_batch", memory_batch, minimum=1)
        super().__init__(memory_per_task, record, seed)
        self.memory_batch = memory_batch

    def references(self, model: nn.Module, params: list[nn.Parameter]) -> torch.Tensor:
        r""":math:`g_{\text{ref}}` (one row): the gradient on a random batch of the memories; for an
        MLP with the back-propagation written out, otherwise by autograd."""
        pick = torch.randint(len(self.memory.y), (self.memory_batch,), generator=self.generator)
        x, y, t = (part[pick.to(part.device)] for part in self.memory[:3])
        if self.layers is not None:
            return mlp_memory_grads(self.layers, params, x, y, t, 1, self.masks)
        return memory_grads(model, params, self.loss, [(x, y, t)])

    def project(self, g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        r""":math:`g - \frac{\langle g, g_{\text{ref}}\rangle}{\lVert g_{\text{ref}}\rVert^2}
        g_{\text{ref}}` if :math:`\langle g, g_{\text{ref}}\rangle < 0`, else :math:`g`."""
        ref = G[0]
        dot = float(g @ ref)
        return g if dot >= 0 else g.add(ref, alpha=-dot / float(ref @ ref))
