"""Export a trained run to SavedModel / TFLite / ONNX / Hugging Face, verify every artifact,
publish atomically.

Everything is built in a hidden staging folder under the output folder and checked against the
Keras model on held-out texts, then moved into place (quantized variants below their task's gate
are left out; a float artifact that does not match stops the export, see :func:`export`)::

    saved_models/NAME/<version>/      SavedModel (TF Serving); a new version every export
    saved_models/NAME/models.config   ModelServerConfig for tensorflow_model_server
    saved_models/NAME/batching_parameters.txt
    saved_models/NAME/tflite/         .tflite models + labels.txt, vocab.txt, task.json
    saved_models/NAME/onnx/           .onnx models + tokenizer.json, labels.txt, task.json
    saved_models/NAME/hf/             a transformers folder (see exporters.huggingface; a
                                      causal-lm run's: exporters.generative)
    saved_models/NAME/gguf/           causal-lm runs: llama.cpp files (exporters.generative)
    saved_models/NAME/export_report.json

Nothing here knows the task: outputs, their comparison rules and the quality metric come from
the serving role of the run's task (``tfsft.tasks.roles.ServingRole``). Runs of a generative
task (a :class:`~tfsft.tasks.roles.GenerativeServing` role) export through
:mod:`exporters.generative` instead; both publish through :mod:`exporters.publish`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exporters import generative, huggingface, onnx_model, savedmodel, tflite
from exporters.fallback import LayerError, quantize_with_fallback, with_output_snr
from exporters.model_card import model_card
from exporters.publish import check_output, stage_verify_publish
from exporters.report import layer_error_tables, markdown_table, report
from exporters.verify import (
    Check,
    batch_size_of,
    decoding,
    make_batches,
    median_ms,
    quality_of,
    run_all,
    verify,
)
from tfsft.errors import ConfigError
from tfsft.run_folder import is_run_folder
from tfsft.runs import CALIBRATION_FILE, HELDOUT_FILE, TOKENIZER_DIR, TrainedRun
from tfsft.tasks.roles import GenerativeServing

logger = logging.getLogger(__name__)
# Converters and optimizers log every step at INFO (tf2onnx's folding, each fusion); only their
# warnings reach the export's output. ONNX Runtime's optimizer also warns that a tf2onnx model
# was not made by PyTorch, which is expected and does not matter for the fusions used here.
for _name in ("onnxruntime.transformers", "tf2onnx", "fusion_base", "fusion_embedlayer",
              "fusion_utils", "fusion_attention", "onnx_model", "onnx_model_bert"):
    logging.getLogger(_name).setLevel(logging.WARNING)
logging.getLogger("onnxruntime.transformers.optimizer").setLevel(logging.ERROR)

FORMATS = ("savedmodel", "tflite", "onnx", "hf", "gguf")
QUANTIZATIONS = ("fp16", "int8-dynamic", "int8-static")
#: Older names of quantized variants: ``int8`` is the calibrated one.
QUANTIZATION_ALIASES = {"int8": "int8-static"}


def export(run_or_dir: TrainedRun | str | os.PathLike, output: str | os.PathLike,
           formats: Sequence[str] = ("savedmodel",), quantize: Sequence[str] = (),
           allow_mismatch: bool = False, data: Any = None,
           max_examples: int = 1000, latency_examples: int = 20) -> dict[str, Any]:
    """Export, verify and publish; returns the report (also written as ``export_report.json``).

    ``data`` is the held-out set to verify on (default: the run's saved validation examples).
    Raises :class:`ExportMismatchError` (and publishes nothing) when a float artifact does not
    match the Keras model (classification: logits within 1e-4). A quantized variant below the
    task's gate (classification: 99 % equal argmaxes, at most half a point of accuracy lost) is
    left out and listed under ``not_published``; ``allow_mismatch`` publishes everything. The
    int8-static variants and ONNX int8-dynamic keep their worst-quantized layers in float until
    they pass (:mod:`exporters.fallback`).
    """
    formats, quantize = _listed(formats), _listed(quantize)
    if not formats:
        raise ConfigError(f"--format names no format; choose one or more of "
                          f"{', '.join(FORMATS)} (comma-separated)")
    _check_choices(formats, FORMATS, "format")
    if quantize and not {"tflite", "onnx", "gguf"} & set(formats):
        raise ConfigError("--quantize makes TFLite, ONNX and (causal-lm) GGUF variants: add "
                          "tflite, onnx or gguf to --format")
    if max_examples < 1:
        raise ConfigError(f"max_examples must be >= 1, got {max_examples}")
    _check_choices(quantize, tuple(dict.fromkeys((*QUANTIZATIONS, *QUANTIZATION_ALIASES,
                                                  *generative.QUANTIZATIONS))), "quantization")
    quantize = _unaliased(quantize)
    if "onnx" in formats and importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError("--format onnx checks the model in ONNX Runtime, which is not "
                          "installed: pip install 'tfsft[cpu]' (onnxruntime), or 'tfsft[gpu]' "
                          "(onnxruntime-gpu) on a CUDA machine")
    if not str(output).strip():
        raise ConfigError("--output is empty; name the model's base folder (e.g. "
                          "saved_models/NAME)")
    run = run_or_dir if isinstance(run_or_dir, TrainedRun) else TrainedRun(run_or_dir)
    base = Path(output)
    if base.resolve() == Path.cwd().resolve():
        raise ConfigError(f"--output {output} is the working directory; name a folder of its "
                          "own (e.g. saved_models/NAME)")
    if base.resolve() == run.run_dir.resolve() or run.run_dir.resolve() in base.resolve().parents:
        raise ConfigError(f"--output {base} is inside the run folder {run.run_dir}; export to "
                          "a folder of its own (e.g. saved_models/NAME), so the run keeps only "
                          "what training wrote")
    if is_run_folder(base):
        raise ConfigError(f"--output {base} is a training run folder; export to a folder of "
                          "its own (e.g. saved_models/NAME)")
    if base.exists() and not base.is_dir():
        raise ConfigError(f"--output {base} is a file; name a folder (e.g. saved_models/NAME)")
    check_output(base, formats)
    if isinstance(run.task.serving, GenerativeServing):
        generative.check_variants(run.task.name, formats, quantize)
        run.task.serving.check_checkpoint_formats(run.model, run.run_dir / TOKENIZER_DIR,
                                                  formats)
    else:
        if "gguf" in formats:
            raise ConfigError(f"--format gguf is for causal-lm runs (llama.cpp runs decoders); "
                              f"{run.task.name} runs export as savedmodel, tflite, onnx and hf")
        _check_variants(run.task.name, quantize)
        if "hf" in formats:
            huggingface.hub_head(run)  # a run without a transformers class stops here
    created = not base.exists()
    base.mkdir(parents=True, exist_ok=True)
    try:
        if isinstance(run.task.serving, GenerativeServing):
            return generative.export_generative(run, base, formats, quantize, allow_mismatch,
                                                data, max_examples)
        return _export(run, base, formats, quantize, allow_mismatch, data, max_examples,
                       latency_examples)
    except BaseException:
        if created:  # a failed first export leaves no empty folder behind
            with contextlib.suppress(OSError):
                base.rmdir()
        raise


def _export(run: TrainedRun, base: Path, formats: list[str], quantize: list[str],
            allow_mismatch: bool, data: Any, max_examples: int,
            latency_examples: int) -> dict[str, Any]:
    heldout = data if data is not None else run.saved_examples(HELDOUT_FILE)
    heldout = heldout.subset(np.arange(min(max_examples, len(heldout))))
    batches = make_batches(run.task, run.tokenizer, heldout, run.max_length)
    singles = heldout.subset(np.arange(min(latency_examples, len(heldout))))
    timing = {"batch_1": make_batches(run.task, run.tokenizer, singles, run.max_length,
                                      batch_size=1)}
    full_batches = [b for b in batches if batch_size_of(b) == 32][:5]
    if full_batches:  # fewer than 32 held-out examples: no batch-32 timing
        timing["batch_32"] = full_batches
    checks: list[Check] = []

    def build(staging: Path) -> dict[str, Any]:
        checks.extend(_build_and_check(run, staging, formats, quantize, heldout, batches, timing))
        return report(checks, {"run_dir": str(run.run_dir), "examples": len(heldout),
                               "formats": list(formats), "quantize": list(quantize)})

    return stage_verify_publish(
        base, formats, allow_mismatch, build, lambda _summary: markdown_table(checks),
        lambda _summary: f"# Export of {run.run_dir}\n\n{markdown_table(checks)}\n"
                         f"{layer_error_tables(checks)}",
        lambda summary, library: model_card(run, summary, base.name, library))


def _listed(values: str | Sequence[str]) -> list[str]:
    """``"savedmodel,onnx"`` or ``["savedmodel", "onnx"]`` as a list of names."""
    if isinstance(values, str):
        return [v.strip() for v in values.split(",") if v.strip()]
    return list(values)


def _unaliased(quantize: list[str]) -> list[str]:
    """``quantize`` with aliases replaced by the variants they name (each once)."""
    for alias, variant in QUANTIZATION_ALIASES.items():
        if alias in quantize:
            logger.info("--quantize %s builds %s: int8 weights and activations, calibrated on "
                        "training texts (TFLite full int8, ONNX QDQ)", alias, variant)
    names = [QUANTIZATION_ALIASES.get(q, q) for q in quantize]
    return [q for i, q in enumerate(names) if q not in names[:i]]


def _check_variants(task: str, quantize: Sequence[str]) -> None:
    """Refuse variants only decoder language models have (one line, naming what exists)."""
    other = [q for q in quantize if q not in QUANTIZATIONS]
    if other:
        raise ConfigError(f"--quantize {','.join(other)}: not a variant of {task} exports "
                          f"(int4 is for causal-lm runs, in ONNX); the variants are "
                          f"{', '.join(QUANTIZATIONS)}")


def _check_choices(given: Sequence[str], allowed: Sequence[str], what: str) -> None:
    unknown = [g for g in given if g not in allowed]
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; choose from {', '.join(allowed)}")


def keras_runner(run: TrainedRun):
    """A verify runner for the Keras model: raw outputs through the task's export outputs."""
    import tensorflow as tf

    model, task = run.model, run.task

    def run_batch(batch):
        raw = model.predict_on_batch({"token_ids": batch["input_ids"],
                                      "padding_mask": batch["attention_mask"],
                                      "segment_ids": batch["token_type_ids"]})
        outputs = task.serving.export_outputs(tf.constant(raw, tf.float32))
        return {k: v.numpy() for k, v in outputs.items()}

    return run_batch


def _build_and_check(run: TrainedRun, staging: Path, formats: Sequence[str],
                     quantize: Sequence[str], heldout: Any, batches: list[dict],
                     timing: dict) -> list[Check]:
    reference_runner = keras_runner(run)
    reference = run_all(decoding(reference_runner, run.task), batches,
                        list(run.task.serving.output_checks()))
    reference_quality = quality_of(run.task, heldout, reference)  # once, for every artifact

    def check(artifact, variant, path, runner, timed=True, **notes):
        logger.info("verifying %s %s on %d held-out examples", artifact, variant, len(heldout))
        return verify(artifact, variant, path, runner, run.task, reference, batches, heldout,
                      timing if timed else {}, notes, reference_quality)

    def gated(artifact, variant, write, runner_of, layers, measure=None, **notes):
        """A variant quantized with per-layer float fallback until it passes its gate."""
        def attempt(path):
            return check(artifact, variant, path, runner_of(path), timed=False, **notes)

        result = quantize_with_fallback(write, attempt, layers, f"{artifact} {variant}",
                                        measure=measure)
        runner = runner_of(Path(result.path))
        result.latency_ms.update({name: median_ms(runner, timing_batches)
                                  for name, timing_batches in timing.items()})
        return result

    checks = [check("keras", "fp32", run.run_dir / "model.keras", reference_runner)]
    saved = staging / "savedmodel"
    if {"savedmodel", "tflite"} & set(formats):  # TFLite converts the SavedModel
        saved.mkdir()
        logger.info("writing SavedModel")
        warmup = {name: texts[:32] for name, texts in run.task.data.texts(heldout).items()}
        savedmodel.write_savedmodel(run, saved, warmup)
    if "savedmodel" in formats:
        checks.append(check("savedmodel", "fp32", saved, savedmodel.savedmodel_runner(saved)))
    if "tflite" in formats:
        checks += _tflite(run, saved, staging / "tflite", quantize, heldout, check, gated)
    if "onnx" in formats:
        checks += _onnx(run, staging / "onnx", quantize, heldout, check, gated)
    if "hf" in formats:
        checks += _hugging_face(run, staging / huggingface.FOLDER, check)
    return checks


def _hugging_face(run: TrainedRun, folder: Path, check) -> list[Check]:
    logger.info("writing the Hugging Face folder")
    notes = huggingface.write_hub_folder(run, folder)
    runner = huggingface.tf_runner(folder, run)
    checks = [check("hf", "tensorflow", folder, runner, **notes,
                    pytorch="checked" if huggingface.torch_available()
                    else "not checked: PyTorch is not installed")]
    texts = huggingface.text_runner(folder, run, runner)
    if texts is not None:
        checks.append(check("hf", "text", folder, texts, timed=False,
                            tokenizer="the folder's own (AutoTokenizer)"))
    if huggingface.torch_available():
        checks.append(check("hf", "pytorch", folder, huggingface.torch_runner(folder, run),
                            **notes))
    return checks


def _tflite(run: TrainedRun, saved: Path, folder: Path, quantize: Sequence[str],
            heldout: Any, check, gated) -> list[Check]:
    folder.mkdir()
    tflite.write_sidecars(folder, run)
    checks = []
    for variant in ["fp32", *[q for q in ("fp16", "int8-dynamic") if q in quantize]]:
        logger.info("converting TFLite %s", variant)
        path = folder / tflite.TOKEN_ID_VARIANTS[variant]
        path.write_bytes(tflite.convert_token_ids(saved, variant))
        checks.append(check("tflite", variant, path, tflite.token_ids_runner(path)))
    float_model = folder / tflite.TOKEN_ID_VARIANTS["fp32"]
    dynamic_failed = "int8-dynamic" in quantize and not checks[-1].passed
    calibration = (_calibration(run, heldout, batch_size=1)
                   if dynamic_failed or "int8-static" in quantize else [])
    sensitivity = functools.partial(_output_sensitivity, tflite.token_ids_runner, float_model,
                                    calibration[:LAYER_ERROR_EXAMPLES])
    if dynamic_failed:
        # The converter's model (embedding tables int8 too) is below its gate: the dense
        # layers again, by the LiteRT quantizer, which can keep chosen ones float.
        converted = checks.pop()
        logger.info("TFLite int8-dynamic is below its gate (%s); quantizing the dense layers "
                    "with the worst in float", converted.gate_text())
        quantizer = tflite.LayerQuantizer(float_model, "dynamic")
        path = Path(converted.path)

        def write_dynamic(float_layers: Sequence[str]) -> Path:
            path.write_bytes(quantizer.quantize(float_layers))
            return path

        result = gated("tflite", "int8-dynamic", write_dynamic, tflite.token_ids_runner,
                       quantizer.layers(), measure=sensitivity(write_dynamic, "tflite int8-dynamic"),
                       quantization=TFLITE_DYNAMIC_LAYERS)
        result.notes["fallback_tries"].insert(0, {
            "float_layers": 0, "what": "the converter's model (embedding tables int8 too)",
            "agreement": converted.agreement,
            "quality": converted.quality, "gate": converted.gate_text(), "passed": False})
        checks.append(result)
    if "int8-static" in quantize:
        logger.info("converting TFLite int8-static (calibrating on %d examples)",
                    len(calibration))
        quantizer = tflite.Int8Quantizer(saved, calibration)
        path = folder / tflite.TOKEN_ID_VARIANTS["int8-static"]

        def write(float_layers: Sequence[str]) -> Path:
            path.write_bytes(quantizer.quantize(float_layers))
            return path

        logger.info("measuring the error of each int8 layer")
        checks.append(gated("tflite", "int8-static", write, tflite.token_ids_runner,
                            quantizer.layer_errors(),
                            measure=sensitivity(write, "tflite int8-static"),
                            quantization=TFLITE_STATIC))
    no_text_model = run.task.serving.no_lite_text_model or _normalization_beyond_lite(run)
    if no_text_model:
        logger.info("no raw-text TFLite model for %s: %s", run.task.name, no_text_model)
        return checks
    logger.info("converting TFLite raw-text model")
    path = folder / tflite.TEXT_MODEL
    path.write_bytes(tflite.convert_text(saved))
    checks.append(check("tflite", "text", path, tflite.text_runner(path)))
    return checks


def _normalization_beyond_lite(run: TrainedRun) -> str:
    """Why a run's text normalization keeps its raw-text TFLite model from being written
    (empty: it has none)."""
    steps = getattr(run.tokenizer, "normalization", ())
    if not steps:
        return ""
    return (f"its text normalization ({','.join(steps)}) needs TensorFlow string ops that "
            "LiteRT does not run; apply the same steps in the app (tokenizer_config.json names "
            "them) and feed the token-id models")


#: Training examples the calibrated int8 variants are calibrated on.
CALIBRATION_EXAMPLES = 200
#: Of those, the examples each quantized layer's error is measured on (ONNX).
LAYER_ERROR_EXAMPLES = 64
TFLITE_DYNAMIC_LAYERS = ("dynamic (LiteRT quantizer): dense layers int8 in weights (per channel), "
                         "activations quantized per row at run time; embedding tables float")
TFLITE_STATIC = ("full int8: dense layers int8 in weights (per channel) and activations "
                 "(calibrated), normalization, softmax and GELU float")
ONNX_DYNAMIC = "dynamic: weights int8 per channel, activations quantized at run time"
ONNX_STATIC = ("static QDQ: MatMul weights int8 per channel, activations uint8 calibrated "
               "(min/max); fused Attention float")
#: Node types ONNX dynamic int8 quantizes in the optimized graph.
ONNX_DYNAMIC_OPS = ("MatMul", "Attention", "Gather", "EmbedLayerNormalization")


def _calibration(run: TrainedRun, heldout: Any, batch_size: int) -> list[dict]:
    """Token-id batches of the run's calibration examples (training texts)."""
    examples = run.saved_examples(CALIBRATION_FILE, fallback=heldout)
    if not len(examples):
        raise ConfigError(f"{run.run_dir}: no calibration examples ({CALIBRATION_FILE} and the "
                          "held-out examples are empty) to quantize int8 variants with; pass "
                          "data to verify on, or leave int8 out of --quantize")
    examples = examples.subset(np.arange(min(CALIBRATION_EXAMPLES, len(examples))))
    return make_batches(run.task, run.tokenizer, examples, run.max_length, batch_size=batch_size)


def _output_sensitivity(runner_of, float_model: Path, samples: Sequence[dict], write,
                        label: str):
    """The ``measure`` of :func:`~exporters.fallback.quantize_with_fallback`: what each layer
    alone quantized does to the model's float outputs on the calibration ``samples``."""
    def outputs(path: Path) -> np.ndarray:
        runner = runner_of(path)
        return np.concatenate([np.asarray(value, np.float64).ravel()
                               for batch in samples for value in runner(batch).values()
                               if np.issubdtype(np.asarray(value).dtype, np.floating)])

    def measure(layers: Sequence[LayerError]) -> list[LayerError]:
        return with_output_snr(layers, write, outputs, outputs(float_model), label)

    return measure


def _onnx(run: TrainedRun, folder: Path, quantize: Sequence[str], heldout: Any, check,
          gated) -> list[Check]:
    folder.mkdir()
    onnx_model.write_sidecars(folder, run)
    paths = {variant: folder / name for variant, name in onnx_model.FILES.items()}
    logger.info("converting to ONNX (tf2onnx, opset %d)", onnx_model.OPSET)
    onnx_model.convert(run.model, paths["fp32"], run.task.serving.export_outputs)
    checks = [check("onnx", "fp32", paths["fp32"], onnx_model.session_runner(paths["fp32"]))]
    backbone = run.model.backbone
    logger.info("optimizing with the ONNX Runtime transformer optimizer")
    optimized = paths["optimized"]
    # a pruned backbone's layers differ in heads: 0 lets the optimizer read them per layer
    fused = onnx_model.optimize(paths["fp32"], optimized, getattr(backbone, "num_heads", 0),
                                backbone.hidden_dim if hasattr(backbone, "num_heads") else 0)
    checks.append(check("onnx", "optimized", optimized,
                        onnx_model.session_runner(optimized), fused_operators=fused))
    calibration = (_calibration(run, heldout, batch_size=32)
                   if {"int8-dynamic", "int8-static"} & set(quantize) else [])
    samples = calibration[:max(1, LAYER_ERROR_EXAMPLES // 32)]
    for variant, quantizer, ops, method in (
            ("int8-dynamic", onnx_model.quantize_int8, ONNX_DYNAMIC_OPS, ONNX_DYNAMIC),
            ("int8-static", functools.partial(onnx_model.quantize_static_int8,
                                              calibration=calibration),
             onnx_model.STATIC_OPS, ONNX_STATIC)):
        if variant not in quantize:
            continue
        path = paths[variant]

        def write(float_nodes: Sequence[str], path=path, quantizer=quantizer) -> Path:
            quantizer(optimized, path, float_nodes=float_nodes)
            return path

        logger.info("quantizing ONNX %s and measuring the error of each quantized node", variant)
        layers = onnx_model.layer_errors(optimized, write(()), samples, ops)
        measure = _output_sensitivity(onnx_model.session_runner, optimized, samples, write,
                                      f"onnx {variant}")
        checks.append(gated("onnx", variant, write, onnx_model.session_runner, layers,
                            measure=measure, quantization=method))
    if "fp16" in quantize:
        onnx_model.to_fp16(optimized, paths["fp16"])
        checks.append(check("onnx", "fp16", paths["fp16"],
                            onnx_model.session_runner(paths["fp16"]), provider="CPU"))
    if onnx_model.cuda_available():  # onnxruntime-gpu on a CUDA machine
        for variant in ("optimized", "fp16"):
            if paths[variant].exists():
                runner = onnx_model.session_runner(paths[variant], (onnx_model.CUDA,))
                checks.append(check("onnx", variant, paths[variant], runner, provider="CUDA"))
    return checks
