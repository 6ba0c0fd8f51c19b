"""The policy model: loading (`loading.py`: checkpoints, the GGUF alias, `ModelConfig`), the attention implementations
(`attention.py`), the training forward (`forward.py`: completion log-probs, the shared-prompt pass), the LM head
fused into the log-softmax (`lm_head.py`) and LoRA adapters through peft (`lora.py`). Imports torch, transformers and
peft, never Lightning."""
