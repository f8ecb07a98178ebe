"""Fine-tune a pretrained LM on domain B with one variant, measuring learning and forgetting as it goes.

A *variant* is a choice of trainable weights (:mod:`.adapters`) and of objective (:mod:`.objectives`);
every variant starts from the same pretrained weights, initialises its new weights from the run's seed
alone and sees the same sequence of B batches.
Learning is the drop of the held-out B loss, forgetting the rise of the held-out A loss and the loss
of fact recall; both are measured densely early, where full fine-tuning changes fastest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from ..models import n_parameters
from ..repro import progress
from . import adapters, objectives
from .evaluate import Bench, measure
from .tokenizer import random_windows

VARIANT_PATTERN = re.compile(r"^(full|freeze|ia3|replay|ewc|distill|lora(\d+)(-attn)?(-emb)?)$")


@dataclass(frozen=True)
class Variant:
    """One fine-tuning recipe: which weights train (``adapter``), what is minimised, at which learning rate."""

    name: str
    adapter: str = "full"                 # full | lora | ia3 | freeze
    rank: int = 0
    targets: tuple[str, ...] = ()
    objective: str = "plain"              # plain | replay | ewc | distill
    strength: float = 0.0                 # replay fraction, EWC lambda or distillation weight
    lr: float = 1e-3
    embeddings: bool = False              # LoRA only: also train the (tied) token embeddings

    def make_model(self, base: nn.Module, n_frozen: int = 1) -> nn.Module:
        if self.adapter == "lora":
            return adapters.lora(base, self.rank, self.targets, embeddings=self.embeddings)
        if self.adapter == "ia3":
            return adapters.ia3(base)
        if self.adapter == "freeze":
            return adapters.freeze_lower(base, n_frozen)
        return adapters.full(base)

    def make_objective(self) -> objectives.Objective:
        return {"plain": objectives.Objective, "replay": lambda: objectives.Replay(self.strength),
                "ewc": lambda: objectives.EWC(self.strength),
                "distill": lambda: objectives.Distill(self.strength)}[self.objective]()


def check_variant_names(names: list[str], parameter: str = "methods") -> None:
    """Fail unless every name is ``full``, ``freeze``, ``ia3``, ``replay``, ``ewc``, ``distill`` or
    ``lora<r>[-attn][-emb]``."""
    if isinstance(names, str) or not names:
        raise ValueError(f"{parameter}={names!r} must be a non-empty list of variant names")
    bad = [n for n in names if not isinstance(n, str) or not VARIANT_PATTERN.match(n)]
    if bad:
        raise ValueError(f"{parameter}: unknown variant(s) {bad}; use full, freeze, ia3, replay, ewc, distill, "
                         "lora<rank> (all projections), lora<rank>-attn (attention only), with -emb to train "
                         "the embeddings too, e.g. lora8-attn or lora16-emb")


def make_variant(name: str, targets: dict[str, tuple[str, ...]], lr: float, strength: float = 0.0) -> Variant:
    """The :class:`Variant` called ``name`` (see :func:`check_variant_names`) at learning rate ``lr``;
    ``strength`` is the replay fraction, the EWC :math:`\\lambda` or the distillation weight."""
    m = VARIANT_PATTERN.match(name)
    if m.group(2):
        return Variant(name, "lora", int(m.group(2)), targets["attn" if m.group(3) else "all"], lr=lr,
                       embeddings=bool(m.group(4)))
    if name in ("replay", "ewc", "distill"):
        return Variant(name, objective=name, strength=strength, lr=lr)
    return Variant(name, {"full": "full", "freeze": "freeze", "ia3": "ia3"}[name], lr=lr)


def eval_schedule(steps: int) -> list[int]:
    """Evaluation steps: dense early (0, 2, 5, 10, 15, 20, 30, 40, ...), then every ~12 % of the run."""
    early = [0, 2, 5, 10, 15, 20, 30, 40, 50]
    late = range(50, steps + 1, max(10, steps // 8))
    return sorted({s for s in [*early, *late, steps] if s <= steps})


@dataclass
class Trajectory:
    """Measurements of one run: ``rows[k]`` (a dict of :func:`.evaluate.measure`) at ``steps[k]``."""

    name: str
    trainable: int
    steps: list[int] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)

    def series(self, key: str) -> list[float]:
        return [r[key] for r in self.rows]


def finetune(base: nn.Module, variant: Variant, bench: Bench, steps: int, batch_size: int, context: int,
             seed: int, warmup: int = 10, n_frozen: int = 1,
             val_bench: Bench | None = None) -> tuple[nn.Module, Trajectory]:
    """Train a copy of ``base`` on B for ``steps`` steps (AdamW, constant lr after a linear warm-up).

    With ``val_bench`` the last evaluation also measures its held-out windows (keys prefixed ``val_``).
    """

    def evaluate(m: nn.Module, last: bool = False) -> dict[str, float]:
        row = measure(m, bench)
        if val_bench is not None and last:
            row |= {f"val_{k}": v for k, v in measure(m, val_bench).items()}
        return row

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)           # new weights (LoRA's A) depend on the seed, not on earlier runs
        model = variant.make_model(base, n_frozen)
    device = next(base.parameters()).device
    data_gen = torch.Generator().manual_seed(seed)            # same B batches for every variant
    objective = variant.make_objective()
    objective.setup(model, bench, context, torch.Generator().manual_seed(seed + 1))
    params = adapters.trainable(model)
    opt = torch.optim.AdamW(params, lr=variant.lr, betas=(0.9, 0.95), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    traj = Trajectory(variant.name, n_parameters(model))
    at = set(eval_schedule(steps))
    traj.steps.append(0)
    traj.rows.append(evaluate(model))
    model.train()
    for step in progress(range(1, steps + 1), desc=variant.name, leave=False):
        x = objective.batch(random_windows(bench.b_train, batch_size, context, data_gen).to(device))
        loss = objective.loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        traj.train_losses.append(float(loss.detach()))
        if step in at:
            traj.steps.append(step)
            traj.rows.append(evaluate(model, last=step == steps))
            model.train()
    model.eval()
    return model, traj
