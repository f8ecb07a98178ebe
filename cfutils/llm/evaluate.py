r"""How much a language model knows: held-out loss and exact-match recall of facts.

* **loss** on fixed held-out windows: :math:`\mathcal L = -\frac1N\sum_t \log p_\theta(x_t\mid x_{<t})`
  (nats per token; perplexity is :math:`e^{\mathcal L}`);
* **recall**: for every fact, the prompt and its answer ("Alice Adler lives in" + " Paris") are fed in
  one forward pass and the answer counts as recalled when the greedy prediction (arg max) at every
  answer position is the answer's token -- teacher-forced greedy exact match. Also reported: the mean
  log-probability of the answer, a continuous version of the same measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Probe:
    """Prompts with their answers, tokenised and right-padded: ``ids[i, answer[i]]`` are the answer tokens."""

    ids: torch.Tensor          # (n, T) token ids
    mask: torch.Tensor         # (n, T) 1 for real tokens
    answer: torch.Tensor       # (n, T) bool, True at answer tokens

    def __len__(self) -> int:
        return len(self.ids)


def make_probe(tokenizer, pairs: list[tuple[str, str]]) -> Probe:
    """Tokenise ``(prompt, answer)`` pairs; the answer keeps its leading space (" Paris")."""
    rows, spans = [], []
    for prompt, answer in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + answer, add_special_tokens=False)["input_ids"]
        if full[:len(p)] != p or len(full) == len(p):
            raise ValueError(f"the answer {answer!r} does not tokenise separately from the prompt {prompt!r}")
        rows.append(full)
        spans.append((len(p), len(full)))
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tokenizer.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    answer = torch.zeros(len(rows), T, dtype=torch.bool)
    for i, (row, (a, b)) in enumerate(zip(rows, spans)):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        answer[i, a:b] = True
    return Probe(ids, mask, answer)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def recall(model: nn.Module, probe: Probe, batch_size: int = 128) -> tuple[float, float]:
    """(fraction of answers recalled exactly, mean log-probability of the answer)."""
    hits, logps = [], []
    was = model.training
    model.eval()
    dev = _device(model)
    for sl in torch.arange(len(probe)).split(batch_size):
        ids, mask, ans = probe.ids[sl].to(dev), probe.mask[sl].to(dev), probe.answer[sl].to(dev)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target, where = ids[:, 1:], ans[:, 1:]
        correct = (logits.argmax(-1) == target) | ~where
        hits.append(correct.all(dim=1).float())
        lp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
        logps.append((lp * where).sum(1) / where.sum(1))
    model.train(was)
    return float(torch.cat(hits).mean()), float(torch.cat(logps).mean())


@torch.no_grad()
def lm_loss(model: nn.Module, windows: torch.Tensor, batch_size: int = 32) -> float:
    """Mean next-token cross-entropy (nats) over the fixed windows ``(n, T)``."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for w in windows.split(batch_size):
        w = w.to(_device(model))
        logits = model(input_ids=w).logits[:, :-1].float()
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1),
                                       reduction="sum"))
        count += w[:, 1:].numel()
    model.train(was)
    return total / count


@dataclass
class Bench:
    """What a fine-tuning run learns from and is judged by.

    ``a_*`` is the old, general data (forgetting is measured there), ``b_*`` the new domain (learning);
    ``*_train`` are token streams, ``*_eval`` fixed windows; ``probe`` holds the facts the model should
    keep, ``b_probe`` (optional) new facts it should learn, ``seen_probe`` (optional) the old facts asked
    with a prompt seen in training. ``replay`` is the old data a method may revisit (general text
    without the fact sentences); ``a_train`` when absent.
    """

    tokenizer: object
    a_train: torch.Tensor
    b_train: torch.Tensor
    a_eval: torch.Tensor
    b_eval: torch.Tensor
    probe: Probe
    b_probe: Probe | None = None
    seen_probe: Probe | None = None
    replay: torch.Tensor | None = None

    @property
    def old_data(self) -> torch.Tensor:
        """The stream replay and EWC may use."""
        return self.a_train if self.replay is None else self.replay


def measure(model: nn.Module, bench: Bench) -> dict[str, float]:
    """Loss on A and B, recall (and answer log-probability) of the facts; ``b_recall`` with a ``b_probe``."""
    a_recall, a_logp = recall(model, bench.probe)
    out = {"a_loss": lm_loss(model, bench.a_eval), "b_loss": lm_loss(model, bench.b_eval),
           "recall": a_recall, "answer_logp": a_logp}
    if bench.b_probe is not None:
        out["b_recall"] = recall(model, bench.b_probe)[0]
    if bench.seen_probe is not None:
        out["recall_seen"] = recall(model, bench.seen_probe)[0]
    return out
