"""regression on the task contract; target standardisation; bad targets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tfsft.errors import ConfigError, DataError
from tfsft.tasks import create_task

from .conftest import regression_rows, write_csv
from .task_contract import run_task_contract


def test_regression_meets_the_task_contract(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", regression_rows(600, seed=2),
                           header=("text", "score"))
    result = run_task_contract(
        "regression", tiny_checkpoint, train_file, tmp_path,
        ["superb brilliant lovely", "awful dull", "the plot"],
        options={"target_columns": ["score"]}, quality_at_least=0.9, epochs=8)
    scores = [p["score"] for p in result.predictions]
    assert scores[0] > 2.0 and scores[1] < -1.0 and abs(scores[2]) < 1.5  # original units
    served = result.extra["served"]["predictions"][:, 0]
    np.testing.assert_allclose(served, scores, atol=1e-4)
    state = json.loads((result.run_dir / "task.json").read_text())["state"]
    assert state["target_names"] == ["score"] and state["std"][0] > 1.0
    assert (result.run_dir / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    assert {"mae", "rmse", "pearson", "spearman", "r2"} <= set(result.metrics)


def test_targets_are_standardized_for_training_and_restored_in_predictions():
    task = create_task("regression", {"target_columns": ["a", "b"]})
    data = task.data.read(pd.DataFrame({"text": ["x", "y", "z"], "a": [1, 2, 3], "b": ["10", "30", "20"]}))
    scaled = task.data.encode_targets(data)["target"]
    np.testing.assert_allclose(scaled.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.std(axis=0), 1, atol=1e-6)
    np.testing.assert_allclose(task.destandardize(scaled), data.targets, atol=1e-5)


@pytest.mark.parametrize("value, problem", [
    ("", "is empty"), ("n/a", "is 'n/a', not a number"), ("inf", "is 'inf'"),
    ("1e200", "is '1e200', too large to train on"), ("1_000", "is '1_000', not a number")])
def test_bad_targets_name_the_line(tmp_path, value, problem):
    path = tmp_path / "scores.csv"
    path.write_text(f"text,score\nfine,1\nbad row,{value}\n")
    task = create_task("regression", {"target_columns": ["score"]})
    with pytest.raises(DataError, match=f"{path}, line 3: the target \\(column 'score'\\) {problem}"):
        task.data.read(path)


def test_a_yes_no_target_is_refused_rather_than_read_as_one_or_zero(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"text": "fine", "score": 0.5}\n{"text": "odd", "score": true}\n')
    task = create_task("regression", {"target_columns": ["score"]})
    with pytest.raises(DataError, match="line 2: the target \\(column 'score'\\) is true, a "
                       "yes/no value.*--task classification"):
        task.data.read(path)


def test_constant_target_is_an_error():
    task = create_task("regression", {"target_columns": ["y"]})
    with pytest.raises(DataError, match="same value in every training row"):
        task.data.read(pd.DataFrame({"text": ["a", "b"], "y": [1.0, 1.0]}))


def test_a_target_far_from_the_rest_is_warned_with_its_line(tmp_path, caplog):
    path = tmp_path / "scores.csv"
    rows = [f"text {i},{(i % 7) - 3}" for i in range(30)] + ["typo,1000000"]
    path.write_text("text,score\n" + "\n".join(rows) + "\n")
    task = create_task("regression", {"target_columns": ["score"]})
    with caplog.at_level("WARNING"):
        task.data.read(path)
    assert "1 target(s) in column 'score' lie more than 20 robust standard deviations" \
        in caplog.text and "the first at line 32 (1e+06)" in caplog.text
    caplog.clear()
    path.write_text("text,score\n" + "\n".join(rows[:-1]) + "\n")
    with caplog.at_level("WARNING"):
        task.data.read(path)
    assert "robust standard deviations" not in caplog.text


def test_an_outlier_among_mostly_equal_targets_is_warned(tmp_path, caplog):
    path = tmp_path / "counts.csv"
    path.write_text("text,score\n" + "".join(f"t{i},0\n" for i in range(59)) + "big,5000\n")
    task = create_task("regression", {"target_columns": ["score"]})
    with caplog.at_level("WARNING"):
        task.data.read(path)
    assert "the first at line 61 (5000)" in caplog.text


def test_reading_with_another_number_of_target_columns_than_the_model_is_refused():
    task = create_task("regression", {"target_columns": ["s1", "s2"]})
    frame = pd.DataFrame({"text": ["a", "b"], "s1": [1.0, 2.0], "s2": [0.5, 0.1]})
    task.data.read(frame)
    with pytest.raises(ConfigError, match=r"the model predicts 2 target\(s\) \(s1, s2\); "
                                          r"--target-columns names 1 \(s1\)"):
        task.with_options(target_columns=["s1"]).data.read(frame, role="eval")
