"""text-classification on the task contract, and run folders of earlier releases."""

from __future__ import annotations

import json
import shutil

import pytest

from tfsft.errors import DataError
from tfsft.runs import TrainedRun
from tfsft.tasks import create_task

from .conftest import sentiment_rows, write_csv
from .task_contract import run_task_contract


def test_text_classification_meets_the_task_contract(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(400, seed=4))
    result = run_task_contract("text-classification", tiny_checkpoint, train_file, tmp_path,
                               ["the film was superb", "a boring and tedious plot"],
                               quality_at_least=0.9)
    assert [p["label"] for p in result.predictions] == ["pos", "neg"]
    assert [x.decode() for x in result.extra["served"]["label"]] == ["pos", "neg"]


def test_run_folder_of_the_previous_release_still_loads(trained_run, tmp_path):
    """0.1 run folders have labels.json and a flat config.yaml instead of task.json."""
    old = tmp_path / "old-run"
    shutil.copytree(trained_run.run_dir, old)
    record = json.loads((old / "task.json").read_text())
    (old / "task.json").unlink()
    (old / "labels.json").write_text(json.dumps({
        "task": "text-classification", "labels": record["state"]["labels"],
        "max_length": record["max_length"], "text_pair": False}))
    config = (old / "config.yaml").read_text().replace("text-classification:\n", "")
    (old / "config.yaml").write_text(config.replace("\n  ", "\n"))  # options at the top level
    run = TrainedRun(old)
    assert run.labels == ("neg", "pos") and run.task.options.text_column == "text"
    assert [p["label"] for p in run.predict(["superb", "dull"])] == ["pos", "neg"]


def test_a_list_label_is_refused_and_numbers_written_two_ways_are_warned(tmp_path, caplog):
    task = create_task("text-classification")
    path = tmp_path / "lists.jsonl"
    path.write_text('{"text": "fine", "label": "neg"}\n{"text": "odd", "label": ["neg"]}\n')
    with pytest.raises(DataError, match="line 2: the label \\(column 'label'\\) is a list "
                                        ".*--task multi-label-classification"):
        task.data.read(path)
    codes = tmp_path / "codes.csv"
    codes.write_text("text,label\na,1\nb,0\nc,01\nd,1.0\ne,0\n")
    with caplog.at_level("WARNING"):
        data = task.data.read(codes)
    assert len(data) == 5 and len(caplog.records) == 1  # once per label
    assert ("line 4: the label '01' (column 'label') is read as '1', the same class as '1' at "
            "line 2" in caplog.text)
    caplog.clear()
    flags = tmp_path / "flags.jsonl"
    flags.write_text('{"text": "a", "label": true}\n{"text": "b", "label": false}\n')
    with caplog.at_level("WARNING"):
        assert task.data.read(flags).labels == ("0", "1")
    assert "line 1: the label (column 'label') is true, a yes/no value" in caplog.text


def test_a_label_column_with_a_different_value_in_every_row_is_refused():
    import pandas as pd

    task = create_task("text-classification")
    frame = pd.DataFrame({"text": ["pos", "neg"] * 12,
                          "label": [f"review number {i}" for i in range(24)]})
    with pytest.raises(DataError, match="column 'label' holds a different label in every one "
                                        "of the 24 training rows.*are they swapped"):
        task.data.read(frame)
