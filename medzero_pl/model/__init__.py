"""The policy model: loading (`loading.py`: checkpoints, the GGUF alias, `ModelConfig`), the attention implementations
(`attention.py`), the training forward (`forward.py`: completion log-probs, the shared-prompt pass) and the LM head
fused into the log-softmax (`lm_head.py`). Imports torch and transformers, never Lightning."""
