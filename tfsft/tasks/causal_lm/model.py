"""A causal language model for fine-tuning: a keras-hub decoder backbone plus LoRA.

:class:`CausalLMModel` computes logits only where the loss needs them: its inputs are
``token_ids``, ``padding_mask`` and ``target_positions`` (``[batch, targets]``: the positions
whose next token is trained on, padded with 0) and its output is ``[batch, targets,
vocabulary]`` float32 logits. On instruction data, where responses are a small share of the
tokens, this skips most of the vocabulary projection (for SmolLM2-135M, 28 M of its 135 M
multiply-adds per token).

>>> import keras_hub
>>> backbone = keras_hub.models.Llama3Backbone(vocabulary_size=64, num_layers=1,
...     num_query_heads=2, num_key_value_heads=1, hidden_dim=8, intermediate_dim=16)
>>> model = CausalLMModel(backbone)
>>> import numpy as np
>>> logits = model({"token_ids": np.ones((2, 5), "int32"), "padding_mask": np.ones((2, 5), "int32"),
...                 "target_positions": np.array([[3, 4], [4, 0]], "int32")})
>>> tuple(logits.shape)
(2, 2, 64)
>>> enable_lora(backbone, rank=2, alpha=4) > 0
True
"""

from __future__ import annotations

import logging
import types
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tfsft.errors import CheckpointError, ConfigError
from tfsft.models.checkpoints import check_safetensors, read_config, resolve_checkpoint

logger = logging.getLogger(__name__)

#: Layers LoRA adapts by default (keras-hub's names in Llama/Gemma/GPT-2 attention).
DEFAULT_LORA_TARGETS = ("query", "value")
#: Names accepted by ``--lora-targets``.
LORA_TARGETS = ("query", "key", "value", "attention_output", "feedforward_gate_dense",
                "feedforward_intermediate_dense", "feedforward_output_dense")
_SUPPORTED_TYPES = ("llama", "mistral", "qwen2", "gemma", "gpt2")


def check_causal_checkpoint(folder: Path) -> str | None:
    """The ``model_type`` of a Hugging Face folder, refused unless it is a decoder tfsft loads
    (``None`` for a keras-hub preset folder)."""
    config = read_config(folder)
    if "class_name" in config:
        return None
    model_type = config.get("model_type")
    if model_type not in _SUPPORTED_TYPES:
        raise CheckpointError(
            f"{folder}: model_type {model_type!r} is not a causal language model tfsft loads "
            f"(the causal-lm task tunes a decoder: {', '.join(_SUPPORTED_TYPES)}); choose one, "
            "such as --model smollm2-135m, or a GGUF file")
    return model_type


def load_causal_backbone(name_or_path: str | Path, dtype: str | None = None) -> keras.Model:
    """A decoder backbone with its pretrained weights from a Hugging Face folder (Llama,
    Mistral, Qwen2, Gemma, GPT-2), a keras-hub preset, a ``.gguf`` file or a known name."""
    import keras_hub

    folder = resolve_checkpoint(name_or_path)
    config = read_config(folder)
    if "class_name" in config:  # a keras-hub preset folder
        return keras_hub.models.Backbone.from_preset(str(folder), dtype=dtype)
    model_type = check_causal_checkpoint(folder)
    if (folder / "model.safetensors").exists():
        check_safetensors(folder / "model.safetensors")
    if model_type == "llama":
        # keras-hub's Llama converter leaves layer_norm_epsilon at its 1e-6 default; SmolLM2 and
        # Llama 3 use 1e-5, which changes logits by ~1e-2.
        return keras_hub.models.Llama3Backbone.from_preset(
            str(folder), dtype=dtype,
            layer_norm_epsilon=float(config.get("rms_norm_eps", 1e-6)))
    return keras_hub.models.Backbone.from_preset(str(folder), dtype=dtype)


@keras.saving.register_keras_serializable(package="tfsft")
class CausalLMModel(keras.Model):
    """Decoder backbone + tied (or own) output projection at the trained positions.

    Args:
        backbone: a keras-hub decoder backbone with ``token_embedding`` (a
            ``ReversibleEmbedding``), e.g. ``Llama3Backbone``.
        lora_rank, lora_alpha, lora_targets: LoRA settings the model was built with (LoRA is
            enabled by :func:`enable_lora`; they are recorded here so that a saved model with
            LoRA loads with the same variables).
    """

    def __init__(self, backbone: keras.Model, lora_rank: int | None = None,
                 lora_alpha: float | None = None,
                 lora_targets: tuple[str, ...] | list[str] = DEFAULT_LORA_TARGETS, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_targets = tuple(lora_targets)
        if lora_rank:
            enable_lora(backbone, lora_rank, lora_alpha, self.lora_targets)
        # no weights of its own: built when the (functional) backbone is
        self.built = bool(backbone.built)

    def call(self, inputs, training=False):
        hidden = self.backbone({"token_ids": inputs["token_ids"],
                                "padding_mask": inputs["padding_mask"]}, training=training)
        positions = keras.ops.cast(inputs["target_positions"], "int32")
        picked = keras.ops.take_along_axis(hidden, keras.ops.expand_dims(positions, -1), axis=1)
        logits = self.backbone.token_embedding(picked, reverse=True)
        return keras.ops.cast(logits, "float32")

    def next_token_logits(self, token_ids, padding_mask):
        """Float32 logits of every position, ``[batch, length, vocabulary]`` (the export graph)."""
        hidden = self.backbone({"token_ids": token_ids, "padding_mask": padding_mask})
        return keras.ops.cast(self.backbone.token_embedding(hidden, reverse=True), "float32")

    @property
    def lora_enabled(self) -> bool:
        return bool(self.lora_rank)

    @property
    def saved_weights_differ(self) -> bool:
        """Whether the weights saved (LoRA merged) are not the weights trained."""
        return self.lora_enabled

    def merged(self) -> CausalLMModel:
        """A float32 copy without LoRA: each adapted kernel is ``W + (alpha / r) A B``."""
        config = self.get_config()
        config["backbone"]["config"]["dtype"] = keras.saving.serialize_keras_object(
            keras.DTypePolicy("float32"))
        config["lora_rank"] = config["lora_alpha"] = None
        twin = type(self).from_config(config)
        values = {}
        for layer in self.backbone._flatten_layers(include_self=False):
            if getattr(layer, "lora_enabled", False):
                kernel = layer._get_kernel_with_merged_lora()[0]
                values[layer._kernel.path] = keras.ops.convert_to_numpy(kernel)
        for variable in self.backbone.weights:
            if "lora_kernel" not in variable.path:
                values.setdefault(variable.path, keras.ops.convert_to_numpy(variable))
        missing = [v.path for v in twin.backbone.weights if v.path not in values]
        if missing:
            raise RuntimeError(f"merging LoRA: no values for {missing[:3]}")
        for variable in twin.backbone.weights:
            variable.assign(values[variable.path])
        return twin

    def with_float32_compute(self) -> CausalLMModel:
        """The same model (LoRA merged) computing in float32 throughout, for saving."""
        return self.merged()

    def compile_from_config(self, config):
        from tfsft.models.text_model import register_training_objects

        register_training_objects()
        super().compile_from_config(config)

    def get_config(self):
        backbone = keras.saving.serialize_keras_object(self.backbone)
        if hasattr(self.backbone, "tie_word_embeddings"):
            # keras-hub 0.32's LlamaBackbone.get_config leaves it out: a tied model would load
            # with an untied, untrained output projection
            backbone["config"]["tie_word_embeddings"] = bool(self.backbone.tie_word_embeddings)
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": backbone,
            "lora_rank": self.lora_rank,
            "lora_alpha": self.lora_alpha,
            "lora_targets": list(self.lora_targets),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def enable_lora(backbone: keras.Model, rank: int, alpha: float | None = None,
                targets: tuple[str, ...] | list[str] = DEFAULT_LORA_TARGETS) -> int:
    """Freeze ``backbone`` and add rank-``rank`` LoRA adapters (scale ``alpha / rank``) to its
    layers named in ``targets``; returns how many layers were adapted.

    Adapted layers save their frozen kernel and both LoRA matrices separately, so that a
    checkpoint or backup restores training exactly (Keras' own ``save_own_variables`` stores
    the merged kernel and zeroes the adapters on load, after which LoRA can no longer learn).
    """
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ValueError(f"unknown LoRA target layer(s) {unknown}; choose from {LORA_TARGETS}")
    widest = max_lora_rank(backbone, targets)
    if widest is not None and rank > widest:
        raise ConfigError(f"--lora-rank {rank} is above what the adapted layers can use: "
                          f"their narrowest side is {widest} wide, so a rank above {widest} "
                          f"adds weights but no expressiveness; choose at most {widest} (or "
                          "--lora-rank 0 for full fine-tuning)")
    backbone.trainable = True
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = False
    adapted = 0
    for layer in backbone._flatten_layers(include_self=False):
        if layer.name in targets and hasattr(layer, "enable_lora") and layer.weights:
            layer.trainable = True
            if not getattr(layer, "lora_enabled", False):
                layer.enable_lora(rank, lora_alpha=alpha if alpha is not None else rank)
            _save_lora_separately(layer)
            adapted += 1
    if not adapted:
        raise ValueError(f"no layer named {list(targets)} in {backbone.name}; LoRA needs "
                         "attention layers with those names")
    return adapted


def max_lora_rank(backbone: keras.Model, targets: tuple[str, ...] | list[str]) -> int | None:
    """The highest useful LoRA rank on ``targets``: the narrowest side (input or output) of
    any targeted kernel, as Keras factors it (``A: kernel.shape[:-1] + (rank,)``,
    ``B: (rank, kernel.shape[-1])``)."""
    sides = []
    for layer in backbone._flatten_layers(include_self=False):
        kernel = getattr(layer, "kernel", None) if layer.name in targets else None
        if kernel is not None:
            shape = tuple(kernel.shape)
            sides.append(min(int(np.prod(shape[:-1])), int(shape[-1])))
    return min(sides) if sides else None


def _save_lora_separately(layer: keras.layers.Layer) -> None:
    """Store the layer's variables as they are (kernel, bias, lora_kernel_a, lora_kernel_b)."""
    layer.save_own_variables = types.MethodType(keras.layers.Layer.save_own_variables, layer)
    layer.load_own_variables = types.MethodType(keras.layers.Layer.load_own_variables, layer)


def trainable_summary(model: keras.Model) -> dict[str, Any]:
    """Trainable and total parameter counts (for the log and ``run.json``)."""
    trainable = sum(int(keras.ops.size(v)) for v in model.trainable_weights)
    total = sum(int(keras.ops.size(v)) for v in model.weights)
    return {"trainable_parameters": trainable, "parameters": total}
