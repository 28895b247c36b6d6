"""TFLite / LiteRT export: token-id models (fp32, fp16, int8 dynamic-range, full int8) and a
raw-text model with the tf-text tokenizer in the graph.

Files written into the output folder::

    model.tflite              token ids -> the task's export outputs (fp32; classification:
                              logits, probabilities); inputs input_ids, attention_mask,
                              token_type_ids (int32 [batch, length], any length)
    model_fp16.tflite         weights in float16
    model_int8_dynamic.tflite weights in int8, activations float (dynamic-range quantization)
    model_int8_static.tflite  full int8: dense layers int8 in weights and activations
                              (calibrated on training texts); normalization, softmax, GELU
                              in float, and the dense layers that quantize worst where the
                              task's gate needs it (see exporters.fallback)
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

import contextlib
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from exporters.fallback import LayerError, snr_db
from exporters.savedmodel import (
    ID_INPUTS,
    LITE_TEXT_SIGNATURE,
    SERVING_SIGNATURE,
    TOKEN_IDS_SIGNATURE,
)
from tfsft.io_utils import stderr_to_file

TOKEN_ID_VARIANTS = {"fp32": "model.tflite", "fp16": "model_fp16.tflite",
                     "int8-dynamic": "model_int8_dynamic.tflite",
                     "int8-static": "model_int8_static.tflite"}
TEXT_MODEL = "model_text.tflite"
# Ops the int8 model keeps in float: with every op in int8, fine-tuned MiniLM lost 4-6 points of
# SST-2 accuracy (LayerNorm, softmax and GELU activations have outliers that one int8 scale per
# tensor cannot hold). The dense layers (FULLY_CONNECTED) stay int8 in weights and activations.
# SELECT_V2 writes the attention mask's large negative scores, which an int8 scale calibrated on
# unpadded examples would clip (padding would then get attention weight).
FLOAT_OPS = ("MEAN", "SQUARED_DIFFERENCE", "RSQRT", "SQRT", "POW", "SOFTMAX", "GELU", "ADD",
             "MUL", "SUB", "DIV", "BATCH_MATMUL", "SELECT_V2")


#: Ops that only move or pick values, also kept float: in int8 they would quantize the float
#: outputs of FLOAT_OPS again on their way to the next float op (error, and no speed gained).
MOVING_OPS = ("RESHAPE", "TRANSPOSE", "SLICE", "STRIDED_SLICE", "BROADCAST_TO", "SQUEEZE",
              "EXPAND_DIMS", "CONCATENATION", "PACK", "UNPACK", "SPLIT", "GATHER_ND")


def convert_token_ids(savedmodel: Path, variant: str) -> bytes:
    """The ``serve_token_ids`` signature as a TFLite flatbuffer: ``fp32``, ``fp16`` or
    ``int8-dynamic`` (calibrated int8: :class:`Int8Quantizer`)."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel),
                                                         signature_keys=[TOKEN_IDS_SIGNATURE])
    if variant == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8-dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant != "fp32":
        raise ValueError(f"unknown TFLite variant {variant!r}")
    with native_output_quiet():
        return converter.convert()


class Int8Quantizer:
    """Full int8 (``int8-static``) TFLite models of one SavedModel, calibrated once.

    The dense layers are int8 in weights and activations, the ops of :data:`FLOAT_OPS` float.
    :meth:`layer_errors` measures each int8 layer against float on ``samples`` (TFLite's
    quantization debugger); :meth:`quantize` writes the model again from the same
    calibration with chosen layers in float (see :mod:`exporters.fallback`).
    """

    def __init__(self, savedmodel: Path, calibration: Sequence[dict[str, np.ndarray]]) -> None:
        if not calibration:
            raise ValueError("int8-static quantization needs calibration examples")
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(savedmodel), signature_keys=[TOKEN_IDS_SIGNATURE])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _feeder(calibration)
        self._samples = _same_width(calibration[:LAYER_ERROR_SAMPLES])
        with _debugger_quiet():
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=self._debug_samples,
                debug_options=self._options(()))

    def _debug_samples(self) -> Iterator[list[np.ndarray]]:
        """The samples as the debugger takes them: arrays in the model's input order."""
        from ai_edge_litert.interpreter import Interpreter

        details = Interpreter(model_content=self._debugger.calibrated_model).get_input_details()
        order = [next(name for name in ID_INPUTS if name in d["name"]) for d in details]
        for sample in self._samples:
            yield [sample[name] for name in order]

    @staticmethod
    def _options(float_layers: Sequence[str]):
        return tf.lite.experimental.QuantizationDebugOptions(
            denylisted_ops=[*FLOAT_OPS, *MOVING_OPS], denylisted_nodes=list(float_layers) or None,
            layer_direct_compare_metrics={"snr_db": _layer_snr_db})

    def layer_errors(self) -> list[LayerError]:
        """Every int8 layer with its SNR against float on the debug samples."""
        import csv
        import io

        with _debugger_quiet():
            self._debugger.options = self._options(())
        # The debugger made from the converter reuses tensor buffers, so the float and int8
        # values of a layer are read from a second one that keeps every tensor.
        with _debugger_quiet():
            measuring = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=self._debugger.get_debug_quantized_model(),
                debug_dataset=self._debug_samples, debug_options=self._options(()))
            measuring.run()
        dump = io.StringIO()
        measuring.layer_statistics_dump(dump)
        return [LayerError(row["tensor_name"], row["op_name"], float(row["snr_db"]))
                for row in csv.DictReader(io.StringIO(dump.getvalue()))]

    def quantize(self, float_layers: Sequence[str] = ()) -> bytes:
        """The int8 model with the layers named (their output tensors) kept in float."""
        with _debugger_quiet():
            self._debugger.options = self._options(float_layers)
            return without_float_round_trips(self._debugger.get_nondebug_quantized_model())


def _int8_weight_snr_db(weights: np.ndarray | None) -> float:
    """SNR of ``weights`` ([output, input]) rounded to int8, one symmetric scale per output
    channel (nan: not a constant 2-D weight).

    >>> _int8_weight_snr_db(np.array([[127.0, 1.0], [-2.0, 254.0]]))  # on the int8 grid
    inf
    >>> round(_int8_weight_snr_db(np.array([[1.0, 0.001]])), 1)  # 0.001 rounds to 0
    60.0
    """
    if weights is None or np.ndim(weights) != 2:
        return float("nan")
    weights = np.asarray(weights, np.float64)
    scale = np.abs(weights).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    return snr_db(weights, np.round(weights / scale) * scale)


def without_float_round_trips(content: bytes) -> bytes:
    """The model with every float -> QUANTIZE -> DEQUANTIZE -> float pair taken out.

    The converter rounds the output of some ops it keeps float to int8 and back: softmax gets
    its fixed int8 scale (1/256), so attention weights below 1/512 become 0. Over 384 tokens
    (question answering) that alone held the outputs' SNR near 30 dB with every dense layer
    float, and answers agreed with float32 at most 92 % of the time.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    quantize, dequantize = schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE
    for graph in model.subgraphs:
        producer = {out: op for op in graph.operators for out in op.outputs}
        replaced: dict[int, int] = {}  # DEQUANTIZE output -> the float tensor before QUANTIZE
        for op in graph.operators:
            before = producer.get(op.inputs[0]) if codes[op.opcodeIndex] == dequantize else None
            if (before is not None and codes[before.opcodeIndex] == quantize
                    and graph.tensors[before.inputs[0]].type == schema.TensorType.FLOAT32):
                replaced[op.outputs[0]] = before.inputs[0]
        if not replaced:
            continue
        graph.operators = [op for op in graph.operators
                           if not (codes[op.opcodeIndex] == dequantize
                                   and op.outputs[0] in replaced)]
        for op in graph.operators:
            op.inputs = [replaced.get(index, index) for index in op.inputs]
        graph.outputs = [replaced.get(index, index) for index in graph.outputs]
        used = {index for op in graph.operators for index in op.inputs} | set(graph.outputs)
        graph.operators = [op for op in graph.operators
                           if not (codes[op.opcodeIndex] == quantize
                                   and not set(op.outputs) & used)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


class LayerQuantizer:
    """int8-dynamic and weight-only TFLite models made from the float32 ``.tflite`` by the
    LiteRT quantizer (``ai-edge-quantizer``), with chosen dense layers left float.

    ``mode``: ``dynamic`` (int8 weights, one scale per output channel; activations quantized
    per row at run time, int8 compute) or ``weights8`` (int8 weights, one scale per output
    channel, dequantized to float before the op, float compute: what decoder hidden states
    need). The quantizer's 4 bits are per channel (weight-only) or in blocks with int8 compute,
    and neither keeps a decoder's answers (SmolLM2-135M, 4 bits per channel: 23 % of next
    tokens), so there is no 4-bit mode. :meth:`layers` names the layers it quantizes
    (the output tensors of the FULLY_CONNECTED ops, as the quantizer's recipes name them);
    the embedding tables (GATHER) stay float.

    >>> LayerQuantizer.MODES
    ('dynamic', 'weights8')
    """

    MODES = ("dynamic", "weights8")

    def __init__(self, float_model: Path, mode: str = "dynamic") -> None:
        if mode not in self.MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(self.MODES)}")
        self._float_model, self._mode = float_model, mode

    def layers(self) -> list[LayerError]:
        """The layers the quantizer quantizes, in graph order, each with the SNR of its
        weights rounded to int8 with one scale per output channel (what weight-only
        quantization changes; the fallback can measure the outputs too)."""
        from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffers

        model = flatbuffers.read_model(self._float_model)
        graph = model.subgraphs[0]
        dense = flatbuffers.TFL_OP_NAME_TO_CODE["FULLY_CONNECTED"]
        layers = []
        for op in graph.operators:
            if model.operatorCodes[op.opcodeIndex].builtinCode == dense:
                weights = flatbuffers.get_tensor_data(graph.tensors[op.inputs[1]], model.buffers)
                layers.append(LayerError(flatbuffers.get_op_scope(op, graph.tensors),
                                         "FULLY_CONNECTED", _int8_weight_snr_db(weights)))
        return layers

    def quantize(self, float_layers: Sequence[str] = ()) -> bytes:
        """The quantized model with the layers named in ``float_layers`` kept float."""
        import re

        from ai_edge_quantizer import qtyping, quantizer

        floats = set(float_layers)
        quantized = [layer.name for layer in self.layers() if layer.name not in floats]
        if not quantized:
            return self._float_model.read_bytes()
        engine = quantizer.Quantizer(str(self._float_model))
        scope = "^(?:" + "|".join(re.escape(name) for name in quantized) + ")$"
        dense = qtyping.TFLOperationName.FULLY_CONNECTED
        if self._mode == "dynamic":
            engine.add_dynamic_config(scope, dense, 8)
        else:
            engine.add_weight_only_config(scope, dense, 8)
        with native_output_quiet():
            result = engine.quantize(enable_progress_bar=False, enable_progress_report=False)
        return bytes(result.quantized_model)


@contextlib.contextmanager
def _debugger_quiet() -> Iterator[None]:
    """TensorFlow's quantization debugger runs the deprecated ``tf.lite.Interpreter``, which
    warns each time (the models it writes are run with LiteRT's), and its quantizer prints a
    settings line from C++ each call (kept unless the log level is DEBUG)."""
    with warnings.catch_warnings(), native_output_quiet():
        warnings.simplefilter("ignore", UserWarning)
        yield


def native_output_quiet() -> contextlib.AbstractContextManager:
    """What C++ code writes to standard error goes to a file (and back only on an error),
    unless this module's log level is DEBUG."""
    if logging.getLogger(__name__).isEnabledFor(logging.DEBUG):
        return contextlib.nullcontext()
    return stderr_to_file()


#: Calibration examples the per-layer errors are measured on (one interpreter run each).
LAYER_ERROR_SAMPLES = 64


def _feeder(samples: Sequence[dict[str, np.ndarray]]) -> Callable[[], Iterator[dict]]:
    def feed() -> Iterator[dict[str, np.ndarray]]:
        for features in samples:
            yield {name: features[name] for name in ID_INPUTS}

    return feed


def _same_width(samples: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The rows of ``samples`` one by one, padded to one sequence length (the debugger sizes
    its model once; a question-answering example may fill several rows)."""
    rows = [{name: sample[name][i:i + 1].astype(np.int32) for name in ID_INPUTS}
            for sample in samples for i in range(len(sample["input_ids"]))]
    width = max(row["input_ids"].shape[1] for row in rows)
    return [{name: np.pad(row[name], [(0, 0), (0, width - row[name].shape[1])])
             for name in ID_INPUTS} for row in rows]


def _layer_snr_db(float_values: np.ndarray, quantized: np.ndarray, scale: float,
                  zero_point: int) -> float:
    """A layer's SNR: its float output against its int8 output dequantized."""
    dequantized = (quantized.astype(np.float64) - zero_point) * scale
    return min(snr_db(float_values, dequantized), 200.0)  # equal: 200 dB, not inf (a mean)


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
    with native_output_quiet():
        return converter.convert()


def write_sidecars(folder: Path, run) -> None:
    """labels, vocabulary, task and tokenizer settings beside the ``.tflite`` files."""
    import json

    from exporters.savedmodel import write_task_sidecars

    write_task_sidecars(folder, run)
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": run.tokenizer.lowercase, "model_max_length": run.max_length,
         "tokenizer_class": "BertTokenizer", **run.tokenizer.normalization_config()},
        indent=2) + "\n")


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
