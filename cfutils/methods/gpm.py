r"""Gradient Projection Memory (GPM; Saha, Garg & Roy 2021): protect each layer's input space.

A linear layer :math:`h = Wx + b = [W\ b]\,\tilde x`, with :math:`\tilde x = (x, 1)`, has the weight
gradient :math:`\nabla_{[W b]}\ell = \delta\,\tilde x^\top`: updates live in the span of its inputs.
An update :math:`\Delta` with :math:`\Delta M = 0`, for a basis :math:`M` of the old tasks'
inputs, leaves their outputs :math:`[W\ b]\tilde x` exactly where they were. After each task GPM
puts the inputs of ``n_samples`` of its samples in the columns of :math:`R` (one matrix per layer)
and keeps the fewest left singular vectors that hold a fraction :math:`\epsilon` (``threshold``)
of its energy:

* first task: :math:`R = U\Sigma V^\top`; keep :math:`k` columns of :math:`U`, the fewest with
  :math:`\lVert R_k\rVert_F^2 \ge \epsilon \lVert R\rVert_F^2`;
* later tasks (incremental): remove what the basis already explains,
  :math:`\hat R = R - MM^\top R = \hat U\hat\Sigma\hat V^\top`, and append the fewest columns of
  :math:`\hat U` with :math:`\lVert MM^\top R\rVert_F^2 + \sum_{i\le k}\hat\sigma_i^2 \ge
  \epsilon\lVert R\rVert_F^2`.

While later tasks are learned, every layer's gradient is projected off the protected inputs,

.. math:: \nabla_{[W b]} \leftarrow \nabla_{[W b]} - \big(\nabla_{[W b]} M\big) M^\top .

``protected[k]``: how many input dimensions of each layer are protected after task :math:`k+1`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task, TaskStream
from ..repro import check_float, check_int
from .base import Method
from .episodic import episode


def augment(rows: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    r""":math:`\tilde x = (x, 1)`: append the bias's constant input, if the layer has a bias."""
    return rows if layer.bias is None else torch.cat([rows, rows.new_ones(len(rows), 1)], dim=1)


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """The model's linear layers by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def layer_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    r""":math:`R` per layer: the inputs :math:`\tilde x` it sees on ``x``, one per column."""
    seen: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(layer: nn.Linear, args: tuple[torch.Tensor, ...]) -> None:
            seen[name] = augment(args[0].detach().reshape(-1, layer.in_features), layer).T
        return hook

    hooks = [m.register_forward_pre_hook(keeper(n)) for n, m in linear_layers(model).items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def grow_basis(M: torch.Tensor, R: torch.Tensor, threshold: float,
               rtol: float = 1e-9) -> torch.Tensor:
    r"""Append to :math:`M` the fewest directions of :math:`\hat R` that reach the energy threshold.

    Directions holding less than ``rtol`` of :math:`\lVert R\rVert_F^2` are round-off, never kept.
    """
    R, M = R.double(), M.double()
    total = R.square().sum()
    U, s, _ = torch.linalg.svd(R - M @ (M.T @ R), full_matrices=False)
    energy = s.square()
    explained = total - energy.sum()  # = ||M M^T R||^2
    before = explained + energy.cumsum(0) - energy  # energy held before direction i is added
    keep = (before < (threshold - rtol) * total) & (energy > rtol * total)
    return torch.cat([M, U[:, keep]], dim=1).float()


class GPM(Method):
    """GPM on every ``nn.Linear``: bases of ``n_samples`` inputs per task, energy ``threshold``."""

    name = "gpm"

    def __init__(self, threshold: float = 0.97, n_samples: int = 300, seed: int = 0):
        check_float("threshold", threshold, positive=True, maximum=1.0)
        check_int("n_samples", n_samples, minimum=1)
        self.threshold, self.n_samples = threshold, n_samples
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        self.bases = {n: m.weight.new_zeros((m.in_features + (m.bias is not None), 0))
                      for n, m in linear_layers(model).items()}  # M per layer, by name
        self.protected: list[dict[str, int]] = []

    def after_task(self, model: nn.Module, task: Task) -> None:
        """Grow every layer's basis with its inputs on ``n_samples`` samples of ``task``."""
        if task.index == len(self.stream) - 1:  # nothing is learned after the last task
            return
        x = episode(task, self.n_samples, self.generator).x
        for name, R in layer_inputs(model, x).items():
            self.bases[name] = grow_basis(self.bases[name], R, self.threshold)
        self.protected.append({n: M.shape[1] for n, M in self.bases.items()})

    def after_backward(self, model: nn.Module) -> None:
        r""":math:`\nabla_{[W b]} \leftarrow \nabla_{[W b]} (I - MM^\top)` in every layer."""
        for name, layer in linear_layers(model).items():
            M = self.bases[name]
            if M.shape[1] == 0 or layer.weight.grad is None:
                continue
            params = [layer.weight] if layer.bias is None else [layer.weight, layer.bias]
            grad = torch.cat([p.grad.reshape(layer.out_features, -1) for p in params], dim=1)
            grad = grad - (grad @ M) @ M.T
            layer.weight.grad = grad[:, :layer.in_features].contiguous()
            if layer.bias is not None:
                layer.bias.grad = grad[:, layer.in_features].contiguous()

    def extras(self) -> dict:
        """Protected input dimensions of every layer after each task, and each layer's input size."""
        sizes = {n: m.shape[0] for n, m in self.bases.items()}
        return {"protected": self.protected, "input_dims": sizes}

    def stored_bytes(self) -> int:
        """Bytes kept between tasks: the bases :math:`M` of all layers."""
        return sum(M.numel() * M.element_size() for M in self.bases.values())
