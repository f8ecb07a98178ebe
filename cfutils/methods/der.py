r"""Dark Experience Replay (DER, DER++; Buzzega et al. 2020): replay the model's past *outputs*.

Each stored sample keeps the logits :math:`z = h_{\theta_i}(x)` the network gave it when it was
seen; replay pulls today's logits back towards them, a distillation term on the memory:

.. math:: L(\theta) = \mathbb E_{D_{\text{new}}}\,\ell(f_\theta(x), y)
          + \alpha\, \mathbb E_{(x,z)\sim\mathcal M} \lVert h_\theta(x) - z \rVert_2^2
          + \beta\, \mathbb E_{(x',y')\sim\mathcal M}\,\ell(f_\theta(x'), y').

:math:`\beta = 0` is DER; :math:`\beta > 0` (a second, independent replay batch with its labels) is
DER++.
"""
from __future__ import annotations

import torch

from ..distill import logit_matching
from ..repro import check_float
from .buffer import Memory
from .replay import Replay


class DER(Replay):
    """ER whose memory also stores logits, matched with a squared error (``beta > 0``: DER++)."""

    name = "der"
    stores_logits = True

    def __init__(self, buffer_size: int = 500, replay_batch: int = 128, alpha: float = 0.3,
                 beta: float = 0.0, policy: str = "reservoir", seed: int = 0):
        super().__init__(buffer_size, replay_batch, beta, policy, seed)
        check_float("alpha", alpha, minimum=0.0)
        self.alpha = alpha
        self.name = "derpp" if beta > 0 else "der"

    def draw(self) -> list[Memory]:
        """One replay batch for the logits, and (DER++) an independent one for the labels."""
        return [self.buffer.sample(self.replay_batch) for _ in range(1 + (self.beta > 0))]

    def replay_loss(self, outs: list[torch.Tensor], old: list[Memory]) -> torch.Tensor:
        """:math:`\\alpha \\lVert h_\\theta(x) - z\\rVert^2` on the first replay batch, plus DER++'s
        label term on the second."""
        loss = self.alpha * logit_matching(outs[0], old[0].logits)
        if self.beta > 0:
            loss = loss + super().replay_loss(outs[1:], old[1:])
        return loss
