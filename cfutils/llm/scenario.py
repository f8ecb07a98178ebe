"""The chapter's main scenario: a tiny GPT-2 pretrained on A (English + facts) meets B (Python code).

:func:`tiny_scenario` builds the corpora, the tokenizer (trained on A only, so B's code must be
written with English's vocabulary), the evaluation data and the pretrained model, loading the model
and its tokenizer from the cache when everything that determines them is unchanged.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from . import corpus
from .evaluate import Bench, make_probe, measure
from .model import TinyConfig, build_gpt2, cache_key, load_cached, pretrain, save_cached
from .tokenizer import encode_stream, fixed_windows, to_json, train_tokenizer, wrap

VERSION = 2          # bump when the corpora or the pretraining recipe change meaning


@dataclass
class Scenario:
    """A pretrained model, the data to fine-tune and judge it with (``bench``: test windows,
    ``val_bench``: validation windows), and how it was pretrained."""

    model: nn.Module
    bench: Bench
    val_bench: Bench
    history: list[dict]
    from_cache: bool


def _digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Corpora:
    """The documents of one scenario (fixed: they do not depend on the seed)."""

    a_pretrain: list[str]
    a_english: list[str]
    a_val: list[str]
    a_test: list[str]
    b_train: list[str]
    b_val: list[str]
    b_test: list[str]
    facts: list[corpus.Fact]

    @property
    def digest(self) -> str:
        return _digest(self.a_pretrain + self.a_val + self.a_test + self.b_train + self.b_val + self.b_test)


def corpora(fact_copies: int = 50, b_chars: int = 2_000_000, fortunes: int | None = None) -> Corpora:
    """A = general English + fact sentences, B = Python source, each split into train/validation/test."""
    facts = corpus.make_facts()
    a_docs, english, a_val, a_test = corpus.corpus_a(facts, fact_copies, limit=fortunes)
    b_train, b_val, b_test = corpus.split3(corpus.python_sources(b_chars))
    return Corpora(a_docs, english, a_val, a_test, b_train, b_val, b_test, facts)


def scenario_key(cfg: TinyConfig, seed: int, data: Corpora, n_eval: int) -> str:
    """The hash of everything that determines the pretrained model and its benchmarks."""
    return cache_key(cfg=cfg, seed=seed, n_eval=n_eval, data=data.digest, version=VERSION)


def benches(tok, data: Corpora, n_eval: int, context: int) -> tuple[Bench, Bench]:
    """(test bench, validation bench): the same training streams, different held-out windows."""
    probe = make_probe(tok, [(f.prompt, " " + f.city) for f in data.facts])
    seen = make_probe(tok, [(f.seen_prompt, " " + f.city) for f in data.facts])

    def windows(docs: list[str]) -> torch.Tensor:
        return fixed_windows(encode_stream(tok, docs), n_eval, context)

    test = Bench(tok, encode_stream(tok, data.a_pretrain), encode_stream(tok, data.b_train),
                 windows(data.a_test), windows(data.b_test), probe, seen_probe=seen,
                 replay=encode_stream(tok, data.a_english))
    return test, replace(test, a_eval=windows(data.a_val), b_eval=windows(data.b_val))


def tiny_scenario(cfg: TinyConfig, seed: int, data: Corpora, n_eval: int = 64,
                  device: torch.device | str = "cpu", kept: Path | None = None) -> Scenario:
    """Tokenizer (on A only) -> streams -> tiny GPT-2 pretrained on A (cached by a hash of all inputs).

    ``kept``: a second copy of the weights (in the record store), read when the weight cache has none
    and written when missing."""
    key = scenario_key(cfg, seed, data, n_eval)
    entry = load_cached(key) or (load_cached(key, kept) if kept else None)
    tok = wrap(entry["tokenizer"]) if entry else train_tokenizer(data.a_pretrain, cfg.vocab_size)
    bench, val_bench = benches(tok, data, n_eval, cfg.context)
    torch.manual_seed(seed)
    model = build_gpt2(cfg, tok.eos_token_id).to(device)
    if entry:
        model.load_state_dict(entry["state_dict"])
        model.eval()
        history = entry["history"]
    else:
        history = pretrain(model, bench.a_train, cfg, torch.Generator().manual_seed(seed),
                           on_eval=lambda step, m: measure(m, val_bench))
        save_cached(key, _cpu(model), to_json(tok), history)
    if kept and not kept.exists():
        save_cached(key, _cpu(model), to_json(tok), history, path=kept)
    return Scenario(model, bench, val_bench, history, entry is not None)


def _cpu(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.cpu() for k, v in model.state_dict().items()}
