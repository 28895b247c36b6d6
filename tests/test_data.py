"""Readers agree across formats; labels, skips, splits and the tf.data pipeline behave."""

from __future__ import annotations

import bz2
import json

import numpy as np
import pandas as pd
import pytest

from tfsft.data.pipeline import count_batches, encode, make_dataset, predict_logits
from tfsft.tasks.text_classification.examples import (
    TextClassificationData,
    read_text_classification,
    stratified_split,
)
from tfsft.tokenization import WordPieceTokenizer

from .conftest import TINY_VOCAB, sentiment_rows

ROWS = [("a good film", "pos"), ("a dull, \"boring\" film", "neg"), ("really fun", "pos")]


@pytest.fixture
def files(tmp_path):
    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    paths = {
        "csv": tmp_path / "d.csv", "tsv": tmp_path / "d.tsv", "jsonl": tmp_path / "d.jsonl",
        "parquet": tmp_path / "d.parquet", "csv.bz2": tmp_path / "d.csv.bz2",
    }
    frame.to_csv(paths["csv"], index=False)
    paths["tsv"].write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in ROWS))
    paths["jsonl"].write_text("".join(json.dumps({"text": t, "label": lab}) + "\n"
                                      for t, lab in ROWS))
    frame.to_parquet(paths["parquet"])
    paths["csv.bz2"].write_bytes(bz2.compress(paths["csv"].read_bytes()))
    return paths


def test_every_source_reads_the_same_examples(files):
    import datasets

    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    sources = list(files.values()) + [frame, datasets.Dataset.from_pandas(frame)]
    for source in sources:
        data = read_text_classification(source)
        assert data.texts == [t for t, _ in ROWS], source
        assert data.labels == ("neg", "pos")
        assert data.label_ids.tolist() == [1, 0, 1]


def test_saved_hf_dataset_folder_with_class_labels(tmp_path):
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    dataset = datasets.Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]},
                                         features=features)
    dataset.save_to_disk(str(tmp_path / "ds"))
    data = read_text_classification(tmp_path / "ds")
    assert data.labels == ("neg", "pos") and data.label_ids.tolist() == [0, 1]


def test_numeric_labels_sort_by_value_and_text_pairs(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("q,a,y\nhi,there,10\nyes,no,2\nx,y,2.0\n")
    data = read_text_classification(path, text_column="q", text_pair_column="a", label_column="y")
    assert data.labels == ("2", "10")
    assert data.text_pairs == ["there", "no", "y"]
    assert data.label_ids.tolist() == [1, 0, 0]


def test_excluded_labels_are_counted_and_max_rows(tmp_path, caplog):
    path = tmp_path / "rt.csv"
    path.write_text("text,label\nplot one,plot\ngood,fresh\nbad,rotten\nplot two,plot\nok,fresh\n")
    data = read_text_classification(path, exclude_labels=["plot"])
    assert data.skipped == {"excluded_labels": 2}
    assert "skipped 2 rows" in caplog.text
    assert data.labels == ("fresh", "rotten")
    assert len(read_text_classification(path, exclude_labels=["plot"], max_rows=2)) == 2


def test_stratified_split_is_seeded_and_keeps_proportions():
    labels = np.array([0] * 80 + [1] * 20, dtype=np.int32)
    data = TextClassificationData([f"t{i}" for i in range(100)], None, labels, ("a", "b"))
    train_a, val_a = stratified_split(data, 0.1, seed=3)
    train_b, val_b = stratified_split(data, 0.1, seed=3)
    assert val_a.texts == val_b.texts and len(train_a) == 90
    assert np.bincount(val_a.label_ids).tolist() == [8, 2]
    assert not set(val_a.texts) & set(train_a.texts)


def test_pipeline_groups_by_length_pads_per_batch_and_keeps_every_example():
    tokenizer = WordPieceTokenizer(TINY_VOCAB)
    rows = sentiment_rows(100)
    data = TextClassificationData([t for t, _ in rows], None,
                                  np.array([int(lab == "pos") for _, lab in rows], np.int32),
                                  ("neg", "pos"))
    encoded = encode(tokenizer, data, max_length=16)
    dataset = make_dataset(encoded, batch_size=8, shuffle=True, seed=1, window_batches=4)
    batches = list(dataset)
    assert len(batches) == count_batches(100, 8) == 13 == int(dataset.cardinality())
    assert sorted(len(labels) for _, labels in batches) == [4] + [8] * 12
    padded = real = 0
    for features, _ in batches:
        mask = features["padding_mask"].numpy()
        assert mask[:, -1].max() == 1  # padded to the longest row of the batch, no further
        assert (mask == (features["token_ids"].numpy() != 0)).all()
        padded, real = padded + mask.size, real + mask.sum()
    assert real == encoded.lengths.sum()  # every example once
    random_order = [encoded.lengths[i:i + 8] for i in range(0, 100, 8)]
    assert padded < sum(len(b) * b.max() for b in random_order)  # grouping saves padding
    first_epoch = [b[1].numpy().tolist() for b in batches]
    second_epoch = [b[1].numpy().tolist() for b in dataset]
    assert first_epoch != second_epoch  # reshuffled every epoch
    again = [b[1].numpy().tolist() for b in make_dataset(encoded, 8, shuffle=True, seed=1,
                                                         window_batches=4)]
    assert first_epoch == again  # same seed, same order


def test_distinct_batches_keep_shared_texts_apart_with_little_padding():
    from tfsft.data.pipeline import distinct_batches

    rng = np.random.default_rng(0)
    # 40 passages of random length, 2 to 12 questions each, as in SQuAD
    passage_lengths = rng.integers(30, 250, 40)
    passages = np.repeat(np.arange(40), rng.integers(2, 13, 40))
    rows = len(passages)
    groups = np.stack([np.arange(rows) + 1000, passages], 1)  # questions all distinct
    lengths = passage_lengths[passages]
    order = distinct_batches(lengths, groups, 16)
    assert sorted(order.tolist()) == list(range(rows))  # every row once

    def cost(order):
        batches = [order[i:i + 16] for i in range(0, rows, 16)]
        distinct = [len(set(passages[b])) == len(b) for b in batches]
        padded = sum(len(b) * lengths[b].max() for b in batches) / lengths.sum()
        return np.mean(distinct), padded

    share, padded = cost(order)
    random_share, random_padded = cost(rng.permutation(rows))
    sorted_share, _ = cost(np.argsort(lengths, kind="stable"))
    assert share >= 0.75 and random_share < 0.5 and sorted_share < 0.2
    assert padded < random_padded * 0.85
    # while 16 or more passages have rows left, no batch holds one twice
    left = np.bincount(passages, minlength=40)
    for start in range(0, rows, 16):
        batch = order[start:start + 16]
        if (left > 0).sum() >= 16:
            assert len(set(passages[batch])) == len(batch), start
        np.subtract.at(left, passages[batch], 1)


def test_predict_logits_returns_input_order():
    import keras

    tokenizer = WordPieceTokenizer(TINY_VOCAB)
    texts = ["good", "the film was really quite boring and dull", "fun", "a b c d e f g"]
    data = TextClassificationData(texts, None, None, ("x",))
    encoded = encode(tokenizer, data, max_length=32)
    inputs = {name: keras.Input((None,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    length = keras.layers.Lambda(lambda m: keras.ops.sum(m, axis=1, keepdims=True))(
        inputs["padding_mask"])
    model = keras.Model(inputs, keras.ops.cast(length, "float32"))
    logits = predict_logits(model, encoded, batch_size=2, verbose=0)
    assert logits[:, 0].tolist() == encoded.lengths.tolist()


def test_predictions_trace_once_for_every_batch_shape_and_pipelines_skip_autotune():
    import keras

    from tfsft.data.pipeline import forward_function

    tokenizer = WordPieceTokenizer(TINY_VOCAB)
    texts = ["good", "the film was really quite boring and dull", "fun", "a b c d e f g"] * 3
    encoded = encode(tokenizer, TextClassificationData(texts, None, None, ("x",)), max_length=32)
    inputs = {name: keras.Input((None,), dtype="int32", name=name)
              for name in ("token_ids", "segment_ids", "padding_mask")}
    model = keras.Model(inputs, keras.ops.cast(keras.ops.sum(inputs["padding_mask"], axis=1),
                                               "float32"))
    for batch_size in (2, 3, 5):  # batches of several sizes and lengths
        assert predict_logits(model, encoded, batch_size=batch_size,
                              verbose=0).tolist() == encoded.lengths.tolist()
    dataset = make_dataset(encoded, 2)
    features_spec = dataset.element_spec[0]
    assert forward_function(model, features_spec).experimental_get_tracing_count() == 1
    # tf.data's autotuner is off: deleting its iterators does not wait for the tuning thread
    assert dataset.options().autotune.enabled is False


def test_buckets_pad_every_batch_to_a_few_widths_and_token_targets_alike():
    from tfsft.data.pipeline import RaggedRows, TokenAligned, length_buckets

    tokenizer = WordPieceTokenizer(TINY_VOCAB)
    rows = sentiment_rows(100)
    data = TextClassificationData([t for t, _ in rows], None,
                                  np.zeros(len(rows), np.int32), ("neg", "pos"))
    encoded = encode(tokenizer, data, max_length=32)
    positions = np.concatenate([np.arange(n // 2) for n in encoded.lengths]).astype(np.int32)
    encoded.targets = {"tags": TokenAligned(np.ones(int(encoded.lengths.sum()), np.int32), -1),
                       "positions": RaggedRows(positions, encoded.lengths // 2, pad_value=-1)}
    buckets = length_buckets(32, smallest=4)
    assert buckets == (4, 8, 16, 32)
    widths = set()
    for features, targets in make_dataset(encoded, batch_size=8, shuffle=True, seed=1,
                                          buckets=buckets):
        ids, mask = features["token_ids"].numpy(), features["padding_mask"].numpy()
        width = ids.shape[1]
        assert width in buckets and width >= mask.sum(axis=1).max()
        assert width < 2 * mask.sum(axis=1).max() or width == buckets[0]  # the smallest that fits
        assert targets["tags"].shape == ids.shape
        np.testing.assert_array_equal(targets["tags"].numpy() == 1, mask == 1)
        assert targets["positions"].shape[1] in buckets
        widths.add(width)
    assert len(widths) >= 2  # the data has rows of several lengths


def test_gpu_precision_follows_the_compute_capability():
    from tfsft.training.precision import gpu_precision, resolve_precision

    assert gpu_precision([(8, 6)]) == "mixed_bfloat16"  # Ampere: bfloat16 tensor cores
    assert gpu_precision([(7, 0)]) == "mixed_float16"  # Volta: float16 only, loss scaling
    assert resolve_precision("float32") == "float32"


def test_a_split_names_its_part():
    import numpy as np

    from tfsft.data.examples import TextExamples, split_examples

    data = TextExamples([f"t{i}" for i in range(10)], None, np.arange(10.0)[:, None], ("y",),
                        source="train.csv")
    train, validation = split_examples(data, 0.2, seed=0)
    assert (train.source, validation.source) == ("train.csv (training split)",
                                                 "train.csv (validation split)")


def test_text_lines_break_at_line_breaks_only(tmp_path):
    from tfsft.data.readers import read_numbered_text_lines

    path = tmp_path / "texts.txt"
    path.write_text("one\u2028line\n\nsecond\x85still\x0cthe same\r\nthird\n", encoding="utf-8")
    assert read_numbered_text_lines(path) == (
        [(1, "one\u2028line"), (3, "second\x85still\x0cthe same"), (4, "third")], 1)
