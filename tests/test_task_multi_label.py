"""multi-label classification on the task contract; label cells; threshold tuning."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tfsft.errors import DataError
from tfsft.tasks import create_task

from .conftest import multi_label_rows, write_csv
from .task_contract import run_task_contract


def test_multi_label_meets_the_task_contract(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", multi_label_rows(600, seed=5))
    result = run_task_contract(
        "multi-label-classification", tiny_checkpoint, train_file, tmp_path,
        ["the film was superb", "a boring plot", "it is quite"], quality_at_least=0.75,
        epochs=10)
    assert ["film" in p["labels"] for p in result.predictions] == [True, False, False]
    state = json.loads((result.run_dir / "task.json").read_text())["state"]
    assert state["labels"] == ["complaint", "film", "praise"] and len(state["thresholds"]) == 3
    served = result.extra["served"]
    for decisions, names, record in zip(served["decisions"], served["labels"],
                                        result.predictions, strict=True):
        chosen = [label for label, on in zip(state["labels"], decisions, strict=True) if on]
        assert chosen == record["labels"] == [x.decode() for x in names if x]
    assert {"f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "per_label",
            "roc_auc_macro"} <= set(result.metrics)


def test_label_cells_as_lists_json_and_delimited_text(tmp_path):
    task = create_task("multi-label-classification", {"label_delimiter": ";"})
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"],
                          "label": [["x", "y"], '["y"]', "x; z", ""]})
    data = task.data.read(frame)
    assert task.labels == ("x", "y", "z")
    assert data.targets.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]]
    path = tmp_path / "val.jsonl"
    path.write_text('{"text": "e", "label": ["x"]}\n{"text": "f", "label": ["w"]}\n')
    with pytest.raises(DataError, match=r"line 2: label\(s\) \['w'\] were not seen in training"):
        task.data.read(path, role="eval")


@pytest.mark.parametrize("cell, problem", [
    ('["a", ', "not valid JSON"), ('["a", "a"]', "repeat a label")])
def test_bad_label_cells_name_the_line(tmp_path, cell, problem):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"text": "ok", "label": ["a"]}) + "\n"
                    + json.dumps({"text": "bad", "label": cell}) + "\n")
    with pytest.raises(DataError, match=f"{path}, line 2: .*{problem}"):
        create_task("multi-label-classification").data.read(path)


def test_thresholds_are_tuned_per_label_or_fixed():
    targets = np.array([[1, 0], [1, 0], [0, 1], [0, 0]])
    probabilities = np.array([[0.3, 0.9], [0.35, 0.2], [0.1, 0.95], [0.2, 0.1]])
    tuned = create_task("multi-label-classification")
    tuned.labels, tuned.thresholds = ("a", "b"), [0.5, 0.5]
    logits = np.log(probabilities / (1 - probabilities))
    tuned.evaluation.after_fit(type("V", (), {"targets": targets})(), logits)
    assert tuned.thresholds[0] <= 0.3 and 0.9 <= tuned.thresholds[1] < 0.95
    fixed = create_task("multi-label-classification", {"threshold": 0.5})
    fixed.labels, fixed.thresholds = ("a", "b"), [0.5, 0.5]
    fixed.evaluation.after_fit(type("V", (), {"targets": targets})(), np.zeros((4, 2)))
    assert fixed.thresholds == [0.5, 0.5]


def test_label_sets_that_read_like_a_mistake_are_warned_about(caplog):
    task = create_task("multi-label-classification", {"label_delimiter": ","})
    task.data.read(pd.DataFrame({"text": ["a", "b", "c"],
                                 "label": ["neg|long", "pos", "pos|short"]}))
    assert "labels such as 'neg|long' hold '|'" in caplog.text
    caplog.clear()
    task = create_task("multi-label-classification")
    task.data.read(pd.DataFrame({"text": ["a", "b"], "label": ["x|y", "x"]}))
    assert "every row carries the label(s) ['x']" in caplog.text
    from tfsft.data.checks import label_warnings

    # a validation summary counts the training labels it lacks as 0: those are not its labels
    summary = {"counts": {"5": 0, "LOC": 4, "PER": 3}}
    assert not [w for w in label_warnings(summary, "dev.jsonl") if "numbers mixed" in w]
    summary["counts"]["5"] = 2
    assert [w for w in label_warnings(summary, "dev.jsonl") if "numbers mixed" in w]
    with pytest.raises(DataError, match=r"row with index 0: the labels .* hold a nested list"):
        task.data.read(pd.DataFrame({"text": ["a", "b"], "label": ['[["pos"]]', "neg"]}))
