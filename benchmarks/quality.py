"""Quality over seeds, tfsft against its Hugging Face peer, with ablations of tfsft's defaults.

    python -m benchmarks.quality                       # the quick plan, seeds 42 1 2
    python -m benchmarks.quality --plan full --seeds 42 1 2 3 4
    python -m benchmarks.quality --only regression     # one task's rows

Every row is a recipe of :mod:`benchmarks.tasks` (the same data, splits, batch size and
max_length for tfsft and the peer) trained once per seed, each in a process of its own. Rows:

- ``tfsft``: every tfsft default (``--precision auto``: mixed bfloat16 on a CPU with
  AVX512-BF16 or AMX; linear decay after 10 % warm-up, weight decay 0.01, clipping at 1.0,
  length-grouped batches, the best epoch kept);
- ``tfsft fp32``: the same in float32, the peer's precision;
- ``tfsft constant lr``: constant learning rate, no warm-up, no weight decay (the recipe of the
  transformers TF examples);
- ``tfsft last epoch``: no early stopping, so the last epoch's weights, as the peer;
- ``tfsft constant schedule``, ``no warm-up``, ``no weight decay``, ``no clipping``, ``lr 1e-4``:
  one difference from the defaults each (the ablation);
- ``hf``: the transformers TF recipe of :mod:`benchmarks.tasks` (the same schedule as tfsft's
  defaults, float32, random batches padded per batch, the last epoch).

Plans: ``quick`` (about an hour on 2 cores) runs VADER regression (3 epochs, 80/20 split) and
CoNLL-2003 NER on its first 4,000 training sentences (2 epochs, scored on all of
``valid.txt``); ``full`` adds NER on all 14,041 sentences and SQuAD-sample QA (dev -> train).
Results are kept per run in ``--results`` (default ``benchmarks/results/quality/``): an
interrupted benchmark resumes where it stopped, and ``--seeds`` can grow later. The table gives
mean ± standard deviation (ddof 1) of each row's metric and its difference to the peer's mean;
``summary.json`` holds the same with the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import RESULTS, machine

TFSFT_VARIANTS = {
    "tfsft": [],
    "tfsft fp32": ["--precision", "float32"],
    "tfsft constant lr": ["--set", "lr_schedule=constant", "--set", "warmup_ratio=0",
                          "--set", "weight_decay=0"],
    "tfsft last epoch": ["--set", "early_stopping_patience=null"],
}
ABLATIONS = {  # one difference from the defaults each
    "tfsft constant schedule": ["--set", "lr_schedule=constant"],
    "tfsft no warm-up": ["--set", "warmup_ratio=0"],
    "tfsft no weight decay": ["--set", "weight_decay=0"],
    "tfsft no clipping": ["--set", "clipnorm=null"],
    "tfsft lr 1e-4": ["--set", "learning_rate=1e-4"],
}
TFSFT_VARIANTS.update(ABLATIONS)


@dataclass(frozen=True)
class Study:
    """One task on one data set: its tfsft and peer recipes and the metrics to report."""

    name: str
    tfsft: str
    peer: str
    metric: str
    also: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()
    variants: tuple[str, ...] = tuple(TFSFT_VARIANTS)  # every row, the ablation included

    def rows(self) -> dict[str, list[str]]:
        """The command-line arguments of each row (``benchmarks.tasks`` recipe first)."""
        rows = {v: [self.tfsft, *self.arguments, *TFSFT_VARIANTS[v]] for v in self.variants}
        return {**rows, "hf": [self.peer, *self.arguments]}


STUDIES = {
    "regression": Study("regression", "regression-tfsft", "regression-hf", "pearson",
                        ("spearman", "rmse")),
    "ner-4k": Study("ner-4k", "ner-tfsft", "ner-hf", "valid_f1", ("test_f1",),
                    ("--train-rows", "4000")),
    "ner": Study("ner", "ner-tfsft", "ner-hf", "valid_f1", ("test_f1",),
                 variants=("tfsft", "tfsft fp32")),
    "qa": Study("qa", "qa-tfsft-dev-train", "qa-hf-dev-train", "f1", ("exact_match",),
                variants=("tfsft", "tfsft fp32")),
}
PLANS = {"quick": ("regression", "ner-4k"), "full": ("regression", "ner-4k", "ner", "qa")}


@dataclass
class Row:
    study: Study
    name: str
    runs: list[dict] = field(default_factory=list)

    def values(self, metric: str) -> list[float]:
        return [float(run[metric]) for run in self.runs if run.get(metric) is not None]


def result_file(folder: Path, study: Study, row: str, seed: int) -> Path:
    return folder / f"{study.name}-{row.replace(' ', '-')}-seed{seed}.json"


def run_once(arguments: list[str], seed: int, out: Path) -> dict:
    """One recipe run in a process of its own (kept: a later call reads it back)."""
    if out.exists():
        return json.loads(out.read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.tasks", *arguments, "--seed", str(seed),
               "--out", str(out)]
    print("running", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                   stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return result


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(rows: list[Row]) -> dict:
    summary: dict = {}
    for row in rows:
        study = row.study
        peer = next(r for r in rows if r.study is study and r.name == "hf")
        entry = {"seeds": [run.get("seed") for run in row.runs]}
        for metric in (study.metric, *study.also):
            mean, std = mean_std(row.values(metric))
            peer_mean, _ = mean_std(peer.values(metric))
            entry[metric] = {"mean": mean, "std": std, "values": row.values(metric),
                             "minus_peer": None if mean is None or peer_mean is None
                             else mean - peer_mean}
        entry["examples_per_second"] = mean_std(row.values("examples_per_second"))[0]
        summary.setdefault(study.name, {})[row.name] = entry
    return summary


def print_table(summary: dict) -> None:
    for name, rows in summary.items():
        study = STUDIES[name]
        print(f"\n{name}: {study.metric} over seeds (mean ± std), minus the hf mean")
        print("| row | seeds | " + " | ".join([study.metric, *study.also]) + " | - hf | ex/s |")
        print("|---" * (len(study.also) + 5) + "|")
        for row, entry in rows.items():
            cells = []
            for metric in (study.metric, *study.also):
                m = entry[metric]
                cells.append("-" if m["mean"] is None else f"{m['mean']:.4f} ± {m['std']:.4f}")
            delta = entry[study.metric]["minus_peer"]
            speed = entry["examples_per_second"]
            print(f"| {row} | {len(entry['seeds'])} | " + " | ".join(cells)
                  + f" | {'-' if delta is None else f'{delta:+.4f}'}"
                  + f" | {'-' if speed is None else f'{speed:.1f}'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=tuple(PLANS), default="quick")
    parser.add_argument("--only", nargs="+", choices=tuple(STUDIES), help="these studies only")
    parser.add_argument("--rows", nargs="+", help="these rows only (e.g. tfsft hf)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--results", type=Path, default=RESULTS / "quality")
    args = parser.parse_args()
    rows = [Row(STUDIES[name], row_name, [])
            for name in args.only or PLANS[args.plan] for row_name in STUDIES[name].rows()
            if not args.rows or row_name in args.rows or row_name == "hf"]
    for seed in args.seeds:  # seed by seed: an interrupted run leaves whole comparisons
        for row in rows:
            arguments = row.study.rows()[row.name]
            row.runs.append(run_once(arguments, seed,
                                     result_file(args.results, row.study, row.name, seed)))
    summary = {"machine": machine(), "seeds": args.seeds, "studies": summarize(rows)}
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"CPU: {summary['machine'].get('cpu')}, flags {summary['machine'].get('cpu_flags')}")
    print_table(summary["studies"])


if __name__ == "__main__":
    main()
