"""Backbones load faithfully from checkpoints; the classifier is a standard, savable keras.Model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsft.errors import CheckpointError
from tfsft.models.checkpoints import exact_gelu, load_backbone, resolve_checkpoint
from tfsft.optimization.optimizers import adamw
from tfsft.optimization.schedules import WarmupDecay
from tfsft.tasks.text_classification.model import TextClassifier
from tfsft.tokenization import WordPieceTokenizer

from .conftest import TINY_CONFIG, TINY_VOCAB, requires_minilm

MINILM_REFERENCE = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448]


def sentence_embedding(backbone, tokenizer, text):
    features = tokenizer.encode([text])
    sequence = backbone(features)["sequence_output"]
    mask = tf.cast(features["padding_mask"][..., None], tf.float32)
    pooled = tf.reduce_sum(sequence * mask, axis=1) / tf.reduce_sum(mask, axis=1)
    return tf.math.l2_normalize(pooled, axis=-1).numpy()[0]


def test_minilm_sentence_embedding_matches_the_reference():
    folder = requires_minilm()
    backbone, info = load_backbone("minilm-l6")
    model = TextClassifier(backbone, num_classes=2, exact_gelu=info["exact_gelu"])
    assert info["exact_gelu"] and model.exact_gelu
    embedding = sentence_embedding(backbone, WordPieceTokenizer.from_pretrained(folder),
                                   "This is an example sentence")
    np.testing.assert_allclose(embedding[:5], MINILM_REFERENCE, atol=1e-4)


def test_classifier_save_and_load_round_trip(tiny_checkpoint, tmp_path):
    model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=3, pooling="mean")
    features = WordPieceTokenizer(TINY_VOCAB).encode(["good film", "a dull plot"])
    before = model.predict(features, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    after = loaded.predict(features, verbose=0)
    assert isinstance(loaded, TextClassifier) and loaded.exact_gelu and loaded.pooling == "mean"
    np.testing.assert_allclose(before, after, atol=1e-6)
    # The exact GELU survives saving: with the approximate one the logits would move.
    dense = loaded.backbone.get_layer("transformer_layer_0")._feedforward_intermediate_dense
    assert dense.activation is exact_gelu


def test_compiled_model_loads_in_a_process_that_imported_only_its_class(tiny_checkpoint,
                                                                         tmp_path):
    # The saved compile config names tfsft's AdamW and WarmupDecay: loading registers them.
    model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2)
    model.compile(optimizer=adamw(WarmupDecay(1e-4, total_steps=10, warmup_steps=1)))
    model.optimizer.build(model.trainable_variables)
    model.save(tmp_path / "model.keras")
    script = ("import keras, tfsft.tasks.text_classification.model, sys\n"
              "model = keras.saving.load_model(sys.argv[1])\n"
              "print(type(model.optimizer).__name__, model.optimizer.learning_rate.__class__)")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model.keras")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("AdamW")


def test_mixed_bfloat16_model_and_its_float32_twin(tiny_checkpoint):
    model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2, dtype="mixed_bfloat16")
    assert model.backbone.compute_dtype == "bfloat16" and model.get_layer("logits").compute_dtype == (
        "float32")
    assert all(v.dtype == "float32" for v in model.weights)
    features = WordPieceTokenizer(TINY_VOCAB).encode(["good film", "a dull plot that drags"])
    mixed = model.predict(features, verbose=0)
    twin = model.with_float32_compute()
    assert twin.backbone.compute_dtype == "float32" and twin.exact_gelu
    reference = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2)
    reference.set_weights(model.get_weights())
    np.testing.assert_allclose(twin.predict(features, verbose=0),
                               reference.predict(features, verbose=0), atol=1e-6)
    # bfloat16 keeps 8 bits of mantissa: close to float32, not equal.
    np.testing.assert_allclose(mixed, reference.predict(features, verbose=0), atol=0.1)


@pytest.mark.parametrize("pooling", ["cls", "pooled"])
def test_other_poolings_build(tiny_checkpoint, pooling):
    model = TextClassifier.from_pretrained(tiny_checkpoint, num_classes=2, pooling=pooling)
    trainable = {v.path for v in model.trainable_variables}
    assert ("pooled_dense/kernel" in trainable) == (pooling == "pooled")


def test_unknown_names_and_bad_folders(tmp_path):
    with pytest.raises(CheckpointError, match="minilm-l6"):
        resolve_checkpoint("bert-base-nowhere")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not supported"):
        load_backbone(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(dict(TINY_CONFIG, vocab_size=10)))
    with pytest.raises(CheckpointError, match="no weights found"):
        load_backbone(tmp_path)


HF_TF_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    from transformers import BertConfig, TFBertModel
    folder, config = sys.argv[1], json.loads(sys.argv[2])
    model = TFBertModel(BertConfig(**config))
    ids = np.array([[2, 7, 9, 11, 3, 0]], dtype=np.int32)
    mask = np.array([[1, 1, 1, 1, 1, 0]], dtype=np.int32)
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state.numpy()
    model.save_pretrained(folder)
    np.save(os.path.join(folder, "reference.npy"), out)
""")


def test_transformers_tf_checkpoint_loads_with_the_same_outputs(tmp_path):
    """A legacy ``tf_model.h5`` written by transformers gives the outputs transformers computes."""
    pytest.importorskip("transformers")
    pytest.importorskip("tf_keras")
    config = dict(TINY_CONFIG, vocab_size=len(TINY_VOCAB))
    subprocess.run([sys.executable, "-c", HF_TF_SCRIPT, str(tmp_path), json.dumps(config)],
                   check=True, env=dict(os.environ, CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert (tmp_path / "tf_model.h5").exists()
    backbone, info = load_backbone(tmp_path)
    TextClassifier(backbone, num_classes=2, exact_gelu=info["exact_gelu"])
    features = {"token_ids": np.array([[2, 7, 9, 11, 3, 0]], np.int32),
                "padding_mask": np.array([[1, 1, 1, 1, 1, 0]], np.int32),
                "segment_ids": np.zeros((1, 6), np.int32)}
    ours = backbone(features)["sequence_output"].numpy()
    reference = np.load(tmp_path / "reference.npy")
    np.testing.assert_allclose(ours[:, :5], reference[:, :5], atol=1e-5)


def test_keras_hub_preset_folder_loads_backbone_and_tokenizer(tmp_path):
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(TINY_VOCAB), num_layers=1, num_heads=2, hidden_dim=8,
        intermediate_dim=16, max_sequence_length=32)
    backbone.save_to_preset(str(tmp_path))
    keras_hub.models.BertTokenizer(vocabulary=TINY_VOCAB, lowercase=True).save_to_preset(
        str(tmp_path))
    tokenizer = WordPieceTokenizer.from_pretrained(tmp_path)
    assert tokenizer.vocabulary == TINY_VOCAB and tokenizer.lowercase
    model = TextClassifier.from_pretrained(tmp_path, num_classes=2)
    features = tokenizer.encode(["good film"])
    np.testing.assert_allclose(model.backbone(features)["sequence_output"],
                               backbone(features)["sequence_output"], atol=1e-6)
