"""text-classification on the task contract, and run folders of earlier releases."""

from __future__ import annotations

import json
import shutil

from tfsft.runs import TrainedRun

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
