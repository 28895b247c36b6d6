"""Run every benchmark on this machine: ``python -m benchmarks [--examples 2048]``.

Steps (each in its own process, so memory and Keras flavours stay apart): fp32 and bf16 matmul
throughput; the profile of ``benchmarks.profile``; one epoch of the five training recipes of
``benchmarks.training`` on the same SST-2 sample; export of the tfsft run to SavedModel / TFLite /
ONNX (verified on SST-2 dev); the HF-TF peer's SavedModel; inference latency of all of them;
the task recipes of ``benchmarks.tasks`` (regression on VADER tweets) against their HF peers;
causal-LM training tokens/s (``benchmarks.causal_lm_speed``) against keras-hub's own fit;
with ``--quantization``, every quantized variant of five tasks against its gate
(``benchmarks.quantization``; the report shows its last results either way).
Writes ``benchmarks/results/*.json``, ``results/benchmarks.md``, ``results/benchmarks.png`` and
``docs/benchmarks.md``. Nothing here asserts a time; the tables give ratios against the peers
measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common, report
from benchmarks.tasks import RECIPES as TASK_RECIPES
from benchmarks.training import RECIPES


def _python(*args: str, log: Path) -> None:
    """Run ``python -m ARGS`` quietly; on failure show the end of its log."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run([sys.executable, "-m", *args], stdout=handle,
                              stderr=subprocess.STDOUT, env=env, cwd=common.REPO, check=False)
    print(f"  {' '.join(args[:2])}: {time.perf_counter() - started:.0f} s", flush=True)
    if done.returncode:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"{' '.join(args)} failed (exit {done.returncode}); log {log}:\n{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2048,
                        help="SST-2 training sentences per recipe (default 2048)")
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help=f"comma-separated subset of {','.join(RECIPES)}")
    parser.add_argument("--tasks", default=",".join(r for r in TASK_RECIPES
                                                    if not r.startswith("qa")),
                        help=f"comma-separated subset of {','.join(TASK_RECIPES)}, or none "
                             "(default: all but the qa recipes, which take about an hour on "
                             "2 cores; their earlier results stay in the report)")
    parser.add_argument("--no-causal-lm", action="store_true",
                        help="leave out the causal-LM training recipes (SmolLM2-135M, LoRA and "
                             "full fine-tuning against keras-hub's Llama3CausalLM.fit)")
    parser.add_argument("--quantization", action="store_true",
                        help="also run benchmarks.quantization (five tasks, each variant "
                             "against its gate; about an hour on 2 cores); its last results "
                             "stay in the report otherwise")
    parser.add_argument("--results", type=Path, default=common.RESULTS)
    parser.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if not (common.DATA / "train.tsv").exists():
        raise SystemExit(f"SST-2 not found in {common.DATA}; set TFSFT_BENCHMARK_DATA to the "
                         "folder that holds sst2/train.tsv and sst2/dev.tsv")
    recipes = args.recipes.split(",")
    results, work = args.results, args.results / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()

    print("matmul throughput, and a step's matmuls and AdamW update alone", flush=True)
    _python("benchmarks.hardware", "--out", str(results / "hardware.json"), log=work / "hardware.log")
    _python("benchmarks.profile", "--out", str(results / "profile.json"), log=work / "profile.log")
    print(f"training, {args.examples} SST-2 sentences, 1 epoch", flush=True)
    for recipe in recipes:
        extra = ["--run-dir", str(work / "tfsft-run")] if recipe == "tfsft" else []
        _python("benchmarks.training", recipe, "--examples", str(args.examples),
                "--out", str(results / f"training_{recipe}.json"), *extra,
                log=work / f"training_{recipe}.log")
    if "tfsft" in recipes:
        print("export and inference latency", flush=True)
        export_dir = work / "export"
        _python("tfsft.cli", "export", str(work / "tfsft-run"), "--format",
                "savedmodel,tflite,onnx", "--quantize", "int8-dynamic,int8-static", "--allow-mismatch",
                "--data", str(common.DATA / "dev.tsv"), "--text-column", "content",
                "--output", str(export_dir), log=work / "export.log")
        shutil.copy(export_dir / "export_report.json", results / "export_report.json")
        _python("benchmarks.inference", "--export-hf", str(work / "hf"), log=work / "hf.log")
        _python("benchmarks.inference", str(export_dir), str(work / "tfsft-run"),
                "--hf-savedmodel", str(work / "hf" / "saved_model" / "1"),
                "--out", str(results / "inference.json"), log=work / "inference.log")
    task_recipes = [r for r in args.tasks.split(",") if r and r != "none"]
    if task_recipes:
        print("tasks against their Hugging Face peers", flush=True)
    for recipe in task_recipes:
        _python("benchmarks.tasks", recipe, "--out", str(results / f"task_{recipe}.json"),
                log=work / f"task_{recipe}.log")
    if args.quantization:
        print("quantized exports per task against their gates", flush=True)
        _python("benchmarks.quantization", "--work", str(work / "quantization"), "--out",
                str(results / "quantization.json"), log=work / "quantization.log")
    if not args.no_causal_lm:
        from benchmarks import causal_lm_speed

        print("causal-LM training (SmolLM2-135M) against keras-hub", flush=True)
        for recipe in causal_lm_speed.RECIPES:
            _python("benchmarks.causal_lm_speed", recipe, "--out",
                    str(results / f"causal_lm_{recipe}.json"), log=work / f"causal_lm_{recipe}.log")
        print(causal_lm_speed.summarize(results))
    summary = report.write(results, total_seconds=time.perf_counter() - started,
                           docs=None if args.no_docs else common.REPO / "docs" / "benchmarks.md")
    print(summary)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
