"""Imbalanced labels: class-balanced epochs, focal loss and a tuned decision threshold that
predict and every export apply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfsft.data.pipeline import EncodedData, make_dataset
from tfsft.errors import ConfigError, DataError
from tfsft.tasks import create_task

from .conftest import sentiment_rows, tiny_config, write_csv


def imbalanced_rows(count: int, every: int = 8) -> list[tuple[str, str]]:
    """Synthetic reviews where one in ``every`` is positive."""
    rows = sentiment_rows(count * 2, seed=3)
    positive = [r for r in rows if r[1] == "pos"][:count // every]
    negative = [r for r in rows if r[1] == "neg"][:count - len(positive)]
    mixed = positive + negative
    np.random.default_rng(0).shuffle(mixed)
    return [tuple(r) for r in mixed]


@pytest.mark.parametrize("how, per_class", [("oversample", 6), ("undersample", 2)])
def test_balanced_epochs_draw_each_label_equally_and_anew(how, per_class):
    classes = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    encoded = EncodedData(token_ids=np.arange(8, dtype=np.int32),
                          segment_ids=np.zeros(8, np.int32), lengths=np.ones(8, np.int32),
                          targets={"target": classes}, balance=(how, classes))
    dataset = make_dataset(encoded, batch_size=2, shuffle=True, seed=1)
    assert int(dataset.cardinality()) == per_class  # 2 labels x per_class rows / batch of 2
    epochs = []
    for _ in range(3):
        rows = np.concatenate([batch[0]["token_ids"][:, 0].numpy() for batch in dataset])
        assert np.bincount(classes[rows]).tolist() == [per_class, per_class]
        epochs.append(rows.tolist())
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]  # drawn anew every epoch


def test_focal_loss_threshold_and_sampling_are_checked():
    with pytest.raises(ConfigError, match="decision_threshold must be 'tune' or a probability"):
        create_task("text-classification", {"decision_threshold": 1.5})
    with pytest.raises(ConfigError, match="focal_gamma must be a number from 0 to 10"):
        create_task("text-classification", {"focal_gamma": -1, "loss": "focal"})
    with pytest.raises(ConfigError, match="focal_gamma is the exponent of --loss focal"):
        create_task("text-classification", {"focal_gamma": 1.0})
    with pytest.raises(ConfigError, match="pass --decision-threshold tune"):
        create_task("text-classification", {"positive_label": "pos"})
    with pytest.raises(ConfigError, match="the rarer labels would count twice over"):
        create_task("text-classification", {"sampling": "oversample",
                                            "class_weight": "balanced"})
    task = create_task("text-classification", {"decision_threshold": "tune"})
    import pandas as pd

    with pytest.raises(DataError, match="a decision threshold needs two labels; the data has 3"):
        task.data.read(pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "z"]}))


def test_a_tuned_threshold_is_used_by_predict_evaluate_and_the_savedmodel(tiny_checkpoint,
                                                                          tmp_path):
    from exporters import export
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    train_file = write_csv(tmp_path / "train.csv", imbalanced_rows(320))
    result = train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", epochs=3,
                               sampling="oversample", loss="focal",
                               decision_threshold="tune"))
    state = json.loads((result.run_dir / "task.json").read_text())["state"]
    assert state["positive_label"] == "pos" and 0.05 <= state["decision_threshold"] <= 0.95
    run = TrainedRun(result.run_dir)
    threshold = run.task.decision_threshold
    texts = ["the acting was brilliant", "a boring , tedious film", "fun", "weak", "it was"]
    predicted = run.predict(texts)
    probabilities = np.array([[p["probabilities"]["neg"], p["probabilities"]["pos"]]
                              for p in predicted])
    assert [p["label"] for p in predicted] == [
        "pos" if pos > threshold else "neg" for pos in probabilities[:, 1]]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["decision_threshold"] == {"label": "pos", "threshold": threshold}

    report = export(result.run_dir, tmp_path / "export", formats=["savedmodel", "onnx"],
                    quantize=[])
    assert report["passed"]
    served = tf.saved_model.load(str(tmp_path / "export" / "1")).signatures["serving_default"]
    labels = served(text=tf.constant(texts))["label"].numpy().astype(str).tolist()
    assert labels == [p["label"] for p in predicted]
