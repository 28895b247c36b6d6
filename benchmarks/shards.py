"""Pre-tokenized shards at scale: memory of ``tfsft preprocess`` and of training from the shards,
and the shard pipeline's speed against the training step rate.

    python -m benchmarks.shards --rows 1000000 --out benchmarks/results/shards.json

All 67,349 SST-2 training sentences are repeated to ``--rows`` rows in a TSV file. Under
``/usr/bin/time -v`` (peak resident memory of the process):

1. ``tfsft preprocess`` of that file into 16 shards (max_length 64);
2. ``tfsft train --train SHARDS`` for ``--steps`` steps of 32 rows (``--max-train-rows``), validated
   on SST-2 dev;
3. the same training from shards of SST-2 itself (67,349 rows): memory must not grow with the
   data, so the two peaks should be alike;
4. the peer: the same training from the TSV file itself (which reads the whole file into memory).

Then, in this process, the shard pipeline alone (``tfsft.data.shards.shard_dataset``, the
batches ``fit`` gets) is timed over ``--pipeline-batches`` batches and compared with the training
step rate of run 2 (steps after the first). The table prints ratios; the JSON records the CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common

BATCH = 32
MAX_LENGTH = 64
SHARDS = 16


def replicate(rows: int, path: Path) -> int:
    """Write SST-2 train repeated (and cut) to ``rows`` rows; returns the source row count."""
    lines = (common.DATA / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, body = lines[0], lines[1:]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(header + "\n")
        for i in range(rows):
            handle.write(body[i % len(body)] + "\n")
    return len(body)


def timed(command: list[str]) -> dict[str, Any]:
    """Run ``command`` under ``/usr/bin/time -v``: wall seconds, peak RSS, its JSON output."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-4000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)",
                                           done.stderr))
    printed = done.stdout.strip().splitlines()
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "peak_rss_mb": round(int(rss.group(1)) / 1024, 1) if rss else None,
            "output": json.loads(printed[-1]) if printed else None}


def train_command(train: Path, run_dir: Path, steps: int) -> list[str]:
    return [sys.executable, "-m", "tfsft.cli", "train", "--train", str(train),
            "--validation", str(common.DATA / "dev.tsv"), "--validation-text-column",
            "content", "--text-column", "sentence", "--max-length", str(MAX_LENGTH),
            "--max-train-rows", str(steps * BATCH), "--batch-size", str(BATCH),
            "--epochs", "1", "--seed", "42", "--no-tensorboard", "--model", "minilm-l6",
            "--output-dir", str(run_dir)]


def pipeline_rate(shards: Path, batches: int) -> dict[str, float]:
    """Batches per second of the shard pipeline alone (after 20 warm-up batches)."""
    from tfsft.data.shards import read_manifest, shard_dataset

    dataset = shard_dataset(read_manifest(shards), BATCH, seed=42)
    iterator = iter(dataset)
    for _ in range(20):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    return {"batches": batches, "seconds": round(seconds, 2),
            "batches_per_second": round(batches / seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--pipeline-batches", type=int, default=2000)
    parser.add_argument("--no-peer", action="store_true",
                        help="skip training from the TSV file itself")
    parser.add_argument("--out", type=Path, default=common.RESULTS / "shards.json")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"machine": common.machine(), "rows": args.rows,
                               "steps": args.steps, "batch_size": BATCH,
                               "max_length": MAX_LENGTH, "shards": SHARDS}
    with tempfile.TemporaryDirectory(prefix="tfsft-shards-bench-") as folder:
        work = Path(folder)
        data = work / "train.tsv"
        results["source_rows"] = replicate(args.rows, data)
        results["file_mb"] = round(data.stat().st_size / 2**20, 1)
        results["preprocess"] = timed([
            sys.executable, "-m", "tfsft.cli", "preprocess", "--train", str(data),
            "--output", str(work / "shards"), "--text-column", "sentence", "--max-length",
            str(MAX_LENGTH), "--shards", str(SHARDS), "--no-progress"])
        results["preprocess"]["rows_per_second"] = round(args.rows / results["preprocess"]
                                                         ["wall_s"], 1)
        results["preprocess_sst2"] = timed([
            sys.executable, "-m", "tfsft.cli", "preprocess", "--train",
            str(common.DATA / "train.tsv"), "--output", str(work / "shards-sst2"),
            "--text-column", "sentence", "--max-length", str(MAX_LENGTH), "--shards",
            str(SHARDS), "--no-progress"])
        runs = {"shards": work / "shards", "sst2_shards": work / "shards-sst2"} | (
            {} if args.no_peer else {"file": data})
        for name, train in runs.items():
            run_dir = work / f"run-{name}"
            results[f"train_from_{name}"] = timed(train_command(train, run_dir, args.steps))
            summary = json.loads((run_dir / "run.json").read_text())
            results[f"train_from_{name}"].update(
                accuracy=round(summary["validation"]["accuracy"], 4),
                optimizer_steps=summary["optimizer_steps"],
                examples_per_second=summary["train_examples_per_second_after_first_step"][0])
        results["pipeline"] = pipeline_rate(work / "shards", args.pipeline_batches)
    steps_per_second = results["train_from_shards"]["examples_per_second"] / BATCH
    results["training_steps_per_second"] = round(steps_per_second, 3)
    results["pipeline_over_training"] = round(
        results["pipeline"]["batches_per_second"] / steps_per_second, 1)

    rows = [("preprocess", results["preprocess"]),
            ("train from shards", results["train_from_shards"]),
            ("preprocess SST-2 (67k rows)", results["preprocess_sst2"]),
            ("train from SST-2 shards", results["train_from_sst2_shards"])]
    if not args.no_peer:
        rows.append(("train from the file (peer)", results["train_from_file"]))
    print(f"{args.rows:,} rows, {results['machine'].get('cpu')} "
          f"({results['machine'].get('cpus')} CPUs)")
    print(f"{'run':<28} {'wall s':>8} {'cpu s':>8} {'peak RSS MB':>12}")
    for name, row in rows:
        print(f"{name:<28} {row['wall_s']:>8} {row['cpu_s']:>8} {row['peak_rss_mb']:>12}")
    print(f"peak RSS training, {args.rows:,}-row shards / 67k-row shards: "
          f"{results['train_from_shards']['peak_rss_mb'] / results['train_from_sst2_shards']['peak_rss_mb']:.2f}")  # noqa: E501
    if not args.no_peer:
        print(f"peak RSS, shards / file: {results['train_from_shards']['peak_rss_mb'] / results['train_from_file']['peak_rss_mb']:.2f}")  # noqa: E501
    print(f"shard pipeline {results['pipeline']['batches_per_second']} batches/s vs training "
          f"{steps_per_second:.2f} steps/s: {results['pipeline_over_training']}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
