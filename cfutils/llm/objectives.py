r"""What a fine-tuning run minimises: the LM loss on B, plus what protects A.

* **plain**: :math:`\mathcal L_B(\theta)`, next-token cross-entropy on a batch of B;
* **replay**: a fraction :math:`\rho` of every batch is windows of old general text (Ibrahim et al.
  2024; chapter 5) -- never the fact sentences, which are measured, not rehearsed;
* **EWC**: :math:`\mathcal L_B(\theta) + \frac\lambda2\sum_i F_i(\theta_i-\theta^*_i)^2` with the
  diagonal Fisher :math:`F_i` of chapter 2 (:func:`cfutils.fisher.fisher_sampled`, per token, on old
  general text at the pretrained :math:`\theta^*`; Kirkpatrick et al. 2017);
* **distillation**: :math:`\mathcal L_B(\theta) + w\,\overline{\mathrm{KL}}(p_{\theta^*}\,\|\,p_\theta)`,
  chapter 3's :func:`cfutils.distill.kd_loss` per token against the frozen pretrained model on the
  *B* inputs -- no old data needed (Li & Hoiem's LwF).
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .. import distill, fisher
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
    """Mix ``fraction`` of old general-text windows into every batch (the batch size stays the same)."""

    name = "replay"

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def batch(self, x_b: torch.Tensor) -> torch.Tensor:
        k = round(self.fraction * len(x_b))
        if k == 0:
            return x_b
        x_a = random_windows(self.bench.old_data, k, x_b.shape[1], self.generator).to(x_b.device)
        return torch.cat([x_b[:len(x_b) - k], x_a])


class NextTokenLogits(nn.Module):
    """A causal LM as a function of token ids returning the logits that predict tokens ``1..T-1``."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=x).logits[..., :-1, :]


def lm_fisher(model: nn.Module, windows: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
    r"""Diagonal Fisher per predicted token: :func:`cfutils.fisher.fisher_sampled` on ``windows``
    (one token sampled from the model at every position), divided by the ``T-1`` positions."""
    with warnings.catch_warnings():          # vmap over CPU attention kernels: correct, only slower
        warnings.filterwarnings("ignore", message=".*performance drop.*")
        per_window = fisher.fisher_sampled(NextTokenLogits(model), windows, generator=generator)
    return {n.removeprefix("lm."): f / (windows.shape[1] - 1) for n, f in per_window.items()}


class EWC(Objective):
    r""":math:`\mathcal L_B + \frac\lambda2\sum_i F_i(\theta_i-\theta^*_i)^2`, with :math:`F` from
    :func:`lm_fisher` on ``n_windows`` windows of old general text at the pretrained weights."""

    name = "ewc"

    def __init__(self, lam: float, n_windows: int = 128) -> None:
        self.lam, self.n_windows = lam, n_windows

    def setup(self, model: nn.Module, bench: Bench, context: int, generator: torch.Generator) -> None:
        super().setup(model, bench, context, generator)
        device = next(model.parameters()).device
        x = random_windows(bench.old_data, self.n_windows, context, generator).to(device)
        self.fisher = lm_fisher(model, x, generator)
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.fisher}

    def penalty(self, model: nn.Module) -> torch.Tensor:
        return sum((self.fisher[n] * (p - self.anchor[n]) ** 2).sum()
                   for n, p in model.named_parameters() if n in self.fisher)

    def loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return lm_batch_loss(model, x) + 0.5 * self.lam * self.penalty(model)


class Distill(Objective):
    r""":math:`\mathcal L_B + w\,T^2\,\mathrm{KL}(p_{\theta^*}\|p_\theta)` per token on the B batch
    (chapter 3's forward KD loss; the teacher is the frozen pretrained model)."""

    name = "distill"

    def __init__(self, weight: float, temperature: float = 1.0) -> None:
        self.weight, self.temperature = weight, temperature

    def setup(self, model: nn.Module, bench: Bench, context: int, generator: torch.Generator) -> None:
        super().setup(model, bench, context, generator)
        self.teacher = distill.frozen_copy(model)

    def loss(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=x).logits[:, :-1]
        vocab = logits.shape[-1]
        ce = nn.functional.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
        with torch.no_grad():
            teacher = self.teacher(input_ids=x).logits[:, :-1]
        kd = distill.kd_loss(logits.reshape(-1, vocab), teacher.reshape(-1, vocab), self.temperature)
        return ce + self.weight * kd
