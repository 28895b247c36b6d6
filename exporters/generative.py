"""Export a run of a generative task (causal-lm): a SavedModel that generates (greedy and
sampled, with a KV cache), and the forward graph (token ids -> logits) as ONNX and TFLite.

Layout under the output folder (TensorFlow Serving loads ``<version>/``)::

    saved_models/NAME/<version>/            SavedModel: generate, sample, logits
    saved_models/NAME/<version>/assets/     the tokenizer files and task.json
    saved_models/NAME/onnx/                 --format onnx: model.onnx (+ int8 / int4 / fp16 variants)
    saved_models/NAME/tflite/               --format tflite: model.tflite (+ int8 / fp16)
    saved_models/NAME/hf/                   --format hf: a Hugging Face checkpoint folder
    saved_models/NAME/gguf/                 --format gguf: model.gguf (+ f16 / q8_0 / q4_1)
    saved_models/NAME/export_report.json

The graphs come from the task's serving role (:class:`tfsft.tasks.roles.GenerativeServing`;
the module of the task's role documents its signatures). The SavedModel is verified in a
fresh process: its greedy completions of the held-out prompts equal those of
``tfsft generate``. The ONNX and TFLite graphs (:mod:`exporters.forward_graph`) are compared
with the Keras model's logits at every position of held-out conversations: fp32 within 1e-3
and the same next token at >= 99 % of positions; quantized variants (fp16, int8-dynamic, and
int4 in ONNX) at >= 97 % and the same greedy completion as the Keras model for >= 90 % of held-out prompts,
or they are left out.
The Hugging Face folder and the GGUF files hold the tuned weights (LoRA merged; the task's
serving role writes them): each is read back as a user's runtime reads it (keras-hub's Hugging
Face converter; tfsft's GGUF converter) and held to the same gates as the forward graphs.
The export report says why the generation loop itself is not exported to ONNX or TFLite.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from exporters import forward_graph as forward
from exporters import onnx_model
from exporters.model_card import model_card
from exporters.publish import stage_verify_publish
from tfsft.errors import ConfigError
from tfsft.runs import HELDOUT_FILE, TASK_FILE, TOKENIZER_DIR

logger = logging.getLogger(__name__)
#: The quantized variants of a generative run's forward graph, per format.
VARIANTS = {"onnx": ("fp16", "int8-dynamic", "int4"), "tflite": ("fp16", "int8-dynamic"),
            "gguf": ("fp16", "int8-dynamic", "int4")}
QUANTIZATIONS = ("fp16", "int8-dynamic", "int4")


#: Why a variant is missing where it is.
WHY_NOT = {
    "int8-static": (" (calibrated int8 activations do not survive decoder hidden states; "
                    "int8-dynamic quantizes the weights only)"),
    "int4": (" (LiteRT's 4-bit weights have one scale per channel, which kept 23 % of "
             "SmolLM2's next tokens, or blocks that need int8 activations)"),
}


def check_variants(task: str, formats: Sequence[str], quantize: Sequence[str]) -> None:
    """Refuse a variant that none of the requested formats builds for a generative run, in one
    line naming the variants each format has (a format without it just does not build it)."""
    for variant in quantize:
        if not any(variant in VARIANTS.get(f, ()) for f in formats):
            lacking = [f for f in formats if f in VARIANTS]
            have = "; ".join(f"{f}: {', '.join(VARIANTS[f])}" for f in VARIANTS)
            why = WHY_NOT.get(variant, "")
            verb = "have" if len(lacking) > 1 else "has"
            named = "int8-static (int8)" if variant == "int8-static" else variant
            raise ConfigError(f"--quantize {named}: {' and '.join(lacking)} {verb} no "
                              f"{variant} variant for {task} runs{why}; the variants are {have}")


#: Held-out prompts whose greedy completions are compared.
VERIFY_PROMPTS = 50
VERIFY_NEW_TOKENS = 32


def export_generative(run, base: Path, formats: list[str], quantize: list[str],
                      allow_mismatch: bool, data: Any, max_examples: int) -> dict[str, Any]:
    """Write, verify and publish the SavedModel of a generative run (see the module
    docstring) and, where asked, the forward graph as ONNX and TFLite."""
    heldout = data if data is not None else run.saved_examples(HELDOUT_FILE)
    if not len(heldout):
        raise ConfigError(f"no held-out examples to verify the export on (the run's "
                          f"{HELDOUT_FILE} is empty); pass data to verify on")

    def build(staging: Path) -> dict[str, Any]:
        started = time.perf_counter()
        model = run.task.serving.export_model(run.model)  # a copy, changed for the export only
        logger.info("model ready to export in %.1f s", time.perf_counter() - started)
        checks = []
        if "savedmodel" in formats:
            checks.append(_savedmodel(run, model, staging / "savedmodel", heldout,
                                      min(VERIFY_PROMPTS, max_examples, len(heldout))))
        if {"onnx", "tflite", "hf", "gguf"} & set(formats):
            reference = _Reference(run, heldout,
                                   min(FORWARD_CONVERSATIONS, max_examples, len(heldout)))
        if {"onnx", "tflite"} & set(formats):
            checks += _forward_graphs(run, model, staging, formats, quantize, reference)
        if {"hf", "gguf"} & set(formats):
            checks += _checkpoint_files(run, model, staging, formats, quantize, reference,
                                        base.name)
        skipped = {f"{f} {v}": f"{f} has no {v} variant (it has {', '.join(VARIANTS[f])})"
                   for f in formats if f in VARIANTS for v in quantize if v not in VARIANTS[f]}
        for reason in skipped.values():
            logger.warning("--quantize: %s; built for the other formats only", reason)
        return {"run_dir": str(run.run_dir), "task": run.task.name, "formats": formats,
                "quantize": quantize, "artifacts": checks,
                "passed": all(c["passed"] for c in checks),
                "not_exported": {**NOT_EXPORTED, **skipped}}

    return stage_verify_publish(
        base, formats, allow_mismatch, build, lambda summary: checks_table(summary["artifacts"]),
        lambda summary: checks_table(summary["artifacts"] + summary.get("not_published", [])),
        lambda summary, library: model_card(run, summary, base.name, library))


#: Held-out conversations whose next-token logits the ONNX and TFLite graphs are checked on.
FORWARD_CONVERSATIONS = 50
#: Held-out prompts each forward graph completes greedily, and the most tokens it adds.
COMPLETION_PROMPTS = 20
COMPLETION_TOKENS = 16
NOT_EXPORTED = {
    "generation loop as TFLite": (
        "the decoding loop collects tokens in a growing TensorArray, which the TFLite "
        "converter cannot lower to builtin ops ('tf.TensorListReserve' op requires "
        "element_shape to be 1D tensor; it suggests SELECT_TF_OPS, i.e. shipping the "
        "TensorFlow Flex delegate in the app), and the text decoding uses tf.strings ops that "
        "are not TFLite ops; tflite/model.tflite is the forward graph, run the loop around it"),
    "generation loop as ONNX": (
        "keras-hub's key/value-cache update (keras.ops.slice_update) lowers to the TensorFlow "
        "op XlaDynamicUpdateSlice, which tf2onnx 1.17 has no ONNX conversion for ('Unsupported "
        "ops: XlaDynamicUpdateSlice', two per layer); the graph it writes does not load in "
        "onnxruntime. onnx/model.onnx is the forward graph: run the loop around it"),
    "prompt strings": ("tokenized outside the graph (see tfsft/tasks/causal_lm/serving.py: RE2 "
                       "has no look-ahead)"),
}


def _savedmodel(run, model, folder: Path, heldout, count: int) -> dict[str, Any]:
    """The generating SavedModel in ``folder``, checked in a fresh process against
    ``tfsft generate`` on ``count`` held-out prompts."""
    import tensorflow as tf

    serving = run.task.serving
    started = time.perf_counter()
    module = serving.generation_module(model, run.tokenizer, run.max_length)
    tf.saved_model.save(module, str(folder), signatures={
        "generate": module.generate, "sample": module.sample, "logits": module.logits})
    (folder / "assets").mkdir(exist_ok=True)
    write_tokenizer_sidecars(run, folder / "assets")
    build_seconds = time.perf_counter() - started
    logger.info("verifying the SavedModel's greedy completions on %d prompts", count)
    prompts = serving.prompt_ids(heldout, count)
    expected = serving.completions(run.model, run.tokenizer, prompts, VERIFY_NEW_TOKENS,
                                   run.max_length)
    served = fresh_process_completions(folder, prompts, VERIFY_NEW_TOKENS)
    equal = [a == b for a, b in zip(expected, served, strict=True)]
    texts = next(iter(run.task.data.texts(heldout).values()))
    return {"artifact": "savedmodel", "variant": "fp32", "path": str(folder),
            "prompts": count, "max_new_tokens": VERIFY_NEW_TOKENS,
            "equal_to_tfsft_generate": int(sum(equal)),
            "agreement": round(sum(equal) / max(count, 1), 4),
            "rule": "greedy completions equal tfsft generate's", "passed": all(equal),
            "build_seconds": round(build_seconds, 1),
            "mismatches": [{"prompt": texts[i], "generate": expected[i],
                            "savedmodel": served[i]}
                           for i in range(count) if not equal[i]][:5]}


class _Reference:
    """What every exported graph or file is compared with: the run's model's logits at every
    real position of ``count`` held-out conversations, and its greedy completions of
    :data:`COMPLETION_PROMPTS` held-out prompts."""

    def __init__(self, run, heldout, count: int):
        sequences = run.task.serving.sequence_ids(heldout, count)
        self.run = run
        self.batches = forward.conversation_batches(sequences, int(run.tokenizer.pad_id))
        self.expected = forward.reference_outputs(forward.keras_runner(run.model), self.batches)
        self.prompts = run.task.serving.prompt_ids(heldout, min(COMPLETION_PROMPTS, count))
        logger.info("greedy completions of the Keras model on %d prompts", len(self.prompts))
        self.expected_completions = self.completions(forward.keras_runner(run.model))

    def completions(self, runner: forward.Runner) -> list[list[int]]:
        return forward.greedy_completions(runner, self.prompts, COMPLETION_TOKENS,
                                          int(self.run.tokenizer.eos_id),
                                          int(self.run.tokenizer.pad_id))

    def compare(self, artifact: str, variant: str, path: Path, runner: forward.Runner,
                **notes: Any) -> dict[str, Any]:
        return forward.compare(artifact, variant, path, runner, self.batches, self.expected,
                               self.completions, self.expected_completions, **notes)


def _checkpoint_files(run, model, staging: Path, formats: list[str], quantize: list[str],
                      reference: _Reference, name: str) -> list[dict[str, Any]]:
    """The Hugging Face folder and GGUF files of the tuned model (the task's serving role
    writes them), each read back as a user's runtime reads it and compared with the run;
    ``name``: the model's name in a GGUF file."""
    serving = run.task.serving
    hub = staging / ("hf" if "hf" in formats else ".hf-for-gguf")
    serving.write_hub_folder(model, run.run_dir / TOKENIZER_DIR, run.base_checkpoint, hub)
    checks = []
    if "hf" in formats:
        checks.append(reference.compare(
            "hf", "fp32", hub / "model.safetensors",
            forward.keras_runner(serving.read_checkpoint(hub)),
            read_back="keras-hub's Hugging Face converter",
            pytorch="not checked: the export reads the folder through keras-hub only"))
    if "gguf" in formats:
        folder = staging / "gguf"
        folder.mkdir()
        for variant in ["fp32", *[v for v in quantize if v in VARIANTS["gguf"]]]:
            path, holds = serving.write_gguf(hub, folder, variant, name)
            checks.append(reference.compare(
                "gguf", variant, path, forward.keras_runner(serving.read_checkpoint(path)),
                method=holds, read_back="tfsft's GGUF converter"))
        if "hf" not in formats:
            shutil.rmtree(hub)
    return checks


def _forward_graphs(run, model, staging: Path, formats: list[str], quantize: list[str],
                    reference: _Reference) -> list[dict[str, Any]]:
    """ONNX and TFLite forward graphs, each compared with the Keras model's logits at every
    real position of the reference's held-out conversations (prompt and response)."""
    batches, expected = reference.batches, reference.expected
    completions, expected_completions = reference.completions, reference.expected_completions
    files = forward.write_frozen(run.task.serving.frozen_forward(model), staging,
                                 onnx="onnx" in formats, tflite="tflite" in formats)
    checks = []
    for artifact, write, runner in (("onnx", forward.write_onnx, forward.onnx_runner),
                                    ("tflite", forward.write_tflite, forward.tflite_runner)):
        if artifact not in formats:
            continue
        folder = staging / artifact
        folder.mkdir()
        write_tokenizer_sidecars(run, folder)
        for variant, path in write(files, folder, quantize).items():
            method = forward.METHODS.get((artifact, variant))
            checks.append(forward.compare(artifact, variant, path, runner(path), batches,
                                          expected, completions, expected_completions,
                                          **({"method": method} if method else {})))
        if artifact == "tflite" and "int8-dynamic" in quantize:
            method = forward.METHODS[("tflite", "int8-dynamic")]
            checks.append(forward.tflite_int8_weights(
                folder / "model.tflite", folder / forward.TFLITE_FILES["int8-dynamic"],
                lambda path, method=method: forward.compare(
                    "tflite", "int8-dynamic", path, forward.tflite_runner(path), batches,
                    expected, completions, expected_completions, method=method)))
            if artifact == "onnx" and onnx_model.cuda_available():
                checks.append(forward.compare(
                    artifact, variant, path, forward.onnx_runner(path, (onnx_model.CUDA,)),
                    batches, expected, provider="CUDA"))
    if files.graph_def is not None:
        files.graph_def.unlink()
    if files.savedmodel is not None:
        shutil.rmtree(files.savedmodel)
    return checks


def write_tokenizer_sidecars(run, folder: Path) -> None:
    """The run's tokenizer files (``tokenizer.json``, ``tokenizer_config.json`` with the chat
    template) and ``task.json``."""
    for path in sorted((run.run_dir / TOKENIZER_DIR).iterdir()):
        if path.is_file():
            shutil.copy(path, folder / path.name)
    shutil.copy(run.run_dir / TASK_FILE, folder / TASK_FILE)


def checks_table(checks: list[dict[str, Any]]) -> str:
    """The export checks as a Markdown table.

    >>> print(checks_table([]).splitlines()[0])
    | artifact | variant | size MB | checked | max abs Δlogit | agreement | completions | float layers | ok |
    """
    lines = ["| artifact | variant | size MB | checked | max abs Δlogit | agreement | "
             "completions | float layers | ok |", "|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        if c["artifact"] == "savedmodel":
            checked, diff = f"{c['prompts']} greedy completions", "-"
            agreement = f"{c['equal_to_tfsft_generate']}/{c['prompts']} equal"
        else:
            checked, diff = f"{c['positions']} positions", f"{c['max_abs_logit_diff']:.2e}"
            agreement = f"{100 * c['argmax_agreement']:.2f} % argmax"
        size = f"{c['size_mb']:.1f}" if "size_mb" in c else "-"
        completed = (f"{c['equal_completions']}/{c['completion_prompts']} equal"
                     if "equal_completions" in c else "-")
        kept = (f"{len(c['float_layers'])} of {len(c['layer_errors'])}"
                if "float_layers" in c else "-")
        lines.append(f"| {c['artifact']} | {c['variant']} | {size} | {checked} | {diff} | "
                     f"{agreement} | {completed} | {kept} | {'yes' if c['passed'] else 'NO'} |")
    return "\n".join(lines)


_FRESH_PROCESS = """
import json, sys
import tensorflow as tf
args = json.loads(sys.stdin.read())
generate = tf.saved_model.load(args["path"]).signatures["generate"]
texts = []
for begin in range(0, len(args["prompts"]), 16):
    rows = args["prompts"][begin:begin + 16]
    width = max(len(r) for r in rows)
    ids = [r + [0] * (width - len(r)) for r in rows]
    out = generate(prompt_ids=tf.constant(ids, tf.int32),
                   prompt_lengths=tf.constant([len(r) for r in rows], tf.int32),
                   max_new_tokens=tf.constant(args["new"], tf.int32))
    texts += [t.decode("utf-8") for t in out["completion"].numpy()]
print(json.dumps(texts))
"""


def fresh_process_completions(folder: Path, prompts: list[list[int]], new_tokens: int) -> list[str]:
    """Greedy completions of the SavedModel in ``folder``, loaded by a new Python process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], env=env, text=True,
                          capture_output=True, timeout=3600,
                          input=json.dumps({"path": str(folder), "prompts": prompts,
                                            "new": new_tokens}))
    if done.returncode:
        raise RuntimeError(f"loading the SavedModel in a fresh process failed: "
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
