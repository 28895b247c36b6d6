"""Every export format and variant round-trips on a tiny model and matches the Keras model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

from exporters import ExportMismatchError, export
from tfsft.cli import main as cli
from tfsft.errors import ConfigError
from tfsft.runs import TrainedRun
from tfsft.tasks.roles import OutputCheck
from tfsft.tasks.text_classification.task import TextClassificationTask
from tfsft.tokenization import unpad

from .conftest import sigkill_when

ALL_VARIANTS = {("keras", "fp32"), ("savedmodel", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"),
                ("tflite", "int8-dynamic"), ("tflite", "int8-static"), ("tflite", "text"),
                ("onnx", "fp32"), ("onnx", "optimized"), ("onnx", "int8-dynamic"),
                ("onnx", "int8-static"), ("onnx", "fp16")}


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("exports") / "tiny"
    report = export(trained_run.run_dir, base, formats=["savedmodel", "tflite", "onnx"],
                    quantize=["fp16", "int8-dynamic", "int8"])
    return base, report


def _monitoring_config():
    """An empty ``tensorflow.serving.MonitoringConfig`` (tensorflow_serving/config/
    monitoring_config.proto, which the tensorflow-serving-api wheel does not ship), built from
    its two messages, to parse monitoring.config as the model server does."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="monitoring_config_check.proto",
                                               package="tensorflow.serving.check",
                                               syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    prometheus = proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                         label=field.LABEL_OPTIONAL)
    config = proto.message_type.add(name="MonitoringConfig")
    config.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                     label=field.LABEL_OPTIONAL,
                     type_name=".tensorflow.serving.check.PrometheusConfig")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("tensorflow.serving.check.MonitoringConfig")
    return message_factory.GetMessageClass(descriptor)()


def versions(base):
    return sorted(p.name for p in base.iterdir() if re.fullmatch(r"\d+", p.name))


def test_every_artifact_passes_its_parity_check(exported):
    base, report = exported
    assert report["passed"]
    assert {(a["artifact"], a["variant"]) for a in report["artifacts"]} == ALL_VARIANTS
    for artifact in report["artifacts"]:
        assert artifact["passed"], artifact
        assert os.path.exists(artifact["path"]), artifact["path"]
        if artifact["variant"] in ("fp32", "optimized", "text"):
            assert artifact["max_abs_diff"] <= 1e-4
        assert set(artifact["latency_ms"]) == {"batch_1", "batch_32"}
    assert json.loads((base / "export_report.json").read_text())["passed"]


def test_serving_layout_and_files(exported, trained_run):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    base, _ = exported
    assert versions(base) == ["1"]
    version = base / "1"
    assert (version / "assets" / "vocab.txt").exists()
    assert (version / "assets" / "labels.txt").read_text().split() == ["neg", "pos"]
    records = list(tf.data.TFRecordDataset(
        str(version / "assets.extra" / "tf_serving_warmup_requests")).as_numpy_iterator())
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.predict_log.request.model_spec.signature_name == "serving_default"
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    servers = text_format.Parse((base / "models.config").read_text(),
                                model_server_config_pb2.ModelServerConfig())
    assert servers.model_config_list.config[0].name == "tiny"
    assert "max_batch_size" in (base / "batching_parameters.txt").read_text()
    monitoring = text_format.Parse((base / "monitoring.config").read_text(), _monitoring_config())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    for name in ("model.tflite", "model_fp16.tflite", "model_int8_dynamic.tflite",
                 "model_int8_static.tflite", "model_text.tflite", "labels.txt", "vocab.txt"):
        assert (base / "tflite" / name).exists(), name
    assert not [p for p in base.iterdir() if p.name.startswith(".export-tmp")]


def test_onnx_graph_contract_and_shipped_tokenizer(exported, trained_run):
    import onnx
    from tokenizers import Tokenizer

    base, _ = exported
    model = onnx.load(str(base / "onnx" / "model.onnx"))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask",
                                                   "token_type_ids"]
    assert sorted(o.name for o in model.graph.output) == ["logits", "probabilities"]
    for graph_input in model.graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert len(dims) == 2 and not any(d.HasField("dim_value") for d in dims)  # dynamic axes
    texts = ["The film was SUPERB!", "a dull, clumsy plot"]
    shipped = Tokenizer.from_file(str(base / "onnx" / "tokenizer.json"))
    run = TrainedRun(trained_run.run_dir)
    assert [e.ids for e in shipped.encode_batch(texts)] == unpad(run.tokenizer.encode(texts))
    assert (base / "onnx" / "labels.txt").read_text().split() == ["neg", "pos"]


def test_optimized_onnx_has_fused_transformer_nodes(exported, trained_run):
    base, report = exported
    optimized = next(a for a in report["artifacts"] if a["variant"] == "optimized")
    layers = TrainedRun(trained_run.run_dir).model.backbone.num_layers
    fused = optimized["fused_operators"]
    assert fused.get("Attention") == layers, fused
    assert fused.get("SkipLayerNormalization", 0) >= 2 * layers, fused
    assert fused.get("BiasGelu", 0) + fused.get("FastGelu", 0) == layers, fused


def test_raw_text_tflite_labels_match_predict(exported, trained_run):
    from exporters.tflite import text_runner

    base, _ = exported
    texts = ["the acting was brilliant", "a boring , tedious film", "fun", "weak"]
    outputs = text_runner(base / "tflite" / "model_text.tflite")(
        {"text_inputs": {"text": np.array(texts, dtype=object)}})
    logits = outputs["logits"]
    run = TrainedRun(trained_run.run_dir)
    assert [run.labels[i] for i in logits.argmax(-1)] == [p["label"] for p in run.predict(texts)]


def test_mismatch_fails_and_publishes_nothing(trained_run, tmp_path, monkeypatch):
    strict = {"logits": OutputCheck(kind="argmax", tolerance=0.0)}
    monkeypatch.setattr(TextClassificationTask.Serving, "output_checks", lambda self: strict)
    base = tmp_path / "strict"
    with pytest.raises(ExportMismatchError, match="nothing was published"):
        export(trained_run.run_dir, base, formats=["onnx"])
    assert versions(base) == [] and not (base / "onnx").exists()
    assert not json.loads((base / "export_report.failed.json").read_text())["passed"]
    report = export(trained_run.run_dir, base, formats=["onnx"], allow_mismatch=True)
    assert not report["passed"] and (base / "onnx" / "model.onnx").exists()
    assert not (base / "export_report.failed.json").exists()


def test_quantized_variants_report_their_layers_gate_and_speed(exported):
    base, report = exported
    quantized = [a for a in report["artifacts"] if a["quantized"]]
    assert {(a["artifact"], a["variant"]) for a in quantized} == {
        ("tflite", "fp16"), ("tflite", "int8-dynamic"), ("tflite", "int8-static"),
        ("onnx", "int8-dynamic"), ("onnx", "int8-static"), ("onnx", "fp16")}
    for artifact in quantized:  # each names the gate it met, with what it measured
        assert "argmax agreement" in artifact["gate"] and "accuracy loss" in artifact["gate"]
    for key in (("tflite", "int8-static"), ("onnx", "int8-dynamic"), ("onnx", "int8-static")):
        artifact = next(a for a in quantized if (a["artifact"], a["variant"]) == key)
        layers = artifact["layer_errors"]
        assert layers and all(layer["snr_db"] is None or layer["snr_db"] > -50 for layer in layers)
        harm = [layer["added_db"] if layer["output_snr_db"] is None
                else 100 - min(layer["output_snr_db"], 100) for layer in layers]
        assert harm == sorted(harm, reverse=True)  # worst first
        assert set(artifact["float_layers"]) <= {layer["name"] for layer in layers}
        assert artifact["fallback_tries"][-1]["passed"]
        assert artifact["quantized_layers"] == len(layers) - len(artifact["float_layers"]) > 0
    static = next(a for a in quantized if (a["artifact"], a["variant"]) == ("onnx", "int8-static"))
    import onnx

    ops = {node.op_type for node in onnx.load(static["path"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ, calibrated
    from ai_edge_litert.interpreter import Interpreter

    lite = next(a for a in quantized if (a["artifact"], a["variant"]) == ("tflite", "int8-static"))
    interpreter = Interpreter(model_path=lite["path"])
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    details = interpreter._get_ops_details()
    made_by = {out: op for op in details for out in op["outputs"]}
    ops = [op["op_name"] for op in details]
    assert "FULLY_CONNECTED" in ops and "QUANTIZE" in ops  # int8 dense layers
    for op in details:  # no float value is rounded to int8 and straight back (softmax was)
        source = made_by.get(op["inputs"][0]) if op["op_name"] == "DEQUANTIZE" else None
        assert not (source and source["op_name"] == "QUANTIZE"
                    and tensors[source["inputs"][0]]["dtype"] == np.float32), op
    document = (base / "export_report.md").read_text()
    assert "| b1 × | b32 × | float layers |" in document
    assert "### onnx int8-static: error of each quantized layer" in document
    assert "### tflite int8-static: error of each quantized layer" in document


def test_a_variant_below_its_gate_is_left_out(trained_run, tmp_path, monkeypatch, capsys):
    impossible = {"logits": OutputCheck(kind="argmax", min_agreement=1.01)}
    monkeypatch.setattr(TextClassificationTask.Serving, "output_checks", lambda self: impossible)
    base = tmp_path / "gated"
    report = export(trained_run.run_dir, base, formats=["onnx"], quantize=["int8"])
    assert report["passed"]  # what was published passed
    assert {a["variant"] for a in report["artifacts"]} == {"fp32", "optimized"}
    (left_out,) = report["not_published"]
    assert left_out["variant"] == "int8-static" and not left_out["passed"]
    tries = left_out["fallback_tries"]  # 0, 1, 2, 4, ... layers float: none enough
    assert [t["float_layers"] for t in tries][:3] == [0, 1, 2] and not any(
        t["passed"] for t in tries)
    assert not (base / "onnx" / "model_int8_static.onnx").exists()
    assert (base / "onnx" / "model_optimized.onnx").exists()
    err = capsys.readouterr().err
    assert "not published: onnx int8-static is below its gate (logits: argmax agreement" in err
    assert "pass --allow-mismatch to publish it anyway" in err


def test_cli_export_exits_nonzero_on_unknown_format(trained_run, tmp_path, capsys):
    assert cli(["export", str(trained_run.run_dir), "--format", "coreml",
                "--output", str(tmp_path / "x")]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_interrupted_export_leaves_no_visible_version(trained_run, tmp_path):
    base = tmp_path / "killed"
    command = [sys.executable, "-m", "tfsft.cli", "export", str(trained_run.run_dir),
               "--format", "savedmodel,onnx", "--output", str(base)]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    # Kill once the SavedModel is staged, while the conversions are under way.
    sigkill_when(process, lambda: any(base.glob(".export-tmp-*/savedmodel/saved_model.pb")),
                 poll=0.05)
    assert process.returncode == -signal.SIGKILL
    assert versions(base) == []  # TF Serving sees nothing; the hidden staging folder is ignored
    assert not (base / "onnx").exists()
    export(trained_run.run_dir, base, formats=["savedmodel"])
    assert versions(base) == ["1"]


def test_onnx_export_without_onnx_runtime_says_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'tfsft\[cpu\]'"):
        export(tmp_path / "run", tmp_path / "out", formats=["onnx"])
    assert not (tmp_path / "out").exists()


def test_export_refuses_no_format_and_an_output_inside_the_run(trained_run, tmp_path, capsys):
    run_dir = trained_run.run_dir
    before = sorted(p.name for p in run_dir.iterdir())
    assert cli(["export", str(run_dir), "--output", str(tmp_path / "out"), "--format", ""]) == 2
    assert "--format names no format; choose one or more of savedmodel" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    for inside in (run_dir, run_dir / "serving"):
        with pytest.raises(ConfigError, match="is inside the run folder"):
            export(run_dir, inside)
    other_run = tmp_path / "other-run"
    other_run.mkdir()
    (other_run / ".tfsft-run").write_text("")
    with pytest.raises(ConfigError, match="is a training run folder"):
        export(run_dir, other_run)
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_fallback_keeps_the_fewest_float_layers_that_pass(tmp_path):
    from exporters.fallback import LayerError, quantize_with_fallback
    from exporters.verify import Check

    layers = [LayerError(f"layer{i}", "FULLY_CONNECTED", snr_db=float(i)) for i in range(10)]
    path = tmp_path / "model.bin"
    rule = {"logits": OutputCheck(kind="argmax", min_agreement=0.99)}
    reference = [np.array([[1.0, 0.0], [0.0, 1.0]])]

    def quantize(float_layers):  # stands in for a quantizer: passes with >= 5 layers float
        path.write_text(",".join(float_layers))
        return path

    def check(written):
        kept = [name for name in written.read_text().split(",") if name]
        worst_kept = all(f"layer{i}" in kept for i in range(min(len(kept), 5)))
        outputs = reference if len(kept) >= 5 and worst_kept else [np.array([[1.0, 0.0]] * 2)]
        return Check("onnx", "int8-static", str(written), 1, rule, {"logits": reference},
                     {"logits": outputs}, [np.ones((2, 3))])

    result = quantize_with_fallback(quantize, check, layers, "test")
    assert [t["float_layers"] for t in result.notes["fallback_tries"]] == [0, 1, 2, 4, 8, 6, 5]
    assert result.passed and result.notes["float_layers"] == [f"layer{i}" for i in range(5)]
    assert path.read_text() == ",".join(f"layer{i}" for i in range(5))  # the chosen one
    assert result.notes["quantized_layers"] == 5


def test_a_file_checked_twice_is_left_out_whole_when_one_check_fails(tmp_path, capsys):
    from exporters.publish import _leave_out

    model, other = tmp_path / "model_fp16.onnx", tmp_path / "model.onnx"
    model.write_bytes(b"x")
    other.write_bytes(b"y")
    cpu = {"artifact": "onnx", "variant": "fp16", "path": str(model), "passed": True,
           "quantized": True, "provider": "CPU"}
    gpu = {**cpu, "passed": False, "provider": "CUDA", "gate": "argmax agreement 97.00 %"}
    fp32 = {"artifact": "onnx", "variant": "fp32", "path": str(other), "passed": True}
    summary = {"artifacts": [fp32, cpu, gpu], "passed": False}
    _leave_out(summary, [gpu])
    assert summary["artifacts"] == [fp32] and summary["passed"]
    assert [a["provider"] for a in summary["not_published"]] == ["CPU", "CUDA"]
    assert not model.exists() and other.exists()
    assert "not published: onnx fp16 is below its gate" in capsys.readouterr().err


def test_fallback_ranks_layers_by_what_each_alone_does_to_the_outputs(tmp_path):
    from exporters.fallback import LayerError, quantize_with_fallback, with_output_snr
    from exporters.verify import Check

    # By their own SNR, layer0 is worst; by the outputs, only layer3 matters.
    layers = [LayerError(f"layer{i}", "FULLY_CONNECTED", snr_db=float(i)) for i in range(4)]
    path = tmp_path / "model.bin"
    rule = {"logits": OutputCheck(kind="argmax", min_agreement=0.99)}
    reference = [np.array([[1.0, 0.0], [0.0, 1.0]])]

    def quantize(float_layers):
        path.write_text(",".join(float_layers))
        return path

    def outputs(written):  # the outputs move only while layer3 is quantized
        kept = written.read_text().split(",")
        return np.array([1.0, 0.0, 0.0, 1.0]) + (0.0 if "layer3" in kept else 0.4)

    def check(written):
        moved = outputs(written)[0] != 1.0
        wrong = [np.array([[0.0, 1.0], [0.0, 1.0]])]
        return Check("onnx", "int8-dynamic", str(written), 1, rule, {"logits": reference},
                     {"logits": wrong if moved else reference}, [np.ones((2, 3))])

    measure = lambda found: with_output_snr(found, quantize, outputs,  # noqa: E731
                                            np.array([1.0, 0.0, 0.0, 1.0]), "test")
    result = quantize_with_fallback(quantize, check, layers, "test", measure=measure)
    assert result.passed and result.notes["float_layers"] == ["layer3"]
    assert [t["float_layers"] for t in result.notes["fallback_tries"]] == [0, 1]
    rows = result.notes["layer_errors"]
    assert rows[0]["name"] == "layer3" and rows[0]["output_snr_db"] < 10
    assert all(row["output_snr_db"] == 200 for row in rows[1:])  # unchanged outputs
    assert path.read_text() == "layer3"


def _card_tables(text: str) -> dict[str, list[list[str]]]:
    """Each Markdown table of a card, by the header of its first column (rows of cells)."""
    tables, current = {}, None
    for line in text.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if current is None:
            current = tables.setdefault(cells[0], [])
        elif not set(line) <= set("|-"):
            current.append(cells)
    return tables


def test_model_card_numbers_are_the_runs_and_the_exports(exported, trained_run):
    import yaml

    from exporters.model_card import MARKER, number
    from tfsft.io_utils import file_sha256

    base, report = exported
    text = (base / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    assert body.startswith(MARKER)
    metadata = yaml.safe_load(front)
    metrics = json.loads((trained_run.run_dir / "metrics.json").read_text())
    data_check = json.loads((trained_run.run_dir / "data_check.json").read_text())
    scalars = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    index = metadata["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in index} == scalars  # exact values in the metadata
    tables = _card_tables(body)
    assert {row[0]: row[1] for row in tables["metric"]} == {
        k: number(v) for k, v in scalars.items()}
    per_class = {row[0]: row[1:] for row in tables["class"]}
    assert per_class == {name: [number(v) for v in row.values()]
                         for name, row in metrics["per_class"].items()}
    shown = [(row[0], row[1]) for row in tables["artifact"]]
    assert shown == [(a["artifact"], a["variant"]) for a in report["artifacts"]]
    for row, artifact in zip(tables["artifact"], report["artifacts"], strict=True):
        assert row[3:7] == [number(artifact["max_abs_diff"]), number(artifact["agreement"]),
                            artifact["quality_metric"], number(artifact["quality"])]
    train = data_check["train"]
    assert tables["split"][0][2:4] == [str(train["rows"]), train["sha256"]]
    assert train["sha256"] == file_sha256(trained_run.run_dir.parent / "train.csv")
    assert metadata["tags"] == ["tfsft", "text-classification"]


def test_an_export_never_replaces_files_it_did_not_write(trained_run, tmp_path):
    from tfsft.errors import ConfigError

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "models.config").write_text("my server config\n")
    with pytest.raises(ConfigError, match="already holds files that tfsft export did not write "
                                          r"\(models.config\)"):
        export(trained_run.run_dir, mine, formats=["savedmodel"], max_examples=8)
    assert (mine / "models.config").read_text() == "my server config\n"
    base = tmp_path / "model"
    export(trained_run.run_dir, base, formats=["savedmodel", "onnx"], max_examples=8)
    (base / "README.md").write_text("my notes\n")  # the user's README replaces the card
    (base / "onnx" / "DEPLOY.txt").write_text("how we deploy\n")
    with pytest.raises(ConfigError, match="onnx/DEPLOY.txt would be replaced by this export"):
        export(trained_run.run_dir, base, formats=["onnx"], max_examples=8)
    assert (base / "onnx" / "DEPLOY.txt").exists()
    report = export(trained_run.run_dir, base, formats=["savedmodel"], max_examples=8)
    assert versions(base) == ["1", "2"]  # a second export of the same folder is fine
    assert (base / "README.md").read_text() == "my notes\n"
    assert report["model_card"] == str(base / "MODEL_CARD.md")
    assert (base / "MODEL_CARD.md").read_text().startswith("---\n")
