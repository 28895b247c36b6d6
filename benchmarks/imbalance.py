"""Imbalanced labels: macro-F1 of the plain recipe against each remedy, on a 1:20 SST-2 draw.

    python -m benchmarks.imbalance                    # seeds 42 1 2
    python -m benchmarks.imbalance --seeds 42 --negatives 1000

Each seed draws ``--negatives`` negative and one twentieth as many positive SST-2 training
phrases for training, and a validation set of the same 1:20 mix from other training rows (for
early stopping and a tuned threshold). Every row is one ``tfsft train`` at the defaults plus
one remedy, in a process of its own:

- ``plain``: the defaults;
- ``class weights``: ``--class-weight balanced``;
- ``oversample``: ``--sampling oversample`` (class-balanced epochs);
- ``focal``: ``--loss focal`` (gamma 2);
- ``tuned threshold``: ``--decision-threshold tune`` (positive F1 on validation).

Scored with ``tfsft evaluate`` on SST-2's labelled test sentences (full sentences, none in
training): all of their negatives and a fixed 1:20 draw of their positives (the imbalance the
model was trained for; the headline) and the whole balanced test set. The table gives mean ±
standard deviation (ddof 1) over seeds and each row's difference to ``plain``; results are kept
per run in ``--results`` (resumable) and in ``summary.json`` with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import DATA, RESULTS, machine, read_tsv, write_tsv

REMEDIES = {
    "plain": [],
    "class weights": ["--class-weight", "balanced"],
    "oversample": ["--sampling", "oversample"],
    "focal": ["--loss", "focal"],
    "tuned threshold": ["--decision-threshold", "tune"],
}
RATIO = 20


def draw(texts: list[str], labels: list[int], negatives: int, seed: int,
         exclude: set[int] = frozenset()) -> list[int]:
    """Indices of ``negatives`` negative and ``negatives // RATIO`` positive rows."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label, count in ((0, negatives), (1, max(1, negatives // RATIO))):
        pool = [i for i, y in enumerate(labels) if y == label and i not in exclude]
        chosen += rng.choice(pool, count, replace=False).tolist()
    rng.shuffle(chosen)
    return chosen


def prepare(folder: Path, negatives: int, seed: int) -> dict[str, Path]:
    texts, labels = read_tsv(DATA / "train.tsv", "sentence")
    train = draw(texts, labels, negatives, seed)
    validation = draw(texts, labels, negatives // 2, seed + 1000, set(train))
    files = {"train": folder / "train.tsv", "validation": folder / "validation.tsv"}
    for name, rows in (("train", train), ("validation", validation)):
        write_tsv(files[name], [texts[i] for i in rows], [labels[i] for i in rows])
    test_texts, test_labels = read_tsv(DATA / "test.tsv", "content")
    negatives_test = [i for i, y in enumerate(test_labels) if y == 0]
    positives = [i for i, y in enumerate(test_labels) if y == 1]
    kept = negatives_test + np.random.default_rng(0).choice(
        positives, len(negatives_test) // RATIO, replace=False).tolist()
    files["test 1:20"] = folder / "test_1in20.tsv"
    write_tsv(files["test 1:20"], [test_texts[i] for i in kept], [test_labels[i] for i in kept])
    files["test balanced"] = folder / "test.tsv"
    write_tsv(files["test balanced"], test_texts, test_labels)
    return files


def run_one(folder: Path, files: dict[str, Path], name: str, seed: int) -> dict[str, float]:
    result_file = folder / f"{name.replace(' ', '_')}.json"
    if result_file.exists():
        return json.loads(result_file.read_text())
    run_dir = folder / f"run_{name.replace(' ', '_')}"
    tfsft = [sys.executable, "-m", "tfsft.cli"]
    subprocess.run([*tfsft, "train", "--model", "minilm-l6", "--train", str(files["train"]),
                    "--validation", str(files["validation"]), "--text-column", "sentence",
                    "--output-dir", str(run_dir), "--seed", str(seed), "--max-length", "64",
                    "--overwrite", *REMEDIES[name]], check=True)
    scores = {}
    for split in ("test 1:20", "test balanced"):
        out = subprocess.run([*tfsft, "evaluate", str(run_dir), "--data", str(files[split]),
                              "--text-column", "sentence"], check=True, capture_output=True,
                             text=True).stdout
        metrics = json.loads(out)
        scores[f"{split} f1_macro"] = metrics["f1_macro"]
        scores[f"{split} positive f1"] = metrics["per_class"]["1"]["f1"]
    result_file.write_text(json.dumps(scores, indent=2))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--negatives", type=int, default=2000)
    parser.add_argument("--only", nargs="+", choices=list(REMEDIES))
    parser.add_argument("--results", type=Path, default=RESULTS / "imbalance")
    args = parser.parse_args(argv)
    names = args.only or list(REMEDIES)
    scores: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for seed in args.seeds:
        folder = args.results / f"seed{seed}_n{args.negatives}"
        folder.mkdir(parents=True, exist_ok=True)
        files = prepare(folder, args.negatives, seed)
        for name in names:
            scores[name].append(run_one(folder, files, name, seed))
    keys = list(scores[names[0]][0])
    summary = {"machine": machine(), "seeds": args.seeds, "negatives": args.negatives,
               "ratio": f"1:{RATIO}", "rows": {}}
    print(f"| remedy | {' | '.join(keys)} | Δ macro-F1 (1:20) vs plain |")
    print("|---|" + "---|" * (len(keys) + 1))
    base = statistics.mean(s["test 1:20 f1_macro"] for s in scores.get("plain", [])) \
        if "plain" in scores else None
    for name in names:
        row = {}
        cells = []
        for key in keys:
            values = [s[key] for s in scores[name]]
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            row[key] = {"mean": mean, "std": spread, "values": values}
            cells.append(f"{100 * mean:.2f} ± {100 * spread:.2f}")
        delta = row["test 1:20 f1_macro"]["mean"] - base if base is not None else None
        row["delta_vs_plain"] = delta
        summary["rows"][name] = row
        print(f"| {name} | {' | '.join(cells)} | "
              f"{'-' if delta is None else f'{100 * delta:+.2f}'} |")
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"CPU: {summary['machine'].get('cpu')}; results in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
