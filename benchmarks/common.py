"""What every benchmark script shares: the SST-2 sample, a step timer, memory, JSON output."""

from __future__ import annotations

import csv
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TFSFT_BENCHMARK_DATA", REPO.parent / "shared" / "data")) / "sst2"
RESULTS = REPO / "benchmarks" / "results"
MAX_LENGTH = 128
BATCH_SIZE = 32
LEARNING_RATE = 5e-5
WEIGHT_DECAY = 0.01
WARMUP_RATIO = 0.1
CLIPNORM = 1.0
SEED = 42
# Steps left out of the steady-state rate: the first ones trace graphs (one per padded shape).
WARMUP_STEPS = 8


def read_tsv(path: Path, text_column: str) -> tuple[list[str], list[int]]:
    """Texts and integer labels of an SST-2 TSV file (no quoting in these files)."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [row[text_column] for row in rows], [int(row["label"]) for row in rows]


def sst2_sample(examples: int, seed: int = SEED) -> tuple[list[str], list[int]]:
    """``examples`` SST-2 training sentences drawn without replacement with ``seed``."""
    import numpy as np

    texts, labels = read_tsv(DATA / "train.tsv", "sentence")
    if examples > len(texts):
        raise ValueError(f"{DATA / 'train.tsv'} has {len(texts)} rows, {examples} were asked for")
    picked = np.random.default_rng(seed).choice(len(texts), examples, replace=False)
    return [texts[i] for i in picked], [labels[i] for i in picked]


def sst2_dev() -> tuple[list[str], list[int]]:
    return read_tsv(DATA / "dev.tsv", "content")


def write_tsv(path: Path, texts: list[str], labels: list[int]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("label\tsentence\n")
        for text, label in zip(texts, labels, strict=True):
            handle.write(f"{label}\t{text}\n")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict[str, Any]:
    """CPU model, cores and memory of this machine, for the report."""
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and "cpu" not in info:
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and "cpu_flags" not in info:
                flags = set(line.split(":", 1)[1].split())
                info["cpu_flags"] = sorted(flags & {"avx2", "avx512f", "avx512_bf16",
                                                    "avx512_vnni", "amx_bf16", "amx_tile"})
            if "cpu" in info and "cpu_flags" in info:
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return info


def step_timer(base_class: type) -> Any:
    """A callback (subclass of ``base_class``: Keras 3's or tf-keras') that times each step.

    ``step_ends`` holds ``time.perf_counter()`` after each training batch, so the time of step
    ``i`` includes fetching its input; ``fit_end`` is when ``fit`` returned control.
    """

    class StepTimer(base_class):
        def __init__(self):
            super().__init__()
            self.fit_start = self.fit_end = 0.0
            self.step_ends: list[float] = []

        def on_train_begin(self, logs=None):
            self.fit_start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step_ends.append(time.perf_counter())

        def on_train_end(self, logs=None):
            self.fit_end = time.perf_counter()

        def steady(self, examples: int, warmup: int = WARMUP_STEPS) -> dict[str, float]:
            """Examples/s over the steps after ``warmup`` (all steps hold ``examples`` in total)."""
            steps = len(self.step_ends)
            if steps <= warmup + 1:
                raise ValueError(f"only {steps} steps: too few to leave out {warmup} warm-up steps")
            seconds = self.step_ends[-1] - self.step_ends[warmup]
            counted = examples * (steps - warmup - 1) / steps
            return {"steps": steps, "steady_steps": steps - warmup - 1,
                    "steady_seconds": round(seconds, 3),
                    "examples_per_second": round(counted / seconds, 2),
                    "fit_seconds": round(self.fit_end - self.fit_start, 3)}

    return StepTimer()

