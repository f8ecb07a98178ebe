r"""Learning without Forgetting (LwF; Li & Hoiem 2016, 2018): distil the old network on new data.

While task :math:`t` is learned, the network frozen at the end of task :math:`t-1` (the teacher,
logits :math:`v`) answers the new task's inputs, and the student (logits :math:`z`) minimises

.. math:: L(\theta) = \mathbb E_{(x,y)\sim D_t}\Big[\ell(f_\theta(x), y)
          + \alpha \sum_g T^2\,\mathrm{KL}\big(p_g(x)\,\|\,q_g(x)\big)\Big],

where :math:`p_g = \operatorname{softmax}(v_g/T)` and :math:`q_g = \operatorname{softmax}(z_g/T)`
are taken over a group :math:`g` of old output units (:func:`cfutils.distill.kd_loss`):

* **task-IL**: one group per old task, its own head (Li & Hoiem sum one term per old task);
* **class-IL**: one group, the old classes. This is LwF.MC: the targets are the teacher's
  probabilities for the old classes only (a softmax at :math:`T = 2`, as van de Ven & Tolias 2019;
  iCaRL's LwF.MC uses a sigmoid per class instead). The new classes' units have no teacher;
* **domain-IL**: one group, every unit.

Options: ``direction="reverse"`` distils :math:`\mathrm{KL}(q\,\|\,p)`; ``warmup_steps`` trains only
the new task's output units for the first steps of each task after the first (Li & Hoiem's warm-up;
with the trainer's fresh optimizer per task, the frozen weights do not move at all);
``weight_align`` (class-IL) rescales the new classes' weights after each task
(:mod:`.weight_align`). :class:`LwFReplay` adds a small replay memory.
"""
from __future__ import annotations

import torch
from torch import nn

from ..data import Task, TaskStream
from ..distill import DIRECTIONS, kd_loss
from ..repro import check_choice, check_float, check_int
from .buffer import Memory
from .replay import Replay
from .teacher import FrozenTeacher, keep_output_rows
from .weight_align import align_weights


class LwF(FrozenTeacher):
    """CE on the new task plus ``alpha`` times the old units' distillation at temperature ``T``."""

    name = "lwf"

    def __init__(self, alpha: float = 1.0, T: float = 2.0, direction: str = "forward",
                 warmup_steps: int = 0, weight_align: bool = False):
        check_float("alpha", alpha, minimum=0.0)
        check_float("T", T, positive=True)
        check_choice("direction", direction, DIRECTIONS)
        check_int("warmup_steps", warmup_steps, minimum=0)
        check_choice("weight_align", weight_align, (False, True))
        self.alpha, self.T, self.direction = alpha, T, direction
        self.warmup_steps, self.weight_align = warmup_steps, weight_align

    def setup(self, model: nn.Module, stream: TaskStream) -> None:
        if self.weight_align and stream.scenario != "class":
            raise ValueError(f"weight_align=True needs a class-IL stream, not {stream.scenario}-IL:"
                             " only a shared head has old and new classes to align")
        super().setup(model, stream)

    def before_task(self, model: nn.Module, task: Task) -> None:
        """The groups of old units to distil (see the module's docstring); reset the step count."""
        super().before_task(model, task)
        earlier = self.stream.tasks[:task.index]
        if self.masks is not None:
            self.groups = [self.units(s.classes) for s in earlier]
        else:
            self.groups = [self.old_units] if earlier else []
        self.step = 0

    def penalty(self, model: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """LwF's :math:`\\Omega`: the distillation of the new batch."""
        return self.distil(x, out)

    def distil(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """:math:`\\alpha \\sum_g T^2\\,\\mathrm{KL}(p_g\\,\\|\\,q_g)`: the teacher on ``x`` against
        the student's outputs ``out``."""
        with torch.no_grad():
            v = self.teacher(x)
        return self.alpha * sum(kd_loss(out, v, self.T, self.direction, columns=g)
                                for g in self.groups)

    def after_backward(self, model: nn.Module) -> None:
        """Warm-up: for ``warmup_steps`` steps only the new task's output units learn."""
        if self.teacher is not None and self.step < self.warmup_steps:
            head = {id(p) for p in model.head.parameters()}
            for p in model.parameters():
                if id(p) not in head:
                    p.grad = None
            keep_output_rows(model, self.new_units)
        self.step += 1

    def after_task(self, model: nn.Module, task: Task) -> None:
        """Weight aligning (if asked) before the network is frozen as the next teacher."""
        if self.weight_align and self.old_units.any():
            align_weights(model.head, self.old_units, self.new_units)
        super().after_task(model, task)


class LwFReplay(LwF, Replay):
    """LwF + ER: :class:`Replay`'s loss plus LwF's distillation of the new and the replay batch.

    Replay's loss (CE on the new batch and on a replay batch drawn from a small memory) is reused
    unchanged, at the price of one more forward pass of the new batch for its distillation.
    """

    name = "lwf_replay"

    def __init__(self, buffer_size: int = 200, replay_batch: int = 32, beta: float = 1.0,
                 policy: str = "reservoir", seed: int = 0, **lwf):
        LwF.__init__(self, **lwf)
        Replay.__init__(self, buffer_size, replay_batch, beta, policy, seed)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
        loss = Replay.loss(self, model, x, y, t)
        return loss if self.teacher is None else loss + self.distil(x, model(x))

    def replay_loss(self, outs: list[torch.Tensor], old: list[Memory]) -> torch.Tensor:
        """ER's cross-entropy on the replay batch plus the distillation of its outputs."""
        loss = super().replay_loss(outs, old)
        return loss if self.teacher is None else loss + self.distil(old[0].x, outs[0])

    def stored_bytes(self) -> int:
        """The teacher and the replay memory."""
        return super().stored_bytes() + self.buffer.nbytes
