"""Whole training processes, start to exit: ``tfsft train`` against the HF-TF recipe.

    python -m benchmarks.process --pairs 3 --examples 2048 --out benchmarks/results/process.json

Each pair runs the ``tfsft train`` command line (its defaults: data check, fit with validation,
reports, model files) and the Hugging Face ``TFBertForSequenceClassification`` + tf-keras ``fit``
recipe with per-batch dynamic padding (``python -m benchmarks.training hf-dynamic``), one after
the other, alternating which goes first. Both train all-MiniLM-L6-v2 on the same SST-2 rows for
one epoch (batch 32, max_length 128) and validate on SST-2 dev. Wall time is measured from the
fork to the exit, CPU time from the child's resource usage (user + system), so ``cpu / wall``
says how busy the cores were on average. The table gives medians and the ratio peer / tfsft.

Also per recipe: the fixed costs (process wall time less the steady training steps: imports,
loading, tracing, validation, reports, saving), the cores' use over the steady steps (tfsft's
``run.json``), the steady examples/s and MFU (model FLOPs of the real tokens per second over
this machine's best 2048^2 matmul rate in the precision the recipe trained in), SST-2 dev
accuracy, and tfsft's own account of where its time went (``run.json`` ``seconds``). The CPU
model and its matmul-relevant flags head the output.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common


def timed(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall and CPU seconds of one child process (``os.wait4`` rusage)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr.decode()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_per_wall": round(cpu / wall, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def commands(folder: Path, examples: int) -> dict[str, list[str]]:
    texts, labels = common.sst2_sample(examples)
    dev_texts, dev_labels = common.sst2_dev()
    common.write_tsv(folder / "train.tsv", texts, labels)
    common.write_tsv(folder / "dev.tsv", dev_texts, dev_labels)
    tfsft = Path(sys.executable).with_name("tfsft")
    return {
        "tfsft train": [str(tfsft), "train", "--model", "minilm-l6",
                        "--train", str(folder / "train.tsv"), "--validation",
                        str(folder / "dev.tsv"), "--text-column", "sentence",
                        "--output-dir", str(folder / "run"), "--overwrite", "--epochs", "1",
                        "--batch-size", str(common.BATCH_SIZE),
                        "--max-length", str(common.MAX_LENGTH), "--seed", str(common.SEED)],
        "hf-dynamic": [sys.executable, "-m", "benchmarks.training", "hf-dynamic",
                       "--examples", str(examples), "--out", str(folder / "hf.json")],
    }


def tfsft_details(run_dir: Path) -> dict:
    """What ``tfsft train`` recorded about its own time (``run.json``)."""
    summary = json.loads((run_dir / "run.json").read_text())
    seconds = summary["seconds"]
    steps = summary["steps_per_epoch"] * summary["epochs_run"]
    return {"dev_accuracy": summary["validation"]["accuracy"], "precision": summary["precision"],
            "steady_s": seconds["steady_steps"], "steady_steps": steps - summary["epochs_run"],
            "steps": steps, "steady_cpu_per_wall": summary["steady_cpu_per_wall"],
            "seconds": seconds}


def hf_details(result_file: Path) -> dict:
    """What the HF-TF recipe recorded (``benchmarks.training``): its steady steps are those
    after the first ``WARMUP_STEPS``; their rate stands for every step but the first."""
    result = json.loads(result_file.read_text())
    per_step = result["steady_seconds"] / result["steady_steps"]
    return {"dev_accuracy": result["dev_accuracy"], "precision": result["precision"],
            "steady_s": round(per_step * (result["steps"] - 1), 3),
            "steady_steps": result["steps"] - 1, "steps": result["steps"]}


def training_flops(examples: int) -> float:
    """Model FLOPs of one epoch over the benchmark's SST-2 rows (real tokens, no padding)."""
    from benchmarks.hardware import per_example_training_flops
    from tfsft.models.checkpoints import resolve_checkpoint
    from tfsft.tokenization import WordPieceTokenizer

    texts, _ = common.sst2_sample(examples)
    tokenizer = WordPieceTokenizer.from_pretrained(resolve_checkpoint("minilm-l6"),
                                                   max_length=common.MAX_LENGTH)
    lengths = tokenizer.encode(texts, max_length=common.MAX_LENGTH)["padding_mask"]
    config = json.loads((resolve_checkpoint("minilm-l6") / "config.json").read_text())
    return float(per_example_training_flops(
        lengths.numpy().sum(axis=1), config["num_hidden_layers"], config["hidden_size"],
        config["intermediate_size"]).sum())


def matmul_peaks() -> dict[str, float]:
    """This machine's best 2048^2 matmul GFLOP/s in float32 and bfloat16 (after the runs)."""
    from benchmarks.hardware import matmul_gflops

    return {"float32": matmul_gflops()["best_gflops"],
            "bfloat16": matmul_gflops(dtype="bfloat16")["best_gflops"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    machine = common.machine()
    print(f"CPU: {machine.get('cpu')} x {machine.get('cpus')}, flags "
          f"{' '.join(machine.get('cpu_flags', [])) or '-'}", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as folder:
        recipes = commands(Path(folder), args.examples)
        names = list(recipes)
        for pair in range(args.pairs):
            for name in names if pair % 2 == 0 else names[::-1]:
                result = timed(recipes[name], env)
                details = (tfsft_details(Path(folder) / "run") if name == "tfsft train"
                           else hf_details(Path(folder) / "hf.json"))
                result.update(details, fixed_s=round(result["wall_s"] - details["steady_s"], 2))
                runs.setdefault(name, []).append(result)
                print(f"pair {pair + 1} {name}: {result}", flush=True)
    flops = training_flops(args.examples)
    peaks = matmul_peaks()
    for results in runs.values():
        for r in results:
            rate = flops * r["steady_steps"] / r["steps"] / r["steady_s"] / 1e9
            peak = peaks["bfloat16" if "bfloat16" in r["precision"] else "float32"]
            r.update(steady_examples_per_s=round(
                args.examples * r["steady_steps"] / r["steps"] / r["steady_s"], 2),
                model_gflops_per_s=round(rate, 1), mfu=round(rate / peak, 4))
    numeric = ("wall_s", "cpu_s", "cpu_per_wall", "peak_rss_mb", "fixed_s", "steady_s",
               "steady_examples_per_s", "mfu", "dev_accuracy")
    medians = {name: {key: statistics.median(r[key] for r in results) for key in numeric}
               for name, results in runs.items()}
    for name, results in runs.items():
        if results[0].get("steady_cpu_per_wall") is not None:
            medians[name]["steady_cpu_per_wall"] = statistics.median(
                r["steady_cpu_per_wall"] for r in results)
        medians[name]["precision"] = results[0]["precision"]
    ratio = medians["hf-dynamic"]["wall_s"] / medians["tfsft train"]["wall_s"]
    ratios = sorted(h["wall_s"] / t["wall_s"]
                    for h, t in zip(runs["hf-dynamic"], runs["tfsft train"], strict=True))
    print(f"\nCPU: {machine.get('cpu')}; matmul peak GFLOP/s: float32 {peaks['float32']}, "
          f"bfloat16 {peaks['bfloat16']}; medians of {args.pairs} alternating pairs")
    print("| process | precision | wall s | cpu s | cpu / wall | cpu / wall, steady steps | "
          "fixed s | steady ex/s | MFU | dev acc | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, m in medians.items():
        busy = m.get("steady_cpu_per_wall")
        print(f"| {name} | {m['precision']} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | "
              f"{m['cpu_per_wall']:.2f} | {'-' if busy is None else f'{busy:.2f}'} | "
              f"{m['fixed_s']:.1f} | {m['steady_examples_per_s']:.1f} | {100 * m['mfu']:.1f} % | "
              f"{m['dev_accuracy']:.4f} | {m['peak_rss_mb']:.0f} |")
    print(f"| ratio hf-dynamic / tfsft (wall) | {ratio:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) |"
          " | | | | | | | | |")
    spent = {key: statistics.median(r["seconds"][key] or 0.0 for r in runs["tfsft train"])
             for key in runs["tfsft train"][0]["seconds"]}
    print("tfsft train, median seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in spent.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": machine, "examples": args.examples, "pairs": args.pairs,
        "matmul_peak_gflops": peaks, "training_gflops_per_epoch": round(flops / 1e9, 1),
        "runs": runs, "medians": medians, "tfsft_seconds_median": spent,
        "wall_ratio_hf_over_tfsft": round(ratio, 3),
        "pair_ratios": [round(r, 3) for r in ratios]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
