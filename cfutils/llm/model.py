"""A tiny GPT-2 that has something to forget: pretrained on corpus A, cached on disk.

The model is transformers' ``GPT2LMHeadModel`` at toy size (2 blocks, width 128: about 0.7 M
parameters). Pretraining is next-token prediction with AdamW, a linear warm-up and a cosine decay
to zero (``lr_floor``), so the run ends on a plateau. The weights (and the tokenizer they belong to) are cached under
``cfutils.data.data_dir() / "llm"``, keyed by a hash of everything that determines them, and written
atomically -- a re-run loads them in a second, a changed setting retrains.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from ..data import atomic_save, data_dir
from ..repro import progress
from .tokenizer import random_windows


@dataclass(frozen=True)
class TinyConfig:
    """Size of the tiny GPT-2 and of its pretraining run."""

    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    context: int = 64
    vocab_size: int = 2048
    steps: int = 2500
    batch_size: int = 16
    lr: float = 3e-3
    warmup: int = 20
    eval_every: int = 250
    lr_floor: float = 0.0         # the cosine ends at this fraction of ``lr``


def build_gpt2(cfg: TinyConfig, eos_token_id: int) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 of the given size (no dropout: runs are deterministic and short)."""
    config = GPT2Config(n_layer=cfg.n_layer, n_embd=cfg.n_embd, n_head=cfg.n_head, n_positions=cfg.context,
                        vocab_size=cfg.vocab_size, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    return GPT2LMHeadModel(config)


def lm_batch_loss(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a batch of windows ``(B, T)``, averaged over the ``B (T-1)`` predictions."""
    logits = model(input_ids=x).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    r"""Learning-rate factor: linear warm-up, then :math:`f + (1-f)\frac{1+\cos(\pi s)}{2}`, :math:`s\in[0,1]`."""
    if step < warmup:
        return (step + 1) / warmup
    s = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * s))


def pretrain(model: nn.Module, stream: torch.Tensor, cfg: TinyConfig, generator: torch.Generator,
             on_eval: Callable[[int, nn.Module], dict] | None = None) -> list[dict]:
    """Pretrain on random windows of ``stream``; ``on_eval(step, model)`` every ``cfg.eval_every`` steps."""
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, cfg.steps, cfg.warmup, cfg.lr_floor))
    history = []
    model.train()
    for step in progress(range(1, cfg.steps + 1), desc="pretraining", leave=False):
        x = random_windows(stream, cfg.batch_size, cfg.context, generator).to(next(model.parameters()).device)
        loss = lm_batch_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if on_eval is not None and (step % cfg.eval_every == 0 or step == cfg.steps):
            history.append({"step": step, "train_loss": loss.item(), **on_eval(step, model)})
    model.eval()
    return history


def cache_key(**parts) -> str:
    """A short hash of everything that determines the pretrained weights (JSON of ``parts``)."""
    blob = json.dumps(parts, sort_keys=True, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__")
                      else str(o))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(key: str) -> Path:
    """Where the weights with this key live: ``data_dir()/llm/tiny-gpt2-<key>.pt``."""
    return data_dir() / "llm" / f"tiny-gpt2-{key}.pt"


def load_cached(key: str, path: Path | None = None) -> dict | None:
    """The entry ``{"state_dict", "tokenizer", "history"}`` stored at ``path`` (default: the weight
    cache) or ``None``; a broken file, or one written for other settings, is reported and removed."""
    path = path or cache_path(key)
    if not path.exists():
        return None
    try:
        entry = torch.load(path, weights_only=True)
        if entry.get("key") == key:
            return entry
        problem = "holds weights for other settings"
    except Exception as err:  # noqa: BLE001 - an unreadable cache is rebuilt
        problem = f"is unreadable ({type(err).__name__})"
    print(f"[weights] {path.name} {problem}; rebuilding it", file=sys.stderr)
    path.unlink(missing_ok=True)
    return None


def save_cached(key: str, state_dict: dict, tokenizer_json: str, history: list[dict],
                path: Path | None = None) -> Path:
    """Write the entry atomically (temporary file + rename) to ``path`` (default: the weight cache)."""
    path = path or cache_path(key)
    atomic_save({"key": key, "state_dict": state_dict, "tokenizer": tokenizer_json, "history": history}, path)
    return path
