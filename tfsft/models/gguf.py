"""Convert a Llama-architecture GGUF file into a Hugging Face Llama checkpoint folder.

The folder holds ``config.json``, ``model.safetensors`` (float32), ``tokenizer.json``,
``tokenizer_config.json`` (special tokens and the chat template) and ``conversion.json`` (where
it came from), the layout keras-hub's ``Llama3Backbone.from_preset`` and ``tokenizers`` read.

What the conversion undoes (see llama.cpp's ``convert_hf_to_gguf.py``):

- GGUF lists a tensor's dimensions in reverse order; the ``gguf`` package's arrays are already
  in NumPy order, so weights come out as ``[out_features, in_features]`` like PyTorch's.
- Quantized tensors (Q4_1, Q8_0, ...) are dequantised to float32.
- llama.cpp reorders the rows of each attention head of ``attn_q`` / ``attn_k`` from the
  "rotate halves" RoPE layout to interleaved pairs; :func:`unpermute_rows` restores it.
- The byte-level BPE tokenizer (vocabulary, merges, control tokens, the pre-tokenizer's digit
  split) and the chat template come from the ``tokenizer.ggml.*`` metadata.

>>> import numpy as np
>>> rows = np.arange(8)[:, None]         # one head of dimension 8: rows in HF order
>>> gguf_rows = rows.reshape(1, 2, 4, 1).swapaxes(1, 2).reshape(8, 1)   # llama.cpp's order
>>> gguf_rows.ravel().tolist()
[0, 4, 1, 5, 2, 6, 3, 7]
>>> unpermute_rows(gguf_rows, heads=1).ravel().tolist()
[0, 1, 2, 3, 4, 5, 6, 7]
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import CheckpointError
from tfsft.io_utils import atomic_directory

logger = logging.getLogger(__name__)

#: Bumped when the conversion's output changes (a cached folder of another version is redone).
CONVERTER_VERSION = 1

# GGUF tensor name (after ``blk.N.``) -> Hugging Face Llama name (after ``model.layers.N.``).
LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
GLOBAL_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
# llama.cpp's pre-tokenizer names whose regex is "each digit alone, then GPT-2's" (llama-vocab).
_DIGIT_SPLIT_PRETOKENIZERS = {"smollm", "starcoder", "refact", "command-r", "codeshell",
                              "exaone", "minerva"}
_GPT2_PRETOKENIZERS = {"gpt2", "default", "mpt", "olmo", "jais"}


def unpermute_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head row order of a q/k projection (``[heads * dim, in]``)."""
    rows = weight.shape[0]
    if rows % (2 * heads):
        raise CheckpointError(f"a q/k projection with {rows} rows does not split into {heads} "
                              "heads of even size")
    half = rows // heads // 2
    return (weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2)
            .reshape(weight.shape))


def file_digest(path: Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file (names the source of a converted folder)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _field(reader: Any, key: str, default: Any = None, required: bool = True) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if required and default is None:
            raise CheckpointError(f"{reader.path}: the GGUF metadata has no {key!r}; this is not "
                                  "a complete Llama-architecture GGUF file")
        return default
    return field.contents()


def read_gguf(path: str | Path) -> Any:
    """A ``gguf.GGUFReader`` of ``path``, with clear errors for a missing or damaged file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such GGUF file")
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise CheckpointError("converting a GGUF file needs the package gguf: "
                              "`pip install gguf==0.19.0`") from exc
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # gguf raises ValueError/struct.error/OSError for damaged files
        raise CheckpointError(f"{path}: cannot be read as a GGUF file ({exc}); the file is "
                              "incomplete or damaged: copy or install it again") from None
    reader.path = path
    return reader


def llama_config(reader: Any) -> dict[str, Any]:
    """The Hugging Face ``config.json`` of a Llama-architecture GGUF file."""
    architecture = _field(reader, "general.architecture")
    if architecture != "llama":
        raise CheckpointError(f"{reader.path}: architecture {architecture!r} is not supported; "
                              "tfsft converts Llama-architecture GGUF files")
    prefix = "llama."
    tokens = _field(reader, "tokenizer.ggml.tokens")
    tensor_names = {t.name for t in reader.tensors}
    heads = int(_field(reader, prefix + "attention.head_count"))
    hidden = int(_field(reader, prefix + "embedding_length"))
    head_dim = int(_field(reader, prefix + "rope.dimension_count", hidden // heads,
                          required=False))
    if head_dim != hidden // heads:
        raise CheckpointError(f"{reader.path}: partial rotary embeddings (rope dimension "
                              f"{head_dim} of {hidden // heads}) are not supported")
    if _field(reader, prefix + "rope.scaling.type", "none", required=False) not in ("none",
                                                                                    "linear"):
        raise CheckpointError(f"{reader.path}: this GGUF file's RoPE scaling is not supported")
    eos = int(_field(reader, "tokenizer.ggml.eos_token_id"))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(_field(reader, prefix + "vocab_size", len(tokens), required=False)),
        "hidden_size": hidden,
        "intermediate_size": int(_field(reader, prefix + "feed_forward_length")),
        "num_hidden_layers": int(_field(reader, prefix + "block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(_field(reader, prefix + "attention.head_count_kv", heads,
                                          required=False)),
        "max_position_embeddings": int(_field(reader, prefix + "context_length")),
        "rms_norm_eps": float(_field(reader, prefix + "attention.layer_norm_rms_epsilon")),
        "rope_theta": float(_field(reader, prefix + "rope.freq_base", 10000.0, required=False)),
        "hidden_act": "silu",
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "bos_token_id": int(_field(reader, "tokenizer.ggml.bos_token_id", eos, required=False)),
        "eos_token_id": eos,
        "pad_token_id": int(_field(reader, "tokenizer.ggml.padding_token_id", eos,
                                   required=False)),
        "torch_dtype": "float32",
    }


def hf_tensor_name(gguf_name: str) -> str | None:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight`` (None: unused)."""
    base, _, kind = gguf_name.rpartition(".")
    if base.startswith("blk."):
        _, index, part = base.split(".", 2)
        name = LAYER_NAMES.get(part)
        return f"model.layers.{index}.{name}.{kind}" if name else None
    name = GLOBAL_NAMES.get(base)
    return f"{name}.{kind}" if name else None


def llama_tensors(reader: Any, config: dict[str, Any]) -> dict[str, np.ndarray]:
    """The dequantised float32 weights under their Hugging Face names."""
    from gguf.quants import dequantize

    tensors: dict[str, np.ndarray] = {}
    for tensor in reader.tensors:
        name = hf_tensor_name(tensor.name)
        if name is None:
            if tensor.name.endswith("rope_freqs.weight"):
                raise CheckpointError(f"{reader.path}: RoPE frequency factors are not supported")
            logger.info("GGUF tensor %s is not used", tensor.name)
            continue
        try:
            value = np.asarray(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        except NotImplementedError as exc:
            raise CheckpointError(f"{reader.path}: tensor {tensor.name} has quantization "
                                  f"{tensor.tensor_type.name}, which gguf cannot dequantise "
                                  f"({exc})") from None
        expected = tuple(int(d) for d in reversed(tensor.shape))
        if value.shape != expected:
            value = value.reshape(expected)
        if ".self_attn.q_proj." in name:
            value = unpermute_rows(value, config["num_attention_heads"])
        elif ".self_attn.k_proj." in name:
            value = unpermute_rows(value, config["num_key_value_heads"])
        tensors[name] = np.ascontiguousarray(value)
    missing = [n for n in ("model.embed_tokens.weight", "model.norm.weight",
                           "model.layers.0.self_attn.q_proj.weight") if n not in tensors]
    if missing:
        raise CheckpointError(f"{reader.path}: the GGUF file lacks the tensors {missing}")
    return tensors


def _pre_tokenizer(reader: Any) -> dict[str, Any]:
    """The ``tokenizers`` pre-tokenizer of the GGUF's ``tokenizer.ggml.pre`` name."""
    pre = str(_field(reader, "tokenizer.ggml.pre", "default", required=False))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    if pre in _DIGIT_SPLIT_PRETOKENIZERS:
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level]}
    if pre in _GPT2_PRETOKENIZERS:
        return byte_level
    known = ", ".join(sorted(_DIGIT_SPLIT_PRETOKENIZERS | _GPT2_PRETOKENIZERS))
    raise CheckpointError(f"{reader.path}: pre-tokenizer {pre!r} is not supported (known: "
                          f"{known})")


def tokenizer_files(reader: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tokenizer.json`` and ``tokenizer_config.json`` from the ``tokenizer.ggml`` metadata."""
    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise CheckpointError(f"{reader.path}: tokenizer model {model!r} is not supported; "
                              "tfsft converts byte-level BPE (gpt2) tokenizers")
    tokens = [str(t) for t in _field(reader, "tokenizer.ggml.tokens")]
    types = [int(t) for t in _field(reader, "tokenizer.ggml.token_type", [1] * len(tokens),
                                    required=False)]
    merges = [str(m) for m in _field(reader, "tokenizer.ggml.merges")]
    # Token types (llama.cpp): 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": types[i] == 3}
             for i in range(len(tokens)) if types[i] in (3, 4)]
    tokenizer_json = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": _pre_tokenizer(reader),
        "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {token: i for i, token in enumerate(tokens)}, "merges": merges},
    }

    def token(key: str) -> str | None:
        index = _field(reader, key, None, required=False)
        return tokens[int(index)] if index is not None else None

    eos = token("tokenizer.ggml.eos_token_id")
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "bos_token": token("tokenizer.ggml.bos_token_id") or eos,
        "eos_token": eos,
        "pad_token": token("tokenizer.ggml.padding_token_id") or eos,
        "unk_token": token("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": bool(_field(reader, "tokenizer.ggml.add_bos_token", False,
                                     required=False)),
        "add_prefix_space": False,
        "chat_template": _field(reader, "tokenizer.chat_template", None, required=False),
        "model_max_length": int(_field(reader, "llama.context_length")),
        "additional_special_tokens": [a["content"] for a in added if a["special"]],
    }
    return tokenizer_json, config


def convert_gguf(source: str | Path, target: str | Path) -> Path:
    """Write the Hugging Face Llama folder of GGUF file ``source`` to ``target`` (atomically).

    >>> convert_gguf("no/such.gguf", "out")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfsft.errors.CheckpointError: no/such.gguf: no such GGUF file
    """
    from safetensors.numpy import save_file

    source, target = Path(source), Path(target)
    reader = read_gguf(source)
    config = llama_config(reader)
    tokenizer_json, tokenizer_config = tokenizer_files(reader)
    logger.info("Converting %s to a float32 checkpoint in %s", source, target)
    tensors = llama_tensors(reader, config)
    if tensors["model.embed_tokens.weight"].shape[0] != config["vocab_size"]:
        config["vocab_size"] = int(tensors["model.embed_tokens.weight"].shape[0])
    with atomic_directory(target, overwrite=True) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer_json, ensure_ascii=False))
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")
        (tmp / "conversion.json").write_text(json.dumps({
            "source": str(source), "source_sha256": file_digest(source),
            "converter_version": CONVERTER_VERSION,
            "name": _field(reader, "general.name", "", required=False),
            "license": _field(reader, "general.license", "", required=False),
        }, indent=2) + "\n")
    return target


def converted_folder(source: Path, cache: Path) -> Path:
    """The converted folder of ``source`` under ``cache``, converting it on first use."""
    digest = file_digest(source)
    folder = cache / f"{source.stem}-{digest[:12]}"
    record = folder / "conversion.json"
    if record.exists():
        try:
            saved = json.loads(record.read_text())
        except (OSError, ValueError):
            saved = {}
        if (saved.get("converter_version") == CONVERTER_VERSION
                and saved.get("source_sha256") == digest
                and (folder / "model.safetensors").exists()):
            return folder
    return convert_gguf(source, folder)
