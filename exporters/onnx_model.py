"""ONNX export for onnxruntime / onnxruntime-gpu.

Files written into the output folder::

    model.onnx            tf2onnx conversion (opset 17): input_ids, attention_mask, token_type_ids
                          (int32 [batch, sequence], both axes dynamic) -> the task's export
                          outputs (classification: logits, probabilities)
    model_optimized.onnx  ONNX Runtime transformer optimizer (fused Attention, LayerNorm, Gelu, ...)
    model_int8_dynamic.onnx  dynamic int8 quantization of the optimized model (int8 weights,
                          activations quantized at run time)
    model_int8_static.onnx   static int8 (QDQ, activations calibrated on training texts)
    model_fp16.onnx       float16 weights and compute (for CUDAExecutionProvider), float32 I/O
    tokenizer.json        Hugging Face tokenizers file for the same WordPiece vocabulary
    labels.txt, task.json label of each output column; the task, its options and state

The graph converted is :func:`exporters.bert_graph.token_id_function`, the same computation as
the Keras model written in the op patterns ONNX Runtime's BERT optimizer matches, so
``model_optimized.onnx`` carries fused ``Attention``, ``SkipLayerNormalization`` and
``BiasGelu`` nodes (the report lists them as ``fused_operators``). Converting the Keras model
itself gives a graph in which nothing fuses (see ``bert_graph``'s docstring for why).

>>> import onnxruntime as ort                                          # doctest: +SKIP
>>> session = ort.InferenceSession("model_optimized.onnx")             # doctest: +SKIP
>>> session.run(["logits"], {"input_ids": ids, "attention_mask": mask,
...                          "token_type_ids": types})                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from exporters.bert_graph import token_id_function
from exporters.fallback import LayerError, snr_db
from exporters.onnx_frozen import OPSET
from exporters.savedmodel import ID_INPUTS

FILES = {"fp32": "model.onnx", "optimized": "model_optimized.onnx",
         "int8-dynamic": "model_int8_dynamic.onnx", "int8-static": "model_int8_static.onnx",
         "int4": "model_int4.onnx", "fp16": "model_fp16.onnx"}
FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "LayerNormalization",
             "EmbedLayerNormalization", "Gelu", "BiasGelu", "FastGelu", "SkipSimplifiedLayerNormalization")


def convert(model: keras.Model, path: Path,
            outputs: Callable[[tf.Tensor], dict[str, tf.Tensor]] | None = None) -> None:
    """tf2onnx conversion of the token-id function of ``model`` to ``path`` (checked by onnx).

    ``outputs`` maps the head's raw output to the named graph outputs (the task's
    ``export_outputs``; default ``{"logits": raw}``).
    """
    import onnx
    import tf2onnx

    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in ID_INPUTS]
    proto, _ = tf2onnx.convert.from_function(token_id_function(model, outputs),
                                             input_signature=spec, opset=OPSET)
    _restore_reduce_means(proto)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _restore_reduce_means(proto) -> None:
    """Turn tf2onnx's ``GlobalAveragePool`` back into ``ReduceMean`` over the last axis.

    tf2onnx rewrites a mean over the last axis of a 3-D tensor (LayerNorm's mean and variance)
    as ``GlobalAveragePool``, which computes the same thing but hides the LayerNorm pattern from
    ONNX Runtime's fusions. Every such node in the token-id graph reduces a ``[batch, sequence,
    hidden]`` tensor.
    """
    from onnx import helper

    for node in proto.graph.node:
        if node.op_type == "GlobalAveragePool":
            node.op_type = "ReduceMean"
            node.attribute.extend([helper.make_attribute("axes", [-1]),
                                   helper.make_attribute("keepdims", 1)])


def optimize(source: Path, target: Path, num_heads: int, hidden_size: int) -> dict[str, int]:
    """ONNX Runtime's BERT optimizer; returns the count of each fused operator type.

    First ONNX Runtime's basic graph optimizations (constant folding, redundant node removal),
    then the transformer fusions. The two steps are run separately because
    ``optimize_model(opt_level>=1)`` in onnxruntime 1.30 imports torch.
    """
    from onnxruntime.transformers import optimizer

    basic = target.with_name(target.stem + ".basic.onnx")
    basic_optimize(source, basic)
    # num_heads 0: layers of their own widths (a pruned model), whose attention the optimizer
    # cannot fuse; it says so once per layer, which the report's fused-operator count tells
    attention_log = logging.getLogger("fusion_attention")
    level = attention_log.level
    if not num_heads:
        attention_log.setLevel(logging.ERROR)
    try:
        optimized = optimizer.optimize_model(str(basic), model_type="bert", num_heads=num_heads,
                                             hidden_size=hidden_size, opt_level=0)
    finally:
        attention_log.setLevel(level)
        basic.unlink(missing_ok=True)
    optimized.save_model_to_file(str(target))
    return fused_operators(target)


def basic_optimize(source: Path, target: Path) -> None:
    """ONNX Runtime's basic graph optimizations (constant folding, redundant node removal)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def fused_operators(path: Path) -> dict[str, int]:
    import onnx

    counts = Counter(node.op_type for node in onnx.load(str(path)).graph.node)
    return {op: counts[op] for op in FUSED_OPS if counts[op]}


def quantize_int8(source: Path, target: Path, float_nodes: Sequence[str] = ()) -> None:
    """Dynamic int8 (``int8-dynamic``): int8 weights, activations quantized at run time;
    the nodes named in ``float_nodes`` stay float."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per-channel weight scales: on fine-tuned MiniLM, argmax agreement 97.5 % -> 98.9 %.
    # ONNX shape inference knows no types for the fused com.microsoft nodes' outputs; they are
    # all float32 here.
    with _quiet_quantizer():
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         nodes_to_exclude=list(float_nodes),
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})


#: Ops the static int8 model quantizes (QDQ): the fused Attention nodes have no QDQ form in
#: ONNX Runtime's quantizer and stay float (dynamic int8 quantizes them as QAttention).
STATIC_OPS = ("MatMul",)


def quantize_static_int8(source: Path, target: Path, calibration: Sequence[dict],
                         float_nodes: Sequence[str] = ()) -> None:
    """Static int8 (``int8-static``) in QDQ format: int8 weights (one scale per output
    channel) and uint8 activations with scales calibrated (min/max) on ``calibration``
    batches; the nodes named in ``float_nodes`` stay float. QDQ models run on every ONNX
    Runtime execution provider, accelerators included (TensorRT, OpenVINO, QNN)."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            return None if batch is None else _feeds(batch)

    typed = target.with_name(target.stem + ".typed.onnx")
    onnx.save(_with_fused_output_types(source), str(typed))
    try:
        with _quiet_quantizer():
            quantize_static(str(typed), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, op_types_to_quantize=list(STATIC_OPS),
                            nodes_to_exclude=list(float_nodes),
                            extra_options={"DefaultTensorType": TensorProto.FLOAT})
    finally:
        typed.unlink(missing_ok=True)


def _with_fused_output_types(path: Path):
    """The model at ``path`` with a float32 type declared for every output of a fused
    ``com.microsoft`` node that has none: ONNX shape inference does not know these ops, and
    the static quantizer quantizes only tensors it knows to be float (all of them are here)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    known = {v.name for v in (*graph.value_info, *graph.output, *graph.input)}
    for node in graph.node:
        if node.domain == "com.microsoft":
            graph.value_info.extend(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                for name in node.output if name and name not in known)
    return model


@contextlib.contextmanager
def _quiet_quantizer():
    """ONNX Runtime's quantizers log a line per node and warn through the root logger."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def layer_errors(float_model: Path, quantized_model: Path, batches: Sequence[dict],
                 quantized_ops: Sequence[str]) -> list[LayerError]:
    """Each node of ``quantized_ops`` type in ``float_model`` with the SNR of its output in
    ``quantized_model`` (the tensor of the same name) against float on ``batches``, and the
    worst SNR of its inputs (what the node adds is the difference). Nodes the quantized model
    does not hold (kept float) are left out."""
    import onnx

    graph = onnx.load(str(float_model), load_external_data=False).graph
    quantized = {o for n in onnx.load(str(quantized_model), load_external_data=False).graph.node
                 for o in n.output}
    nodes = [n for n in graph.node if n.op_type in quantized_ops and n.output[0] in quantized]
    produced = {o for n in graph.node for o in n.output}
    inputs = {n.name: [i for i in n.input if i in produced and i in quantized] for n in nodes}
    wanted = sorted({n.output[0] for n in nodes} | {i for v in inputs.values() for i in v})
    reference = _tensor_values(float_model, wanted, batches)
    approximate = _tensor_values(quantized_model, wanted, batches)
    snr = {name: snr_db(np.concatenate([r.ravel() for r in reference[name]]),
                        np.concatenate([a.ravel() for a in approximate[name]]))
           for name in wanted}
    return [LayerError(n.name, n.op_type, snr[n.output[0]],
                       min((snr[i] for i in inputs[n.name]), default=float("inf")))
            for n in nodes]


def _tensor_values(path: Path, names: Sequence[str], batches: Sequence[dict]) -> dict:
    """The named intermediate tensors of the model at ``path`` on each batch."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names
                              if name not in outputs)
    options = ort.SessionOptions()  # unoptimized: constant folding would remove some tensors
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    values: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for batch in batches:
        for name, value in zip(names, session.run(list(names), _feeds(batch)), strict=True):
            values[name].append(np.asarray(value, np.float32))
    return values


def _feeds(batch: dict) -> dict[str, np.ndarray]:
    return {name: np.asarray(batch[name]).astype(np.int32) for name in ID_INPUTS}


#: onnxruntime-gpu's provider; export verification also runs on it where it is available.
CUDA = "CUDAExecutionProvider"


@functools.cache
def cuda_available() -> bool:
    """Whether ONNX Runtime runs models on a CUDA GPU here. onnxruntime-gpu lists the CUDA
    provider even without a GPU (and then runs on the CPU), so a one-node model is placed."""
    import onnx
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return False
    node = onnx.helper.make_node("Identity", ["x"], ["y"])
    value = onnx.helper.make_tensor_value_info
    graph = onnx.helper.make_graph([node], "probe", [value("x", onnx.TensorProto.FLOAT, [1])],
                                   [value("y", onnx.TensorProto.FLOAT, [1])])
    try:
        session = ort.InferenceSession(onnx.helper.make_model(graph).SerializeToString(),
                                       providers=[CUDA])
    except Exception:  # noqa: BLE001 - any failure to place it means no usable GPU
        return False
    return CUDA in session.get_providers()
#: Weights per scale in :func:`quantize_weights`.
WEIGHT_BLOCK = 32


def quantize_weights(source: Path, target: Path, bits: int = 8,
                     block_size: int = WEIGHT_BLOCK) -> None:
    """Weight-only quantization for decoder language models: every MatMul with a constant
    weight becomes ``MatMulNBits`` (``bits`` 8 or 4, one symmetric scale per ``block_size``
    weights of an input column); activations stay float.

    :func:`quantize_int8` also quantizes each activation tensor to uint8 with one scale per
    tensor, which decoder hidden states with a few outlier features (values in the hundreds
    beside values near zero) do not survive: on SmolLM2-135M its next-token agreement with
    float32 was 0 % (per-channel weights) and 50 % (per-tensor), against 99.4 % for 8-bit
    weights only.
    """
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    if bits not in (4, 8):
        raise ValueError(f"weight-only quantization has 4 or 8 bits, not {bits}")
    quantizer_log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quantizer_log.level
    quantizer_log.setLevel(logging.WARNING)  # one INFO line per node otherwise
    try:
        config = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                              bits=bits)
        quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), bits=bits,
                                         block_size=block_size, is_symmetric=True,
                                         algo_config=config)
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), False)
    finally:
        quantizer_log.setLevel(level)


def to_fp16(source: Path, target: Path) -> None:
    """float16 weights and compute with float32 inputs and outputs (for GPUs)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(source)))
    model.convert_float_to_float16(keep_io_types=True)
    _drop_repeated_nodes(model.model.graph)
    model.save_model_to_file(str(target))


def _drop_repeated_nodes(graph) -> None:
    """Remove nodes that repeat an earlier node exactly (name, op, inputs and outputs).

    The float16 pass casts a constant back to float32 once per consumer that must stay float32
    (``Range``, ...) and names every such ``Cast`` and its output after the constant, so a
    constant with two such consumers gets two identical nodes, which ONNX rejects.
    """
    seen, index = set(), 0
    while index < len(graph.node):
        node = graph.node[index]
        key = node.SerializeToString()
        if key in seen:
            del graph.node[index]
        else:
            seen.add(key)
            index += 1


def write_sidecars(folder: Path, run) -> None:
    """``tokenizer.json`` (Hugging Face tokenizers), ``labels.txt``, ``vocab.txt`` and
    ``task.json`` beside the models."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    from exporters.savedmodel import write_task_sidecars

    lowercase = run.tokenizer.lowercase
    vocab = {token: i for i, token in enumerate(run.tokenizer.vocabulary)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase,
                                                      strip_accents=None if lowercase else False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tokenizer.enable_truncation(run.max_length)
    tokenizer.save(str(folder / "tokenizer.json"))
    write_task_sidecars(folder, run)


def session_runner(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",),
                   threads: int | None = None) -> Callable[[dict], dict[str, np.ndarray]]:
    """A verify runner: an ``onnxruntime.InferenceSession`` on the token-id inputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=list(providers))
    names = [output.name for output in session.get_outputs()]

    def run(batch: dict) -> dict[str, np.ndarray]:
        values = session.run(names, _feeds(batch))
        return dict(zip(names, values, strict=True))

    return run
