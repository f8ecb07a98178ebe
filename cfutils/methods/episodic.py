r"""What GEM and A-GEM share: an episodic memory per task and a projected gradient step.

After task :math:`k` a few of its training samples are kept as its episodic memory
:math:`\mathcal M_k`. While a later task is learned, each step's gradient :math:`g` is compared
with reference gradients :math:`g_k = \nabla_\theta\, \ell(f_\theta, \mathcal M_k)` (the rows of
:math:`G`). A negative inner product :math:`\langle g, g_k\rangle < 0` means that, to first order,
the step would *increase* the loss on that memory: interference. The two methods differ only in
which references they take and how they turn :math:`g` into a :math:`\tilde g` with
:math:`G\tilde g \ge 0`.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task, TaskStream
from ..gradients import flat_grad, mlp_layers, write_grad
from ..repro import check_int
from .base import Method
from .buffer import Memory


def episode(task: Task, n: int, generator: torch.Generator) -> Memory:
    """``n`` training samples of ``task`` drawn uniformly without replacement.

    The same distribution as a reservoir over the task's stream (and, with shuffled data, as the
    "last n samples" that the GEM authors' code keeps).
    """
    pick = torch.randperm(task.n_train, generator=generator)[:n].to(task.y_train.device)
    return Memory(task.x_train[pick], task.y_train[pick], torch.full_like(pick, task.index), None)


class InterferenceLog:
    r"""Per-step record of how the new gradient :math:`g` meets the references :math:`G`.

    Each step adds the task being learned, ``violated`` (:math:`\min_k \langle g, g_k\rangle < 0`),
    ``cosines`` (:math:`\cos(g, g_k)` for every reference) and ``violation_after``
    (:math:`\max_k \max(0, -\langle \tilde g, g_k\rangle) / (\lVert g\rVert\lVert g_k\rVert)`,
    relative to the size of the dot products). They stay tensors until :meth:`rows`.
    """

    def __init__(self):
        self.steps: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, task: int, g: torch.Tensor, G: torch.Tensor, g_tilde: torch.Tensor) -> None:
        norms = (G.norm(dim=1) * g.norm()).clamp_min(torch.finfo(g.dtype).tiny)
        dots = G @ g
        after = (-(G @ g_tilde)).clamp_min(0) / norms
        self.steps.append((task, dots.min() < 0, dots / norms, after.max()))

    def rows(self) -> list[dict]:
        """One dict per recorded step (e.g. for ``pandas.DataFrame``)."""
        return [{"task": k, "violated": bool(v), "cosines": c.tolist(), "violation_after": float(a)}
                for k, v, c, a in self.steps]

    def summary(self, bins: int = 20) -> list[dict]:
        """Per task learned: share of violating steps, mean cosine with each reference, the mean
        of the smallest cosine in ``bins`` equal stretches of the task, the largest violation left."""
        out = []
        for task in sorted({k for k, *_ in self.steps}):
            steps = [s for s in self.steps if s[0] == task]
            cos = torch.stack([c for *_, c, _ in steps])
            lowest = [float(b.mean()) for b in cos.min(dim=1).values.tensor_split(bins) if len(b)]
            out.append({"task": task, "steps": len(steps),
                        "violated": float(torch.stack([v for _, v, *_ in steps]).float().mean()),
                        "cos_mean": cos.mean(0).tolist(), "cos_min_bins": lowest,
                        "violation_after": float(torch.stack([a for *_, a in steps]).max())})
        return out


class EpisodicProjection(Method):
    """Keep ``memory_per_task`` samples of each finished task; project every step against them.

    ``record=True`` fills ``log`` (an :class:`InterferenceLog`) with one entry per step that has
    references. ``project=False`` only watches: the references are computed and logged, but the
    step follows the raw gradient (fine-tuning, with its interference measured).
    """

    def __init__(self, memory_per_task: int, record: bool = False, seed: int = 0,
                 project: bool = True):
        check_int("memory_per_task", memory_per_task, minimum=1)
        if not project and not record:
            raise ValueError("project=False only makes sense with record=True (it only watches)")
        self.memory_per_task, self.record, self.watch_only = memory_per_task, record, not project
        self.generator = torch.Generator().manual_seed(seed)

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        super().setup(model, stream)
        self.memory: Memory | None = None  # all past tasks' samples, task after task
        self.sizes: list[int] = []  # how many samples each past task has in it
        self.log = InterferenceLog() if self.record else None
        self.params = list(self.parameters(model))  # g's layout, looked up once, not per step
        self.layers = mlp_layers(model, self.params)  # None unless the model is the book's MLP

    def after_task(self, model: nn.Module, task: Task) -> None:
        if task.index == len(self.stream) - 1:  # the last task's memory would never be used
            return
        new = episode(task, self.memory_per_task, self.generator)
        self.sizes.append(len(new.y))
        if self.memory is not None:
            new = Memory(*(torch.cat(pair) for pair in zip(self.memory[:3], new[:3])), None)
        self.memory = new

    def memories(self) -> list[Memory]:
        r""":math:`\mathcal M_1, \dots, \mathcal M_{t-1}`: views of each past task's samples."""
        parts = (m.split(self.sizes) for m in self.memory[:3])
        return [Memory(x, y, t, None) for x, y, t in zip(*parts)]

    def after_backward(self, model: nn.Module) -> None:
        r""":math:`g \to \tilde g` once there is a memory (the first task trains unconstrained)."""
        if self.memory is None:
            return
        params = self.params
        g = flat_grad(params)
        G = self.references(model, params)
        g_tilde = g if self.watch_only else self.project(g, G)
        if self.log is not None:
            self.log.add(self.task.index, g, G, g_tilde)
        if g_tilde is not g:  # only a projected gradient needs writing back
            write_grad(params, g_tilde)

    def references(self, model: nn.Module, params: list[nn.Parameter]) -> torch.Tensor:
        """The reference gradients :math:`G`, one row per constraint."""
        raise NotImplementedError

    def project(self, g: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        r"""The gradient actually followed, :math:`\tilde g`."""
        raise NotImplementedError

    def extras(self) -> dict:
        """The interference summary per task (:meth:`InterferenceLog.summary`) when recording."""
        return {} if self.log is None else {"interference": self.log.summary()}

    def stored_bytes(self) -> int:
        """Bytes kept between tasks: the episodic memories (inputs, labels, task indices)."""
        if self.memory is None:
            return 0
        return sum(t.numel() * t.element_size() for t in self.memory[:3])
