"""How a causal-lm run is served: the generating SavedModel and the frozen forward graph.

:func:`generation_module` is what the SavedModel holds (LoRA merged, float32):

- ``generate(prompt_ids, prompt_lengths, max_new_tokens)``: greedy completions;
- ``sample(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_p, seed)``;
- ``logits(token_ids, padding_mask)``: next-token logits at every position.

Both generating signatures run :class:`~tfsft.tasks.causal_lm.generation.DecodeLoop`, the loop
``tfsft generate`` runs. ``prompt_ids`` are right-padded ``[batch, length]`` int32 token ids of
prompts rendered with the chat template (:meth:`ChatTokenizer.prompt_ids
<tfsft.tasks.causal_lm.chat_tokenizer.ChatTokenizer.prompt_ids>`; the tokenizer files ship
beside the model); the outputs are ``completion_ids`` (``[batch, new]``, padded with -1),
``completion_lengths`` and ``completion`` (the decoded UTF-8 text, computed in the graph).
Prompt *strings* are not tokenized in the graph: the byte-level BPE pre-tokenizer splits text
with a regular expression that uses look-ahead (``\\s+(?!\\S)``), which TensorFlow's RE2 regex
ops cannot express, so an in-graph tokenizer would split some whitespace runs differently from
``tokenizer.json`` and answer with a different model input.

:func:`freeze` is the forward graph for ONNX and TFLite: the Keras model's own forward pass
with its weights frozen into constants (the TFLite converter otherwise keeps Keras 3 variables
as resource variables that LiteRT cannot read), and with the attention mask broadcast by
``expand_dims`` instead of keras-hub's ``mask[:, None, :, :]``, a boolean strided slice with a
new axis that TFLite has no builtin kernel for.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tfsft.errors import ConfigError
from tfsft.tasks.roles import GenerativeServing, OutputCheck

if TYPE_CHECKING:  # pragma: no cover
    import keras
    import tensorflow as tf

    from tfsft.tasks.causal_lm.chat_tokenizer import ChatTokenizer
    from tfsft.tasks.causal_lm.examples import ChatExamples
    from tfsft.tasks.causal_lm.task import CausalLMTask

#: Inputs of the forward graph.
FORWARD_INPUTS = ("input_ids", "attention_mask")


class CausalLMServing(GenerativeServing):
    """Token ids of chat-template prompts in, completions out (see the module docstring)."""

    task: CausalLMTask

    def text_inputs(self) -> tuple[str, ...]:
        return ("text",)

    def export_outputs(self, raw: tf.Tensor) -> dict[str, tf.Tensor]:
        raise ConfigError("causal-lm runs export a generating SavedModel and the forward "
                          "graph (tfsft export), not encoder outputs")

    def output_checks(self) -> dict[str, OutputCheck]:
        return {}

    def export_model(self, model: keras.Model) -> keras.Model:
        return model.merged()

    def generation_module(self, model: keras.Model, tokenizer: ChatTokenizer,
                          max_length: int) -> tf.Module:
        return generation_module(model, tokenizer, max_length)

    def frozen_forward(self, model: keras.Model) -> Any:
        return freeze(model)

    def prompt_ids(self, examples: ChatExamples, count: int) -> list[list[int]]:
        tokenizer = self.task.tokenizer
        return [tokenizer.prompt_ids(examples.prompts[i]) for i in range(count)]

    def sequence_ids(self, examples: ChatExamples, count: int) -> list[list[int]]:
        tokenizer, longest = self.task.tokenizer, self.task.max_length
        return [tokenizer.encode_chat(examples.conversation(i))[0][:longest]
                for i in range(count)]

    def completions(self, model: keras.Model, tokenizer: ChatTokenizer,
                    prompts: Sequence[Sequence[int]], new_tokens: int,
                    max_length: int) -> list[str]:
        from tfsft.tasks.causal_lm.generation import Generator

        generator = Generator(model.backbone, tokenizer, max_length=max_length + new_tokens)
        return generator.generate_texts(prompts, new_tokens)

    def check_checkpoint_formats(self, model: keras.Model, tokenizer_folder: Path,
                                 formats: Sequence[str]) -> None:
        from tfsft.tasks.causal_lm.checkpoint_files import check_formats

        check_formats(model, tokenizer_folder, formats)

    def write_hub_folder(self, model: keras.Model, tokenizer_folder: Path,
                         base_checkpoint: str | None, folder: Path) -> Path:
        from tfsft.tasks.causal_lm.checkpoint_files import write_hub_folder

        return write_hub_folder(model, tokenizer_folder, base_checkpoint, folder)

    def write_gguf(self, hub_folder: Path, folder: Path, variant: str,
                   name: str) -> tuple[Path, str]:
        from tfsft.models.gguf_writer import GGUF_VARIANTS, write_gguf

        _, file_name, holds = GGUF_VARIANTS[variant]
        return write_gguf(hub_folder, folder / file_name, variant, name), holds

    def read_checkpoint(self, path: Path) -> keras.Model:
        from tfsft.tasks.causal_lm.checkpoint_files import read_back

        return read_back(path)


def token_bytes(tokenizer: ChatTokenizer) -> list[bytes]:
    """The UTF-8 bytes each token id stands for (special tokens: empty, as decoding skips
    them)."""
    from tfsft.tasks.causal_lm.chat_tokenizer import byte_symbols

    decoder = {symbol: byte for byte, symbol in enumerate(byte_symbols())}
    vocabulary = tokenizer._tokenizer.get_vocab(with_added_tokens=True)
    special = {a.content for a in tokenizer._tokenizer.get_added_tokens_decoder().values()
               if a.special}
    table = [b""] * tokenizer.vocabulary_size
    for token, index in vocabulary.items():
        if token in special:
            continue
        if all(c in decoder for c in token):
            table[index] = bytes(decoder[c] for c in token)
        else:  # an added token written as plain text
            table[index] = token.encode("utf-8")
    return table


def generation_module(model: keras.Model, tokenizer: ChatTokenizer, max_length: int) -> tf.Module:
    """A ``tf.Module`` with the ``generate``, ``sample`` and ``logits`` functions of the module
    docstring; ``max_length`` bounds the new tokens."""
    import tensorflow as tf

    from tfsft.tasks.causal_lm.generation import DecodeLoop, choose_tokens

    loop = DecodeLoop(model.backbone, tokenizer.eos_id, tokenizer.pad_id)
    table = tf.constant(token_bytes(tokenizer))

    def decode(ids, lengths):
        mask = tf.sequence_mask(lengths, tf.shape(ids)[1])
        pieces = tf.where(mask, tf.gather(table, tf.maximum(ids, 0)), "")
        raw = tf.strings.reduce_join(pieces, axis=1)
        return tf.strings.unicode_transcode(raw, "UTF-8", "UTF-8", errors="replace")

    def complete(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_p, seed):
        lengths = tf.cast(prompt_lengths, tf.int32)
        new_tokens = tf.clip_by_value(tf.cast(max_new_tokens, tf.int32), 1, max_length)
        kept, counts = loop.run(
            prompt_ids, lengths, new_tokens, tf.reduce_max(lengths) + new_tokens,
            lambda logits, index: choose_tokens(logits, index, temperature, top_p, seed))
        return {"completion_ids": kept, "completion_lengths": counts,
                "completion": decode(kept, counts)}

    module = tf.Module()
    module.causal_lm = loop.causal_lm
    module.table = table
    ids_spec = tf.TensorSpec([None, None], tf.int32, name="prompt_ids")
    lengths_spec = tf.TensorSpec([None], tf.int32, name="prompt_lengths")
    new_spec = tf.TensorSpec([], tf.int32, name="max_new_tokens")

    @tf.function(input_signature=[ids_spec, lengths_spec, new_spec])
    def generate(prompt_ids, prompt_lengths, max_new_tokens):
        return complete(prompt_ids, prompt_lengths, max_new_tokens, 0.0, 1.0, 0)

    @tf.function(input_signature=[ids_spec, lengths_spec, new_spec,
                                  tf.TensorSpec([], tf.float32, name="temperature"),
                                  tf.TensorSpec([], tf.float32, name="top_p"),
                                  tf.TensorSpec([], tf.int32, name="seed")])
    def sample(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_p, seed):
        return complete(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_p, seed)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                                  tf.TensorSpec([None, None], tf.int32, name="padding_mask")])
    def logits(token_ids, padding_mask):
        return {"logits": model.next_token_logits(token_ids, padding_mask)}

    module.generate, module.sample, module.logits = generate, sample, logits
    return module


def freeze(model: keras.Model) -> Any:
    """The forward pass of ``model`` (a float32 :class:`~tfsft.tasks.causal_lm.model.CausalLMModel`
    without LoRA) as a ``ConcreteFunction(input_ids, attention_mask) -> [logits]`` whose
    weights are constants, inlined into one graph.

    ``model``'s attention layers are changed in place (see the module docstring): pass a copy
    made for the export, such as ``CausalLMModel.merged()``.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    for layer in model.backbone._flatten_layers():
        if hasattr(layer, "_masked_softmax"):
            layer._masked_softmax = types.MethodType(_masked_softmax, layer)
    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in FORWARD_INPUTS]

    @tf.function(input_signature=spec)
    def traced(input_ids, attention_mask):
        return model.next_token_logits(input_ids, attention_mask)

    return convert_variables_to_constants_v2(traced.get_concrete_function(),
                                             aggressive_inlining=True)


def _masked_softmax(self, attention_scores, attention_mask=None):
    import keras

    if attention_mask is None:
        return self._softmax(attention_scores)
    return self._softmax(attention_scores, keras.ops.expand_dims(attention_mask, 1))
