"""Causal language models tuned on instructions / chats, with LoRA.

``task`` (the task, its options and its data, modeling, evaluation and serving roles),
``examples`` (chat and prompt/response readers), ``chat_tokenizer`` (byte-level BPE and chat
template), ``model`` (Llama-family backbone with LoRA), ``generation`` (sampling with a KV
cache), ``metrics`` (exact match, token F1).
"""
