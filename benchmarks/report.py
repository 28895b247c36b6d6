"""Tables, goals, chart and ``docs/benchmarks.md`` from the JSON files of one benchmark run."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks import common

OWN = {"tfsft": "tfsft train (a)", "tfsft-fp32": "tfsft train --precision float32 (a')"}
PEERS = {"hf-dynamic": "HF-TF fit, dynamic padding (b1)",
         "hf-padded": "HF-TF fit, padded to 128 (b2)",
         "keras-hub": "keras-hub BertTextClassifier.fit (c)"}
EXPORT_NAMES = {("keras", "fp32"): "keras predict", ("savedmodel", "fp32"): "savedmodel",
                ("tflite", "fp32"): "tflite fp32", ("tflite", "fp16"): "tflite fp16",
                ("tflite", "int8-dynamic"): "tflite int8-dynamic",
                ("tflite", "int8-static"): "tflite int8-static",
                ("tflite", "int8"): "tflite int8",  # reports written before int8-static
                ("onnx", "fp32"): "onnx fp32", ("onnx", "optimized"): "onnx optimized",
                ("onnx", "int8-dynamic"): "onnx int8-dynamic",
                ("onnx", "int8-static"): "onnx int8-static"}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def _fmt(value: Any, pattern: str = "{:.2f}") -> str:
    return "-" if value is None else pattern.format(value)


def _matmul_peak(hardware: dict | None, precision: str) -> float | None:
    """The best matmul GFLOP/s of the precision a run's matmuls used."""
    key = "matmul_bf16" if precision == "mixed_bfloat16" else "matmul"
    return hardware[key]["best_gflops"] if hardware and key in hardware else None


def training_rows(results: Path, hardware: dict | None) -> tuple[list[dict], dict | None]:
    runs = {r: _load(results / f"training_{r}.json") for r in (*OWN, *PEERS)}
    mine = runs["tfsft"]
    flops = mine["train_flops_per_example"] if mine else None
    tokens_per_example = mine["train_tokens"] / mine["examples"] if mine else None
    rows = []
    for recipe, run in runs.items():
        if run is None:
            continue
        rate = run["examples_per_second"]
        precision = run.get("precision", "float32")
        peak = _matmul_peak(hardware, precision)
        rows.append({
            "recipe": recipe, "name": OWN.get(recipe) or PEERS[recipe], "precision": precision,
            "steps": run["steps"], "examples_per_second": rate,
            "tokens_per_second": round(rate * tokens_per_example, 1) if tokens_per_example else None,
            "tfsft_speedup": _ratio(mine["examples_per_second"], rate) if mine else None,
            "wall_seconds": run["wall_seconds"],
            "tfsft_wall_speedup": _ratio(run["wall_seconds"], mine["wall_seconds"]) if mine else None,
            "peak_rss_mb": run["peak_rss_mb"], "dev_accuracy": run["dev_accuracy"],
            "mfu": round(rate * flops / 1e9 / peak, 4) if flops and peak else None,
        })
    return rows, mine


TASK_RUNS = {"regression": ("regression-tfsft", "regression-hf",
                            "HF-TF TFBertForSequenceClassification(num_labels=1)",
                            ("pearson", "spearman", "mae", "rmse")),
             "ner": ("ner-tfsft", "ner-hf", "HF-TF TFBertForTokenClassification",
                     ("valid_f1", "test_f1")),
             "qa": ("qa-tfsft", "qa-hf", "HF-TF TFBertForQuestionAnswering",
                    ("exact_match", "f1")),
             "qa-dev-train": ("qa-tfsft-dev-train", "qa-hf-dev-train",
                              "HF-TF TFBertForQuestionAnswering", ("exact_match", "f1"))}
TASK_NAMES = {"ner": "token-classification", "qa": "question-answering",
              "qa-dev-train": "question-answering"}


def task_rows(results: Path) -> list[dict]:
    """One row per task recipe of ``benchmarks.tasks`` (tfsft and its peer on the same data)."""
    rows = []
    for task, (own, peer, peer_name, metrics) in TASK_RUNS.items():
        mine, theirs = _load(results / f"task_{own}.json"), _load(results / f"task_{peer}.json")
        own_name = f"tfsft train --task {TASK_NAMES.get(task, task)}"
        for recipe, run, name in ((own, mine, own_name), (peer, theirs, peer_name)):
            if run is None:
                continue
            rows.append({
                "task": task, "recipe": recipe,
                "name": name, "data": run["data"],
                "epochs": run["epochs"], "precision": run["precision"],
                "examples_per_second": run["examples_per_second"],
                "tfsft_speedup": _ratio(mine["examples_per_second"],
                                        run["examples_per_second"]) if mine else None,
                "wall_seconds": run["wall_seconds"], "peak_rss_mb": run["peak_rss_mb"],
                "cpu": _cpu(run.get("machine")), "metrics": {m: run[m] for m in metrics}})
    return rows


def _cpu(machine: dict | None) -> str:
    """CPU model and its widest vector / matrix extensions (runs of earlier releases: ?)."""
    if not machine:
        return "?"
    flags = machine.get("cpu_flags") or []
    return f"{machine.get('cpu', '?')} ({', '.join(flags) or 'no flags recorded'})"


def inference_rows(results: Path) -> list[dict]:
    latency = (_load(results / "inference.json") or {}).get("latency_ms", {})
    exported = _load(results / "export_report.json") or {"artifacts": []}
    by_name = {EXPORT_NAMES.get((a["artifact"], a["variant"])): a for a in exported["artifacts"]}
    rows = []
    for name, scenarios in latency.items():
        artifact = by_name.get(name, {})
        # export reports of earlier releases: "accuracy" and "max_abs_logit_diff"
        accuracy = artifact.get("quality", artifact.get("accuracy"))
        rows.append({"artifact": name, **scenarios, "dev_accuracy": accuracy,
                     "size_mb": round(artifact["size_bytes"] / 1e6, 1) if artifact else None,
                     "max_abs_logit_diff": artifact.get("max_abs_diff",
                                                        artifact.get("max_abs_logit_diff"))})
    return rows


def goals(training: list[dict], inference: list[dict], tasks: list[dict] = ()) -> list[dict]:
    """Each goal of the benchmark issues with the measured value and whether it is met."""
    rows = {r["recipe"]: r for r in training}
    task_runs = {r["recipe"]: r for r in tasks}
    latency = {r["artifact"]: r for r in inference}
    found = []

    def goal(text: str, value: float | None, target: float, higher: bool = True) -> None:
        met = None if value is None else (value >= target if higher else value <= target)
        found.append({"goal": text, "value": value, "target": target, "met": met})

    for recipe, target in (("hf-dynamic", 2.0), ("hf-padded", 4.0), ("keras-hub", 4.0)):
        if recipe in rows:
            goal(f"training examples/s, tfsft / {recipe}", rows[recipe]["tfsft_speedup"], target)
    if "hf-dynamic" in rows:
        goal("end-to-end wall time, hf-dynamic / tfsft", rows["hf-dynamic"]["tfsft_wall_speedup"],
             2.0)
    if "tfsft" in rows:
        best_peer = max((r["dev_accuracy"] for r in training if r["recipe"] in PEERS),
                        default=None)
        goal("dev accuracy, tfsft - best peer (points)",
             None if best_peer is None else round(100 * (rows["tfsft"]["dev_accuracy"]
                                                        - best_peer), 2), 0.0)
    for recipe in OWN:
        if recipe in rows:
            mfu = rows[recipe]["mfu"]
            goal(f"model FLOPs utilization of {recipe} training, {rows[recipe]['precision']} "
                 "matmul peak (%)", None if mfu is None else round(100 * mfu, 1), 40.0)
    saved, optimized = latency.get("savedmodel"), latency.get("onnx optimized")
    int8 = latency.get("onnx int8-dynamic")
    if saved and optimized:
        goal("batch 1 latency, SavedModel / ONNX optimized",
             _ratio(saved["b1_real"], optimized["b1_real"]), 3.0)
    if optimized and int8:
        goal("batch 32 latency, ONNX optimized / ONNX int8",
             _ratio(optimized["b32_real"], int8["b32_real"]), 1.3)
        if optimized["dev_accuracy"] is not None and int8["dev_accuracy"] is not None:
            goal("dev accuracy loss of ONNX int8 (points)",
                 round(100 * (optimized["dev_accuracy"] - int8["dev_accuracy"]), 2), 1.0,
                 higher=False)
    own, peer = task_runs.get("regression-tfsft"), task_runs.get("regression-hf")
    if own:
        goal("regression held-out Pearson (VADER tweets)", round(own["metrics"]["pearson"], 4),
             0.85)
    if own and peer:
        goal("regression held-out Pearson, tfsft - HF-TF peer (x100)",
             round(100 * (own["metrics"]["pearson"] - peer["metrics"]["pearson"]), 2), 0.0)
    own, peer = task_runs.get("ner-tfsft"), task_runs.get("ner-hf")
    if own:
        goal("NER entity F1 on CoNLL valid.txt", round(own["metrics"]["valid_f1"], 4), 0.85)
    if own and peer:
        goal("NER valid F1, tfsft - HF-TF peer (points)",
             round(100 * (own["metrics"]["valid_f1"] - peer["metrics"]["valid_f1"]), 2), -0.5)
        goal("NER training examples/s, tfsft / HF-TF peer", peer["tfsft_speedup"], 2.0)
    for direction, (own_recipe, peer_recipe) in (
            ("train->dev", ("qa-tfsft", "qa-hf")),
            ("dev->train", ("qa-tfsft-dev-train", "qa-hf-dev-train"))):
        own, peer = task_runs.get(own_recipe), task_runs.get(peer_recipe)
        if own and peer:
            goal(f"QA F1 ({direction}), tfsft - HF-TF peer (points)",
                 round(own["metrics"]["f1"] - peer["metrics"]["f1"], 2), 0.0)
            goal(f"QA training windows/s ({direction}), tfsft / HF-TF peer",
                 peer["tfsft_speedup"], 2.0)
    return found


def quantization_lines(results: Path) -> list[str]:
    """The per task x format x variant table of ``benchmarks.quantization`` (when it ran)."""
    from benchmarks.quantization import markdown as quantization_table

    found = _load(results / "quantization.json")
    if not found:
        return []
    rows = [row for task in found["tasks"].values() for row in task]
    return [f"### Quantized exports per task, each against its gate (`python -m "
            f"benchmarks.quantization`, {_cpu(found.get('machine'))}; × = speed-up against fp32 "
            "of the same format, ONNX: the optimized graph)", "", quantization_table(rows), ""]


def markdown(training: list[dict], inference: list[dict], found: list[dict],
             hardware: dict | None, examples: int | None, profile: dict | None = None,
             tasks: list[dict] = (), quantization: list[str] = ()) -> str:
    lines = []
    if training:
        lines += [f"### Training: {examples} SST-2 sentences, all-MiniLM-L6-v2, max_length "
                  f"{common.MAX_LENGTH}, batch {common.BATCH_SIZE}, 1 epoch", "",
                  "| recipe | precision | steps | examples/s | real tokens/s | tfsft speed-up | "
                  "wall s (load+tokenize+train) | tfsft wall speed-up | peak RSS MB | "
                  "SST-2 dev acc | MFU % |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in training:
            lines.append(
                f"| {r['name']} | {r['precision']} | {r['steps']} | "
                f"{r['examples_per_second']:.1f} | "
                f"{_fmt(r['tokens_per_second'], '{:.0f}')} | {_fmt(r['tfsft_speedup'], '{:.2f}x')} "
                f"| {r['wall_seconds']:.1f} | {_fmt(r['tfsft_wall_speedup'], '{:.2f}x')} | "
                f"{r['peak_rss_mb']:.0f} | {100 * r['dev_accuracy']:.2f} | "
                f"{_fmt(None if r['mfu'] is None else 100 * r['mfu'], '{:.1f}')} |")
        lines.append("")
    if hardware:
        peaks = [f"{m['dtype'] if 'dtype' in m else 'float32'} best {m['best_gflops']} GFLOP/s "
                 f"(median {m['median_gflops']})"
                 for m in (hardware.get("matmul"), hardware.get("matmul_bf16")) if m]
        size = hardware["matmul"]["size"]
        lines += [f"Matmul throughput ({size}x{size}, TensorFlow): {'; '.join(peaks)}. "
                  "MFU = examples/s x training FLOPs per example (real token counts) / best "
                  "matmul GFLOP/s of the precision the run's matmuls used.", ""]
    if profile:
        step = {dtype: m["step"] for dtype, m in profile["matmul"].items()}
        update = profile["adamw_update"]
        lines += [f"Profile (`python -m benchmarks.profile`): the matmuls of one training step "
                  f"({profile['tokens_per_batch']} tokens), timed alone, take "
                  + " and ".join(f"{m['ms']} ms in {d} ({m['gflops']} GFLOP/s)"
                                 for d, m in step.items())
                  + f"; one AdamW update of the {update['parameters']:,} weights takes "
                  f"{update['tfsft_fused_adamw_ms']} ms (keras.optimizers.AdamW: "
                  f"{update['keras_adamw_ms']} ms).", ""]
    if tasks:
        lines += ["### Tasks against their Hugging Face peer (same weights, data, split, epochs "
                  "and optimizer; `python -m benchmarks.tasks`)", "",
                  "| task | recipe | data | epochs | precision | examples/s | tfsft speed-up | "
                  "wall s | peak RSS MB | held-out metrics | CPU |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in tasks:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
            lines.append(f"| {r['task']} | {r['name']} | {r['data']} | {r['epochs']} | "
                         f"{r['precision']} | {r['examples_per_second']:.2f} | "
                         f"{_fmt(r['tfsft_speedup'], '{:.2f}x')} | {r['wall_seconds']:.1f} | "
                         f"{r['peak_rss_mb']:.0f} | {scores} | {r['cpu']} |")
        lines.append("")
    if inference:
        lines += ["### Inference latency (median ms; SST-2 dev sentences at real lengths, or "
                  "padded to 128)", "",
                  "| artifact | b1 real | b32 real | b1 @128 | b32 @128 | SST-2 dev acc | size MB |",
                  "|---|---|---|---|---|---|---|"]
        for r in inference:
            lines.append(
                f"| {r['artifact']} | {r['b1_real']:.2f} | {r['b32_real']:.1f} | "
                f"{r['b1_128']:.2f} | {r['b32_128']:.1f} | "
                f"{_fmt(None if r['dev_accuracy'] is None else 100 * r['dev_accuracy'])} | "
                f"{_fmt(r['size_mb'], '{:.1f}')} |")
        lines.append("")
    lines += quantization
    if found:
        lines += ["### Goals", "", "| goal | measured | target | met |", "|---|---|---|---|"]
        for g in found:
            met = "-" if g["met"] is None else ("yes" if g["met"] else "no")
            lines.append(f"| {g['goal']} | {_fmt(g['value'])} | "
                         f"{'>=' if 'loss' not in g['goal'] else '<='} {g['target']} | {met} |")
        lines.append("")
    return "\n".join(lines)


def chart(training: list[dict], inference: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    if training:
        names = [r["recipe"] for r in training]
        axes[0].barh(names, [r["examples_per_second"] for r in training], color="tab:blue")
        axes[0].set_xlabel("training examples/s (higher is better)")
        axes[0].invert_yaxis()
    if inference:
        names = [r["artifact"] for r in inference]
        positions = range(len(names))
        axes[1].barh([p - 0.2 for p in positions], [r["b1_real"] for r in inference], height=0.4,
                     label="batch 1")
        axes[1].barh([p + 0.2 for p in positions], [r["b32_real"] / 32 for r in inference],
                     height=0.4, label="batch 32, per example")
        axes[1].set_yticks(list(positions), names)
        axes[1].set_xlabel("ms at real SST-2 lengths (lower is better)")
        axes[1].invert_yaxis()
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: Path, total_seconds: float | None = None, docs: Path | None = None) -> str:
    """Write ``summary.json``, ``benchmarks.md`` and ``benchmarks.png``; return the markdown."""
    from tfsft.io_utils import atomic_write_json, atomic_write_text

    hardware = _load(results / "hardware.json")
    training, mine = training_rows(results, hardware)
    inference = inference_rows(results)
    tasks = task_rows(results)
    found = goals(training, inference, tasks)
    examples = mine["examples"] if mine else None
    profile = _load(results / "profile.json")
    table = markdown(training, inference, found, hardware, examples, profile, tasks,
                     quantization_lines(results))
    machine = hardware["machine"] if hardware else common.machine()
    atomic_write_json(results / "summary.json", {
        "machine": machine,
        "matmul": hardware["matmul"] if hardware else None,
        "matmul_bf16": hardware.get("matmul_bf16") if hardware else None, "training": training,
        "profile": profile, "inference": inference, "tasks": tasks, "goals": found,
        "total_seconds": total_seconds, "date": time.strftime("%Y-%m-%d")})
    atomic_write_text(results / "benchmarks.md", table + "\n")
    chart(training, inference, results / "benchmarks.png")
    if docs is not None:
        minutes = f"{total_seconds / 60:.0f} minutes" if total_seconds else "?"
        atomic_write_text(
            docs, "# Benchmarks\n\n"
            "Reproduce (SST-2 from `../shared/data`, or set `TFSFT_BENCHMARK_DATA`):\n\n"
            "```bash\nbash scripts/benchmark.sh            # = python -m benchmarks\n```\n\n"
            f"Last run: {time.strftime('%Y-%m-%d')}, {minutes} in all, on "
            f"{machine.get('cpu', '?')} ({machine.get('cpus')} CPUs, "
            f"{machine.get('memory_gb', '?')} GB), {machine.get('platform')}. "
            "Times on shared machines move by ±30 % from run to run; the ratios compare runs "
            "of the same benchmark invocation. Where the time goes, and what was tried: "
            "[performance.md](performance.md).\n\n" + table +
            "\n![chart](../benchmarks/results/benchmarks.png)\n")
    return table
