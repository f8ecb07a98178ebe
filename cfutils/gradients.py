r"""Gradients as vectors: what the gradient-projection methods share.

The trainable parameters :math:`(\theta_1, \dots, \theta_L)` are read as one vector
:math:`\theta \in \mathbb R^P`, so a gradient is a vector
:math:`g = \nabla_\theta \ell \in \mathbb R^P` and a set of gradients is a matrix
:math:`G \in \mathbb R^{k\times P}` with rows :math:`g_1..g_k`.
A projection method reads :math:`g` from the ``.grad`` fields, replaces it by some :math:`\tilde g`
and writes :math:`\tilde g` back before the optimizer step.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .models import MLP

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def flat_grad(params: Sequence[nn.Parameter]) -> torch.Tensor:
    r""":math:`g \in \mathbb R^P`: every ``.grad`` flattened and concatenated (None counts as 0)."""
    return torch.cat([torch.zeros_like(p).reshape(-1) if p.grad is None else p.grad.reshape(-1)
                      for p in params])


def write_grad(params: Sequence[nn.Parameter], g: torch.Tensor) -> None:
    r"""Write the vector :math:`g` back into the ``.grad`` fields (inverse of :func:`flat_grad`).

    The fields become views of ``g`` (no copy), so ``g`` must not be modified afterwards.
    """
    for p, piece in zip(params, g.split([p.numel() for p in params])):
        p.grad = piece.view_as(p)


def grads_of(loss: torch.Tensor, params: Sequence[nn.Parameter],
             retain_graph: bool = False) -> list[torch.Tensor]:
    r""":math:`\nabla_\theta \ell` per parameter, ``.grad`` left alone (unused parameters: 0)."""
    gs = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, gs)]


def grad_vector(loss: torch.Tensor, params: Sequence[nn.Parameter],
                retain_graph: bool = False) -> torch.Tensor:
    r""":math:`\nabla_\theta \ell` as one vector of :math:`\mathbb R^P`."""
    return torch.cat([g.reshape(-1) for g in grads_of(loss, params, retain_graph)])


def memory_grads(model: nn.Module, params: Sequence[nn.Parameter], loss: LossFn,
                 memories: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    r""":math:`G`, whose row :math:`k` is the gradient of ``loss`` on memory ``k``, ``(x, y, t)``.

    One batched forward/backward pass per memory (per past task), never one per sample.
    """
    G = params[0].new_empty((len(memories), sum(p.numel() for p in params)))
    for row, (x, y, t, *_) in zip(G, memories):
        torch.cat([g.reshape(-1) for g in grads_of(loss(model, x, y, t), params)], out=row)
    return G


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     scalar: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     chunk: int = 64) -> torch.Tensor:
    r""":math:`G`, row :math:`n` being :math:`\nabla_\theta\, \mathrm{scalar}(f_\theta(x_n), y_n)`.

    ``vmap`` over the samples: one batched pass per ``chunk`` of them.
    """
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return scalar(functional_call(model, p, (xi.unsqueeze(0),)).squeeze(0), yi)

    rows = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=chunk)(params, x, y)
    return torch.cat([rows[n].flatten(1) for n in params], dim=1)


def mlp_layers(model: nn.Module, params: Sequence[nn.Parameter]) -> list[nn.Linear] | None:
    """The linear layers of a single-head :class:`~cfutils.models.MLP` in order, when ``params`` are
    exactly their weights and biases; None for any other network."""
    if type(model) is not MLP:
        return None
    layers = [m for m in model.trunk if isinstance(m, nn.Linear)] + [model.head]
    owned = [p for layer in layers for p in (layer.weight, layer.bias)]
    return layers if {id(p) for p in owned} == {id(p) for p in params} else None


@torch.no_grad()
def mlp_memory_grads(layers: Sequence[nn.Linear], params: Sequence[nn.Parameter], x: torch.Tensor,
                     y: torch.Tensor, t: torch.Tensor, n_memories: int,
                     masks: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`G` of :func:`memory_grads` for a ReLU MLP and the mean cross-entropy, every memory in
    one batched pass: ``x, y, t`` hold ``n_memories`` consecutive memories of :math:`m` samples
    each.

    The :math:`Km` samples go forward together; back-propagation is written out as in
    :func:`sgd_on_each_sample`, with :math:`\delta_L = (\mathrm{softmax}(z) - e_y)/m`, and the
    weight gradient of memory :math:`k` is :math:`\delta_l^{(k)\top} h_{l-1}^{(k)}`: one batched
    product over :math:`k` per layer instead of one autograd pass per memory. ``masks`` (the
    stream's allowed outputs per task, task-IL) removes the other logits from the softmax.
    """
    K, m = n_memories, len(y) // n_memories
    weights, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
    h = [x.flatten(1)]
    for W, b in zip(weights[:-1], biases[:-1]):
        h.append(torch.addmm(b, h[-1], W.t()).relu_())
    z = torch.addmm(biases[-1], h[-1], weights[-1].t())
    if masks is not None:
        z.masked_fill_(~masks[t], float("-inf"))
    delta = torch.softmax(z, 1)
    delta.scatter_(1, y.unsqueeze(1), -1.0, reduce="add")  # softmax - one-hot
    delta /= m
    sizes = [p.numel() for p in params]
    G = x.new_empty((K, sum(sizes)))
    column = {id(p): c for p, c in zip(params, G.split(sizes, dim=1))}
    for l in range(len(layers) - 1, -1, -1):
        per_memory = delta.view(K, m, -1)
        torch.bmm(per_memory.transpose(1, 2), h[l].view(K, m, -1),
                  out=column[id(weights[l])].view(K, *weights[l].shape))
        torch.sum(per_memory, dim=1, out=column[id(biases[l])])
        if l:
            delta = (delta @ weights[l]).mul_(h[l] > 0)
    return G


@torch.no_grad()
def sgd_on_each_sample(layers: Sequence[nn.Linear], x: torch.Tensor, y: torch.Tensor, lr: float,
                       masks: torch.Tensor | None = None) -> None:
    r"""Plain SGD on one sample at a time, in order: :math:`\theta \leftarrow \theta - \eta\,
    \nabla_\theta \ell(f_\theta(x_n), y_n)` for :math:`n = 1..N`, for a ReLU MLP and cross-entropy.

    Back-propagation written out (for single samples, ~6x faster than building autograd graphs):
    :math:`h_0 = x`, :math:`h_l = \mathrm{relu}(W_l h_{l-1} + b_l)`, logits
    :math:`z = W_L h_{L-1} + b_L`; then :math:`\delta_L = \mathrm{softmax}(z) - e_y`,
    :math:`\nabla W_l = \delta_l h_{l-1}^\top`, :math:`\nabla b_l = \delta_l` and
    :math:`\delta_{l-1} = (W_l^\top \delta_l) \odot [h_{l-1} > 0]` (with :math:`W_l` before its
    update). ``masks`` (one boolean row of allowed outputs per sample, task-IL) removes the other
    logits from the softmax.
    """
    weights, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
    targets = nn.functional.one_hot(y, weights[-1].shape[0]).to(weights[-1].dtype)
    for n, (xn, target) in enumerate(zip(x.flatten(1), targets)):
        h = [xn]
        for W, b in zip(weights[:-1], biases[:-1]):
            h.append(torch.addmv(b, W, h[-1]).relu_())
        z = torch.addmv(biases[-1], weights[-1], h[-1])
        if masks is not None:
            z = z.masked_fill(~masks[n], float("-inf"))
        delta = torch.softmax(z, 0).sub_(target)
        for l in range(len(layers) - 1, -1, -1):
            below = weights[l].t().mv(delta).mul_(h[l] > 0) if l else None
            weights[l].addr_(delta, h[l], alpha=-lr)
            biases[l].add_(delta, alpha=-lr)
            delta = below
