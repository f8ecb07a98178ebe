r"""What a fine-tuning run minimises: the LM loss on B, plus what protects A.

* **plain**: :math:`\mathcal L_B(\theta)`, next-token cross-entropy on a batch of B;
* **replay**: a fraction :math:`\rho` of every batch is windows of A (Ibrahim et al. 2024; chapter 5);
* **EWC**: :math:`\mathcal L_B(\theta) + \frac\lambda2\sum_i F_i(\theta_i-\theta^*_i)^2` with a diagonal
  Fisher :math:`F_i` estimated on A at the pretrained :math:`\theta^*` (Kirkpatrick et al. 2017; chapter 2);
* **distillation**: :math:`\mathcal L_B(\theta) + w\,\overline{\mathrm{KL}}(p_{\theta^*}\,\|\,p_\theta)`,
  the per-token KL to the frozen pretrained model on the *B* inputs -- no A data needed
  (Li & Hoiem's LwF; chapter 3).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .evaluate import Bench
from .model import lm_batch_loss
from .tokenizer import random_windows


class Objective:
    """Plain fine-tuning: the LM loss on the batch of B."""

    name = "plain"

    def setup(self, model: nn.Module, bench: Bench, context: int, generator: torch.Generator) -> None:
        """Called once before training, with the model still at its pretrained weights."""
        self.bench, self.context, self.generator = bench, context, generator

    def batch(self, x_b: torch.Tensor) -> torch.Tensor:
        """The batch actually trained on, given a batch of B windows."""
        return x_b

    def loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return lm_batch_loss(model, x)


class Replay(Objective):
    """Mix ``fraction`` of A windows into every batch (the batch size stays the same)."""

    name = "replay"

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def batch(self, x_b: torch.Tensor) -> torch.Tensor:
        k = round(self.fraction * len(x_b))
        if k == 0:
            return x_b
        x_a = random_windows(self.bench.a_train, k, x_b.shape[1], self.generator).to(x_b.device)
        return torch.cat([x_b[:len(x_b) - k], x_a])


class EWC(Objective):
    r"""Elastic weight consolidation around the pretrained weights.

    :math:`F_i = \frac1M\sum_{m=1}^M (\partial_i \mathcal L_A(\theta^*; \text{batch}_m))^2`: squared gradients
    of *mini-batch* losses on A (a cheap "empirical Fisher"; per-token gradients would cost one backward
    pass per token). Its scale is the batch's, so :math:`\lambda` is large.
    """

    name = "ewc"

    def __init__(self, lam: float, n_batches: int = 20, batch_size: int = 16) -> None:
        self.lam, self.n_batches, self.batch_size = lam, n_batches, batch_size

    def setup(self, model: nn.Module, bench: Bench, context: int, generator: torch.Generator) -> None:
        super().setup(model, bench, context, generator)
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.anchor = {n: p.detach().clone() for n, p in params.items()}
        self.fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        for _ in range(self.n_batches):
            x = random_windows(bench.a_train, self.batch_size, context, generator).to(next(model.parameters()).device)
            model.zero_grad(set_to_none=True)
            lm_batch_loss(model, x).backward()
            for n, p in params.items():
                self.fisher[n] += p.grad.detach() ** 2 / self.n_batches
        model.zero_grad(set_to_none=True)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return sum((self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
                   for n, p in model.named_parameters() if n in self.fisher)

    def loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return lm_batch_loss(model, x) + 0.5 * self.lam * self.penalty(model)


class Distill(Objective):
    """Keep the output distribution of the frozen pretrained model on the new inputs."""

    name = "distill"

    def __init__(self, weight: float, temperature: float = 1.0) -> None:
        self.weight, self.temperature = weight, temperature

    def setup(self, model: nn.Module, bench: Bench, context: int, generator: torch.Generator) -> None:
        super().setup(model, bench, context, generator)
        self.teacher = copy.deepcopy(model).eval().requires_grad_(False)

    def loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=x).logits[:, :-1]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        with torch.no_grad():
            teacher = self.teacher(input_ids=x).logits[:, :-1]
        T = self.temperature
        kl = F.kl_div(F.log_softmax(logits.reshape(-1, logits.shape[-1]) / T, -1),
                      F.log_softmax(teacher.reshape(-1, teacher.shape[-1]) / T, -1),
                      log_target=True, reduction="batchmean") * T * T
        return ce + self.weight * kl
