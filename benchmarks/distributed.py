"""Two local MultiWorkerMirroredStrategy workers against one process, same global batch, and a
restart after a killed worker.

    python -m benchmarks.distributed --rows 4096 --out benchmarks/results/distributed.json

The SST-2 recipe (all-MiniLM-L6-v2, first ``--rows`` training sentences, 1 epoch, global batch
32, max_length 64, learning rate 5e-5, seed 42) runs three times: as one ``tfsft train`` process;
as two workers started by ``python -m tfsft.training.local_cluster``; and as two workers whose
worker 1 is killed with SIGKILL once the chief's backup has passed ``--kill-after`` steps, then
started again with the same command. Each run is validated on all of SST-2 dev. With
``--from-shards`` the same rows are first tokenized by ``tfsft preprocess`` into 4 shards and
both runs train from them (each worker reading its own 2 shard files); no killed run. On one machine
the two workers share its cores: the examples/s column shows what the collective all-reduce
costs there, not what several hosts gain.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common

REPO = common.REPO


def recipe(run_dir: Path, rows: int, backup_every: int, shards: Path | None = None) -> list[str]:
    data = common.DATA
    train = ["--train", str(data / "train.tsv"), "--max-train-rows", str(rows)] if shards is None \
        else ["--train", str(shards)]
    return ["tfsft", "train", "--task", "text-classification", "--model", "minilm-l6",
            *train, "--validation", str(data / "dev.tsv"),
            "--text-column", "sentence", "--validation-text-column", "content",
            "--label-column", "label", "--epochs", "1",
            "--batch-size", "32", "--learning-rate", "5e-5", "--max-length", "64",
            "--seed", "42", "--no-tensorboard", "--backup-every-steps", str(backup_every),
            "--output-dir", str(run_dir)]


def workers(command: list[str], count: int = 2) -> list[str]:
    return [sys.executable, "-m", "tfsft.training.local_cluster", "--workers", str(count),
            "--", *command]


def single(command: list[str]) -> list[str]:
    return [sys.executable, "-m", "tfsft.cli", *command[1:]]


def outcome(run_dir: Path, seconds: float) -> dict[str, Any]:
    summary = json.loads((run_dir / "run.json").read_text())
    return {"accuracy": round(summary["validation"]["accuracy"], 4),
            "train_examples_per_second": summary["train_examples_per_second"][0],
            "wall_seconds": round(seconds, 1), "optimizer_steps": summary["optimizer_steps"],
            "resumed_from": summary["resumed_from"], "distribution": summary["distribution"]}


def run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def killed_and_resumed(run_dir: Path, command: list[str], env: dict[str, str],
                       kill_after: int) -> dict[str, Any]:
    from tfsft.training.local_cluster import worker_pid

    metadata = run_dir / "backup" / "training_metadata.json"
    started = time.perf_counter()
    first = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    killed_at = None
    while first.poll() is None and killed_at is None:
        try:
            state = json.loads(metadata.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            state = {"batch": -1}
        pid = worker_pid(first.pid, 1)
        if state["batch"] >= kill_after and pid:
            os.kill(pid, signal.SIGKILL)
            killed_at = state
        time.sleep(0.1)
    first.wait()
    if killed_at is None:
        raise SystemExit("the job ended before worker 1 could be killed; lower --kill-after")
    seconds = run(command, env)
    result = outcome(run_dir, time.perf_counter() - started)
    return {**result, "killed_at": killed_at, "first_exit_code": first.returncode,
            "restart_wall_seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--kill-after", type=int, default=40,
                        help="steps the chief's backup has passed when worker 1 is killed")
    parser.add_argument("--from-shards", action="store_true",
                        help="train from `tfsft preprocess` shards of the same rows (4 shards; "
                             "each worker reads its own), without the killed run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    args.out = args.out or common.RESULTS / ("distributed_shards.json" if args.from_shards
                                             else "distributed.json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    results: dict[str, Any] = {"machine": common.machine(), "rows": args.rows,
                               "from_shards": args.from_shards}
    runs = ["one-process", "two-workers"]
    with tempfile.TemporaryDirectory(prefix="tfsft-distributed-") as tmp:
        tmp = Path(tmp)
        shards = None
        if args.from_shards:
            shards = tmp / "shards"
            lines = (common.DATA / "train.tsv").read_text(encoding="utf-8").splitlines()
            (tmp / "rows.tsv").write_text("\n".join(lines[:args.rows + 1]) + "\n")
            run([sys.executable, "-m", "tfsft.cli", "preprocess", "--train", str(tmp / "rows.tsv"),
                 "--output", str(shards), "--text-column", "sentence", "--max-length", "64",
                 "--shards", "4", "--no-progress"], env)
        for name, wrap in (("one-process", single), ("two-workers", workers)):
            command = recipe(tmp / name, args.rows, backup_every=200, shards=shards)
            results[name] = outcome(tmp / name, run(wrap(command), env))
        if not args.from_shards:
            runs.append("two-workers-killed")
            command = workers(recipe(tmp / "killed", args.rows, backup_every=20))
            results["two-workers-killed"] = killed_and_resumed(tmp / "killed", command, env,
                                                               args.kill_after)
    gap = abs(results["two-workers"]["accuracy"] - results["one-process"]["accuracy"])
    results["accuracy_gap_points"] = round(100 * gap, 2)
    print(f"CPU: {results['machine']['cpu']}")
    print("| run | dev accuracy | train examples/s | wall s | optimizer steps |")
    print("|---|---|---|---|---|")
    for name in runs:
        r = results[name]
        print(f"| {name} | {r['accuracy']:.4f} | {r['train_examples_per_second']} | "
              f"{r['wall_seconds']} | {r['optimizer_steps']} |")
    print(f"accuracy gap two workers vs one process: {results['accuracy_gap_points']} points")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
