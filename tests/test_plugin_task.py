"""A task from another distribution: tests/plugin_task (``tfsft-polarity``) is installed into a
folder of its own, found through the ``tfsft.tasks`` entry point, listed by ``tfsft train
--help`` without TensorFlow, and passes the task contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfsft.tasks import base

from .conftest import sentiment_rows, write_csv
from .task_contract import run_task_contract

PLUGIN = Path(__file__).parent / "plugin_task"


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory) -> Path:
    """``pip install`` of tests/plugin_task into a folder (not the environment), then on
    ``sys.path``; the entry-point registry is read again with it and without it after."""
    target = tmp_path_factory.mktemp("site")
    # built from a copy: the build leaves build/ and *.egg-info beside its sources
    source = tmp_path_factory.mktemp("source") / PLUGIN.name
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(target.glob("tfsft_polarity-*.dist-info"))
    _forget_plugin_modules()  # e.g. imported from the source folder for its doctests
    sys.path.insert(0, str(target))
    base._discovered = False
    yield target
    sys.path.remove(str(target))
    base.unregister_task("polarity")
    _forget_plugin_modules()
    base._discovered = False


def _forget_plugin_modules() -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "tfsft_polarity"]:
        del sys.modules[name]


def _cli(target: Path, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(target), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env,
                          timeout=300, cwd=target)


def test_the_installed_task_shows_in_train_help_without_tensorflow(installed_plugin):
    shown = _cli(installed_plugin, "-m", "tfsft.cli", "train", "--task", "polarity", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "polarity" in shown.stdout and "--positive-label" in shown.stdout
    listed = _cli(installed_plugin, "-m", "tfsft.cli", "train", "--help")
    assert "polarity" in listed.stdout
    light = _cli(installed_plugin, "-c", "import sys; from tfsft.cli import build_parser; "
                 "build_parser('polarity'); print('tensorflow' in sys.modules)")
    assert light.stdout.strip() == "False", light.stderr


def test_the_installed_task_passes_the_task_contract(installed_plugin, tiny_checkpoint,
                                                     tmp_path):
    assert "polarity" in base.task_names()
    assert base.task_class("polarity").__module__ == "tfsft_polarity.task"
    assert Path(sys.modules["tfsft_polarity.task"].__file__).is_relative_to(installed_plugin)
    train_file = write_csv(tmp_path / "train.csv", sentiment_rows(400, seed=4))
    result = run_task_contract("polarity", tiny_checkpoint, train_file, tmp_path,
                               ["the film was superb", "a boring and tedious plot"],
                               quality_at_least=0.9)
    assert [p["label"] for p in result.predictions] == ["pos", "neg"]


def test_a_broken_entry_point_is_a_clear_error(monkeypatch):
    from tfsft.errors import ConfigError

    monkeypatch.setitem(base._REGISTRY, "broken-test", "no_such_module:Task")
    with pytest.raises(ConfigError, match="cannot load no_such_module:Task"):
        base.task_class("broken-test")
