"""SavedModel export in the TensorFlow Serving layout: ``<base>/<version>/``.

Signatures:

- ``serving_default``: ``text`` (string ``[None]``; plus ``text_pair`` for pair models) ->
  ``label`` (string), ``label_id`` (int64), ``probabilities``, ``logits`` (float32). Tokenization
  runs inside the graph with the same tf-text ops used in training.
- ``serve_token_ids``: ``input_ids``, ``attention_mask``, ``token_type_ids`` (int32
  ``[None, None]``) -> ``probabilities``, ``logits``.
- ``tokenize``: the same text inputs as ``serving_default`` -> the three id tensors above, for
  clients of ``serve_token_ids`` and other runtimes.

Loading needs ``import tensorflow_text`` first (it registers the tokenizer ops).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from tfsft.runs import TrainedRun

SERVING_SIGNATURE = "serving_default"
TOKEN_IDS_SIGNATURE = "serve_token_ids"
TOKENIZE_SIGNATURE = "tokenize"
# Inputs of the token-id signature, also the input names of the TFLite and ONNX models.
ID_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def next_version(base: Path) -> int:
    """One more than the highest integer version folder under ``base`` (1 for none)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)]
    return max(versions, default=0) + 1


def export_savedmodel(run: TrainedRun, base: str | os.PathLike,
                      warmup_texts: list[str] | None = None) -> Path:
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


def stage_dir(base: Path) -> Path:
    """A hidden folder under ``base`` (TF Serving only loads integer-named folders)."""
    return Path(tempfile.mkdtemp(prefix=".export-tmp-", dir=base))


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
    """``models.config`` and ``batching_parameters.txt`` next to the versions."""
    (base / "models.config").write_text(MODELS_CONFIG.format(name=name))
    (base / "batching_parameters.txt").write_text(BATCHING_PARAMETERS)


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


def write_warmup_requests(path: Path, texts: list[str], text_pairs: list[str] | None = None,
                          model_name: str = "model") -> None:
    """``assets.extra/tf_serving_warmup_requests``: PredictionLog records TF Serving replays."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    extra = path / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(extra / "tf_serving_warmup_requests")) as writer:
        for size in (1, min(len(texts), 32)):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = SERVING_SIGNATURE
            request.inputs["text"].CopyFrom(tf.make_tensor_proto(texts[:size], dtype=tf.string))
            if text_pairs is not None:
                request.inputs["text_pair"].CopyFrom(
                    tf.make_tensor_proto(text_pairs[:size], dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def savedmodel_runner(path: str | os.PathLike):
    """A verify runner: raw texts through ``serving_default`` of the SavedModel at ``path``."""
    import tensorflow_text  # noqa: F401  (registers the tokenizer ops)

    serve = tf.saved_model.load(str(path)).signatures[SERVING_SIGNATURE]

    def run(batch):
        inputs = {"text": tf.constant(list(batch["texts"]))}
        if batch["text_pairs"] is not None:
            inputs["text_pair"] = tf.constant(list(batch["text_pairs"]))
        return serve(**inputs)["logits"].numpy()

    return run


def write_savedmodel(run: TrainedRun, path: Path, warmup_texts: list[str] | None = None,
                     warmup_pairs: list[str] | None = None) -> None:
    """Write the SavedModel of ``run`` into the (existing, empty) folder ``path``."""
    model, tokenizer = run.model, run.tokenizer
    labels = tf.constant(list(run.labels))
    max_length = run.max_length

    def outputs(logits: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(logits, axis=-1)
        return {"label": tf.gather(labels, label_id), "label_id": label_id,
                "probabilities": probabilities, "logits": logits}

    def classify(features: dict[str, tf.Tensor]) -> tf.Tensor:
        return tf.cast(model(features, training=False), tf.float32)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(tokenizer)
    text_spec = tf.TensorSpec([None], tf.string, name="text")
    if run.text_pair:
        def features(text, text_pair):
            return tokenizer.encode(text, text_pair, max_length)

        signature = [text_spec, tf.TensorSpec([None], tf.string, name="text_pair")]
    else:
        def features(text):
            return tokenizer.encode(text, max_length=max_length)

        signature = [text_spec]

    def serve_text(*texts):
        return outputs(classify(features(*texts)))

    def tokenize(*texts):
        encoded = features(*texts)
        return {"input_ids": encoded["token_ids"], "attention_mask": encoded["padding_mask"],
                "token_type_ids": encoded["segment_ids"]}

    archive.add_endpoint(SERVING_SIGNATURE, serve_text, input_signature=signature)
    archive.add_endpoint(TOKENIZE_SIGNATURE, tokenize, input_signature=signature)

    def serve_token_ids(input_ids, attention_mask, token_type_ids):
        logits = classify({"token_ids": input_ids, "padding_mask": attention_mask,
                           "segment_ids": token_type_ids})
        return {"probabilities": tf.nn.softmax(logits, axis=-1), "logits": logits}

    id_spec = [tf.TensorSpec([None, None], tf.int32, name=n)
               for n in ID_INPUTS]
    archive.add_endpoint(TOKEN_IDS_SIGNATURE, serve_token_ids, input_signature=id_spec)
    archive.write_out(str(path), verbose=False)
    assets = path / "assets"
    assets.mkdir(exist_ok=True)
    (assets / "vocab.txt").write_text("\n".join(tokenizer.vocabulary) + "\n", encoding="utf-8")
    (assets / "labels.txt").write_text("\n".join(run.labels) + "\n", encoding="utf-8")
    if warmup_texts:
        write_warmup_requests(path, warmup_texts, warmup_pairs)
