"""Low-data augmentation: SST-2 dev accuracy with and without ``--augment``, over seeds.

    python -m benchmarks.augmentation                     # 500 rows, --augment 4, seeds 42 1 2
    python -m benchmarks.augmentation --rows 1000 --copies 8

Each seed draws ``--rows`` SST-2 training sentences; ``tfsft train`` runs at its defaults (its
own seeded 10 % validation split, for early stopping) once as it is and once with
``--augment COPIES`` (every method), each in a process of its own, and ``tfsft evaluate`` scores
both on all of ``dev.tsv``. The table gives mean ± standard deviation (ddof 1) of dev accuracy
and macro-F1 and the difference; per-run results are kept in ``--results`` (resumable) and in
``summary.json`` with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.common import DATA, RESULTS, machine, sst2_sample, write_tsv


def run_one(folder: Path, train: Path, name: str, extra: list[str], seed: int) -> dict:
    result_file = folder / f"{name}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    tfsft = [sys.executable, "-m", "tfsft.cli"]
    run_dir = folder / f"run_{name}"
    subprocess.run([*tfsft, "train", "--model", "minilm-l6", "--train", str(train),
                    "--text-column", "sentence", "--output-dir", str(run_dir), "--seed",
                    str(seed), "--overwrite", *extra], check=True)
    out = subprocess.run([*tfsft, "evaluate", str(run_dir), "--data", str(DATA / "dev.tsv"),
                          "--text-column", "content"], check=True, capture_output=True,
                         text=True).stdout
    metrics = json.loads(out)
    scores = {"accuracy": metrics["accuracy"], "f1_macro": metrics["f1_macro"]}
    augmented = run_dir / "augmented.jsonl"
    if augmented.exists():
        scores["generated"] = sum(1 for _ in augmented.open())
    result_file.write_text(json.dumps(scores, indent=2))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--results", type=Path, default=RESULTS / "augmentation")
    args = parser.parse_args(argv)
    rows = {"plain": [], f"augment {args.copies}": []}
    for seed in args.seeds:
        folder = args.results / f"seed{seed}_rows{args.rows}"
        folder.mkdir(parents=True, exist_ok=True)
        train = folder / "train.tsv"
        texts, labels = sst2_sample(args.rows, seed)
        write_tsv(train, texts, labels)
        rows["plain"].append(run_one(folder, train, "plain", [], seed))
        rows[f"augment {args.copies}"].append(run_one(
            folder, train, f"augment{args.copies}", ["--augment", str(args.copies)], seed))
    summary = {"machine": machine(), "seeds": args.seeds, "rows": args.rows,
               "copies": args.copies, "results": {}}
    print("| recipe | dev accuracy | dev macro-F1 | Δ accuracy |")
    print("|---|---|---|---|")
    base = statistics.mean(r["accuracy"] for r in rows["plain"])
    for name, results in rows.items():
        row = {}
        for key in ("accuracy", "f1_macro"):
            values = [r[key] for r in results]
            row[key] = {"mean": statistics.mean(values), "values": values,
                        "std": statistics.stdev(values) if len(values) > 1 else 0.0}
        summary["results"][name] = row
        print(f"| {name} | {100 * row['accuracy']['mean']:.2f} ± "
              f"{100 * row['accuracy']['std']:.2f} | {100 * row['f1_macro']['mean']:.2f} ± "
              f"{100 * row['f1_macro']['std']:.2f} | "
              f"{100 * (row['accuracy']['mean'] - base):+.2f} |")
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"CPU: {summary['machine'].get('cpu')}; results in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
