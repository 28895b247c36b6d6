"""A tuned causal language model as checkpoint files other runtimes load, and read back.

- :func:`write_hub_folder`: a Hugging Face folder: ``config.json`` (the base checkpoint's
  context length, norm epsilon and RoPE settings, the tokenizer's special-token ids),
  ``model.safetensors`` (float32, ``transformers``' names, written by keras-hub's exporter),
  ``generation_config.json`` and the run's tokenizer files (``tokenizer.json``;
  ``tokenizer_config.json`` with the chat template). ``transformers``'
  ``AutoModelForCausalLM`` and keras-hub's ``from_preset`` load it.
- GGUF, for Llama-architecture models: :func:`tfsft.models.gguf_writer.write_gguf` of that
  folder.
- :func:`read_back`: a folder or GGUF file loaded the way a user's runtime would read it
  (keras-hub's Hugging Face converter; tfsft's GGUF converter), to compare with the run.

The model written is the one the run saved, whose LoRA adapters are merged into its weights.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import ConfigError, TfsftError
from tfsft.io_utils import public_mode

#: keras-hub backbones whose Hugging Face export keras-hub writes.
HUB_BACKBONES = ("Llama3Backbone", "MistralBackbone", "QwenBackbone", "GemmaBackbone",
                 "Gemma3Backbone", "GPT2Backbone")
#: Settings of the base checkpoint's config.json that keras-hub's exported config does not keep.
_BASE_SETTINGS = ("max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling",
                  "sliding_window")


def check_formats(model: Any, tokenizer_folder: Path, formats: Sequence[str]) -> None:
    """Refuse, before any work, a model that ``hf`` or ``gguf`` cannot hold."""
    from tfsft.models.gguf_writer import pre_tokenizer_name

    backbone = model.backbone
    name = type(backbone).__name__
    if "hf" in formats and name not in HUB_BACKBONES:
        raise ConfigError(f"--format hf: keras-hub has no Hugging Face export of a {name}; "
                          "export it as savedmodel, tflite or onnx")
    if "gguf" not in formats:
        return
    if name != "Llama3Backbone":
        raise ConfigError(f"--format gguf writes Llama-architecture models (such as SmolLM2); "
                          f"this run's model is a {name}: export it with --format hf and "
                          "convert that folder with llama.cpp's convert_hf_to_gguf.py")
    if getattr(backbone, "rope_frequency_adjustment_factor", None) is not None:
        raise ConfigError("--format gguf: the model scales its RoPE frequencies (Llama 3.1 "
                          "style), which tfsft's GGUF writer does not write; export with "
                          "--format hf and convert that folder with llama.cpp")
    pre_tokenizer_name(json.loads((tokenizer_folder / "tokenizer.json").read_text(
        encoding="utf-8")))


def write_hub_folder(model: Any, tokenizer_folder: Path, base_checkpoint: str | None,
                     folder: Path) -> Path:
    """``model`` (a :class:`~tfsft.tasks.causal_lm.model.CausalLMModel`) as a Hugging Face
    folder (see the module docstring); ``base_checkpoint`` names the checkpoint it was tuned
    from (its settings are kept where it is still there)."""
    from safetensors.numpy import load_file, save_file

    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer

    backbone = model.backbone
    folder.mkdir(parents=True, exist_ok=True)
    try:
        backbone.export_to_transformers(str(folder))
    except ValueError as exc:  # keras-hub: "Export to Transformers format not implemented"
        raise ConfigError(f"--format hf: {exc}") from None
    weights_file = folder / "model.safetensors"
    tensors = {name: np.asarray(value, np.float32)
               for name, value in load_file(str(weights_file)).items()}
    if not backbone.tie_word_embeddings:  # keras-hub's backbone export leaves the head out
        tensors["lm_head.weight"] = np.ascontiguousarray(
            np.asarray(backbone.token_embedding.reverse_embeddings, np.float32).T)
    save_file(tensors, str(weights_file), metadata={"format": "pt"})
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_folder / name, folder / name)
    tokenizer = ChatTokenizer.from_pretrained(folder)
    exported = json.loads((folder / "config.json").read_text())
    base = _base_config(base_checkpoint)
    config = {**exported, **{key: base[key] for key in _BASE_SETTINGS if key in base},
              "eos_token_id": int(tokenizer.eos_id), "pad_token_id": int(tokenizer.pad_id),
              "torch_dtype": "float32"}
    if tokenizer.bos_id is not None:
        config["bos_token_id"] = int(tokenizer.bos_id)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {key: config[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")
                  if key in config}
    (folder / "generation_config.json").write_text(
        json.dumps({**generation, "_from_model_config": True}, indent=2) + "\n")
    for path in folder.rglob("*"):  # safetensors writes its files for the owner only
        public_mode(path, folder=path.is_dir())
    return folder


def _base_config(base_checkpoint: str | None) -> dict[str, Any]:
    """The base checkpoint's ``config.json``; empty where it is gone or is a keras-hub preset
    (keras-hub's exported values stand then)."""
    from tfsft.models.checkpoints import read_config, resolve_checkpoint

    if not base_checkpoint:
        return {}
    try:
        config = read_config(resolve_checkpoint(base_checkpoint))
    except (OSError, ValueError, TfsftError):
        return {}
    return {} if "class_name" in config else config


def read_back(path: Path) -> Any:
    """The :class:`~tfsft.tasks.causal_lm.model.CausalLMModel` of a written Hugging Face folder
    (through keras-hub's converter) or GGUF file (through tfsft's GGUF converter, into a
    temporary folder removed after loading)."""
    from tfsft.models.gguf import convert_gguf
    from tfsft.tasks.causal_lm.model import CausalLMModel, load_causal_backbone

    if path.is_dir():
        return CausalLMModel(load_causal_backbone(path))
    scratch = Path(tempfile.mkdtemp(prefix="tfsft-gguf-"))
    try:
        return CausalLMModel(load_causal_backbone(convert_gguf(path, scratch / "folder")))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
