"""Turn a trained tfsft run into deployable artifacts.

>>> from exporters import export
>>> export("runs/sst2", "saved_models/sst2", formats=["savedmodel"])  # doctest: +SKIP
{'savedmodel': 'saved_models/sst2/1'}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from tfsft.errors import ConfigError
from tfsft.runs import TrainedRun

FORMATS = ("savedmodel",)


def export(run_or_dir: TrainedRun | str | os.PathLike, output: str | os.PathLike,
           formats: Sequence[str] = ("savedmodel",)) -> dict[str, str]:
    """Export a run (or run folder) in each of ``formats``; returns format -> written path."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format(s) {unknown}; available: {', '.join(FORMATS)}")
    run = run_or_dir if isinstance(run_or_dir, TrainedRun) else TrainedRun(run_or_dir)
    written: dict[str, str] = {}
    if "savedmodel" in formats:
        from exporters.savedmodel import export_savedmodel

        written["savedmodel"] = str(export_savedmodel(run, Path(output)))
    return written
