"""A byte-level BPE tokenizer trained on our own corpora, and token streams for language modelling.

Byte-level BPE (GPT-2's scheme) starts from the 256 bytes, so any text round-trips exactly, and merges
the most frequent adjacent pairs until the vocabulary has ``vocab_size`` entries.
"""
from __future__ import annotations

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"


def train_tokenizer(texts: list[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts``; return it as a transformers tokenizer (EOS = ``<|endoftext|>``)."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS],
                            show_progress=False)
    return wrap(bpe.to_str())


def wrap(tokenizer_json: str) -> PreTrainedTokenizerFast:
    """A transformers tokenizer from the JSON of a ``tokenizers`` tokenizer (how the cache stores it)."""
    from tokenizers import Tokenizer

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tokenizer_json), eos_token=EOS)
    tok.pad_token = tok.eos_token
    return tok


def to_json(tokenizer: PreTrainedTokenizerFast) -> str:
    """The tokenizer as a JSON string (inverse of :func:`wrap`)."""
    return tokenizer.backend_tokenizer.to_str()


def encode_stream(tokenizer, documents: list[str]) -> torch.Tensor:
    """All documents as one 1-D token stream, each followed by the EOS token."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for doc_ids in tokenizer(documents, add_special_tokens=False)["input_ids"]:
        ids += doc_ids + [eos]
    return torch.tensor(ids, dtype=torch.long)


def fixed_windows(stream: torch.Tensor, n: int, length: int) -> torch.Tensor:
    """``n`` evenly spaced windows of ``length`` tokens: the same evaluation data for every run."""
    if len(stream) < length + 1:
        raise ValueError(f"a stream of {len(stream)} tokens is shorter than one window of {length}")
    starts = torch.linspace(0, len(stream) - length - 1, n).long()
    return torch.stack([stream[s:s + length] for s in starts.tolist()])


def random_windows(stream: torch.Tensor, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` windows of ``length`` tokens at random offsets (a training batch)."""
    starts = torch.randint(0, len(stream) - length, (n,), generator=generator)
    return torch.stack([stream[s:s + length] for s in starts.tolist()])
