"""The LLM case study (chapter 8): a language model that has something to forget, and the remedies.

``corpus`` (general English + synthetic facts = A, Python source = B) -> ``tokenizer`` (byte-level BPE)
-> ``model`` (a tiny GPT-2, pretrained on A and cached) -> ``finetune`` (one loop, any ``methods``
variant: full, LoRA, (IA)^3, freezing, replay, EWC, distillation) -> ``evaluate`` (held-out losses,
fact recall). ``smollm`` loads a real pretrained model (SmolLM2-135M) offline; ``hub`` resolves model names.
"""
