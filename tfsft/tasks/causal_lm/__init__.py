"""Causal language models tuned on instructions / chats, with LoRA.

``task`` (the task and its options), ``examples`` (chat and prompt/response readers),
``chat_tokenizer`` (byte-level BPE and chat template), ``model`` (Llama-family backbone with
LoRA), ``generation`` (sampling with a KV cache), ``metrics`` (exact match, token F1).
"""
