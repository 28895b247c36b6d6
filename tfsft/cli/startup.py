"""Keep TensorFlow's C++ start-up lines off the terminal of the command line.

Importing TensorFlow prints, through its C++ logging and before any Python setting can reach
it, lines such as ``WARNING: All log messages before absl::InitializeLog() is called are written
to STDERR``, ``oneDNN custom operations are on`` and, on machines without a GPU, ``Could not
find cuda drivers`` (and ``failed call to cuInit`` when the devices are first probed); on
CPUs where oneDNN takes no integer tensors (AMD EPYC, for one), the first integer transpose of
the process (a ragged concatenation makes one) prints ``oneDNN supports DT_INT32 only on
platforms with AVX-512``, once (still, in the workers of a multi-worker cluster).
:func:`quiet_tensorflow_import` makes the first ``import tensorflow`` (wherever it happens:
tfsft imports TensorFlow only when a command needs it) and the device probe write their
standard error into a temporary file instead, with one integer transpose so that the oneDNN line
is printed there too; if the import fails, what it wrote is shown.
``tfsft --debug`` leaves everything on the terminal.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys

from tfsft.io_utils import stderr_to_file

#: The module whose import is kept quiet (its submodules are imported inside it).
MODULE = "tensorflow"


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`MODULE` as usual, and runs its ``__init__`` under :func:`stderr_to_file`."""

    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # once: later imports are the module itself
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            with stderr_to_file():
                execute(module)
                # the devices are probed once, on first use: here, so that the CUDA driver's
                # complaint on a machine without a GPU is kept quiet too
                module.config.list_physical_devices()
                # oneDNN's integer type check logs once per process, on the first integer
                # transpose: here rather than in the middle of a command's output. Not in a
                # worker of a cluster: MultiWorkerMirroredStrategy must configure the
                # collective ops before TensorFlow runs its first op.
                if not os.environ.get("TF_CONFIG", "").strip():
                    module.transpose(module.zeros([1, 1], module.int32))

        spec.loader.exec_module = exec_module
        return spec


def quiet_tensorflow_import() -> None:
    """Make the first import of TensorFlow in this process quiet (see the module docstring)."""
    if MODULE in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
