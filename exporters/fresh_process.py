"""Run one converter step in a new Python process, so that its peak memory is not added to the
models the exporting process already holds.

The TFLite converter and tf2onnx each keep several copies of every weight alive while they
work; for a 135M-parameter decoder that is 10 GB or more on top of the Keras models an export
holds. A module that offers such a step reads a JSON request from its command line
(``python -m exporters.MODULE '{...}'``) and writes its result to the file the request names.

>>> run_module("exporters.onnx_frozen", {"graph": "frozen.pb", ...}, "the ONNX conversion of "
...            "frozen.pb")                                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

from tfsft.errors import ExportError

#: Lines of the child's standard error quoted in an error message.
TAIL_LINES = 15


def run_module(module: str, request: dict[str, Any], what: str) -> None:
    """Run ``python -m module JSON(request)``; raise :class:`ExportError` naming ``what`` with
    the child's last lines when it fails, and say so when the system killed it for memory."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    done = subprocess.run([sys.executable, "-m", module, json.dumps(request)], env=env,
                          capture_output=True, text=True)
    if done.returncode == 0:
        return
    if done.returncode in (-signal.SIGKILL, 137):
        raise ExportError(
            f"{what} was killed by the system (signal 9), most likely for lack of memory; it "
            "needs about 20x the model's size in free memory. Close other programs, or leave "
            "that format out of --format")
    tail = "\n".join(done.stderr.strip().splitlines()[-TAIL_LINES:])
    raise ExportError(f"{what} failed (exit code {done.returncode}):\n{tail}")
