"""A tiny random Llama-architecture GGUF file (byte-level BPE, ChatML template) for tests.

Written with the ``gguf`` package's own writer, like llama.cpp's converters write real ones, so
tfsft's conversion reads it as it reads SmolLM2's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsft.tasks.causal_lm.chat_tokenizer import byte_symbols

CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
          "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt "
          "%}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def write_tiny_gguf(path: str | Path, layers: int = 2, hidden: int = 32, heads: int = 4,
                    kv_heads: int = 2, intermediate: int = 64, seed: int = 0,
                    tied: bool = True) -> Path:
    import gguf

    rng = np.random.default_rng(seed)
    tokens = SPECIAL + byte_symbols()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "e r"]
    tokens += ["Ġt", "he", "Ġthe", "in", "er"]
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_block_count(layers)
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(intermediate)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3] * len(SPECIAL) + [1] * (vocab - len(SPECIAL)))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_chat_template(CHATML)

    def weight(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    head_dim = hidden // heads
    writer.add_tensor("token_embd.weight", weight(vocab, hidden, scale=0.5))
    for i in range(layers):
        p = f"blk.{i}."
        writer.add_tensor(p + "attn_norm.weight", 1 + weight(hidden, scale=0.1))
        writer.add_tensor(p + "attn_q.weight", weight(heads * head_dim, hidden))
        writer.add_tensor(p + "attn_k.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(p + "attn_v.weight", weight(kv_heads * head_dim, hidden))
        writer.add_tensor(p + "attn_output.weight", weight(hidden, heads * head_dim))
        writer.add_tensor(p + "ffn_norm.weight", 1 + weight(hidden, scale=0.1))
        writer.add_tensor(p + "ffn_gate.weight", weight(intermediate, hidden))
        writer.add_tensor(p + "ffn_up.weight", weight(intermediate, hidden))
        writer.add_tensor(p + "ffn_down.weight", weight(hidden, intermediate))
    writer.add_tensor("output_norm.weight", 1 + weight(hidden, scale=0.1))
    if not tied:
        writer.add_tensor("output.weight", weight(vocab, hidden, scale=0.5))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
