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
