"""The separate-process tf2onnx conversion of a frozen graph."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from exporters.onnx_frozen import convert_in_subprocess, write_graph_def
from tfsft.errors import ExportError


def _frozen_affine():
    weights = tf.constant(np.arange(12, dtype=np.float32).reshape(3, 4))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="features")])
    def affine(features):
        return tf.nn.relu(tf.matmul(features, weights) - 10.0)

    return affine.get_concrete_function(), weights.numpy()


def test_a_frozen_graph_converts_in_a_fresh_process_with_the_names_given(tmp_path):
    import onnxruntime as ort

    function, weights = _frozen_affine()
    inputs, outputs = write_graph_def(function, tmp_path / "graph.pb")
    convert_in_subprocess(tmp_path / "graph.pb", tmp_path / "model.onnx",
                          inputs={inputs[0]: "features"}, outputs={outputs[0]: "scores"})
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    features = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    (scores,) = session.run(["scores"], {"features": features})
    np.testing.assert_allclose(scores, np.maximum(features @ weights - 10.0, 0.0), atol=1e-5)


def test_a_failed_conversion_says_which_graph_and_why(tmp_path):
    (tmp_path / "broken.pb").write_bytes(b"not a graph")
    with pytest.raises(ExportError, match=r"conversion of broken\.pb failed \(exit code 1\)"
                                          r"(.|\n)*DecodeError"):
        convert_in_subprocess(tmp_path / "broken.pb", tmp_path / "model.onnx",
                              inputs={"x:0": "x"}, outputs={"y:0": "y"})
    assert not (tmp_path / "model.onnx").exists()
