"""Write a Hugging Face Llama folder as a GGUF file: the inverse of :mod:`tfsft.models.gguf`.

The file is what llama.cpp (and everything built on it) loads: llama.cpp's tensor names, the rows
of ``attn_q`` / ``attn_k`` in its per-head RoPE order, the byte-level BPE tokenizer (vocabulary,
merges, token types, the pre-tokenizer's name) and the chat template in the ``tokenizer.ggml.*``
metadata, written with the ``gguf`` package (llama.cpp's own writer). Weights are float32, or
F16 / Q8_0 / Q4_1 (:data:`GGUF_VARIANTS`); norms stay float32 in every variant.

>>> gguf_name("model.layers.3.self_attn.q_proj.weight")
'blk.3.attn_q.weight'
>>> gguf_name("lm_head.weight")
'output.weight'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.models.gguf import GLOBAL_NAMES, LAYER_NAMES

#: Variant -> (GGUF tensor type of the weight matrices, file name, what the file holds).
GGUF_VARIANTS = {
    "fp32": ("F32", "model.gguf", "float32 weights"),
    "fp16": ("F16", "model-f16.gguf", "F16 weights (norms in F32)"),
    "int8-dynamic": ("Q8_0", "model-q8_0.gguf",
                     "Q8_0: 8-bit weights in blocks of 32 with one scale each (norms in F32)"),
    "int4": ("Q4_1", "model-q4_1.gguf",
             "Q4_1: 4-bit weights in blocks of 32 with a scale and a minimum each (the type "
             "SmolLM2's own GGUF release uses); the token embedding (also the output "
             "projection) in Q8_0, norms in F32"),
}
#: tokenizer.json pre-tokenizers -> llama.cpp's ``tokenizer.ggml.pre`` name.
_DIGITS_THEN_BYTES = "smollm"
_BYTES = "gpt2"
_TO_GGUF = {**{hf: gguf for gguf, hf in LAYER_NAMES.items()},
            **{hf: gguf for gguf, hf in GLOBAL_NAMES.items()}}


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name of a Hugging Face Llama tensor (the inverse of
    :func:`tfsft.models.gguf.hf_tensor_name`)."""
    base, _, kind = hf_name.rpartition(".")
    if base.startswith("model.layers."):
        _, _, index, part = base.split(".", 3)
        if part in _TO_GGUF:
            return f"blk.{index}.{_TO_GGUF[part]}.{kind}"
    elif base in _TO_GGUF:
        return f"{_TO_GGUF[base]}.{kind}"
    raise ConfigError(f"GGUF: the tensor {hf_name} has no llama.cpp name (tfsft writes "
                      "the Llama architecture: attention, SwiGLU feed-forward, RMS norms)")


def permute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's per-head row order of a q/k projection (the inverse of
    :func:`tfsft.models.gguf.unpermute_rows`).

    >>> permute_rows(np.arange(8)[:, None], heads=1).ravel().tolist()
    [0, 4, 1, 5, 2, 6, 3, 7]
    """
    half = weight.shape[0] // heads // 2
    return (weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2)
            .reshape(weight.shape))


def pre_tokenizer_name(tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for the pre-tokenizer of a ``tokenizer.json`` (each digit alone then
    GPT-2's byte-level split: ``smollm``; the byte-level split alone: ``gpt2``).

    >>> pre_tokenizer_name({"model": {"type": "BPE"},
    ...                     "pre_tokenizer": {"type": "ByteLevel", "use_regex": True}})
    'gpt2'
    """
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    kinds = ["digits" if s.get("type") == "Digits" and s.get("individual_digits") else
             "bytes" if s.get("type") == "ByteLevel" and s.get("use_regex", True) else
             str(s.get("type")) for s in steps or []]
    model = (tokenizer.get("model") or {}).get("type")
    if model == "BPE" and kinds == ["bytes"]:
        return _BYTES
    if model == "BPE" and kinds == ["digits", "bytes"]:
        return _DIGITS_THEN_BYTES
    raise ConfigError("GGUF: the tokenizer's pre-tokenizer "
                      f"({', '.join(kinds) or 'none'}) is not one tfsft "
                      "writes to GGUF (byte-level BPE, optionally splitting digits); export "
                      "with --format hf and convert that folder with llama.cpp's "
                      "convert_hf_to_gguf.py")


def write_gguf(hf_folder: Path, path: Path, variant: str = "fp32",
               name: str | None = None) -> Path:
    """The GGUF file of the Hugging Face Llama folder ``hf_folder`` (``config.json``,
    ``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``), its weight matrices
    in ``variant``'s type (:data:`GGUF_VARIANTS`); ``name`` is the model's name in the file."""
    import gguf
    from gguf.quants import quantize
    from safetensors.numpy import load_file

    config = json.loads((hf_folder / "config.json").read_text())
    if config.get("model_type") != "llama":
        raise ConfigError(f"GGUF: tfsft writes Llama-architecture models, not "
                          f"{config.get('model_type')!r} ones; llama.cpp's convert_hf_to_gguf.py "
                          "converts the Hugging Face folder (--format hf)")
    tokenizer = json.loads((hf_folder / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer_config = json.loads((hf_folder / "tokenizer_config.json").read_text(
        encoding="utf-8"))
    kind_name = GGUF_VARIANTS[variant][0]
    kind = gguf.GGMLQuantizationType[kind_name]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    hidden = config["hidden_size"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name or str(config.get("_name_or_path") or "tfsft model"))
    writer.add_file_type(gguf.LlamaFileType.ALL_F32 if kind_name == "F32"
                         else gguf.LlamaFileType[f"MOSTLY_{kind_name}"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(int(config.get("max_position_embeddings", 2048)))
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(int(config.get("head_dim") or hidden // heads))
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    tokens, types = _vocabulary(tokenizer)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = tokenizer["model"].get("merges") or []
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    for key, add in (("bos_token_id", writer.add_bos_token_id),
                     ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id)):
        if config.get(key) is not None:
            add(int(config[key]))
    writer.add_add_bos_token(bool(tokenizer_config.get("add_bos_token", False)))
    template = tokenizer_config.get("chat_template")
    if isinstance(template, str):
        writer.add_chat_template(template)
    if kind_name not in ("F32", "F16"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, value in load_file(str(hf_folder / "model.safetensors")).items():
        if name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue
        value = np.asarray(value, np.float32)
        if ".self_attn.q_proj." in name:
            value = permute_rows(value, heads)
        elif ".self_attn.k_proj." in name:
            value = permute_rows(value, kv_heads)
        tensor_kind = _tensor_kind(name, value, kind, gguf)
        data = value if tensor_kind == gguf.GGMLQuantizationType.F32 else (
            value.astype(np.float16) if tensor_kind == gguf.GGMLQuantizationType.F16
            else quantize(value, tensor_kind))
        writer.add_tensor(gguf_name(name), data, raw_dtype=tensor_kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _tensor_kind(name: str, value: np.ndarray, wanted: Any, gguf: Any) -> Any:
    """The type of one tensor: norms (1-D) in F32, blocks only where rows split into them,
    the token embedding at 8 bits at least."""
    types = gguf.GGMLQuantizationType
    if value.ndim < 2 or wanted == types.F32:
        return types.F32
    if wanted == types.F16:
        return types.F16
    if name.startswith("model.embed_tokens") and wanted in (types.Q4_0, types.Q4_1):
        wanted = types.Q8_0
    block, _ = gguf.GGML_QUANT_SIZES[wanted]
    return wanted if value.shape[-1] % block == 0 else types.F16


def _vocabulary(tokenizer: dict[str, Any]) -> tuple[list[str], list[int]]:
    """Tokens by id and llama.cpp's token types (1 normal, 3 control, 4 user-defined)."""
    vocab = dict(tokenizer["model"]["vocab"])
    types = {}
    for added in tokenizer.get("added_tokens") or []:
        vocab[added["content"]] = added["id"]
        types[added["id"]] = 3 if added.get("special") else 4
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for token, index in vocab.items():
        tokens[index] = token
    return tokens, [types.get(i, 1) for i in range(size)]
