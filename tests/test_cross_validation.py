"""``tfsft cv``: one run per fold, a mean ± std summary, out-of-fold predictions, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from tfsft.cli import main as cli
from tfsft.data.readers import read_table
from tfsft.errors import DataError
from tfsft.tasks import create_task
from tfsft.training.cross_validation import fold_of_rows

from .conftest import sentiment_rows, sigkill_when, write_csv

TINY = ["--epochs", "2", "--batch-size", "16", "--learning-rate", "3e-3", "--max-length", "16",
        "--precision", "float32", "--no-tensorboard", "--backup-every-steps", "1000"]


def test_folds_are_stratified_grouped_and_refused_when_impossible(tmp_path):
    rows = [(f"text {i}", "pos" if i % 4 == 0 else "neg") for i in range(40)]
    table = read_table(write_csv(tmp_path / "a.csv", rows))
    task = create_task("text-classification")
    folds = fold_of_rows(table, task, 5, seed=1)
    labels = np.array([label for _, label in rows])
    for fold in range(5):  # every fold: 2 of the 10 "pos", 6 of the 30 "neg"
        assert (labels[folds == fold] == "pos").sum() == 2
        assert (folds == fold).sum() == 8
    with pytest.raises(DataError, match="--folds 11 puts every label in every fold, but label "
                                        "'pos' has 10 rows"):
        fold_of_rows(table, task, 11, seed=1)
    grouped = read_table(write_csv(tmp_path / "g.csv", [(t, y, str(i // 10))
                                                        for i, (t, y) in enumerate(rows)],
                                   header=("text", "label", "user")))
    folds = fold_of_rows(grouped, task, 4, seed=1, group_column="user")
    users = np.array([i // 10 for i in range(40)])
    assert all(len(set(folds[users == u])) == 1 for u in range(4))  # no user in two folds
    blank = read_table(write_csv(tmp_path / "b.csv", [(t, y, "" if i % 9 == 4 else str(i // 10))
                                                      for i, (t, y) in enumerate(rows)],
                                 header=("text", "label", "user")))
    with pytest.raises(DataError, match="line 6: the group \\(column 'user'\\) is empty; 4 "
                                        "row\\(s\\) have none"):
        fold_of_rows(blank, task, 4, seed=1, group_column="user")
    one = read_table(write_csv(tmp_path / "o.csv", [(t, y, "u") for t, y in rows],
                               header=("text", "label", "user")))
    with pytest.raises(DataError, match="column 'user' holds 1 group\\(s\\); 2 folds need at "
                                        "least 2"):
        fold_of_rows(one, task, 2, seed=1, group_column="user")


def test_cv_writes_each_fold_a_summary_and_resumes_only_what_is_left(tiny_checkpoint, tmp_path,
                                                                     capsys):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(90, seed=4))
    output = tmp_path / "cv"
    command = ["cv", "--folds", "3", "--model", str(tiny_checkpoint), "--train", str(train_file),
               "--output-dir", str(output), *TINY]
    assert cli(command) == 0
    summary = json.loads((output / "cv_summary.json").read_text())
    assert len(summary["per_fold"]) == 3 and sum(summary["examples"]) == 90
    assert summary["mean"]["accuracy"] == pytest.approx(
        np.mean([fold["accuracy"] for fold in summary["per_fold"]]))
    assert "mean ± std" in (output / "cv_summary.txt").read_text()
    records = [json.loads(line) for line in (output / "out_of_fold.jsonl").read_text().splitlines()]
    assert [r["where"] for r in records] == [f"line {i}" for i in range(2, 92)]  # file order
    assert {r["fold"] for r in records} == {1, 2, 3} and all("label" in r for r in records)
    for fold in (1, 2, 3):
        assert (output / f"fold-{fold}" / "model.keras").exists()
    check = json.loads((output / "fold-2" / "data_check.json").read_text())  # the user's file
    assert check["train"]["source"] == f"{train_file} (the train rows of fold 2)"
    assert check["validation"]["source"] == f"{train_file} (the validation rows of fold 2)"

    assert cli(command) == 2  # an earlier cross-validation is there
    assert "pass --resume to finish it, or --overwrite" in capsys.readouterr().err
    assert cli([*command, "--resume", "--overwrite"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert cli([*command, "--resume", "--epochs", "3"]) == 2
    assert "with other options (epochs: 2 -> 3)" in capsys.readouterr().err
    write_csv(train_file, sentiment_rows(90, seed=5))  # the file changed since
    assert cli([*command, "--resume"]) == 2
    assert "changed since its finished folds were split" in capsys.readouterr().err


def test_cv_killed_after_fold_2_resumes_with_folds_3_to_5_only(tiny_checkpoint, tmp_path):
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(150, seed=4))
    output = tmp_path / "cv"
    command = [sys.executable, "-m", "tfsft.cli", "cv", "--folds", "5", "--model",
               str(tiny_checkpoint), "--train", str(train_file), "--output-dir", str(output),
               *TINY]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sigkill_when(first, lambda: (output / "fold_data" / "fold-2-out_of_fold.jsonl").exists())
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    assert not (output / "cv_summary.json").exists()
    done = {fold: (output / f"fold-{fold}" / "model.keras").stat().st_mtime_ns for fold in (1, 2)}
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "fold 1 of 5: finished earlier" in resumed.stderr
    assert "fold 2 of 5: finished earlier" in resumed.stderr
    assert all(f"fold {k} of 5: training on" in resumed.stderr for k in (3, 4, 5))
    assert {fold: (output / f"fold-{fold}" / "model.keras").stat().st_mtime_ns
            for fold in (1, 2)} == done  # folds 1 and 2 were not trained again
    assert len(json.loads((output / "cv_summary.json").read_text())["per_fold"]) == 5
