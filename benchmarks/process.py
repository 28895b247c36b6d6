"""Whole training processes, start to exit: ``tfsft train`` against the HF-TF recipe.

    python -m benchmarks.process --pairs 3 --examples 2048 --out benchmarks/results/process.json

Each pair runs the ``tfsft train`` command line (its defaults: data check, fit with validation,
reports, model files) and the Hugging Face ``TFBertForSequenceClassification`` + tf-keras ``fit``
recipe with per-batch dynamic padding (``python -m benchmarks.training hf-dynamic``), one after
the other, alternating which goes first. Both train all-MiniLM-L6-v2 on the same SST-2 rows for
one epoch (batch 32, max_length 128) and validate on SST-2 dev. Wall time is measured from the
fork to the exit, CPU time from the child's resource usage (user + system), so ``cpu / wall``
says how busy the cores were on average. The table gives medians and the ratio peer / tfsft.
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--examples", type=int, default=2048)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        recipes = commands(Path(folder), args.examples)
        names = list(recipes)
        for pair in range(args.pairs):
            for name in names if pair % 2 == 0 else names[::-1]:
                result = timed(recipes[name], env)
                runs.setdefault(name, []).append(result)
                print(f"pair {pair + 1} {name}: {result}", flush=True)
    medians = {name: {key: statistics.median(r[key] for r in results) for key in results[0]}
               for name, results in runs.items()}
    ratio = medians["hf-dynamic"]["wall_s"] / medians["tfsft train"]["wall_s"]
    ratios = sorted(h["wall_s"] / t["wall_s"]
                    for h, t in zip(runs["hf-dynamic"], runs["tfsft train"], strict=True))
    print("| process | wall s (median) | cpu s (median) | cpu / wall | peak RSS MB |")
    print("|---|---|---|---|---|")
    for name, m in medians.items():
        print(f"| {name} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['cpu_per_wall']:.2f} | "
              f"{m['peak_rss_mb']:.0f} |")
    print(f"| ratio hf-dynamic / tfsft | {ratio:.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}) | | | |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": common.machine(), "examples": args.examples, "pairs": args.pairs,
        "runs": runs, "medians": medians, "wall_ratio_hf_over_tfsft": round(ratio, 3),
        "pair_ratios": [round(r, 3) for r in ratios]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
