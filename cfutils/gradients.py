r"""Gradients as vectors: what the gradient-projection methods (GEM, A-GEM, OGD, PCGrad) share.

All trainable parameters :math:`\theta = (\theta_1, \dots, \theta_L)` are read as one vector
:math:`\theta \in \mathbb R^P`, so a gradient is a vector :math:`g = \nabla_\theta \ell \in \mathbb R^P`
and a set of gradients is the matrix :math:`G \in \mathbb R^{k\times P}` whose rows are :math:`g_1..g_k`.
A projection method reads :math:`g` from the ``.grad`` fields, replaces it by some :math:`\tilde g`,
and writes :math:`\tilde g` back before the optimizer step.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def flat_grad(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """:math:`g \\in \\mathbb R^P`: every parameter's ``.grad``, flattened and concatenated (None -> 0)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def write_grad(params: Sequence[nn.Parameter], g: torch.Tensor) -> None:
    """Write the vector :math:`g` back into the parameters' ``.grad`` fields (inverse of :func:`flat_grad`)."""
    for p, piece in zip(params, g.split([p.numel() for p in params])):
        p.grad = piece.view_as(p).clone()


def grads_of(loss: torch.Tensor, params: Sequence[nn.Parameter], retain_graph: bool = False) -> list[torch.Tensor]:
    """:math:`\\nabla_\\theta \\ell` per parameter, without touching ``.grad`` (unused parameters get 0)."""
    gs = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


def grad_vector(loss: torch.Tensor, params: Sequence[nn.Parameter], retain_graph: bool = False) -> torch.Tensor:
    """:math:`\\nabla_\\theta \\ell` as one vector in :math:`\\mathbb R^P`."""
    return torch.cat([g.reshape(-1) for g in grads_of(loss, params, retain_graph)])


def memory_grads(model: nn.Module, params: Sequence[nn.Parameter], loss: LossFn,
                 memories: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """:math:`G`, row :math:`k` the gradient of ``loss`` on memory :math:`\\mathcal M_k = (x, y, t)`.

    One batched forward/backward pass per memory (per past task), never one per sample.
    """
    return torch.stack([grad_vector(loss(model, x, y, t), params) for x, y, t, *_ in memories])


def per_sample_grads(model: nn.Module, x: torch.Tensor,
                     scalar: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     y: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """:math:`G`, row :math:`n` the gradient of ``scalar(f_\\theta(x_n), y_n)``: one ``vmap`` pass per chunk."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return scalar(functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0), yi)

    rows = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=chunk)(params, x, y)
    return torch.cat([rows[n].flatten(1) for n in names], dim=1)
