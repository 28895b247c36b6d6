"""Export a causal-lm run: a SavedModel that generates (greedy and sampled, with a KV cache),
and the forward graph (token ids -> logits) as ONNX and TFLite.

Layout under the output folder (TensorFlow Serving loads ``<version>/``)::

    saved_models/NAME/<version>/            SavedModel: generate, sample, logits
    saved_models/NAME/<version>/assets/     tokenizer.json, tokenizer_config.json, task.json
    saved_models/NAME/onnx/                 --format onnx: model.onnx (+ int8 / fp16 variants)
    saved_models/NAME/tflite/               --format tflite: model.tflite (+ fp16 / int8-dynamic)
    saved_models/NAME/export_report.json

Signatures (LoRA merged, float32):

- ``generate(prompt_ids, prompt_lengths, max_new_tokens)``: greedy completions;
- ``sample(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_p, seed)``;
- ``logits(token_ids, padding_mask)``: next-token logits at every position (the forward graph).

``prompt_ids`` are right-padded ``[batch, length]`` int32 token ids of prompts rendered with the
chat template (``tfsft.tasks.causal_lm.chat_tokenizer.ChatTokenizer.prompt_ids``; the tokenizer files ship in
``assets/``); the outputs are ``completion_ids`` (``[batch, new]``, padded with -1),
``completion_lengths`` and ``completion`` (the decoded UTF-8 text, computed in the graph).
Prompt *strings* are not tokenized in the graph: the byte-level BPE pre-tokenizer splits text
with a regular expression that uses look-ahead (``\\s+(?!\\S)``), which TensorFlow's RE2 regex
ops cannot express, so an in-graph tokenizer would split some whitespace runs differently from
``tokenizer.json`` (keras-hub's BytePairTokenizer encodes ``"\\n\\n"`` as one token where
``tokenizers`` gives two) and answer with a different model input.

The SavedModel is verified in a fresh process: greedy completions of the held-out prompts equal
those of ``tfsft generate``. The ONNX and TFLite graphs (``exporters.causal_lm_forward``) are
compared with the Keras model's logits at every position of held-out conversations: fp32 within
1e-3 and the same next token at >= 99 % of positions; fp16 and int8-dynamic variants are
reported. The export report says why the generation loop itself is not exported to ONNX or
TFLite.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from tfsft.errors import ConfigError
from tfsft.io_utils import atomic_write_json

logger = logging.getLogger(__name__)
#: Held-out prompts whose greedy completions are compared.
VERIFY_PROMPTS = 50
VERIFY_NEW_TOKENS = 32


def token_bytes(tokenizer) -> list[bytes]:
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


def generation_module(model, tokenizer, max_length: int):
    """A ``tf.Module`` with the ``generate``, ``sample`` and ``logits`` functions."""
    import tensorflow as tf

    from tfsft.tasks.causal_lm.generation import _causal_lm_class

    backbone = model.backbone
    causal_lm = _causal_lm_class(backbone)(backbone=backbone, preprocessor=None)
    head_dim = backbone.hidden_dim // backbone.num_query_heads
    kv_heads = getattr(backbone, "num_key_value_heads", backbone.num_query_heads)
    eos, pad = int(tokenizer.eos_id), int(tokenizer.pad_id)
    table = tf.constant(token_bytes(tokenizer))

    def decode(ids, lengths):
        mask = tf.sequence_mask(lengths, tf.shape(ids)[1])
        pieces = tf.where(mask, tf.gather(table, tf.maximum(ids, 0)), "")
        raw = tf.strings.reduce_join(pieces, axis=1)
        return tf.strings.unicode_transcode(raw, "UTF-8", "UTF-8", errors="replace")

    def loop(prompt_ids, prompt_lengths, max_new_tokens, choose):
        prompt_ids = tf.cast(prompt_ids, tf.int32)
        lengths = tf.cast(prompt_lengths, tf.int32)
        batch = tf.shape(prompt_ids)[0]
        new_tokens = tf.clip_by_value(tf.cast(max_new_tokens, tf.int32), 1, max_length)
        total = tf.minimum(tf.reduce_max(lengths) + new_tokens,
                           max_length + tf.reduce_max(lengths))
        width = tf.shape(prompt_ids)[1]
        ids = tf.concat([prompt_ids[:, :tf.minimum(width, total)],
                         tf.fill([batch, tf.maximum(total - width, 0)], pad)], axis=1)
        ids = tf.where(tf.sequence_mask(lengths, total), ids, pad)
        start = tf.reduce_min(lengths)
        cache = tf.zeros([batch, backbone.num_layers, 2, start, kv_heads, head_dim],
                         causal_lm.compute_dtype)
        logits, _, cache = causal_lm.call_with_cache(ids[:, :start], cache, 0)
        cache = tf.pad(cache, [[0, 0], [0, 0], [0, 0], [0, total - start], [0, 0], [0, 0]])
        next_logits = tf.cast(logits[:, -1, :], tf.float32)
        out = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
        done = tf.zeros([batch], tf.bool)
        counts = tf.zeros([batch], tf.int32)

        def body(index, next_logits, cache, ids, done, counts, out):
            chosen = choose(next_logits, index)
            in_prompt = index < lengths
            active = tf.logical_and(tf.logical_not(in_prompt), tf.logical_not(done))
            stops = tf.logical_and(active, tf.equal(chosen, eos))
            keep = tf.logical_and(active, tf.logical_not(stops))
            token = tf.where(active, chosen, ids[:, index])
            column = tf.one_hot(index, total, on_value=True, off_value=False, dtype=tf.bool)
            ids = tf.where(tf.logical_and(column[None, :], active[:, None]), token[:, None], ids)
            out = out.write(out.size(), tf.where(keep, chosen, -1))
            counts += tf.cast(keep, tf.int32)
            done = tf.logical_or(done, tf.logical_or(stops, tf.logical_and(
                keep, counts >= new_tokens)))
            step_logits, _, cache = causal_lm.call_with_cache(
                token[:, None], cache, index)
            return (index + 1, tf.cast(step_logits[:, -1, :], tf.float32), cache, ids, done,
                    counts, out)

        def more(index, next_logits, cache, ids, done, counts, out):
            return tf.logical_and(index < total, tf.logical_not(tf.reduce_all(done)))

        _, _, _, _, _, counts, out = tf.while_loop(
            more, body, [start, next_logits, cache, ids, done, counts, out])
        steps = tf.transpose(out.stack())  # [batch, steps]: -1 where nothing was kept
        # move each row's kept tokens to its front
        order = tf.argsort(tf.cast(tf.equal(steps, -1), tf.int32), axis=1, stable=True)
        packed = tf.gather(steps, order, batch_dims=1)
        return {"completion_ids": packed, "completion_lengths": counts,
                "completion": decode(packed, counts)}

    def greedy(next_logits, index):
        return tf.cast(tf.argmax(next_logits, axis=-1), tf.int32)

    class Generation(tf.Module):
        pass

    module = Generation()
    module.causal_lm = causal_lm
    module.table = table
    ids_spec = tf.TensorSpec([None, None], tf.int32, name="prompt_ids")
    lengths_spec = tf.TensorSpec([None], tf.int32, name="prompt_lengths")
    new_spec = tf.TensorSpec([], tf.int32, name="max_new_tokens")

    @tf.function(input_signature=[ids_spec, lengths_spec, new_spec])
    def generate(prompt_ids, prompt_lengths, max_new_tokens):
        return loop(prompt_ids, prompt_lengths, max_new_tokens, greedy)

    @tf.function(input_signature=[ids_spec, lengths_spec, new_spec,
                                  tf.TensorSpec([], tf.float32, name="temperature"),
                                  tf.TensorSpec([], tf.float32, name="top_p"),
                                  tf.TensorSpec([], tf.int32, name="seed")])
    def sample(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_p, seed):
        def choose(next_logits, index):
            scaled = next_logits / tf.maximum(temperature, 1e-6)
            probabilities = tf.nn.softmax(scaled, axis=-1)
            order = tf.argsort(probabilities, axis=-1, direction="DESCENDING", stable=True)
            sorted_p = tf.gather(probabilities, order, batch_dims=1)
            before = tf.cumsum(sorted_p, axis=-1, exclusive=True)
            keep = before < top_p  # the smallest prefix whose mass reaches top_p
            masked = tf.where(keep, tf.math.log(sorted_p + 1e-30), -np.inf)
            drawn = tf.random.stateless_categorical(masked, 1, tf.stack([seed, index]),
                                                    dtype=tf.int32)[:, 0]
            return tf.gather(order, drawn[:, None], batch_dims=1)[:, 0]

        greedy_rows = temperature <= 0.0
        return loop(prompt_ids, prompt_lengths, max_new_tokens,
                    lambda logits, index: tf.cond(greedy_rows, lambda: greedy(logits, index),
                                                  lambda: choose(logits, index)))

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="token_ids"),
                                  tf.TensorSpec([None, None], tf.int32, name="padding_mask")])
    def logits(token_ids, padding_mask):
        return {"logits": model.next_token_logits(token_ids, padding_mask)}

    module.generate, module.sample, module.logits = generate, sample, logits
    return module


def export_causal_lm(run, base: Path, formats: list[str], quantize: list[str],
                     allow_mismatch: bool, data: Any, max_examples: int) -> dict[str, Any]:
    """Write, verify and publish the SavedModel of a causal-lm run (see the module docstring)
    and, where asked, the forward graph as ONNX and TFLite (``exporters.causal_lm_forward``)."""
    from exporters import savedmodel
    from exporters.export import ExportMismatchError, publish_folders, published_path
    from tfsft.runs import HELDOUT_FILE

    if "int8" in quantize:
        raise ConfigError("causal-lm runs have no calibrated int8 variant; use "
                          "--quantize int8-dynamic (int8 weights, activations at run time)")
    heldout = data if data is not None else run.saved_examples(HELDOUT_FILE)
    if not len(heldout):
        raise ConfigError(f"no held-out conversations to verify the export on (the run's "
                          f"{HELDOUT_FILE} is empty); pass data to verify on")
    staging = savedmodel.stage_dir(base)
    try:
        started = time.perf_counter()
        model = run.model.merged()  # a float32 copy without LoRA, changed for the export only
        logger.info("merged model ready in %.1f s", time.perf_counter() - started)
        checks = []
        if "savedmodel" in formats:
            checks.append(_savedmodel(run, model, staging / "savedmodel", heldout,
                                      min(VERIFY_PROMPTS, max_examples, len(heldout))))
        if {"onnx", "tflite"} & set(formats):
            checks += _forward_graphs(run, model, staging, formats, quantize, heldout,
                                      min(FORWARD_CONVERSATIONS, max_examples, len(heldout)))
        print(checks_table(checks))
        summary = {"run_dir": str(run.run_dir), "task": run.task.name, "formats": formats,
                   "quantize": quantize, "artifacts": checks,
                   "passed": all(c["passed"] for c in checks), "not_exported": NOT_EXPORTED}
        if not summary["passed"] and not allow_mismatch:
            atomic_write_json(base / "export_report.failed.json", summary)
            raise ExportMismatchError(
                "an exported artifact does not match the trained model (see the table above "
                f"and {base / 'export_report.failed.json'}); nothing was published. Pass "
                "--allow-mismatch to publish anyway")
        published = publish_folders(staging, base, formats)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for check in checks:
        check["path"] = published_path(check["path"], staging, published)
    summary["published"] = {k: str(v) for k, v in published.items()}
    atomic_write_json(base / "export_report.json", summary)
    (base / "export_report.failed.json").unlink(missing_ok=True)
    return summary


#: Held-out conversations whose next-token logits the ONNX and TFLite graphs are checked on.
FORWARD_CONVERSATIONS = 50
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
    "prompt strings": ("tokenized outside the graph (see exporters/causal_lm.py: RE2 has no "
                       "look-ahead)"),
}


def _savedmodel(run, model, folder: Path, heldout, count: int) -> dict[str, Any]:
    """The generating SavedModel in ``folder``, checked in a fresh process against
    ``tfsft generate`` on ``count`` held-out prompts."""
    import tensorflow as tf

    from tfsft.tasks.causal_lm.generation import Generator

    started = time.perf_counter()
    module = generation_module(model, run.tokenizer, run.max_length)
    tf.saved_model.save(module, str(folder), signatures={
        "generate": module.generate, "sample": module.sample, "logits": module.logits})
    (folder / "assets").mkdir(exist_ok=True)
    write_tokenizer_sidecars(run, folder / "assets")
    build_seconds = time.perf_counter() - started
    logger.info("verifying the SavedModel's greedy completions on %d prompts", count)
    prompts = [run.tokenizer.prompt_ids(heldout.prompts[i]) for i in range(count)]
    generator = Generator(run.model.backbone, run.tokenizer,
                          max_length=run.max_length + VERIFY_NEW_TOKENS)
    expected = generator.generate_texts(prompts, VERIFY_NEW_TOKENS)
    served = fresh_process_completions(folder, prompts, VERIFY_NEW_TOKENS)
    equal = [a == b for a, b in zip(expected, served, strict=True)]
    return {"artifact": "savedmodel", "variant": "fp32", "path": str(folder),
            "prompts": count, "max_new_tokens": VERIFY_NEW_TOKENS,
            "equal_to_tfsft_generate": int(sum(equal)),
            "agreement": round(sum(equal) / max(count, 1), 4),
            "rule": "greedy completions equal tfsft generate's", "passed": all(equal),
            "build_seconds": round(build_seconds, 1),
            "mismatches": [{"prompt": heldout.texts[i], "generate": expected[i],
                            "savedmodel": served[i]}
                           for i in range(count) if not equal[i]][:5]}


def _forward_graphs(run, model, staging: Path, formats: list[str], quantize: list[str],
                    heldout, count: int) -> list[dict[str, Any]]:
    """ONNX and TFLite forward graphs, each compared with the Keras model's logits at every
    real position of ``count`` held-out conversations (prompt and response)."""
    from exporters import causal_lm_forward as forward
    from exporters import onnx_model

    conversations = [run.tokenizer.encode_chat(heldout.conversation(i))[0][:run.max_length]
                     for i in range(count)]
    batches = forward.conversation_batches(conversations, int(run.tokenizer.pad_id))
    expected = forward.reference_outputs(forward.keras_runner(run.model), batches)
    files = forward.write_frozen(model, staging, onnx="onnx" in formats,
                                 tflite="tflite" in formats)
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
                                          expected, **({"method": method} if method else {})))
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
    """``tokenizer.json``, ``tokenizer_config.json`` (chat template) and ``task.json``."""
    from tfsft.runs import TASK_FILE, TOKENIZER_DIR

    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(run.run_dir / TOKENIZER_DIR / name, folder / name)
    shutil.copy(run.run_dir / TASK_FILE, folder / TASK_FILE)


def checks_table(checks: list[dict[str, Any]]) -> str:
    """The export checks as a Markdown table.

    >>> print(checks_table([]).splitlines()[0])
    | artifact | variant | size MB | checked | max abs Δlogit | agreement | ok |
    """
    lines = ["| artifact | variant | size MB | checked | max abs Δlogit | agreement | ok |",
             "|---|---|---|---|---|---|---|"]
    for c in checks:
        if c["artifact"] == "savedmodel":
            checked, diff = f"{c['prompts']} greedy completions", "-"
            agreement = f"{c['equal_to_tfsft_generate']}/{c['prompts']} equal"
        else:
            checked, diff = f"{c['positions']} positions", f"{c['max_abs_logit_diff']:.2e}"
            agreement = f"{100 * c['argmax_agreement']:.2f} % argmax"
        size = f"{c['size_mb']:.1f}" if "size_mb" in c else "-"
        lines.append(f"| {c['artifact']} | {c['variant']} | {size} | {checked} | {diff} | "
                     f"{agreement} | {'yes' if c['passed'] else 'NO'} |")
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
