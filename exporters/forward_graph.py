"""The forward graph of a generative run (token ids -> next-token logits) as ONNX and TFLite.

Files written (``saved_models/NAME/onnx/`` and ``saved_models/NAME/tflite/``)::

    onnx/model.onnx                 tf2onnx (opset 17): input_ids, attention_mask (int32 [batch,
                                    length], both axes dynamic; right padding) -> logits (float32
                                    [batch, length, vocabulary])
    onnx/model_int8_dynamic.onnx    int8 weights (MatMulNBits, one scale per 32 weights),
                                    float activations (see onnx_model.quantize_weights)
    onnx/model_int4.onnx            the same with 4-bit weights
    onnx/model_fp16.onnx            float16 weights and compute, float32 inputs and outputs
    tflite/model.tflite             the same graph for LiteRT (builtin ops only)
    tflite/model_fp16.tflite        weights in float16
    tflite/model_int8_dynamic.tflite  weights in int8, activations float
    */tokenizer.json, tokenizer_config.json, task.json   the tokenizer and chat template

Generation is a loop the caller runs around this graph (append the argmax, run again); the
SavedModel's ``generate`` signature runs the whole loop with a key/value cache instead. The
frozen graph itself (weights as constants, LiteRT-friendly attention masks) comes from the
task's serving role (:meth:`tfsft.tasks.roles.GenerativeServing.frozen_forward`).

>>> import onnxruntime as ort                                          # doctest: +SKIP
>>> session = ort.InferenceSession("onnx/model.onnx")                  # doctest: +SKIP
>>> logits = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exporters.onnx_model import FILES as ONNX_FILES
from exporters.savedmodel import TOKEN_IDS_SIGNATURE as SIGNATURE
from exporters.tflite import TOKEN_ID_VARIANTS as TFLITE_FILES

logger = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask")
#: fp32 artifacts must match the Keras model this closely on every real position ...
FP32_MAX_DIFF = 1e-3
#: ... and pick the same next token at this share of them.
FP32_MIN_AGREEMENT = 0.99
#: Quantized variants must pick the same next token as the Keras model at this share ...
QUANTIZED_MIN_AGREEMENT = 0.97
#: ... and complete this share of held-out prompts (greedy) exactly as it does.
QUANTIZED_MIN_COMPLETIONS = 0.90
Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def forward_function(frozen):
    """``tf.function(input_ids, attention_mask) -> {"logits"}`` around a frozen forward graph."""
    import tensorflow as tf

    spec = [tf.TensorSpec([None, None], tf.int32, name=name) for name in INPUTS]

    @tf.function(input_signature=spec)
    def forward(input_ids, attention_mask):
        return {"logits": frozen(input_ids=input_ids, attention_mask=attention_mask)[0]}

    return forward


@dataclass
class FrozenFiles:
    """The frozen forward graph on disk, as each converter reads it."""

    graph_def: Path | None = None  # for tf2onnx
    graph_inputs: list[str] = field(default_factory=list)
    graph_outputs: list[str] = field(default_factory=list)
    savedmodel: Path | None = None  # for the TFLite converter


def write_frozen(frozen, work: Path, onnx: bool, tflite: bool) -> FrozenFiles:
    """Write what the ONNX and TFLite converters read of the ``frozen`` forward graph (a
    concrete function with constant weights) into ``work``."""
    import tensorflow as tf

    from exporters import onnx_frozen

    files = FrozenFiles()
    if onnx:
        files.graph_def = work / "forward.pb"
        files.graph_inputs, files.graph_outputs = onnx_frozen.write_graph_def(frozen,
                                                                              files.graph_def)
    if tflite:
        files.savedmodel = work / "forward-savedmodel"
        forward = forward_function(frozen)
        module = tf.Module()
        module.forward = forward
        # the frozen graph holds no variables, so there are no gradients to save
        tf.saved_model.save(module, str(files.savedmodel), signatures={SIGNATURE: forward},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
    return files


def write_onnx(files: FrozenFiles, folder: Path, variants: Sequence[str]) -> dict[str, Path]:
    """``model.onnx`` and the requested variants (``int8-dynamic``, ``int4``, ``fp16``) in ``folder``,
    converted by tf2onnx in a fresh process (see ``exporters.onnx_frozen``)."""
    from exporters import onnx_frozen, onnx_model

    paths = {"fp32": folder / ONNX_FILES["fp32"]}
    logger.info("converting the forward graph to ONNX (tf2onnx, opset %d, separate process)",
                onnx_frozen.OPSET)
    onnx_frozen.convert_in_subprocess(
        files.graph_def, paths["fp32"], inputs=dict(zip(files.graph_inputs, INPUTS, strict=True)),
        outputs={files.graph_outputs[0]: "logits"})
    for variant, bits in (("int8-dynamic", 8), ("int4", 4)):
        if variant in variants:
            paths[variant] = folder / ONNX_FILES[variant]
            logger.info("quantizing the ONNX weights to %d bits (MatMulNBits, blocks of %d)",
                        bits, onnx_model.WEIGHT_BLOCK)
            onnx_model.quantize_weights(paths["fp32"], paths[variant], bits=bits)
    if "fp16" in variants:
        paths["fp16"] = folder / ONNX_FILES["fp16"]
        onnx_model.to_fp16(paths["fp32"], paths["fp16"])
    return paths


def write_tflite(files: FrozenFiles, folder: Path, variants: Sequence[str]) -> dict[str, Path]:
    """``model.tflite`` and the requested variants (``fp16``, ``int8-dynamic``) in
    ``folder``: the float ones converted in a fresh process (the converter's peak is about 20x
    the model's size), the integer ones quantized from ``model.tflite`` with weights only
    (:class:`exporters.tflite.LayerQuantizer`)."""
    from exporters import tflite

    paths = {}
    for variant in ["fp32", *(["fp16"] if "fp16" in variants else [])]:
        logger.info("converting the forward graph to TFLite %s (separate process)", variant)
        paths[variant] = folder / TFLITE_FILES[variant]
        tflite.convert_token_ids_in_subprocess(files.savedmodel, variant, paths[variant])
    return paths


def tflite_int8_weights(float_model: Path, path: Path,
                        check: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``int8-dynamic`` for a decoder's TFLite graph: int8 weights only (activations quantized
    at run time kept 84.8 % of SmolLM2's next tokens), written to ``path`` from the float32
    ``float_model``. Dense layers whose weights round worst stay float until ``check(path)``
    (:func:`compare`) passes (:func:`exporters.fallback.quantize_with_fallback`); returns its
    result with the tries and the layers kept float."""
    from exporters import tflite
    from exporters.fallback import quantize_with_fallback

    quantizer = tflite.LayerQuantizer(float_model, "weights8")

    def write(float_layers: Sequence[str]) -> Path:
        path.write_bytes(quantizer.quantize(float_layers))
        return path

    logger.info("quantizing the TFLite weights (%s)", METHODS[("tflite", "int8-dynamic")])
    result = quantize_with_fallback(write, lambda written: Compared(check(written)),
                                    quantizer.layers(), "tflite int8-dynamic")
    return result.summary


@dataclass
class Compared:
    """A :func:`compare` result as :func:`exporters.fallback.quantize_with_fallback` reads a
    check (its notes are the result itself)."""

    summary: dict[str, Any]
    quality: None = None

    @property
    def passed(self) -> bool:
        return bool(self.summary["passed"])

    @property
    def agreement(self) -> float:
        return float(self.summary["argmax_agreement"])

    @property
    def notes(self) -> dict[str, Any]:
        return self.summary

    def gate_text(self) -> str:
        return str(self.summary["gate"])


#: How each quantized variant was made, for the report.
METHODS = {
    ("onnx", "int8-dynamic"): "int8 weights (MatMulNBits, symmetric, one scale per "
                              "32 weights), float activations",
    ("onnx", "int4"): "4-bit weights (MatMulNBits, symmetric, one scale per 32 weights), "
                      "float activations",
    ("onnx", "fp16"): "float16 weights and compute, float32 inputs and outputs",
    ("tflite", "int8-dynamic"): "int8 weights (one scale per output channel; LiteRT "
                                "quantizer), dequantized before each dense op, float compute",
    ("tflite", "fp16"): "float16 weights, float32 compute",
}


def onnx_runner(path: Path, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Runner:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=list(providers))
    return lambda ids, mask: session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def tflite_runner(path: Path) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(SIGNATURE)
    return lambda ids, mask: runner(input_ids=ids, attention_mask=mask)["logits"]


def keras_runner(model) -> Runner:
    return lambda ids, mask: np.asarray(model.next_token_logits(ids, mask))


def conversation_batches(token_lists: Sequence[Sequence[int]], pad_id: int,
                         batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Right-padded ``(input_ids, attention_mask)`` int32 batches of the token lists.

    >>> [ids.tolist() for ids, _ in conversation_batches([[5, 6, 7], [8]], pad_id=0)]
    [[[5, 6, 7], [8, 0, 0]]]
    """
    batches = []
    for begin in range(0, len(token_lists), batch_size):
        rows = token_lists[begin:begin + batch_size]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), pad_id, np.int32)
        mask = np.zeros((len(rows), width), np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)], mask[i, :len(row)] = row, 1
        batches.append((ids, mask))
    return batches


def greedy_completions(runner: Runner, prompts: Sequence[Sequence[int]], new_tokens: int,
                       eos_id: int, pad_id: int, batch_size: int = 8) -> list[list[int]]:
    """The greedy token ids after each prompt (up to ``new_tokens``, the end token included),
    decoded with a forward graph: the whole prefix runs again for each new token (a check of
    the graph, not a way to serve it).

    >>> vocabulary = 5  # a "model" whose next token is the last one plus 1, 4 ends
    >>> def runner(ids, mask):
    ...     return np.eye(vocabulary)[np.minimum(ids + 1, vocabulary - 1)]
    >>> greedy_completions(runner, [[1], [3, 2]], new_tokens=5, eos_id=4, pad_id=0)
    [[2, 3, 4], [3, 4]]
    """
    completions: list[list[int]] = []
    for begin in range(0, len(prompts), batch_size):
        rows = [list(prompt) for prompt in prompts[begin:begin + batch_size]]
        new: list[list[int]] = [[] for _ in rows]
        for _ in range(new_tokens):
            open_rows = [i for i, tokens in enumerate(new) if not tokens or tokens[-1] != eos_id]
            if not open_rows:
                break
            ((ids, mask),) = conversation_batches([rows[i] + new[i] for i in open_rows],
                                                  pad_id, batch_size=len(open_rows))
            logits = np.asarray(runner(ids, mask))
            for row, i in enumerate(open_rows):
                new[i].append(int(logits[row, len(rows[i]) + len(new[i]) - 1].argmax()))
        completions += new
    return completions


def reference_outputs(reference: Runner, batches) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per batch: the reference logits at the real positions and their argmax."""
    out = []
    for ids, mask in batches:
        logits = reference(ids, mask)[mask.astype(bool)]
        out.append((logits, logits.argmax(-1)))
    return out


def compare(artifact: str, variant: str, path: Path, runner: Runner, batches,
            expected: list[tuple[np.ndarray, np.ndarray]],
            completions: Callable[[Runner], list[list[int]]] | None = None,
            expected_completions: list[list[int]] | None = None, **notes: Any) -> dict[str, Any]:
    """Max |Δlogit| and next-token argmax agreement over every real position of ``batches``,
    and (``completions``) the share of held-out prompts whose greedy completion equals
    ``expected_completions`` (the Keras model's). fp32 artifacts must reach
    :data:`FP32_MAX_DIFF` and :data:`FP32_MIN_AGREEMENT`, quantized ones
    :data:`QUANTIZED_MIN_AGREEMENT` and :data:`QUANTIZED_MIN_COMPLETIONS`."""
    logger.info("verifying %s %s on %d conversations", artifact, variant,
                sum(len(ids) for ids, _ in batches))
    worst, agree, positions, seconds = 0.0, 0, 0, []
    for (ids, mask), (logits, choice) in zip(batches, expected, strict=True):
        started = time.perf_counter()
        got = np.asarray(runner(ids, mask), np.float32)
        seconds.append(time.perf_counter() - started)
        got = got[mask.astype(bool)]
        worst = max(worst, float(np.abs(got - logits).max()))
        agree += int((got.argmax(-1) == choice).sum())
        positions += len(choice)
    agreement = agree / max(positions, 1)
    fp32 = variant == "fp32"
    gate = (f"next-token agreement {100 * agreement:.2f} % (needs >= "
            f"{100 * (FP32_MIN_AGREEMENT if fp32 else QUANTIZED_MIN_AGREEMENT):.0f} %)")
    passed = (worst <= FP32_MAX_DIFF and agreement >= FP32_MIN_AGREEMENT if fp32
              else agreement >= QUANTIZED_MIN_AGREEMENT)
    rule = (f"max |Δlogit| <= {FP32_MAX_DIFF:g} and argmax agreement >= "
            f"{FP32_MIN_AGREEMENT:.0%}" if fp32 else
            f"next-token agreement >= {QUANTIZED_MIN_AGREEMENT:.0%}")
    measured: dict[str, Any] = {}
    if completions is not None and expected_completions is not None:
        logger.info("greedy completions of %s %s on %d prompts", artifact, variant,
                    len(expected_completions))
        got_completions = completions(runner)
        equal = [a == b for a, b in zip(expected_completions, got_completions, strict=True)]
        share = sum(equal) / max(len(equal), 1)
        measured = {"completion_prompts": len(equal), "equal_completions": int(sum(equal)),
                    "completion_agreement": round(share, 4)}
        gate += f"; equal greedy completions {100 * share:.1f} %"
        if not fp32:
            gate += f" (needs >= {100 * QUANTIZED_MIN_COMPLETIONS:.0f} %)"
            rule += f" and equal greedy completions >= {QUANTIZED_MIN_COMPLETIONS:.0%}"
            passed = passed and share >= QUANTIZED_MIN_COMPLETIONS
    return {"artifact": artifact, "variant": variant, "path": str(path),
            "size_mb": round(path.stat().st_size / 1e6, 1), "positions": positions,
            "max_abs_logit_diff": worst, "argmax_agreement": round(agreement, 4),
            "median_batch_ms": round(1000 * float(np.median(seconds)), 1), **measured,
            "rule": rule, "gate": gate, "passed": passed, "quantized": not fp32, **notes}
