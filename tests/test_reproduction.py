"""Stale records cannot pass: for every method a chapter uses, its cheapest recorded run is re-trained
from scratch (its first two tasks) and must give the recorded accuracy matrix rows and training losses.

Tolerances: |ΔR| <= 0.01 per entry, and each binned training loss within 2 % (+ 0.005). The same code on the same machine reproduces a record bit for bit;
another CPU, BLAS or thread count changes the floating-point order of sums, which can flip a few of the
thousands of test predictions (measured: at most a few thousandths). A change to a method, the trainer or
the data that changes results moves entries by far more than that.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cfutils import runs

TOLERANCE = 0.01
LOSS_TOLERANCE = 0.02  # relative; accuracies saturate (0 or 1) where losses still tell runs apart
# relative, chapter 8's language models: this machine reproduces them bit for bit (drift 0.0); halving the
# gradient clipping moves the pretraining's held-out B loss by 0.7 %; another CPU's summation order: not measured
LM_TOLERANCE = 0.005
LM_STEPS = 10        # fine-tuning steps re-run per variant: evaluations at steps 0, 2, 5 and 10
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def cheapest_run_per_method() -> list[tuple[str, dict, dict]]:
    """(chapter, spec, record) of the run with the fewest trained samples, per chapter and method."""
    chosen: dict[tuple[str, str], tuple[dict, dict]] = {}
    for manifest in sorted((RESULTS / "manifests").glob("*.txt")):
        for entry in sorted(set(manifest.read_text().split())):
            path = RESULTS / f"{entry}.json.gz"
            if not path.exists():
                continue  # a missing record re-trains when its chapter runs; nothing to compare here
            saved = json.loads(gzip.decompress(path.read_bytes()))
            if "kind" in saved:
                continue  # a cfutils.cache record (language models, multi-task pairs): no RunSpec
            key = (manifest.stem, saved["spec"]["method"])
            best = chosen.get(key)
            if best is None or saved["record"]["samples"] < best[1]["samples"]:
                chosen[key] = (saved["spec"], saved["record"])
    return [(chapter, spec, record) for (chapter, _), (spec, record) in sorted(chosen.items())]


CASES = cheapest_run_per_method()


@pytest.mark.parametrize(("chapter", "spec", "record"), CASES,
                         ids=[f"{c}-{s['method']}-{runs.RunSpec(**s).key}" for c, s, _ in CASES])
def test_recorded_run_reproduces(chapter: str, spec: dict, record: dict):
    spec = runs.RunSpec(**spec)
    k = min(2, spec.n_tasks)
    again = runs.execute(spec, stop_after=k)
    recorded = np.array(record["R"])[:k]
    gap = float(np.abs(again.R[:k] - recorded).max())
    assert gap <= TOLERANCE, (
        f"{chapter}: {spec.method} no longer reproduces its record {spec.key} "
        f"({spec.to_dict()}): max |ΔR| over the first {k} rows = {gap:.4f} > {TOLERANCE}. "
        f"If the change is intended, refresh the chapter: python scripts/refresh_results.py {chapter[:2]}")
    steps = np.array(record["loss_steps"])
    done = steps <= again.boundaries[-1]
    before, after = np.array(record["losses"])[done], np.array(again.losses)[: int(done.sum())]
    drift = float(np.max(np.abs(after - before) / (np.abs(before) + 0.25)))
    assert drift <= LOSS_TOLERANCE, (
        f"{chapter}: {spec.method}'s training losses moved by {drift:.1%} against its record {spec.key}; "
        f"refresh the chapter if the change is intended: python scripts/refresh_results.py {chapter[:2]}")


def test_results_folder_stays_small():
    """Records are committed: the whole store must stay under 30 MB."""
    size = sum(p.stat().st_size for p in RESULTS.rglob("*") if p.is_file())
    assert size <= 30e6, f"results/ holds {size / 1e6:.1f} MB (> 30 MB): keep fewer weights or prune"


class _FirstEvaluation(Exception):
    """Stops pretraining at its first evaluation, carrying the measurements."""


@pytest.fixture(scope="module")
def tiny_gpt_book_inputs():
    """The tiny GPT-2's configuration and corpora at book settings (built once for this module)."""
    from cfutils.llm.model import TinyConfig
    from cfutils.llm.scenario import corpora

    return TinyConfig(), corpora(fact_copies=50, b_chars=2_000_000)


def test_tiny_gpt_pretraining_reproduces_its_record(tiny_gpt_book_inputs):
    """Chapter 8's language-model records: the tiny GPT-2's pretraining (book settings, seed 0) is re-run
    from scratch up to its first evaluation (250 of 2,500 steps) and must give the recorded held-out
    losses within 0.5 % — so a change to the corpora, tokenizer, model or pretraining loop that changes
    results cannot pass with stale records."""
    from cfutils import cache
    from cfutils.llm import lab
    from cfutils.llm.evaluate import measure
    from cfutils.llm.model import build_gpt2, pretrain
    from cfutils.llm.scenario import benches
    from cfutils.llm.tokenizer import train_tokenizer

    cfg, data = tiny_gpt_book_inputs
    recorded = cache.load("llm", "pretrain", {"scenario": lab.TinyLab(cfg, data, 64).key(0)}, RESULTS)
    assert recorded is not None, ("chapter 8's pretraining record for seed 0 is missing or was made from other "
                                  "inputs: python scripts/refresh_results.py 08")
    tok = train_tokenizer(data.a_pretrain, cfg.vocab_size)
    bench, val_bench = benches(tok, data, 64, cfg.context)
    torch.manual_seed(0)
    model = build_gpt2(cfg, tok.eos_token_id)

    def stop(step: int, m) -> dict:
        raise _FirstEvaluation(measure(m, val_bench))

    with pytest.raises(_FirstEvaluation) as first:
        pretrain(model, bench.a_train, cfg, torch.Generator().manual_seed(0), on_eval=stop)
    again, before = first.value.args[0], recorded[0]
    for key in ("a_loss", "b_loss"):
        drift = abs(again[key] - before[key]) / before[key]
        assert drift <= LM_TOLERANCE, (
            f"08_llm_case_study: the tiny GPT-2's {key} after {before['step']} pretraining steps is "
            f"{again[key]:.4f}, its record says {before[key]:.4f}; refresh the chapter if the change is "
            "intended: python scripts/refresh_results.py 08")


def tiny_gpt_finetuning_specs() -> dict[str, list[dict]]:
    """Chapter 8's recorded test-split fine-tuning runs, per variant (their specs)."""
    found: dict[str, list[dict]] = {}
    for path in sorted((RESULTS / "llm").glob("finetune-*.json.gz")):
        spec = json.loads(gzip.decompress(path.read_bytes()))["spec"]
        if spec["evaluation"] == "test" and spec["steps"] >= LM_STEPS:
            found.setdefault(spec["variant"]["name"], []).append(spec)
    return found


@pytest.fixture(scope="module")
def tiny_gpt_seed0(tiny_gpt_book_inputs):
    """Seed 0's pretrained tiny GPT-2 as the store keeps it, with the benches it is judged on."""
    from cfutils import cache
    from cfutils.llm import lab
    from cfutils.llm.model import build_gpt2, load_cached
    from cfutils.llm.scenario import benches
    from cfutils.llm.tokenizer import wrap

    cfg, data = tiny_gpt_book_inputs
    key = lab.TinyLab(cfg, data, 64).key(0)
    kept = cache.weights_path("llm", "pretrain", {"scenario": key}, RESULTS)
    entry = load_cached(key, kept)
    assert entry is not None, (f"chapter 8 keeps seed 0's pretrained weights in {kept.name}; missing or "
                               "unreadable: python scripts/refresh_results.py 08")
    recorded = cache.load("llm", "pretrain", {"scenario": key}, RESULTS)
    assert entry["history"] == recorded, f"{kept.name} is not the model its pretraining record describes"
    tok = wrap(entry["tokenizer"])
    model = build_gpt2(cfg, tok.eos_token_id)
    model.load_state_dict(entry["state_dict"])
    return model, benches(tok, data, 64, cfg.context)[0], key, cfg


FINETUNING = tiny_gpt_finetuning_specs()


@pytest.mark.parametrize("name", sorted(FINETUNING))
def test_tiny_gpt_finetuning_reproduces_its_record(name: str, tiny_gpt_seed0):
    """Chapter 8's fine-tuning records (every variant: adapters, objectives, the loop): the first
    ``LM_STEPS`` steps from the kept pretrained weights must give the recorded held-out losses and
    training losses within 0.5 %."""
    from cfutils import cache
    from cfutils.llm.finetune import Variant, finetune

    model, bench, key, cfg = tiny_gpt_seed0
    seed0 = [s for s in FINETUNING[name] if s["scenario"] == key]
    assert seed0, f"08_llm_case_study: no record of {name} starts from the kept seed-0 weights"
    spec = seed0[0]
    variant = Variant(**{**spec["variant"], "targets": tuple(spec["variant"]["targets"])})
    recorded = cache.load("llm", "finetune", spec, RESULTS)
    again = finetune(model, variant, bench, LM_STEPS, spec["batch_size"], cfg.context, seed=0)[1]
    n = len(again.rows)
    assert recorded["steps"][:n] == again.steps
    pairs = [(f"{k} at step {s}", r[k], a[k]) for s, r, a in
             zip(again.steps, recorded["rows"], again.rows) for k in ("a_loss", "b_loss")]
    pairs += [(f"training loss at step {i + 1}", r, a)
              for i, (r, a) in enumerate(zip(recorded["train_losses"], again.train_losses))]
    what, before, after = max(pairs, key=lambda p: abs(p[2] - p[1]) / abs(p[1]))
    drift = abs(after - before) / abs(before)
    assert drift <= LM_TOLERANCE, (
        f"08_llm_case_study: {variant.name} no longer reproduces its record: {what} is {after:.4f}, "
        f"the record says {before:.4f} ({drift:.2%} > {LM_TOLERANCE:.1%}); refresh the chapter if "
        "the change is intended: python scripts/refresh_results.py 08")
