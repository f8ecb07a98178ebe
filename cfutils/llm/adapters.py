r"""Which weights a fine-tuning run may change: all of them, LoRA, (IA)^3, or the upper blocks only.

* **full**: every parameter;
* **LoRA** (Hu et al. 2021): a frozen weight :math:`W_0\in\R^{d\times k}` becomes
  :math:`W_0 + \frac{\alpha}{r} BA`, :math:`B\in\R^{d\times r}` (zeros at the start), :math:`A\in\R^{r\times k}`;
  only :math:`A, B` learn, :math:`r(d+k)` numbers per adapted matrix;
* **(IA)^3** (Liu et al. 2022): learned vectors rescale keys, values and the MLP's hidden activations;
* **freeze**: the embeddings (and the tied output layer) and the lowest blocks stay as pretrained.

Every function returns a *copy*: the pretrained base model is never modified.
"""
from __future__ import annotations

import copy
import warnings

import torch
from peft import IA3Config, LoraConfig
from peft import get_peft_model as _get_peft_model
from torch import nn
from transformers.pytorch_utils import Conv1D

# Module-name suffixes of the projections, per architecture (transformers' names).
TARGETS = {
    "gpt2": {"attn": ("attn.c_attn", "attn.c_proj"), "all": ("c_attn", "c_proj", "c_fc"),
             "ia3": ("c_attn", "mlp.c_proj"), "ia3_ff": ("mlp.c_proj",)},
    "llama": {"attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
              "all": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
              "ia3": ("k_proj", "v_proj", "down_proj"), "ia3_ff": ("down_proj",)},
}


def get_peft_model(model: nn.Module, config) -> nn.Module:
    """peft's ``get_peft_model`` without its deprecation notice from transformers 5 (nothing to fix on our side)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return _get_peft_model(model, config)


def architecture(model: nn.Module) -> str:
    """``"gpt2"`` or ``"llama"`` (the families whose module names :data:`TARGETS` knows)."""
    kind = model.config.model_type
    if kind not in TARGETS:
        raise ValueError(f"model type {kind!r} has no known projection names; known: {sorted(TARGETS)}")
    return kind


def projections(model: nn.Module) -> dict[str, nn.Module]:
    """Every linear projection (``nn.Linear`` or GPT-2's ``Conv1D``) by its qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))}


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def check_targets(model: nn.Module, targets: tuple[str, ...] | list[str], parameter: str = "lora_targets") -> None:
    """Fail (naming ``parameter``) unless every target suffix matches at least one projection of ``model``."""
    if isinstance(targets, str) or not targets:
        raise ValueError(f"{parameter}={targets!r} must be a non-empty list of module names")
    names = list(projections(model))
    missing = [t for t in targets if not any(_matches(n, t) for n in names)]
    if missing:
        suffixes = sorted({n.split(".")[-1] for n in names})
        raise ValueError(f"{parameter}: {missing} match no linear module of this {model.config.model_type} model; "
                         f"its projections are named {suffixes}")


def lora_parameter_count(model: nn.Module, rank: int, targets: tuple[str, ...]) -> int:
    r""":math:`\sum r(d_\text{in} + d_\text{out})` over the targeted projections: LoRA's trainable parameters."""
    total = 0
    for name, m in projections(model).items():
        if any(_matches(name, t) for t in targets) and "lm_head" not in name:
            d_in, d_out = (m.weight.shape if isinstance(m, Conv1D) else m.weight.shape[::-1])
            total += rank * (d_in + d_out)
    return total


def full(base: nn.Module) -> nn.Module:
    """A trainable copy of every parameter."""
    model = copy.deepcopy(base)
    model.requires_grad_(True)
    return model


def lora(base: nn.Module, rank: int, targets: tuple[str, ...], alpha: float | None = None,
         embeddings: bool = False) -> nn.Module:
    r"""LoRA of rank ``rank`` on the ``targets`` projections, :math:`\alpha = 2r` by default (Biderman et al.).

    ``embeddings=True`` also trains the token embeddings (tied to the output layer in GPT-2 and
    SmolLM2, so both move together), as peft's ``modules_to_save`` would without breaking the tie.
    """
    check_targets(base, targets)
    fan_in_fan_out = architecture(base) == "gpt2"          # GPT-2's Conv1D stores W transposed
    config = LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=0.0, target_modules=list(targets),
                        fan_in_fan_out=fan_in_fan_out, bias="none")
    model = get_peft_model(copy.deepcopy(base), config)
    if embeddings:
        model.get_input_embeddings().weight.requires_grad_(True)
    return model


def ia3(base: nn.Module) -> nn.Module:
    """(IA)^3 on the architecture's keys/values and MLP hidden activations (peft's ``IA3Config``)."""
    names = TARGETS[architecture(base)]
    config = IA3Config(target_modules=list(names["ia3"]), feedforward_modules=list(names["ia3_ff"]),
                       fan_in_fan_out=architecture(base) == "gpt2")
    return get_peft_model(copy.deepcopy(base), config)


def blocks(model: nn.Module) -> nn.ModuleList:
    """The transformer blocks, bottom first."""
    inner = getattr(model, "transformer", None) or getattr(model, "model", None)
    return getattr(inner, "h", None) or inner.layers


def freeze_lower(base: nn.Module, n_frozen: int) -> nn.Module:
    """A copy whose embeddings (hence the tied output layer) and ``n_frozen`` lowest blocks are frozen."""
    model = full(base)
    model.get_input_embeddings().requires_grad_(False)
    inner = getattr(model, "transformer", None)
    if inner is not None and hasattr(inner, "wpe"):
        inner.wpe.requires_grad_(False)
    for block in blocks(model)[:n_frozen]:
        block.requires_grad_(False)
    return model


def trainable(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
