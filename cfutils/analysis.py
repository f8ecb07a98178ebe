r"""Tools that look inside a network that forgets: loss landscapes, linear probes, representation similarity.

* :func:`loss_along_line` -- the loss of a task along the straight line between two parameter vectors,
  :math:`L(\alpha) = \mathcal{L}\big((1-\alpha)\,\theta_A + \alpha\,\theta_B\big)`: does :math:`\theta` leave
  task A's basin on its way to task B?
* :func:`linear_probe_accuracy` -- how linearly decodable the classes still are from frozen features
  (a least-squares probe), which separates "the features are lost" from "the head no longer reads them".
* :func:`linear_cka` -- linear centred kernel alignment (Kornblith et al., 2019) between two feature
  matrices of the same inputs: 1 for representations equal up to rotation and scale, 0 for unrelated ones.
* :func:`flat_parameters` and :func:`at_parameters` -- a model's parameters as one vector, and back.
* :func:`group_logits` and :func:`group_shares` -- mean logit and share of predictions per group of
  output units (e.g. the classes of old and new tasks): the bias of the output layer towards recent classes.
* :func:`train_two_tasks` -- two tasks over the same images trained together, with or without PCGrad's
  surgery, logging the cosine between the task gradients at every step.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector, vector_to_parameters


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """A detached copy of all parameters as one vector :math:`\\theta \\in \\mathbb{R}^P` (``model.parameters()`` order)."""
    return parameters_to_vector(model.parameters()).detach().clone()


def _unflatten(model: nn.Module, theta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a flat vector into ``{name: tensor}`` shaped like the model's parameters."""
    params = dict(model.named_parameters())
    sizes = [p.numel() for p in params.values()]
    if theta.numel() != sum(sizes):
        raise ValueError(f"theta has {theta.numel()} entries but the model has {sum(sizes)} parameters")
    return {name: chunk.view_as(p) for (name, p), chunk in zip(params.items(), theta.split(sizes))}


@dataclass(frozen=True)
class LinePath:
    """Loss and accuracy of one task at the points :math:`(1-\\alpha)\\theta_A + \\alpha\\theta_B`."""

    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray


@torch.no_grad()
def loss_along_line(model: nn.Module, start: torch.Tensor, end: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    alphas: Sequence[float] | np.ndarray = np.linspace(0, 1, 21),
                    mask: torch.Tensor | None = None) -> LinePath:
    r"""Cross-entropy and accuracy on ``(x, y)`` along the segment from ``start`` to ``end``.

    :math:`L(\alpha) = -\frac1n \sum_i \log \mathrm{softmax}\big(f(x_i; \theta_\alpha)\big)_{y_i}` with
    :math:`\theta_\alpha = (1-\alpha)\,\theta_{\text{start}} + \alpha\,\theta_{\text{end}}`, evaluated with
    ``torch.func.functional_call`` so the model's own parameters are left untouched. ``mask`` (bool, one
    entry per output unit) keeps only the units a task may use, as in task-IL.
    """
    if start.shape != end.shape:
        raise ValueError(f"start and end must have the same shape, got {tuple(start.shape)} and {tuple(end.shape)}")
    alphas = np.asarray(alphas, dtype=float)
    losses, accs = [], []
    for a in alphas:
        logits = functional_call(model, _unflatten(model, torch.lerp(start, end, float(a))), (x,))
        if mask is not None:
            logits = logits.masked_fill(~mask, float("-inf"))
        losses.append(float(F.cross_entropy(logits, y)))
        accs.append(float((logits.argmax(dim=1) == y).float().mean()))
    return LinePath(alphas, np.array(losses), np.array(accs))


def _f64(t: torch.Tensor) -> torch.Tensor:
    """float64 on the CPU: exact enough for the closed forms below, and available on every backend."""
    return t.detach().to("cpu", torch.float64)


def _design(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    z = (_f64(features) - mean) / std
    return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype, device=z.device)], dim=1)


@torch.no_grad()
def linear_probe_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
                          test_labels: torch.Tensor, ridge: float = 1e-2) -> float:
    r"""Test accuracy of a least-squares linear probe trained on frozen features.

    Features are standardised with the training mean and standard deviation and given a bias column
    (:math:`Z`); one-hot targets :math:`Y` over the classes present in ``train_labels`` are fitted by ridge
    regression, :math:`W = (Z^\top Z + \lambda n I)^{-1} Z^\top Y`, and the prediction is
    :math:`\arg\max_c (ZW)_c`. Closed form: deterministic and fast, no learning rate to tune.
    """
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError("features and labels must have the same number of rows")
    if not ridge > 0:
        raise ValueError(f"ridge={ridge!r} must be positive")
    train_labels, test_labels = train_labels.cpu(), test_labels.cpu()
    classes = torch.unique(train_labels)
    mean = _f64(train_features).mean(dim=0)
    std = _f64(train_features).std(dim=0).clamp_min(1e-6)
    Z = _design(train_features, mean, std)
    Y = (train_labels[:, None] == classes[None, :]).double()
    gram = Z.T @ Z + ridge * len(Z) * torch.eye(Z.shape[1], dtype=Z.dtype, device=Z.device)
    W = torch.linalg.solve(gram, Z.T @ Y)
    predicted = classes[(_design(test_features, mean, std) @ W).argmax(dim=1)]
    return float((predicted == test_labels).double().mean())


@torch.no_grad()
def linear_cka(X: torch.Tensor, Y: torch.Tensor) -> float:
    r"""Linear CKA (Kornblith et al., 2019) of two representations of the same ``n`` inputs.

    With column-centred :math:`X \in \mathbb{R}^{n\times p}`, :math:`Y \in \mathbb{R}^{n\times q}`:
    :math:`\mathrm{CKA}(X, Y) = \frac{\lVert Y^\top X\rVert_F^2}{\lVert X^\top X\rVert_F\,\lVert Y^\top Y\rVert_F}`.
    Invariant to orthogonal transformations and isotropic scaling of either representation.
    """
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must describe the same inputs, got {X.shape[0]} and {Y.shape[0]} rows")
    X = _f64(X).flatten(1)
    Y = _f64(Y).flatten(1)
    X = X - X.mean(dim=0)
    Y = Y - Y.mean(dim=0)
    cross = torch.linalg.matrix_norm(Y.T @ X) ** 2
    return float(cross / (torch.linalg.matrix_norm(X.T @ X) * torch.linalg.matrix_norm(Y.T @ Y)))


@torch.no_grad()
def group_logits(logits: torch.Tensor, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean logit over the samples and the output units of each group (e.g. old vs new classes)."""
    return np.array([float(logits[:, list(g)].mean()) for g in groups])


@torch.no_grad()
def group_shares(logits: torch.Tensor, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Fraction of the samples whose predicted class (argmax) lies in each group."""
    predicted = logits.argmax(dim=1)
    return np.array([float(torch.isin(predicted, torch.tensor(list(g), device=predicted.device)).float().mean())
                     for g in groups])


def at_parameters(model: nn.Module, theta: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose parameters are the flat vector ``theta`` (the original is left untouched)."""
    clone = copy.deepcopy(model)
    _unflatten(clone, theta)  # checks the size
    vector_to_parameters(theta.to(next(clone.parameters()).device), clone.parameters())
    return clone


def flat_gradient(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """:math:`\\nabla_\\theta` ``loss`` as one flat vector in ``model.parameters()`` order (zeros for frozen
    or unused parameters)."""
    params = list(model.parameters())
    found = iter(torch.autograd.grad(loss, [p for p in params if p.requires_grad], allow_unused=True))
    grads = [next(found) if p.requires_grad else None for p in params]
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of the angle between two flat vectors (0 when either is zero)."""
    norm = float(a.norm() * b.norm())
    return float(a @ b) / norm if norm > 0 else 0.0


class ConflictWatch:
    r"""An ``on_step`` callback for :func:`cfutils.train.train` that measures how a new task's updates
    treat an old task.

    Every ``every`` steps it takes the gradient of the old task's loss, :math:`g = \nabla\mathcal{L}_{old}(\theta_s)`,
    and at the next step the cosine between :math:`g` and the update :math:`\Delta = \theta_{s+1} - \theta_s`.
    To first order the step changes the old loss by :math:`g^\top\Delta`: a positive cosine means the step
    climbs the old task's loss (the tasks conflict), a negative one that it also helps the old task. Call it
    once with step 0 before training starts; ``old_loss(model)`` returns the old task's loss at the model's
    current parameters.
    """

    def __init__(self, old_loss, every: int = 10):
        self.old_loss, self.every = old_loss, every
        self.steps: list[int] = []
        self.cosines: list[float] = []
        self.losses: list[float] = []
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, step: int, model: nn.Module) -> None:
        theta = flat_parameters(model)
        if self._pending is not None:
            g, before = self._pending
            self.cosines.append(cosine(g, theta - before))
            self._pending = None
        if step % self.every == 0:
            with torch.enable_grad():
                loss = self.old_loss(model)
                g = flat_gradient(loss, model)
            self.steps.append(step)
            self.losses.append(float(loss.detach()))
            self._pending = (g, theta)


# ---------------------------------------------------------------- distillation (chapter 3)
@torch.no_grad()
def restricted_accuracy(logits: torch.Tensor, y: torch.Tensor, allowed: torch.Tensor) -> float:
    """Accuracy when the prediction is the argmax over the ``allowed`` output units only.

    ``allowed`` is a boolean mask, ``(C,)`` for every sample or ``(N, C)`` per sample: the units of
    the sample's own task gives its task-IL accuracy, the units of every class seen so far its
    class-IL accuracy.
    """
    masked = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
    return float((masked.argmax(dim=1) == y).float().mean())


@torch.no_grad()
def soft_target_stats(logits: torch.Tensor, units: torch.Tensor, T: float) -> dict[str, float]:
    r"""The softmax at temperature ``T`` over the output ``units`` (a boolean mask), averaged over samples.

    ``max``: its largest probability; ``entropy``: :math:`H(p)/\log k` over the :math:`k` units
    (0 for a one-hot target, 1 for a uniform one); ``mass``: the share of the full softmax at
    temperature 1 that lies on ``units``.
    """
    units = units.to(logits.device)
    p = F.softmax(logits[:, units] / T, dim=1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=1) / np.log(int(units.sum()))
    mass = F.softmax(logits, dim=1)[:, units].sum(dim=1)
    return {"max": float(p.max(dim=1).values.mean()), "entropy": float(entropy.mean()),
            "mass": float(mass.mean())}


@torch.no_grad()
def output_drift(before: nn.Module, after: nn.Module, x: torch.Tensor, T: float = 1.0) -> float:
    r"""How far the function moved on the inputs ``x``: :math:`\frac1n\sum_x \mathrm{KL}(p_\text{before}(x)\,\|\,p_\text{after}(x))`
    of the softmax outputs at temperature ``T`` (distillation's own distance, without :math:`T^2`)."""
    from .distill import kd_loss

    return float(kd_loss(after(x), before(x), T, scale_t2=False))


def watch_tasks(method, before=None, after=None):
    """``method`` with ``before(method, model, task)`` called after its own ``before_task`` and
    ``after(method, model, task)`` after its own ``after_task``: a way to look inside a run."""
    cls = type(method)

    class Watched(cls):
        def before_task(self, model: nn.Module, task) -> None:
            super().before_task(model, task)
            if before is not None:
                before(self, model, task)

        def after_task(self, model: nn.Module, task) -> None:
            super().after_task(model, task)
            if after is not None:
                after(self, model, task)

    Watched.__name__ = Watched.__qualname__ = f"Watched{cls.__name__}"
    method.__class__ = Watched
    return method


@dataclass
class MultiTaskRun:
    """Per-task test accuracy of a two-task run and the cosine of the task gradients at every step."""

    accuracy: tuple[float, ...]
    cosines: np.ndarray


def train_two_tasks(x: torch.Tensor, labels: Sequence[torch.Tensor], x_test: torch.Tensor,
                    test_labels: Sequence[torch.Tensor], *, surgery: bool, seed: int,
                    width: int = 200, epochs: int = 3, lr: float = 0.05,
                    batch_size: int = 128, code_scale: float = 10.0) -> MultiTaskRun:
    r"""Train one MLP on tasks over the same images, told apart by a one-hot task code appended to
    the input (times ``code_scale``, as loud as a
    few pixels), and sharing all output units; the step is :math:`\sum_k g_k` or, with ``surgery``,
    PCGrad's :math:`\sum_k g_k^{\mathrm{PC}}` (:func:`cfutils.methods.pcgrad.project_conflicts`).

    Each batch holds the same images once per task; the seed fixes the initial weights, the batch
    order and PCGrad's random order, so runs with and without surgery differ only in the step.
    """
    from .gradients import grad_vector, write_grad
    from .methods.pcgrad import project_conflicts

    n_tasks, n_out = len(labels), int(max(int(y.max()) for y in labels)) + 1
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(x[0].numel() + n_tasks, width), nn.ReLU(),
                          nn.Linear(width, width), nn.ReLU(), nn.Linear(width, n_out))
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(seed)

    def coded(images: torch.Tensor, k: int) -> torch.Tensor:
        code = code_scale * F.one_hot(torch.full((len(images),), k), n_tasks).to(images.dtype)
        return torch.cat([images.flatten(1), code], 1)

    cosines = []
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            grads = torch.stack([grad_vector(F.cross_entropy(model(coded(x[idx], k)), y[idx]),
                                             params) for k, y in enumerate(labels)])
            cosines.append(float(F.cosine_similarity(grads[0], grads[1], dim=0)))
            step = project_conflicts(grads, generator) if surgery else grads
            write_grad(params, step.sum(0))
            with torch.no_grad():
                for p in params:
                    p -= lr * p.grad
    with torch.no_grad():
        accuracy = tuple(float((model(coded(x_test, k)).argmax(1) == y).float().mean())
                         for k, y in enumerate(test_labels))
    return MultiTaskRun(accuracy, np.array(cosines))
