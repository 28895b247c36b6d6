"""Turn a trained tfsft run into deployable artifacts, each verified against the Keras model.

>>> from exporters import export
>>> report = export("runs/sst2", "saved_models/sst2", formats=["savedmodel", "tflite", "onnx"],
...                 quantize=["fp16", "int8-dynamic", "int8-static"])        # doctest: +SKIP
>>> report["passed"]                                                  # doctest: +SKIP
True
"""

from exporters.export import FORMATS, QUANTIZATIONS, export
from exporters.publish import ExportMismatchError

__all__ = ["FORMATS", "QUANTIZATIONS", "ExportMismatchError", "export"]
