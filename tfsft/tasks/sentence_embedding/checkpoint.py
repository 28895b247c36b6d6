"""How a checkpoint makes its sentence vectors: the pooling and normalisation it was trained with.

A sentence-transformers checkpoint (all-MiniLM-L6-v2 among them) says so in its folder:
``modules.json`` lists its modules (a ``Normalize`` module makes unit-length vectors) and the
pooling module's ``config.json`` names the pooling mode. A checkpoint without these files gets
mean pooling and unit-length vectors, what in-batch training with cosine similarity expects.

>>> import json, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "modules.json").write_text(json.dumps([
...     {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
>>> (folder / "1_Pooling").mkdir()
>>> _ = (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
>>> checkpoint_settings(folder)
{'pooling': 'cls', 'normalize': False}
>>> checkpoint_settings(pathlib.Path(tempfile.mkdtemp()))
{'pooling': 'mean', 'normalize': True}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULTS = {"pooling": "mean", "normalize": True}
#: sentence-transformers pooling modes tfsft builds, by their config key.
POOLING_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}


def checkpoint_settings(folder: Path) -> dict[str, Any]:
    """``{"pooling": ..., "normalize": ...}`` as the checkpoint in ``folder`` was trained
    (see the module docstring)."""
    modules = _json(Path(folder) / "modules.json")
    if not isinstance(modules, list):
        return dict(DEFAULTS)
    kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    pooling = DEFAULTS["pooling"]
    if "Pooling" in kinds:
        config = _json(Path(folder) / str(kinds["Pooling"].get("path", "")) / "config.json")
        chosen = [mode for key, mode in POOLING_MODES.items()
                  if isinstance(config, dict) and config.get(key)]
        if chosen:
            pooling = chosen[0]
        elif isinstance(config, dict):
            logger.warning("%s pools in a way tfsft does not build (%s); using mean pooling",
                           folder, {k: v for k, v in config.items() if v is True})
    return {"pooling": pooling, "normalize": "Normalize" in kinds}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
