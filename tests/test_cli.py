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
    assert ("unrecognized arguments: --class-weight balanced (--class-weight is an option of "
            "text-classification, not of regression: pass --task text-classification)"
            in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        cli(["train", "--tag-column=ner"])  # the default task
    assert "not of text-classification: pass --task token-classification" in (
        capsys.readouterr().err)
    with pytest.raises(SystemExit):
        cli(["evaluate", str(tmp_path), "--data", "x.csv", "--pooling", "cls"])
    assert "--pooling is a training option of" in capsys.readouterr().err


def test_tensorflow_start_up_lines_stay_off_the_terminal(trained_run, tiny_checkpoint, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    noise = ("absl::InitializeLog", "cudart_stub", "cuInit", "oneDNN custom operations",
             "oneDNN supports")

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


def test_onednn_integer_type_line_stays_off_the_terminal():
    """On CPUs where oneDNN takes no integer tensors (AMD EPYC), the first integer transpose of
    a process, such as a ragged concatenation of token ids, logs a oneDNN line once."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    script = ("from tfsft.cli.startup import quiet_tensorflow_import\n"
              "quiet_tensorflow_import()\n"
              "import tensorflow as tf\n"
              "ids = tf.ragged.constant([[1, 2, 3], [4]], dtype=tf.int32)\n"
              "print(tf.concat([ids, ids], axis=1).row_lengths().numpy().tolist())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "[6, 2]", done.stderr[-800:]
    assert "oneDNN" not in done.stderr and "E0000" not in done.stderr, done.stderr


def test_every_flag_tfsft_suggests_is_a_flag_of_a_tfsft_command():
    """Error advice names flags: each must exist (pip's own flags aside)."""
    import argparse
    import ast
    import re
    from pathlib import Path

    from tfsft.cli.parser import build_parser
    from tfsft.tasks.base import task_names

    def flags_of(parser):
        found = set()
        for action in parser._actions:
            found.update(s for s in action.option_strings if s.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= flags_of(sub)
        return found

    known = set().union(*(flags_of(build_parser(task)) for task in task_names()))
    known |= {"--no-deps", "--force-reinstall"}  # pip's, in install advice
    root = Path(__file__).resolve().parent.parent
    unknown = {}
    for path in [*(root / "tfsft").rglob("*.py"), *(root / "exporters").rglob("*.py")]:
        if path.name == "options.py" and path.parent.name == "cli":
            continue  # builds flags from option names ("--no-" + name)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]", node.value):
                    if flag not in known:
                        unknown.setdefault(flag, path.relative_to(root).as_posix())
    assert not unknown, unknown


def test_advice_naming_a_flag_the_command_lacks_says_which_commands_take_it(tmp_path):
    from tfsft.cli.advice import checked_advice
    from tfsft.cli.parser import build_parser
    from tfsft.tasks.base import task_names

    advice = ("dev.conll, line 4: tag I-PER follows O. Fix the tags, pass --tag-scheme if it "
              "is not IOB2, or pass --repair-tags to turn each into a valid tag (counted).")
    parser = build_parser()
    others = (build_parser(task) for task in task_names())  # lazy, as the CLI passes them
    evaluate = parser.parse_args(["evaluate", str(tmp_path), "--data", "dev.conll"])
    checked = checked_advice(advice, parser, evaluate, others)
    assert checked.startswith(advice)
    assert ("(tfsft evaluate takes no --tag-scheme; it is an option of tfsft train, tfsft cv, "
            "tfsft preprocess, tfsft data inspect; tfsft evaluate takes no --repair-tags; "
            "it is an option of tfsft train, tfsft cv, tfsft preprocess, tfsft data "
            "inspect.)") in checked
    ner = build_parser("token-classification")
    train = ner.parse_args(["train", "--task", "token-classification", "--train", "x.conll",
                            "--output-dir", str(tmp_path / "run")])
    assert checked_advice(advice, ner, train, others) == advice  # train takes both
    inspect = parser.parse_args(["data", "inspect", "x.conll"])
    assert "tfsft data inspect takes no --data-format" in checked_advice(
        "pass --data-format", parser, inspect, others)
    assert "no command takes it" in checked_advice("pass --no-such-flag", parser, inspect)


def test_texts_may_follow_options_and_unknown_options_are_still_refused():
    from tfsft.cli import parse_arguments
    from tfsft.cli.parser import build_parser

    parser = build_parser()
    args = parse_arguments(parser, ["predict", "runs/x", "first", "--batch-size", "8", "second"])
    assert args.texts == ["first", "second"] and args.batch_size == 8
    with pytest.raises(SystemExit):
        parse_arguments(parser, ["predict", "runs/x", "--batch-size", "8", "text", "--bogus"])
    with pytest.raises(SystemExit):
        parse_arguments(parser, ["evaluate", "runs/x", "--data", "d.csv", "stray"])
