"""The command line answers --help without TensorFlow, and lists each task's own options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tfsft.cli import main as cli

NO_TENSORFLOW = """
import sys
from tfsft.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "keras", "sklearn", "tensorflow_text") if m in sys.modules)
print("IMPORTED", heavy)
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"],
                                  ["train", "--task", "regression", "--help"]])
def test_help_does_not_import_tensorflow(argv):
    done = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, *argv], capture_output=True,
                          text=True, timeout=120, check=True)
    assert "IMPORTED []" in done.stdout, done.stdout[-500:]


def test_train_help_shows_the_options_of_the_chosen_task(capsys):
    with pytest.raises(SystemExit):
        cli(["train", "--task", "multi-label-classification", "--help"])
    text = capsys.readouterr().out
    assert "--label-delimiter" in text and "--threshold" in text and "--class-weight" not in text
    with pytest.raises(SystemExit):
        cli(["train", "--help"])
    text = capsys.readouterr().out
    assert "--class-weight" in text and "--target-columns" not in text


def test_option_of_another_task_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["train", "--task", "regression", "--class-weight", "balanced"])
    assert "unrecognized arguments: --class-weight" in capsys.readouterr().err


def test_tensorflow_start_up_lines_stay_off_the_terminal(trained_run, tiny_checkpoint, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    noise = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN custom operations")

    def tfsft(*argv):
        return subprocess.run([sys.executable, "-m", "tfsft.cli", *argv], capture_output=True,
                              text=True, timeout=300, env=env)

    done = tfsft("predict", str(trained_run.run_dir), "a good film")
    assert done.returncode == 0 and '"label"' in done.stdout, done.stderr[-800:]
    assert not any(line in done.stderr for line in noise), done.stderr
    failed = tfsft("train", "--train", str(tmp_path / "missing.csv"), "--output-dir",
                   str(tmp_path / "run"), "--model", str(tiny_checkpoint))
    assert failed.returncode == 2 and "missing.csv" in failed.stderr, failed.stderr[-800:]
    assert not any(line in failed.stderr for line in noise), failed.stderr
    debug = tfsft("--debug", "predict", str(trained_run.run_dir), "a good film")
    assert debug.returncode == 0  # --debug shows whatever TensorFlow prints
