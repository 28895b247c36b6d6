"""Stage, verify, publish: the one way every exporter puts its artifacts into place.

An exporter builds everything in a hidden staging folder under the output folder and checks
each artifact against the trained model; only then are the staged folders moved into place:
the SavedModel as a new version folder (TensorFlow Serving picks it up), ``tflite/`` and
``onnx/`` replaced whole. A quantized variant below its task's gate is left out (the report
lists it under ``not_published`` with its numbers); a float artifact that does not match
publishes nothing and leaves ``export_report.failed.json`` beside what was there before.
``allow_mismatch`` publishes everything.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from exporters import savedmodel
from exporters.model_card import write_card
from tfsft.errors import ConfigError, TfsftError
from tfsft.io_utils import atomic_directory, atomic_write_json, atomic_write_text

REPORT_FILE = "export_report.json"
MARKDOWN_REPORT_FILE = "export_report.md"
FAILED_REPORT_FILE = "export_report.failed.json"
#: The record of the files tfsft export wrote into an output folder (JSON: relative paths); a
#: later export replaces only those.
OWNED_FILE = ".tfsft-export"
#: Files an export writes at the top of the output folder (README.md only when it is tfsft's
#: model card: a user's README is left alone and the card goes to MODEL_CARD.md).
TOP_FILES = ("models.config", "batching_parameters.txt", "monitoring.config", REPORT_FILE,
             MARKDOWN_REPORT_FILE, FAILED_REPORT_FILE, "MODEL_CARD.md")
#: Folders an export replaces whole, by format.
REPLACED_FOLDERS = ("tflite", "onnx", "hf", "gguf")


class ExportMismatchError(TfsftError):
    """An exported artifact does not predict what the trained model predicts."""


def stage_verify_publish(base: Path, formats: Sequence[str], allow_mismatch: bool,
                         build: Callable[[Path], dict[str, Any]],
                         table: Callable[[dict[str, Any]], str],
                         document: Callable[[dict[str, Any]], str] | None = None,
                         card: Callable[[dict[str, Any], str], str] | None = None
                         ) -> dict[str, Any]:
    """Run ``build(staging)``, which writes the artifacts of ``formats`` into the staging
    folder (``savedmodel/``, ``tflite/``, ``onnx/``), checks them and returns the report
    (``passed`` and ``artifacts``, each with its ``path``); print ``table(report)``; publish
    into ``base`` when it passed (or ``allow_mismatch``), else raise
    :class:`ExportMismatchError`. The staging folder is removed either way; the report is
    written as ``export_report.json`` with the published paths, and ``document(report)`` (or
    the table) as ``export_report.md``; ``card(report, library)`` is the model card written
    into ``base`` (``library``: tfsft) and into the Hugging Face folder (``transformers``), see
    :mod:`exporters.model_card`. Artifacts marked
    ``quantized`` that fail are left out instead (see the module docstring)."""
    staging = savedmodel.stage_dir(base)
    try:
        summary = build(staging)
        print(table(summary))
        failed = [a for a in summary["artifacts"] if not a["passed"]]
        if failed and not allow_mismatch:
            if any(not a.get("quantized") for a in failed):
                atomic_write_json(base / FAILED_REPORT_FILE, summary)
                record_output(base, {}, None)
                raise ExportMismatchError(
                    "an exported artifact does not match the trained model (see the table "
                    f"above and {base / FAILED_REPORT_FILE}); nothing was published. Pass "
                    "--allow-mismatch to publish anyway")
            _leave_out(summary, failed)
        published = publish_folders(staging, base, formats)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for artifact in summary["artifacts"]:
        artifact["path"] = published_path(artifact["path"], staging, published)
    summary["published"] = {k: str(v) for k, v in published.items()}
    atomic_write_json(base / REPORT_FILE, summary)
    atomic_write_text(base / MARKDOWN_REPORT_FILE, (document or table)(summary) + "\n")
    (base / FAILED_REPORT_FILE).unlink(missing_ok=True)  # from an earlier attempt
    written = None
    if card is not None:
        written = write_card(base, card(summary, "tfsft"))
        summary["model_card"] = str(written)
        if "hf" in published:
            write_card(published["hf"], card(summary, "transformers"))
        atomic_write_json(base / REPORT_FILE, summary)
    record_output(base, published, written)
    return summary


def _owned(base: Path) -> set[str] | None:
    """The files a tfsft export wrote into ``base`` (relative paths), or None if none did."""
    try:
        return set(json.loads((base / OWNED_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def check_output(base: Path, formats: Sequence[str]) -> None:
    """Refuse an output folder holding files that an export would replace but tfsft did not
    write: a folder of the user's, or one where files were added to ``onnx/`` (say) since the
    last export. Nothing of the user's is ever replaced or removed."""
    if not base.is_dir():
        return
    for name in ("README.md", "MODEL_CARD.md"):  # where the model card goes
        if (base / name).is_dir():
            raise ConfigError(f"--output {base}: {name} is a folder, where the model card "
                              "goes; move it out of the folder, or export to another folder")
    entries = sorted(p.name for p in base.iterdir()
                     if not p.name.startswith(savedmodel.STAGING_PREFIX))
    owned = _owned(base)
    if owned is None:
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise ConfigError(f"--output {base} already holds files that tfsft export did not "
                              f"write ({shown}); export to a new or empty folder, or to the "
                              "folder of an earlier export")
        return
    replaced = [base / name for name in TOP_FILES]
    replaced += [base / name for name in REPLACED_FOLDERS if name in formats]
    foreign = []
    for path in replaced:
        files = ([p for p in path.rglob("*") if p.is_file()] if path.is_dir()
                 else [path] if path.exists() else [])
        foreign += [p.relative_to(base).as_posix() for p in files
                    if p.relative_to(base).as_posix() not in owned]
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ConfigError(f"--output {base}: {shown} would be replaced by this export but were "
                          "not written by tfsft export; move them out of the folder, or export "
                          "to another folder")


def record_output(base: Path, published: dict[str, Path], card: Path | None) -> None:
    """Add what this export wrote to ``base``'s record of tfsft's files."""
    owned = {p for p in (_owned(base) or set()) if (base / p).exists()}
    for path in published.values():
        owned |= {p.relative_to(base).as_posix() for p in path.rglob("*") if p.is_file()}
    owned |= {name for name in TOP_FILES if (base / name).exists()}
    if card is not None:
        owned.add(card.relative_to(base).as_posix())
    atomic_write_json(base / OWNED_FILE, sorted(owned))


def _leave_out(summary: dict[str, Any], failed: list[dict[str, Any]]) -> None:
    """Remove the failed quantized variants from staging and from the report's artifacts
    (with every other check of the same file, e.g. the same model run on a GPU)."""
    paths = {artifact["path"] for artifact in failed}
    failed = [a for a in summary["artifacts"] if a["path"] in paths]
    for artifact in failed:
        Path(artifact["path"]).unlink(missing_ok=True)
        print(f"not published: {artifact['artifact']} {artifact['variant']} is below its "
              f"gate ({artifact.get('gate') or 'see the table above'}); pass "
              "--allow-mismatch to publish it anyway, or leave it out of --quantize",
              file=sys.stderr)
    summary["not_published"] = [{**a, "path": None} for a in failed]
    summary["artifacts"] = [a for a in summary["artifacts"] if a["path"] not in paths]
    summary["passed"] = True


def publish_folders(staging: Path, base: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Move the staged SavedModel (a new version) and the tflite/, onnx/, hf/ and gguf/
    folders into ``base``."""
    published: dict[str, Path] = {}
    if "savedmodel" in formats:
        published["savedmodel"] = savedmodel.publish_version(staging / "savedmodel", base)
        savedmodel.write_serving_config(base, base.name)
    for name in REPLACED_FOLDERS:
        if name in formats:
            with atomic_directory(base / name, overwrite=True) as tmp:
                os.rmdir(tmp)
                os.rename(staging / name, tmp)
            published[name] = base / name
    return published


def published_path(path: str, staging: Path, published: dict[str, Path]) -> str:
    """Where a file staged at ``path`` lies after :func:`publish_folders`.

    >>> published_path("/m/.staging-1/onnx/model.onnx", Path("/m/.staging-1"),
    ...                {"onnx": Path("/m/onnx")})
    '/m/onnx/model.onnx'
    """
    for name, target in published.items():
        prefix = str(staging / name)
        if path.startswith(prefix):
            return str(target) + path[len(prefix):]
    return path
