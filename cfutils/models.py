"""The networks the chapters share: an MLP with configurable widths and its multi-head variant."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """``input -> [Linear -> ReLU] * len(widths) -> Linear(n_outputs)``; images are flattened first.

    ``features(x)`` returns the last hidden layer (what the linear-probe and drift analyses read).
    """

    def __init__(self, n_inputs: int = 784, widths: Sequence[int] = (400, 400), n_outputs: int = 10):
        super().__init__()
        if not widths or min(widths) < 1:
            raise ValueError(f"widths={list(widths)} must be a non-empty list of positive layer sizes")
        layers: list[nn.Module] = [nn.Flatten()]
        for n_in, n_out in zip((n_inputs, *widths[:-1]), widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))


class MultiHeadMLP(MLP):
    """An MLP trunk with one small linear head per task (task-IL).

    ``forward`` returns every head's logits side by side, ``(batch, sum(head_sizes))``; the stream's
    ``columns`` pick the head of the task at hand, so the trainer treats both models alike.
    """

    def __init__(self, n_inputs: int = 784, widths: Sequence[int] = (400, 400), head_sizes: Sequence[int] = (2,) * 5):
        super().__init__(n_inputs, widths, n_outputs=1)
        self.head = nn.ModuleList(nn.Linear(widths[-1], k) for k in head_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return torch.cat([head(h) for head in self.head], dim=1)


def n_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
