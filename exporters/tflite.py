"""TFLite / LiteRT export: token-id models (fp32, fp16, int8 dynamic-range, full int8) and a
raw-text model with the tf-text tokenizer in the graph.

Files written into the output folder::

    model.tflite              token ids -> the task's export outputs (fp32; classification:
                              logits, probabilities); inputs input_ids, attention_mask,
                              token_type_ids (int32 [batch, length], any length)
    model_fp16.tflite         weights in float16
    model_int8_dynamic.tflite weights in int8, activations float (dynamic-range quantization)
    model_int8.tflite         dense layers int8 in weights and activations (calibrated on
                              training texts); normalization, softmax, GELU in float
    model_text.tflite         raw strings -> the task's serving outputs (tf-text custom ops;
                              token classification: per-token logits, decoded with the sidecars)
    labels.txt, vocab.txt, tokenizer_config.json, task.json   what an app needs beside the model

Run the raw-text model with LiteRT and the tf-text op resolver::

    from ai_edge_litert.interpreter import InterpreterWithCustomOps
    import tensorflow_text
    interpreter = InterpreterWithCustomOps(
        model_path="model_text.tflite",
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
    outputs = interpreter.get_signature_runner("serving_default")(text=np.array(["great film"]))
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from exporters.savedmodel import (
    ID_INPUTS,
    LITE_TEXT_SIGNATURE,
    SERVING_SIGNATURE,
    TOKEN_IDS_SIGNATURE,
)

TOKEN_ID_VARIANTS = {"fp32": "model.tflite", "fp16": "model_fp16.tflite",
                     "int8-dynamic": "model_int8_dynamic.tflite", "int8": "model_int8.tflite"}
TEXT_MODEL = "model_text.tflite"
# Ops the int8 model keeps in float: with every op in int8, fine-tuned MiniLM lost 4-6 points of
# SST-2 accuracy (LayerNorm, softmax and GELU activations have outliers that one int8 scale per
# tensor cannot hold). The dense layers (FULLY_CONNECTED) stay int8 in weights and activations.
# SELECT_V2 writes the attention mask's large negative scores, which an int8 scale calibrated on
# unpadded examples would clip (padding would then get attention weight).
FLOAT_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "POW", "SOFTMAX", "GELU", "ADD",
             "MUL", "SUB", "DIV", "BATCH_MATMUL", "SELECT_V2")


def convert_token_ids(savedmodel: Path, variant: str,
                      calibration: Sequence[dict[str, np.ndarray]] = ()) -> bytes:
    """The ``serve_token_ids`` signature as a TFLite flatbuffer, quantized per ``variant``."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel),
                                                         signature_keys=[TOKEN_IDS_SIGNATURE])
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        if not calibration:
            raise ValueError("int8 quantization needs calibration examples")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def representative() -> Iterator[dict[str, np.ndarray]]:
            for features in calibration:
                yield {name: features[name] for name in ID_INPUTS}

        converter.representative_dataset = representative
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(FLOAT_OPS))
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative, debug_options=options)
        return debugger.get_nondebug_quantized_model()
    elif variant != "fp32":
        raise ValueError(f"unknown TFLite variant {variant!r}")
    return converter.convert()


def convert_token_ids_in_subprocess(savedmodel: Path, variant: str, path: Path) -> None:
    """:func:`convert_token_ids` (``fp32``, ``fp16`` or ``int8-dynamic``) run by a new Python
    process that writes the flatbuffer to ``path`` (see :mod:`exporters.fresh_process`): for
    models whose conversion would not fit in memory beside the exporting process's own."""
    from exporters.fresh_process import run_module

    run_module(__name__, {"savedmodel": str(savedmodel), "variant": variant, "path": str(path)},
               f"the TFLite {variant} conversion of {Path(savedmodel).name}")


def convert_text(savedmodel: Path) -> bytes:
    """The raw-text ``serving_default`` signature (or ``serve_text_lite`` where the task has
    one), tokenizer included (tf-text custom ops)."""
    signatures = tf.saved_model.load(str(savedmodel)).signatures
    key = LITE_TEXT_SIGNATURE if LITE_TEXT_SIGNATURE in signatures else SERVING_SIGNATURE
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel), signature_keys=[key])
    converter.allow_custom_ops = True
    return converter.convert()


def write_sidecars(folder: Path, run) -> None:
    """labels, vocabulary, task and tokenizer settings beside the ``.tflite`` files."""
    import json

    from exporters.savedmodel import write_task_sidecars

    write_task_sidecars(folder, run)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": run.tokenizer.lowercase, "model_max_length": run.max_length,
         "tokenizer_class": "BertTokenizer"}, indent=2) + "\n")


def token_ids_runner(path: Path) -> Callable[[dict], dict[str, np.ndarray]]:
    """A verify runner for a token-id ``.tflite`` (LiteRT interpreter, any batch and length)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(TOKEN_IDS_SIGNATURE)

    def run(batch: dict) -> dict[str, np.ndarray]:
        return runner(**{name: batch[name].astype(np.int32) for name in ID_INPUTS})

    return run


def text_runner(path: Path) -> Callable[[dict], dict[str, np.ndarray]]:
    """A verify runner for the raw-text ``.tflite`` (LiteRT with the tf-text custom ops)."""
    import tensorflow_text
    from ai_edge_litert.interpreter import InterpreterWithCustomOps

    interpreter = InterpreterWithCustomOps(
        model_path=str(path),
        custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
    runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))

    def run(batch: dict) -> dict[str, np.ndarray]:
        return runner(**{name: _utf8(texts) for name, texts in batch["text_inputs"].items()})

    return run


def _utf8(texts: np.ndarray) -> np.ndarray:
    return np.array([text.encode("utf-8") for text in texts], dtype=object)


if __name__ == "__main__":
    _request = json.loads(sys.argv[1])
    Path(_request["path"]).write_bytes(convert_token_ids(Path(_request["savedmodel"]),
                                                         _request["variant"]))
