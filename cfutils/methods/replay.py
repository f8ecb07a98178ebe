r"""Experience replay (ER): rehearse a few stored samples of the past with every new mini-batch.

The loss mixes the new task with the memory :math:`\mathcal M` (Chaudhry et al. 2019; Rolnick et al.
2019):

.. math:: L(\theta) = \mathbb E_{(x,y)\sim D_{\text{new}}}\,\ell(f_\theta(x), y)
          + \beta\, \mathbb E_{(x,y,t)\sim \mathcal M}\,\ell(f_\theta(x)_{[t]}, y),

where an old sample answers with the output units of its own task :math:`t` in task-IL. Each sample
of a task is offered to the memory once, in the first epoch over the task (later epochs see the same
samples again, and offering them again would store duplicates).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import TaskStream
from ..repro import check_float, check_int
from .base import Method
from .buffer import Buffer, Memory, eight_bit_range


class Replay(Method):
    """ER with a reservoir (or class-balanced) memory; ``replay_batch`` old samples a step."""

    name = "replay"
    stores_logits = False  # DER stores the model's outputs too

    def __init__(self, buffer_size: int = 500, replay_batch: int = 128, beta: float = 1.0,
                 policy: str = "reservoir", seed: int = 0):
        check_int("buffer_size", buffer_size, minimum=1)
        check_int("replay_batch", replay_batch, minimum=1)
        check_float("beta", beta, minimum=0.0)
        self.buffer_size, self.replay_batch, self.beta = buffer_size, replay_batch, beta
        self.policy, self.seed = policy, seed

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        x = stream[0].x_train
        self.buffer = Buffer(self.buffer_size, tuple(x.shape[1:]), stream.n_classes, len(stream),
                             stream.n_classes if self.stores_logits else 0, self.policy, x.device,
                             self.seed, eight_bit_range(task.x_train for task in stream))
        self.offering, self.unoffered = None, 0  # the task being offered, its samples left to offer

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """New-batch loss plus replay loss, in one forward pass over both; then offer the new batch.

        The batch is offered after the replay batch is drawn, so a sample is never replayed in the
        step that brings it.
        """
        old = self.draw() if len(self.buffer) else []
        sizes = [len(y), *(len(m.y) for m in old)]
        out, *old_out = model(torch.cat([x, *(m.x for m in old)])).split(sizes)
        loss = F.cross_entropy(self._mask(out, t), y)
        if old:
            loss = loss + self.replay_loss(old_out, old)
        self.offer(x, y, t, out.detach())
        return loss

    def offer(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, out: torch.Tensor) -> None:
        """Offer the batch to the memory while the first epoch over the task lasts.

        The trainer's epoch is one shuffled pass over the task's samples, so its first ``n_train``
        samples are each sample once.
        """
        if self.offering is not self.task:
            self.offering, self.unoffered = self.task, self.task.n_train
        n = min(len(y), self.unoffered)
        if n:
            self.buffer.add(x[:n], y[:n], t[:n], out[:n])
            self.unoffered -= n

    def draw(self) -> list[Memory]:
        """The replay batches of one step (ER: one)."""
        return [self.buffer.sample(self.replay_batch)]

    def replay_loss(self, outs: list[torch.Tensor], old: list[Memory]) -> torch.Tensor:
        """:math:`\\beta\\,\\mathbb E_{\\mathcal M}\\,\\ell`: cross-entropy of the old samples, each
        with its own task's units."""
        return self.beta * F.cross_entropy(self._mask(outs[0], old[0].t), old[0].y)

    def _mask(self, out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:meth:`Method.logits` for outputs already computed."""
        if self.masks is None:
            return out
        return out.masked_fill(~self.masks[t], torch.finfo(out.dtype).min / 2)

    def stored_bytes(self) -> int:
        """What the method stores besides the model: the buffer."""
        return self.buffer.nbytes

    def extras(self) -> dict[str, list[int]]:
        """How many samples of each class the memory holds at the end."""
        counts = torch.bincount(self.buffer.all().y, minlength=self.stream.n_classes)
        return {"memory_classes": counts.tolist()}
