"""The benchmark report: ratios, goals, tables and chart from a run's JSON files."""

from __future__ import annotations

import json

import pytest

from benchmarks import common, report
from benchmarks.hardware import per_example_training_flops


def _training(recipe, rate, wall, accuracy, **extra):
    return {"recipe": recipe, "examples": 2048, "steps": 64, "examples_per_second": rate,
            "wall_seconds": wall, "peak_rss_mb": 2000.0, "dev_accuracy": accuracy, **extra}


def test_report_computes_ratios_and_goals(tmp_path):
    files = {
        "hardware.json": {"machine": {"cpu": "test"},
                          "matmul": {"size": 2048, "best_gflops": 200.0, "median_gflops": 190.0},
                          "matmul_bf16": {"size": 2048, "dtype": "bfloat16", "best_gflops": 600.0,
                                          "median_gflops": 500.0}},
        "training_tfsft.json": _training("tfsft", 100.0, 40.0, 0.85, train_tokens=2048 * 14,
                                         train_flops_per_example=0.9e9, precision="mixed_bfloat16"),
        "training_tfsft-fp32.json": _training("tfsft-fp32", 80.0, 45.0, 0.85, precision="float32",
                                              train_tokens=2048 * 14, train_flops_per_example=0.9e9),
        "training_hf-dynamic.json": _training("hf-dynamic", 40.0, 100.0, 0.84),
        "training_hf-padded.json": _training("hf-padded", 20.0, 150.0, 0.845),
        "profile.json": {"tokens_per_batch": 452, "matmul": {
            "float32": {"peak": {"gflops": 350.0, "ms": 49.0}, "step": {"gflops": 325.0, "ms": 88.7}},
            "bfloat16": {"peak": {"gflops": 1500.0, "ms": 11.0},
                         "step": {"gflops": 1370.0, "ms": 21.0}}},
            "adamw_update": {"parameters": 22566146, "tfsft_fused_adamw_ms": 47.6,
                             "keras_adamw_ms": 86.7}},
        "inference.json": {"latency_ms": {
            "savedmodel": {"b1_real": 15.0, "b32_real": 200.0, "b1_128": 30.0, "b32_128": 600.0},
            "onnx optimized": {"b1_real": 4.0, "b32_real": 150.0, "b1_128": 20.0,
                               "b32_128": 500.0},
            "onnx int8-dynamic": {"b1_real": 3.0, "b32_real": 100.0, "b1_128": 15.0,
                                  "b32_128": 300.0}}},
        "export_report.json": {"artifacts": [
            {"artifact": "onnx", "variant": "optimized", "accuracy": 0.876, "size_bytes": 9e7,
             "max_abs_logit_diff": 1e-6},
            {"artifact": "onnx", "variant": "int8-dynamic", "accuracy": 0.870,
             "size_bytes": 2.3e7, "max_abs_logit_diff": 0.2}]},
    }
    for name, payload in files.items():
        (tmp_path / name).write_text(json.dumps(payload))
    docs = tmp_path / "docs" / "benchmarks.md"
    table = report.write(tmp_path, total_seconds=600, docs=docs)

    summary = json.loads((tmp_path / "summary.json").read_text())
    goals = {g["goal"]: g for g in summary["goals"]}
    assert goals["training examples/s, tfsft / hf-dynamic"]["value"] == 2.5
    assert goals["training examples/s, tfsft / hf-dynamic"]["met"] is True
    assert goals["training examples/s, tfsft / hf-padded"]["value"] == 5.0
    assert goals["end-to-end wall time, hf-dynamic / tfsft"]["value"] == 2.5
    assert goals["dev accuracy, tfsft - best peer (points)"]["value"] == 0.5
    # Each run against the matmul peak of its own precision.
    assert goals["model FLOPs utilization of tfsft training, mixed_bfloat16 matmul peak (%)"][
        "value"] == 15.0
    assert goals["model FLOPs utilization of tfsft-fp32 training, float32 matmul peak (%)"][
        "value"] == 36.0
    assert goals["dev accuracy, tfsft - best peer (points)"]["value"] == 0.5  # peers only
    assert goals["batch 1 latency, SavedModel / ONNX optimized"]["value"] == 3.75
    assert goals["batch 32 latency, ONNX optimized / ONNX int8"]["value"] == 1.5
    assert goals["dev accuracy loss of ONNX int8 (points)"]["met"] is True
    assert "keras-hub" not in table  # a recipe that did not run is left out, not invented
    assert "| tfsft train (a) | mixed_bfloat16 | 64 | 100.0 | 1400 |" in table
    assert "| tfsft train --precision float32 (a') | float32 | 64 | 80.0 | 1120 | 1.25x |" in table
    assert "88.7 ms in float32" in table and "22,566,146 weights takes 47.6 ms" in table
    assert (tmp_path / "benchmarks.png").stat().st_size > 0
    assert "python -m benchmarks" in docs.read_text()


def test_step_timer_leaves_out_the_warmup_steps():
    timer = common.step_timer(object)
    timer.fit_start, timer.fit_end = 0.0, 10.0
    timer.step_ends = [5.0] + [5.0 + 0.5 * i for i in range(1, 10)]  # slow first step
    steady = timer.steady(examples=320, warmup=1)
    assert steady["steady_steps"] == 8
    assert steady["examples_per_second"] == pytest.approx(32 / 0.5)
    with pytest.raises(ValueError, match="too few"):
        timer.steady(examples=320, warmup=9)


def test_training_flops_grow_with_length():
    short, long = per_example_training_flops([16, 64], layers=6, hidden=384, intermediate=1536)
    assert long > 4 * short  # linear in tokens plus the quadratic attention term


def test_quality_summary_gives_mean_std_and_the_gap_to_the_peer(tmp_path):
    from benchmarks.quality import STUDIES, Row, result_file, run_once, summarize

    study = STUDIES["regression"]
    rows = [Row(study, "tfsft", [{"seed": s, "pearson": p, "spearman": 0.9, "rmse": 0.5}
                                 for s, p in ((42, 0.92), (1, 0.94))]),
            Row(study, "hf", [{"seed": 42, "pearson": 0.90}, {"seed": 1, "pearson": 0.91}])]
    summary = summarize(rows)["regression"]
    assert summary["tfsft"]["pearson"]["mean"] == pytest.approx(0.93)
    assert summary["tfsft"]["pearson"]["std"] == pytest.approx(0.0141421, abs=1e-6)
    assert summary["tfsft"]["pearson"]["minus_peer"] == pytest.approx(0.025)
    assert summary["hf"]["spearman"]["mean"] is None  # not measured: no number made up
    # a finished run is read back, not run again (the benchmark resumes)
    done = result_file(tmp_path, study, "tfsft constant lr", 1)
    assert done.name == "regression-tfsft-constant-lr-seed1.json"
    done.write_text(json.dumps({"seed": 1, "pearson": 0.5}))
    assert run_once(["regression-tfsft"], 1, done) == {"seed": 1, "pearson": 0.5}
