"""SavedModel export in the TensorFlow Serving layout: ``<base>/<version>/``.

Signatures (the outputs are the task's, see ``tfsft.tasks``):

- ``serving_default``: the task's raw-string inputs (``text`` string ``[None]``; plus
  ``text_pair`` for pair models) -> the task's serving outputs (text classification: ``label``,
  ``label_id``, ``probabilities``, ``logits``). Tokenization runs inside the graph with the same
  tf-text ops used in training.
- ``serve_token_ids``: ``input_ids``, ``attention_mask``, ``token_type_ids`` (int32
  ``[None, None]``) -> the task's export outputs (text classification: ``probabilities``,
  ``logits``); the TFLite and ONNX models have the same outputs.
- ``tokenize``: the same text inputs as ``serving_default`` -> the three id tensors above, for
  clients of ``serve_token_ids`` and other runtimes.
- ``serve_text_lite`` (only for tasks whose serving outputs LiteRT cannot run, such as token
  classification's entity spans): raw strings -> the raw-text TFLite model's outputs.

``assets/`` holds ``vocab.txt``, ``labels.txt`` (one name per output column) and ``task.json``
(the task, its options and state: labels, thresholds, target statistics), plus the task's own
sidecar files (question answering: ``qa_postprocess.py``).

Loading needs ``import tensorflow_text`` first (it registers the tokenizer ops).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from tfsft.io_utils import atomic_write_json, process_alive, public_mode
from tfsft.runs import TrainedRun, task_record

logger = logging.getLogger(__name__)

SERVING_SIGNATURE = "serving_default"
TOKEN_IDS_SIGNATURE = "serve_token_ids"
TOKENIZE_SIGNATURE = "tokenize"
# Raw text -> the outputs of the raw-text TFLite model, for tasks whose serving outputs need ops
# LiteRT lacks (``ServingRole.lite_text_signature``); absent otherwise.
LITE_TEXT_SIGNATURE = "serve_text_lite"
# Inputs of the token-id signature, also the input names of the TFLite and ONNX models.
ID_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def next_version(base: Path) -> int:
    """One more than the highest integer version folder under ``base`` (1 for none)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    return max(versions, default=0) + 1


def export_savedmodel(run: TrainedRun, base: str | os.PathLike,
                      warmup_texts: dict[str, list[str]] | None = None) -> Path:
    """Write the next version of ``run``'s model under ``base``; returns the version folder.

    The version is written to a hidden temporary folder and renamed into place, so a server
    watching ``base`` never sees a half-written version; existing versions are never touched.
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    staged = stage_dir(base)
    try:
        write_savedmodel(run, staged, warmup_texts)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return publish_version(staged, base)


STAGING_PREFIX = ".export-tmp-"


def stage_dir(base: Path) -> Path:
    """A hidden folder under ``base`` (TF Serving only loads integer-named folders), named
    after this process; staging folders of exports that were killed are removed first."""
    remove_stale_staging(base)
    staged = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=base))
    public_mode(staged, folder=True)
    return staged


def remove_stale_staging(base: Path) -> list[Path]:
    """Remove the staging folders under ``base`` whose export process no longer runs (killed
    exports); those of running exports, and anything not named like one, stay."""
    removed = []
    for path in base.glob(f"{STAGING_PREFIX}*"):
        pid = path.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        logger.info("removed %d staging folder(s) left by killed exports in %s", len(removed),
                    base)
    return removed


def publish_version(staged: Path, base: Path) -> Path:
    """Rename a complete ``staged`` SavedModel to the next free version number."""
    while True:
        target = base / str(next_version(base))
        try:
            os.rename(staged, target)  # fails if another export took this version meanwhile
            return target
        except OSError:
            if not target.exists():
                raise


def write_serving_config(base: Path, name: str) -> None:
    """``models.config``, ``batching_parameters.txt`` and ``monitoring.config`` (TF Serving's
    Prometheus endpoint) next to the versions."""
    (base / "models.config").write_text(MODELS_CONFIG.format(name=name))
    (base / "batching_parameters.txt").write_text(BATCHING_PARAMETERS)
    (base / "monitoring.config").write_text(MONITORING_CONFIG)


#: ``--monitoring_config_file``: request counts and latencies, model load and batching metrics
#: in Prometheus format at ``GET /monitoring/prometheus/metrics`` on the REST port.
MONITORING_CONFIG = """prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""


MODELS_CONFIG = """model_config_list {{
  config {{
    name: "{name}"
    base_path: "/models/{name}"
    model_platform: "tensorflow"
    model_version_policy {{ latest {{ num_versions: 1 }} }}
  }}
}}
"""

BATCHING_PARAMETERS = """max_batch_size { value: 32 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
"""


def write_warmup_requests(path: Path, texts: dict[str, list[str]],
                          model_name: str = "model") -> None:
    """``assets.extra/tf_serving_warmup_requests``: PredictionLog records TF Serving replays."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    extra = path / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        count = len(next(iter(texts.values())))
        for size in (1, min(count, 32)):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = SERVING_SIGNATURE
            for name, values in texts.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(values[:size], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def savedmodel_runner(path: str | os.PathLike):
    """A verify runner: raw texts through ``serving_default`` of the SavedModel at ``path``."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    signatures = tf.saved_model.load(str(path)).signatures
    serve, token_ids = signatures[SERVING_SIGNATURE], signatures[TOKEN_IDS_SIGNATURE]
    # Tasks whose raw-text outputs are per example while the token-id outputs are per window
    # (question answering): the token-id outputs come from serve_token_ids.
    also_token_ids = not set(token_ids.structured_outputs) <= set(serve.structured_outputs)

    def run(batch):
        inputs = {k: tf.constant(list(v)) for k, v in batch["text_inputs"].items()}
        outputs = {k: v.numpy() for k, v in serve(**inputs).items()}
        if also_token_ids:
            ids = token_ids(**{name: tf.constant(batch[name], tf.int32) for name in ID_INPUTS})
            outputs.update({k: v.numpy() for k, v in ids.items()})
        return outputs

    return run


def write_savedmodel(run: TrainedRun, path: Path,
                     warmup_texts: dict[str, list[str]] | None = None) -> None:
    """Write the SavedModel of ``run`` into the (existing, empty) folder ``path``."""
    model, tokenizer, serving = run.model, run.tokenizer, run.task.serving
    max_length = run.max_length

    def raw_outputs(features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.cast(model(features, training=False), tf.float32)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer)
    names = serving.text_inputs()
    signature = [tf.TensorSpec([None], tf.string, name=name) for name in names]

    def features(*texts):
        return serving.tokenize(tokenizer, dict(zip(names, texts, strict=True)), max_length)

    def serve_text(*texts):
        return serving.serving_outputs(raw_outputs(features(*texts)),
                                       dict(zip(names, texts, strict=True)), tokenizer, max_length)

    def tokenize(*texts):
        encoded = features(*texts)
        return {"input_ids": encoded["token_ids"], "attention_mask": encoded["padding_mask"],
                "token_type_ids": encoded["segment_ids"]}

    archive.add_endpoint(SERVING_SIGNATURE, serve_text, input_signature=signature)
    if serving.lite_text_signature:
        def serve_text_lite(*texts):
            return serving.lite_text_outputs(raw_outputs(features(*texts)),
                                             dict(zip(names, texts, strict=True)), tokenizer,
                                             max_length)

        archive.add_endpoint(LITE_TEXT_SIGNATURE, serve_text_lite, input_signature=signature)
    archive.add_endpoint(TOKENIZE_SIGNATURE, tokenize, input_signature=signature)

    def serve_token_ids(input_ids, attention_mask, token_type_ids):
        return serving.export_outputs(raw_outputs({"token_ids": input_ids,
                                                   "padding_mask": attention_mask,
                                                   "segment_ids": token_type_ids}))

    id_spec = [tf.TensorSpec([None, None], tf.int32, name=n) for n in ID_INPUTS]
    archive.add_endpoint(TOKEN_IDS_SIGNATURE, serve_token_ids, input_signature=id_spec)
    archive.write_out(str(path), verbose=False)
    assets = path / "assets"
    assets.mkdir(exist_ok=True)
    write_task_sidecars(assets, run)
    if warmup_texts:
        write_warmup_requests(path, warmup_texts)


def write_task_sidecars(folder: Path, run: TrainedRun) -> None:
    """``vocab.txt``, ``labels.txt`` and ``task.json``: what a client needs beside a model."""
    (folder / "vocab.txt").write_text("\n".join(run.tokenizer.vocabulary) + "\n",
                                      encoding="utf-8")
    (folder / "labels.txt").write_text("".join(f"{label}\n" for label in run.labels),
                                       encoding="utf-8")
    atomic_write_json(folder / "task.json", task_record(run.task, run.max_length))
    for name, source in run.task.serving.sidecar_files().items():
        shutil.copyfile(source, folder / name)
