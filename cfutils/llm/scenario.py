"""The chapter's main scenario: a tiny GPT-2 pretrained on A (fortunes + facts) meets B (Python code).

:func:`tiny_scenario` builds the corpora, the tokenizer, the evaluation data and the pretrained model,
loading the model and its tokenizer from the cache when everything that determines them is unchanged.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from . import corpus
from .evaluate import Bench, make_probe, measure
from .model import TinyConfig, build_gpt2, cache_key, load_cached, pretrain, save_cached
from .tokenizer import encode_stream, fixed_windows, to_json, train_tokenizer, wrap


@dataclass
class Scenario:
    """A pretrained model, the data to fine-tune and judge it with, and how it was pretrained."""

    model: nn.Module
    bench: Bench
    history: list[dict]
    from_cache: bool


def _digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
    return h.hexdigest()[:16]


def tiny_scenario(cfg: TinyConfig, seed: int, fact_copies: int = 100, n_eval: int = 32,
                  b_chars: int = 2_000_000, fortunes: int | None = None,
                  device: torch.device | str = "cpu") -> Scenario:
    """Corpora -> tokenizer -> streams -> tiny GPT-2 pretrained on A (cached by a hash of all inputs).

    ``b_chars`` and ``fortunes`` (a number of documents) shrink the corpora for tests.
    """
    facts = corpus.make_facts()
    a_docs, a_held = corpus.corpus_a(facts, fact_copies, limit=fortunes)
    b_train, b_held = corpus.split(corpus.python_sources(b_chars))
    key = cache_key(cfg=cfg, seed=seed, fact_copies=fact_copies, a=_digest(a_docs), b=_digest(b_train),
                    version=1)
    entry = load_cached(key)
    tok = wrap(entry["tokenizer"]) if entry else train_tokenizer(a_docs + b_train[::4], cfg.vocab_size)
    bench = Bench(tok, encode_stream(tok, a_docs), encode_stream(tok, b_train),
                  fixed_windows(encode_stream(tok, a_held), n_eval, cfg.context),
                  fixed_windows(encode_stream(tok, b_held), n_eval, cfg.context),
                  make_probe(tok, [(f.prompt, " " + f.city) for f in facts]))
    torch.manual_seed(seed)
    model = build_gpt2(cfg, tok.eos_token_id).to(device)
    if entry:
        model.load_state_dict(entry["state_dict"])
        model.eval()
        return Scenario(model, bench, entry["history"], True)
    history = pretrain(model, bench.a_train, cfg, torch.Generator().manual_seed(seed),
                       on_eval=lambda step, m: measure(m, bench))
    save_cached(key, {k: v.cpu() for k, v in model.state_dict().items()}, to_json(tok), history)
    return Scenario(model, bench, history, False)
