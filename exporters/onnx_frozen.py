"""tf2onnx conversion of a frozen TensorFlow graph in a fresh process, for models too large to
convert inside the exporting process.

``tf2onnx.convert.from_function`` keeps several copies of every weight alive at once (the
function's graph, the grappler-inlined graph, the ONNX graph and, per optimizer pass, a deep
copy of it): for a 135M-parameter model that is more than 24 GB on top of the Keras models the
export already holds. Here the frozen ``GraphDef`` is written to disk and converted by a new
Python process that holds nothing else, without tf2onnx's own optimizer passes (the ones that
copy the graph; onnxruntime applies its graph optimizations when it loads the model), which
peaks near 10 GB for SmolLM2-135M.

>>> from exporters.onnx_frozen import convert_in_subprocess           # doctest: +SKIP
>>> convert_in_subprocess(Path("frozen.pb"), Path("model.onnx"),      # doctest: +SKIP
...                       inputs={"input_ids:0": "input_ids"}, outputs={"Identity:0": "logits"})
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from exporters.fresh_process import run_module

OPSET = 17


def write_graph_def(concrete_function, path: Path) -> tuple[list[str], list[str]]:
    """Write the graph of a frozen ``ConcreteFunction`` (no variables) to ``path``; returns the
    names of its input and output tensors."""
    path.write_bytes(concrete_function.graph.as_graph_def().SerializeToString())
    return ([t.name for t in concrete_function.inputs],
            [t.name for t in concrete_function.outputs])


def convert_in_subprocess(graph_path: Path, onnx_path: Path, inputs: dict[str, str],
                          outputs: dict[str, str], opset: int = OPSET) -> None:
    """Convert the frozen graph at ``graph_path`` to ``onnx_path`` in a new Python process.

    ``inputs`` and ``outputs`` map the graph's tensor names (``"input_ids:0"``) to the names the
    ONNX graph gets (``"input_ids"``). Raises :class:`~tfsft.errors.ExportError` with the
    converter's last lines when the conversion fails (see :mod:`exporters.fresh_process`).
    """
    request = {"graph": str(graph_path), "onnx": str(onnx_path), "inputs": inputs,
               "outputs": outputs, "opset": opset}
    run_module(__name__, request, f"the ONNX conversion of {graph_path.name}")


def convert(graph_path: Path, onnx_path: Path, inputs: dict[str, str], outputs: dict[str, str],
            opset: int = OPSET) -> None:
    """The conversion :func:`convert_in_subprocess` runs (in this process)."""
    import onnx
    import tensorflow as tf
    from tf2onnx import tf_loader, tfonnx

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_path.read_bytes())
    with tf.Graph().as_default() as tf_graph:
        graph_def = tf_loader.tf_optimize(list(inputs), list(outputs), graph_def)
        tf.import_graph_def(graph_def, name="")
        del graph_def
        graph = tfonnx.process_tf_graph(tf_graph, opset=opset, input_names=list(inputs),
                                        output_names=list(outputs),
                                        tensors_to_rename={**inputs, **outputs})
    proto = graph.make_model(f"converted from {graph_path.name}")
    onnx.checker.check_model(proto)
    onnx.save(proto, str(onnx_path))


def _main(argv: list[str]) -> None:
    request = json.loads(argv[0])
    convert(Path(request["graph"]), Path(request["onnx"]), request["inputs"],
            request["outputs"], request["opset"])


if __name__ == "__main__":
    _main(sys.argv[1:])
