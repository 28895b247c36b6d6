"""tfsft data drift: served inputs (and predictions) against a run's validation examples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfsft.cli import main as cli
from tfsft.data import drift

from .conftest import sentiment_rows, write_csv


def test_signals_and_their_thresholds():
    rng = np.random.default_rng(0)
    same = drift.length_signal(rng.poisson(20, 500), rng.poisson(20, 500))
    longer = drift.length_signal(rng.poisson(20, 500), rng.poisson(45, 500))
    assert same["verdict"] == "ok" and longer["verdict"] == "drift"
    few = drift.length_signal(rng.poisson(20, 7), rng.poisson(45, 500))
    assert few["verdict"] == "too few"  # seven reference lengths judge nothing
    assert drift.unknown_signal(0.001, 0.05)["verdict"] == "drift"
    assert drift.unknown_signal(0.03, 0.05)["verdict"] == "ok"  # +2 points but not twice
    inputs = drift.input_signals(["a", "a", "a", " ", "b"])
    assert inputs["empty"]["live"] == 0.2 and inputs["empty"]["verdict"] == "drift"
    assert inputs["duplicates"]["live"] == 0.4 and inputs["duplicates"]["verdict"] == "ok"
    labels = drift.label_signal({"pos": 50, "neg": 50}, {"pos": 95, "neg": 5, "other": 3})
    assert labels["verdict"] == "drift" and labels["unseen_labels"] == ["other"]
    assert drift.psi([10, 20, 30], [10, 20, 30]) == 0.0


def test_cli_exit_status_names_the_drifting_signal(trained_run, tmp_path, capsys):
    run = str(trained_run.run_dir)
    alike = write_csv(tmp_path / "alike.csv", sentiment_rows(300, seed=11))
    assert cli(["data", "drift", run, "--input", str(alike)]) == 0
    assert "no drift in 300 inputs" in capsys.readouterr().out
    texts = [text for text, _ in sentiment_rows(200, seed=12)]
    long = tmp_path / "long.txt"
    long.write_text("".join(" ".join(texts[i:i + 4]) + "\n" for i in range(0, 200, 4)))
    assert cli(["data", "drift", run, "--input", str(long)]) == 3
    assert "drift: length" in capsys.readouterr().out
    blank = tmp_path / "blank.csv"  # empty inputs are counted, not refused
    blank.write_text("text\n" + "".join(f"{t}\n" if i % 10 else '""\n'
                                        for i, t in enumerate(texts)))
    report = tmp_path / "report.json"
    assert cli(["data", "drift", run, "--input", str(blank), "--output", str(report)]) == 3
    inside = trained_run.run_dir / "drift.json"
    assert cli(["data", "drift", run, "--input", str(blank), "--output", str(inside)]) == 2
    assert "is inside the run folder" in capsys.readouterr().err and not inside.exists()
    signals = json.loads(report.read_text())["signals"]
    assert signals["empty"]["live"] == pytest.approx(0.1) and signals["empty"]["verdict"] == (
        "drift")


def test_served_predictions_are_compared_with_the_validation_labels(trained_run, tmp_path,
                                                                     capsys):
    run = str(trained_run.run_dir)
    alike = write_csv(tmp_path / "alike.csv", sentiment_rows(100, seed=13))
    balanced = tmp_path / "balanced.jsonl"
    balanced.write_text("".join(json.dumps({"label": "pos" if i % 2 else "neg"}) + "\n"
                                for i in range(100)))
    assert cli(["data", "drift", run, "--input", str(alike), "--predictions",
                str(balanced)]) == 0
    skewed = tmp_path / "skewed.jsonl"
    skewed.write_text("".join(json.dumps({"label": "pos"}) + "\n" for _ in range(100)))
    assert cli(["data", "drift", run, "--input", str(alike), "--predictions",
                str(skewed)]) == 3
    assert "drift: labels" in capsys.readouterr().out
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"label": "pos"}\n\n{"text": "no label \u2028 here"}\n')
    assert cli(["data", "drift", run, "--input", str(alike), "--predictions",
                str(broken)]) == 2
    assert "broken.jsonl, line 3: holds no label, labels or entities" in (
        capsys.readouterr().err)


def test_bad_drift_inputs_and_report_paths_are_refused(trained_run, tmp_path, capsys):
    run = str(trained_run.run_dir)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert cli(["data", "drift", run, "--input", str(empty)]) == 2
    assert "holds no inputs (it is empty or only blank)" in capsys.readouterr().err
    alike = write_csv(tmp_path / "alike.csv", sentiment_rows(50, seed=14))
    assert cli(["data", "drift", run, "--input", str(alike), "--output", str(alike)]) == 2
    assert "is one of the input files" in capsys.readouterr().err
    report = tmp_path / "report.json"
    report.write_text("mine\n")
    assert cli(["data", "drift", run, "--input", str(alike), "--output", str(report)]) == 2
    assert report.read_text() == "mine\n"
    assert cli(["data", "drift", run, "--input", str(alike), "--output", str(report),
                "--overwrite"]) == 0
    assert json.loads(report.read_text())["live"]["examples"] == 50
