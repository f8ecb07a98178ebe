r"""Meta-Experience Replay (MER; Riemer et al. 2019, Algorithm 1): replay with Reptile meta-updates.

Two SGD steps in a row, on samples :math:`a` then :math:`b`, move :math:`\theta` by
:math:`-\alpha(g_a + g_b) + \alpha^2 H_b g_a + O(\alpha^3)`. Reptile's interpolation towards the end
of such a sequence keeps the cross term, which in expectation *increases*
:math:`\langle g_a, g_b\rangle`: it favours weights whose gradients on old and new samples agree
(transfer) over weights where they conflict (interference). MER does this on replayed samples.
For every incoming example :math:`(x, y)`:

1. for :math:`i = 0, \dots, s-1` (:math:`s` = ``n_batches``), starting from
   :math:`\theta_{0,0} = \theta_0`: draw ``replay_batch`` samples from a reservoir memory, put
   :math:`(x, y)` first, take one SGD step (rate :math:`\alpha`) *per sample*,
   :math:`\theta_{i,0} \to \theta_{i,k}`, then the within-batch Reptile update
   :math:`\theta_{i+1,0} = \theta_{i,0} + \beta(\theta_{i,k} - \theta_{i,0})`;
2. the across-batch Reptile update
   :math:`\theta \leftarrow \theta_0 + \gamma(\theta_{s,0} - \theta_0)`;
3. offer :math:`(x, y)` to the reservoir.

Step 2 is the trainer's optimizer step: :meth:`MER.after_backward` runs steps 1 and 3 from the
current :math:`\theta_0`, puts the parameters back, and leaves the *meta-gradient*
:math:`\theta_0 - \theta_{s,0}` in ``.grad``; plain SGD with learning rate :math:`\gamma` then does
exactly step 2 (the paper takes :math:`\gamma = 1`: ``train(..., lr=1.0)``). A trainer batch of
:math:`B` examples runs steps 1 and 3 for each in turn and one across-batch step for all of them,
which is the same thing when :math:`\gamma = 1`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import TaskStream
from ..gradients import grads_of, mlp_layers, sgd_on_each_sample
from ..repro import check_float, check_int
from .base import Method
from .buffer import Buffer


class MER(Method):
    r"""MER: reservoir of ``memory_size``, inner rate :math:`\alpha`, within-batch :math:`\beta`.

    The across-batch rate :math:`\gamma` is the trainer's ``lr`` (with ``optimizer="sgd"``).
    """

    name = "mer"

    def __init__(self, memory_size: int = 500, replay_batch: int = 25, n_batches: int = 10,
                 alpha: float = 0.03, beta: float = 0.03, seed: int = 0):
        check_int("memory_size", memory_size, minimum=1)
        check_int("replay_batch", replay_batch, minimum=1)
        check_int("n_batches", n_batches, minimum=1)
        check_float("alpha", alpha, positive=True)
        check_float("beta", beta, positive=True, maximum=1.0)
        self.memory_size, self.replay_batch, self.n_batches = memory_size, replay_batch, n_batches
        self.alpha, self.beta, self.seed = alpha, beta, seed

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        x = stream[0].x_train
        self.buffer = Buffer(self.memory_size, tuple(x.shape[1:]), device=x.device, seed=self.seed)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        r"""The batch's loss at :math:`\theta_0` (what the trainer logs); keeps the batch."""
        self.batch = (x, y, t)
        return super().loss(model, x, y, t)

    def after_backward(self, model: nn.Module) -> None:
        r"""Steps 1 and 3 per example; ``.grad`` becomes :math:`\theta_0 - \theta_{s,0}`."""
        params = list(self.parameters(model))
        start = [p.detach().clone() for p in params]
        x, y, t = self.batch
        for n in range(len(y)):
            example = (x[n:n + 1], y[n:n + 1], t[n:n + 1])
            for _ in range(self.n_batches):
                self.reptile_batch(model, params, *self.with_replay(*example))
            self.buffer.add(*example)  # step 3
        with torch.no_grad():
            for p, p0 in zip(params, start):
                p.grad = p0 - p
                p.copy_(p0)

    def with_replay(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> list[torch.Tensor]:
        """The new example first, then ``replay_batch`` samples of the memory (none while empty)."""
        if not len(self.buffer):
            return [x, y, t]
        old = self.buffer.sample(self.replay_batch)
        return [torch.cat(pair) for pair in ((x, old.x), (y, old.y), (t, old.t))]

    def reptile_batch(self, model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                      y: torch.Tensor, t: torch.Tensor) -> None:
        r"""An SGD step per sample, then
        :math:`\theta \leftarrow \theta_{i,0} + \beta(\theta - \theta_{i,0})`."""
        before = [p.detach().clone() for p in params]
        self.sgd_on_each(model, params, x, y, t)
        with torch.no_grad():
            for p, p_before in zip(params, before):
                p.lerp_(p_before, 1 - self.beta)  # = p_before + beta (p - p_before)

    def sgd_on_each(self, model: nn.Module, params: list[nn.Parameter], x: torch.Tensor,
                    y: torch.Tensor, t: torch.Tensor) -> None:
        """One SGD step of rate alpha per sample, in order (an MLP's back-propagation written out,
        autograd for any other network)."""
        layers = mlp_layers(model, params)
        if layers is not None:
            masks = None if self.masks is None else self.masks[t]
            return sgd_on_each_sample(layers, x, y, self.alpha, masks)
        for j in range(len(y)):
            loss = F.cross_entropy(self.logits(model, x[j:j + 1], t[j:j + 1]), y[j:j + 1])
            with torch.no_grad():
                for p, g in zip(params, grads_of(loss, params)):
                    p.sub_(self.alpha * g)

    def stored_bytes(self) -> int:
        """Bytes kept between tasks: the reservoir memory."""
        return self.buffer.nbytes
