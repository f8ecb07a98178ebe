r"""iCaRL (Rebuffi et al. 2017): herding exemplars, distillation, and a nearest-mean-of-exemplars
classifier.

* **Exemplars.** After each task, each new class keeps
  :math:`m = \lfloor K / \#\text{classes}\rfloor` samples chosen by *herding*: the :math:`k`-th
  exemplar is the sample whose addition brings the exemplar mean closest to the class mean
  :math:`\mu` in feature space,
  :math:`p_k = \arg\min_x \lVert \mu - \tfrac1k(\varphi(x) + \sum_{j<k}\varphi(p_j))\rVert`; old
  classes keep their first :math:`m` (herding ranks them).
* **Training** on the new data plus the exemplars with per-class sigmoid cross-entropy; the targets
  of the old classes are the previous network's sigmoid outputs (distillation).
* **Prediction** by the nearest class mean of the exemplars' normalised features:
  :math:`y^* = \arg\min_y \lVert \varphi(x) - \mu_y \rVert`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Task, TaskStream
from ..distill import frozen_copy
from ..repro import check_choice, check_int
from .base import Method
from .buffer import Buffer, eight_bit_range

SELECTIONS = ("herding", "random")


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of ``m`` distinct rows of ``features``, in the order herding picks them.

    Dropping the terms that do not depend on the candidate :math:`p`, step :math:`k` minimises
    :math:`\\big(2\\,S\\cdot\\varphi_p + \\lVert\\varphi_p\\rVert^2\\big)/k^2
    - 2\\,\\mu\\cdot\\varphi_p/k`, where
    :math:`S` is the sum of the features chosen so far: one matrix-vector product per pick.
    """
    mu_dot = features @ features.mean(dim=0)
    sq = (features ** 2).sum(dim=1)
    total = torch.zeros_like(features[0])
    taken = torch.zeros(len(features), dtype=torch.bool, device=features.device)
    chosen = []
    for k in range(1, min(m, len(features)) + 1):
        score = ((2 * (features @ total) + sq) / k - 2 * mu_dot) / k
        i = int(score.masked_fill(taken, float("inf")).argmin())
        chosen.append(i)
        taken[i] = True
        total += features[i]
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


class ICaRL(Method):
    """iCaRL with a fixed memory of ``memory_size`` exemplars (``selection="random"``: no
    herding)."""

    name = "icarl"

    def __init__(self, memory_size: int = 2000, selection: str = "herding", seed: int = 0):
        check_int("memory_size", memory_size, minimum=1)
        check_choice("selection", selection, SELECTIONS)
        self.memory_size, self.selection, self.seed = memory_size, selection, seed

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        x = stream[0].x_train
        self.buffer = Buffer(self.memory_size, tuple(x.shape[1:]), stream.n_classes, len(stream),
                             policy="selected", device=x.device, seed=self.seed,
                             value_range=eight_bit_range(task.x_train for task in stream))
        self.generator = torch.Generator().manual_seed(self.seed)
        self.old_model: nn.Module | None = None
        self.means: torch.Tensor | None = None

    def training_data(self, task: Task) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The new task's samples and every exemplar."""
        x, y, t = super().training_data(task)
        if not len(self.buffer):
            return x, y, t
        old = self.buffer.all()
        return torch.cat([x, old.x]), torch.cat([y, old.y]), torch.cat([t, old.t])

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        """Sigmoid cross-entropy per output unit; old classes' targets are the old network's
        sigmoids."""
        out = model(x)
        target = F.one_hot(y, out.shape[1]).float()
        if self.old_model is not None:
            with torch.no_grad():
                old = torch.sigmoid(self.old_model(x))
            target[:, self.has_mean] = old[:, self.has_mean]  # old classes: those with exemplars
        weight = torch.ones_like(out) if self.masks is None else self.masks[t].float()
        bce = F.binary_cross_entropy_with_logits(out, target, weight=weight, reduction="sum")
        return bce / len(y)

    @torch.no_grad()
    def after_task(self, model: nn.Module, task: Task) -> None:
        """Choose the new classes' exemplars, freeze the old network, recompute the class means."""
        was_training = model.training
        model.eval()
        n_groups = int(self.buffer.seen.bool().sum()) + len(task.classes)
        m = self.memory_size // n_groups
        for c in task.classes:
            x = task.x_train[task.y_train == c]
            if self.selection == "herding":
                order = herding(self.embed(model, x), m)
            else:
                order = torch.randperm(len(x), generator=self.generator)[:m].to(x.device)
            y = torch.full((len(order),), c, dtype=torch.long, device=x.device)
            self.buffer.put(task.index * self.stream.n_classes + c, x[order], y,
                            torch.full_like(y, task.index))
        mem = self.buffer.all()
        width = self.embed(model, mem.x[:1]).shape[1]
        sums = torch.zeros(self.stream.n_classes, width, device=mem.x.device)
        sums.index_add_(0, mem.y, self.embed(model, mem.x))
        self.means = F.normalize(sums, dim=1)
        self.has_mean = torch.bincount(mem.y, minlength=self.stream.n_classes) > 0
        self.old_model = frozen_copy(model)
        model.train(was_training)

    @staticmethod
    def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised features :math:`\\varphi(x)`."""
        return F.normalize(model.features(x), dim=1)

    @torch.no_grad()
    def predict(self, model: nn.Module, x: torch.Tensor, task: Task) -> torch.Tensor:
        """Nearest mean of exemplars among the classes ``task`` may answer with (the model's logits
        before any exemplar)."""
        if self.means is None:
            return super().predict(model, x, task)
        allowed = self.has_mean if self.masks is None else self.has_mean & self.masks[task.index]
        dist = torch.cdist(self.embed(model, x), self.means)
        return dist.masked_fill(~allowed, float("inf")).argmin(dim=1)

    def stored_bytes(self) -> int:
        """The exemplar memory plus the frozen previous network used for distillation."""
        teacher = sum(p.numel() * p.element_size() for p in self.old_model.parameters())
        return self.buffer.nbytes + teacher
