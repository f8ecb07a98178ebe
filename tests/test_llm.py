"""The LLM chapter's helpers (cfutils.llm), on tiny configurations: each test takes about a second."""
from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import numpy as np

from cfutils.llm import adapters, corpus, evaluate, finetune, hub, lab, objectives
from cfutils.llm.model import TinyConfig, build_gpt2, lm_batch_loss
from cfutils.llm.scenario import corpora, tiny_scenario
from cfutils.llm.tokenizer import encode_stream, fixed_windows, train_tokenizer
from cfutils.models import n_parameters

TINY = TinyConfig(n_layer=2, n_embd=16, n_head=2, context=32, vocab_size=512, steps=3, batch_size=2, eval_every=3)
CODE = "def add(a, b):\n    return a + b\n\nclass Box:\n    def __init__(self):\n        self.items = []\n"


@pytest.fixture(scope="module")
def facts():
    return corpus.make_facts()


@pytest.fixture(scope="module")
def tokenizer(facts):
    return train_tokenizer(corpus.fact_sentences(facts, 3) + [CODE] * 20, vocab_size=TINY.vocab_size)


@pytest.fixture(scope="module")
def bench(facts, tokenizer):
    a = encode_stream(tokenizer, corpus.fact_sentences(facts, 2))
    b = encode_stream(tokenizer, [CODE] * 40)
    probe = evaluate.make_probe(tokenizer, [(f.prompt, " " + f.city) for f in facts])
    return evaluate.Bench(tokenizer, a, b, fixed_windows(a, 4, TINY.context), fixed_windows(b, 4, TINY.context), probe)


@pytest.fixture()
def base(tokenizer):
    torch.manual_seed(0)
    return build_gpt2(TINY, tokenizer.eos_token_id)


def test_tokenizer_round_trips_text(tokenizer):
    for text in ["Alice Badigan lives in Paris.", CODE, "naïve café ☃ — 'quotes'\ttabs\n\n", ""]:
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_facts_are_balanced_and_unique(facts):
    assert len({f.name for f in facts}) == len(facts) == 100
    counts = {c: sum(f.city == c for f in facts) for c in corpus.CITIES}
    assert set(counts.values()) == {100 // len(corpus.CITIES)}


def test_pretraining_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    monkeypatch.setenv("CFUTILS_DATA", str(tmp_path))
    data = corpora(fact_copies=1, b_chars=150_000, fortunes=200)
    first = tiny_scenario(TINY, 0, data, n_eval=2)
    again = tiny_scenario(TINY, 0, data, n_eval=2)
    assert not first.from_cache and again.from_cache
    for (k, v), w in zip(first.model.state_dict().items(), again.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert again.history == first.history
    changed = tiny_scenario(TinyConfig(**{**TINY.__dict__, "steps": 4, "eval_every": 4}), 0, data, n_eval=2)
    assert not changed.from_cache
    files = sorted(p.name for p in (tmp_path / "llm").iterdir())
    assert len(files) == 2 and all(f.startswith("tiny-gpt2-") and f.endswith(".pt") for f in files)
    assert not torch.equal(first.bench.a_eval, first.val_bench.a_eval)
    assert torch.equal(first.bench.a_train, first.val_bench.a_train)


def test_kept_weights_are_written_beside_the_record_and_read_back(tmp_path, monkeypatch):
    monkeypatch.setenv("CFUTILS_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("CFUTILS_RESULTS", str(tmp_path / "results"))
    data = corpora(fact_copies=1, b_chars=150_000, fortunes=200)
    first = lab.TinyLab(TINY, data, 2, keep_weights=(0,))
    history = first.pretraining(0)
    kept = first.kept_weights(0)
    assert kept.exists() and kept.with_name(kept.name.replace(".pt", ".json.gz")).exists()
    assert lab.TinyLab(TINY, data, 2).kept_weights(0) is None
    for f in (tmp_path / "cache" / "llm").iterdir():
        f.unlink()                                   # a fresh machine: only the store's copy is left
    again = lab.TinyLab(TINY, data, 2, keep_weights=(0,)).scenario(0)
    assert again.from_cache and again.history == history
    for v, w in zip(first.scenario(0).model.state_dict().values(), again.model.state_dict().values()):
        assert torch.equal(v, w)


def test_a_run_does_not_depend_on_the_global_random_state(base, bench):
    v = finetune.make_variant("lora2", {"all": adapters.TARGETS["gpt2"]["all"]}, lr=1e-2)
    trajectories = []
    for state in (1, 2):
        torch.manual_seed(state)                     # e.g. other runs before this one
        trajectories.append(finetune.finetune(base, v, bench, steps=2, batch_size=2,
                                              context=TINY.context, seed=0)[1])
    assert trajectories[0].train_losses == trajectories[1].train_losses
    assert trajectories[0].rows == trajectories[1].rows


def test_forgetting_at_equal_learning_interpolates_on_the_path():
    t = finetune.Trajectory("full", 1, [0, 1, 2], [{"a_loss": 1.0, "b_loss": 5.0}, {"a_loss": 1.2, "b_loss": 4.0},
                                                   {"a_loss": 2.0, "b_loss": 2.0}])
    assert lab.forgetting_at_learning(t, 0.5) == pytest.approx(0.1)
    assert lab.forgetting_at_learning(t, 2.0) == pytest.approx(0.6)
    assert np.isnan(lab.forgetting_at_learning(t, 4.0))
    hist = [{"step": s, "a_loss": v} for s, v in [(0, 9.0), (50, 4.0), (80, 3.0), (100, 2.97)]]
    assert lab.plateau_change(hist) == pytest.approx(0.03 / 3.0)


def test_lora_trains_exactly_the_expected_parameters_and_leaves_base_untouched(base, bench):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    rank, targets = 4, adapters.TARGETS["gpt2"]["all"]
    # per block: c_attn d->3d, attn.c_proj d->d, c_fc d->4d, mlp.c_proj 4d->d: r(4d + 2d + 5d + 5d) = 16 r d
    expected = TINY.n_layer * 16 * rank * TINY.n_embd
    assert adapters.lora_parameter_count(base, rank, targets) == expected
    variant = finetune.Variant("lora4", "lora", rank, targets, lr=1e-2)
    model, traj = finetune.finetune(base, variant, bench, steps=3, batch_size=2, context=TINY.context, seed=0)
    assert traj.trainable == n_parameters(model) == expected
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())
    merged = model.merge_and_unload()
    assert any(not torch.equal(v, merged.state_dict()[k]) for k, v in before.items() if "attn.c_attn.weight" in k)


def test_lora_attention_only_counts(base):
    assert n_parameters(adapters.lora(base, 2, adapters.TARGETS["gpt2"]["attn"])) == \
        TINY.n_layer * 2 * (4 + 2) * TINY.n_embd


def test_lora_target_that_matches_nothing_fails(base):
    with pytest.raises(ValueError, match="lora_targets"):
        adapters.check_targets(base, ["c_attn", "q_proj"])


def test_freeze_keeps_embeddings_and_lower_block(base):
    model = adapters.freeze_lower(base, 1)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "transformer.wte.weight" in frozen and "transformer.wpe.weight" in frozen
    assert any(n.startswith("transformer.h.0.") for n in frozen)
    assert not any(n.startswith("transformer.h.1.") for n in frozen)


class _Oracle(nn.Module):
    """Always answers correctly: it puts all its mass on the next token of its own input."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        nxt = torch.cat([input_ids[:, 1:], input_ids[:, -1:]], dim=1)
        return SimpleNamespace(logits=torch.nn.functional.one_hot(nxt, self.vocab).float() * 10)


class _Constant(nn.Module):
    """Ignores its input: the same distribution everywhere, peaked at one token."""

    def __init__(self, vocab: int, token: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.nn.functional.one_hot(torch.tensor(token), vocab).float() * 10)

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


def test_fact_recall_is_one_for_an_oracle_and_chance_for_a_constant_model(tokenizer, bench):
    vocab = len(tokenizer)
    assert evaluate.recall(_Oracle(vocab), bench.probe)[0] == 1.0
    paris = tokenizer(" Paris", add_special_tokens=False)["input_ids"]
    assert len(paris) == 1
    assert evaluate.recall(_Constant(vocab, paris[0]), bench.probe)[0] == pytest.approx(1 / len(corpus.CITIES))


def test_every_variant_runs_and_measures(base, bench):
    targets = {"all": adapters.TARGETS["gpt2"]["all"], "attn": adapters.TARGETS["gpt2"]["attn"]}
    for name in ["full", "lora2", "lora2-attn", "lora2-emb", "ia3", "freeze", "replay", "ewc", "distill"]:
        v = finetune.make_variant(name, targets, lr=1e-3, strength={"replay": 0.5, "ewc": 10.0}.get(name, 1.0))
        _, traj = finetune.finetune(base, v, bench, steps=2, batch_size=2, context=TINY.context, seed=0)
        assert traj.steps == [0, 2] and len(traj.train_losses) == 2, name
        assert {"a_loss", "b_loss", "recall", "answer_logp"} <= set(traj.rows[-1]), name
        assert 0 < traj.trainable <= sum(p.numel() for p in base.parameters()), name


def test_objectives_start_as_plain_fine_tuning(base, bench):
    x = fixed_windows(bench.b_train, 2, TINY.context)
    plain = lm_batch_loss(base, x).item()
    for obj in (objectives.EWC(1e3, n_windows=2), objectives.Distill(1.0)):
        obj.setup(base, bench, TINY.context, torch.Generator().manual_seed(0))
        assert obj.loss(base, x).item() == pytest.approx(plain, abs=1e-5)
    replay = objectives.Replay(0.5)
    replay.setup(base, bench, TINY.context, torch.Generator().manual_seed(0))
    mixed = replay.batch(fixed_windows(bench.b_train, 4, TINY.context))
    assert mixed.shape == (4, TINY.context) and torch.equal(mixed[:2], fixed_windows(bench.b_train, 4, TINY.context)[:2])


def test_variant_names_and_schedule():
    finetune.check_variant_names(["full", "lora16-attn", "ewc"])
    with pytest.raises(ValueError, match="methods"):
        finetune.check_variant_names(["full", "lora"])
    s = finetune.eval_schedule(100)
    assert s[:5] == [0, 2, 5, 10, 15] and s[-1] == 100 and s == sorted(set(s))


def test_runs_without_network(monkeypatch, base, bench):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    hub.check_model("tiny-gpt2")
    with pytest.raises(ValueError, match="model"):
        hub.check_model("no-such-model")
    with pytest.raises(ValueError, match="real_model"):
        hub.check_model("no-such-org/no-such-model", parameter="real_model")
    v = finetune.make_variant("lora2", {"all": ("c_attn",), "attn": ("c_attn",)}, 3e-3)
    finetune.finetune(base, v, bench, steps=1, batch_size=2, context=TINY.context, seed=0)


def test_missing_fortunes_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(corpus, "FORTUNES_DIR", tmp_path / "absent")
    with pytest.raises(corpus.CorpusError, match="apt-get install fortunes"):
        corpus.check_fortunes()


def test_hidden_debian_data_falls_back_to_python_docs(monkeypatch):
    monkeypatch.setenv("CFUTILS_DEBIAN_DATA", "off")
    with pytest.raises(corpus.CorpusError, match="fortunes"):
        corpus.check_fortunes()
    for source, docs in (corpus.general_english(), corpus.clean_prose()):
        assert source == "python-docs" and len(docs) > 500
        assert sum(map(len, docs)) > 200_000 and not any(">>>" in d for d in docs)


def test_lora_with_embeddings_trains_the_tied_embeddings_too(base, bench):
    model = adapters.lora(base, 2, ("c_attn",), embeddings=True)
    extra = base.get_input_embeddings().weight.numel()
    assert n_parameters(model) == adapters.lora_parameter_count(base, 2, ("c_attn",)) + extra
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight


def test_lm_fisher_is_the_per_token_sampled_fisher(base, bench):
    x = fixed_windows(bench.a_train, 3, 8)
    F = objectives.lm_fisher(base, x, torch.Generator().manual_seed(0))
    assert set(F) == {n for n, p in base.named_parameters() if p.requires_grad}
    assert all((v >= 0).all() for v in F.values()) and sum(float(v.sum()) for v in F.values()) > 0
