"""Multi-worker training (MultiWorkerMirroredStrategy) with local workers on loopback addresses:
the same steps as one process with the same global batch, and a restart after a lost worker."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfsft.errors import ConfigError
from tfsft.training.distribution import (
    Distribution,
    cluster_spec,
    is_chief_task,
    make_distribution,
)
from tfsft.training.local_cluster import worker_command, worker_environments, worker_pid

from .conftest import TINY_CONFIG, TINY_VOCAB, sentiment_rows, write_csv, write_hf_checkpoint

ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A checkpoint without dropout (so replicas compute exactly what one process would) and
    SST-2-like data: 1,000 training rows (a last batch of 8 rows), 200 validation rows."""
    folder = tmp_path_factory.mktemp("distributed")
    checkpoint = write_hf_checkpoint(folder / "checkpoint", TINY_VOCAB,
                                     dict(TINY_CONFIG, hidden_dropout_prob=0.0,
                                          attention_probs_dropout_prob=0.0))
    return {"folder": folder, "checkpoint": checkpoint,
            "train": write_csv(folder / "train.csv", sentiment_rows(1000, seed=3)),
            "validation": write_csv(folder / "dev.csv", sentiment_rows(200, seed=4))}


def train_command(job, run_dir: Path, *extra: str) -> list[str]:
    return ["tfsft", "train", "--model", str(job["checkpoint"]), "--train", str(job["train"]),
            "--validation", str(job["validation"]), "--output-dir", str(run_dir),
            "--epochs", "2", "--batch-size", "16", "--max-length", "16",
            "--learning-rate", "1e-3", "--dropout", "0", "--no-tensorboard",
            "--no-early-stopping", *extra]


def local_cluster(command: list[str], workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "tfsft.training.local_cluster", "--workers", str(workers),
            "--", *command]


def history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("data", ["file", "shards"])
def test_two_local_workers_take_the_steps_of_one_process(job, data):
    single, multi = job["folder"] / f"single-{data}", job["folder"] / f"multi-{data}"
    extra: list[str] = []
    if data == "shards":  # pre-tokenized by tfsft preprocess, each worker its own files
        from tfsft.data.shards import write_shards
        from tfsft.tasks.base import create_task

        shards = job["folder"] / "shards"
        write_shards(create_task("text-classification", {}), job["train"], shards, model=job["checkpoint"],
                     max_length=16, shards=4, progress=False)
        extra = ["--train", str(shards), "--learning-rate", "3e-3", "--epochs", "4"]
    done = subprocess.run([sys.executable, "-m", "tfsft.cli",
                           *train_command(job, single, *extra)[1:]],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    done = subprocess.run(local_cluster(train_command(job, multi, *extra)), env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"written_by": "the chief"' in done.stderr  # worker 1's closing line, relayed
    assert "Strategy multi-worker: 2 worker(s), 2 replica(s)" in done.stderr

    for one, two in zip(history(single), history(multi), strict=True):
        if data == "file":  # the same rows in the same batches as one process: the same losses
            for key in ("loss", "val_loss"):
                assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
            # Each replica runs half of every batch, and oneDNN rounds matrix products of
            # other shapes differently on some CPUs (Intel with AVX-512 / AMX): that flips a
            # few predictions sitting on the decision boundary while the model is near chance
            # (3 of 1,000 training rows in the first epoch), never the losses.
            for key in ("accuracy", "val_accuracy"):
                assert two[key] == pytest.approx(one[key], abs=0.005), key
    if data == "shards":  # the same rows in other batches: workers read their own shard files
        final_single, final_multi = history(single)[-1], history(multi)[-1]
        assert final_single["val_accuracy"] >= 0.8 and final_multi["val_accuracy"] >= 0.8
        assert abs(final_multi["val_accuracy"] - final_single["val_accuracy"]) <= 0.1
        assert "Worker 0 reads shard files [0, 2]" in done.stderr
        assert "Worker 1 reads shard files [1, 3]" in done.stderr
    summary = json.loads((multi / "run.json").read_text())
    assert summary["distribution"] == {"strategy": "multi-worker", "workers": 2,
                                       "worker_index": 0, "replicas": 2,
                                       "global_batch_size": 16, "per_replica_batch_size": 8}
    assert summary["optimizer_steps"] == json.loads(
        (single / "run.json").read_text())["optimizer_steps"]
    # only the chief wrote: the same files as a single-process run
    assert sorted(p.name for p in multi.iterdir()) == sorted(p.name for p in single.iterdir())
    if data == "file":  # again into the finished run: the chief's error, no worker's "bug"
        done = subprocess.run(local_cluster(train_command(job, multi, *extra)), env=ENV,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 2
        assert f"{multi} already holds a finished run" in done.stderr
        assert "internal error" not in done.stderr and "E0000" not in done.stderr, done.stderr


def test_a_job_whose_worker_is_killed_resumes_from_the_chief_backup(job):
    run_dir = job["folder"] / "killed"
    command = local_cluster(train_command(job, run_dir, "--backup-every-steps", "5"))
    metadata = run_dir / "backup" / "training_metadata.json"
    first = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    killed = {}
    deadline = time.monotonic() + 300
    try:
        while first.poll() is None and not killed and time.monotonic() < deadline:
            try:
                state = json.loads(metadata.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {"epoch": 0, "batch": -1}
            pid = worker_pid(first.pid, 1)
            if state["epoch"] == 0 and state["batch"] >= 20 and pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed["at"] = state
            time.sleep(0.05)
        stderr = first.communicate(timeout=120)[1].decode()
    finally:
        if first.poll() is None:
            first.kill()
    assert killed, "worker 1 was not found to kill"
    assert first.returncode == 128 + signal.SIGKILL, stderr[-3000:]
    assert "worker 1 ended with signal 9" in stderr
    assert not (run_dir / "model.keras").exists()

    killed_at = json.loads(metadata.read_text())  # the backup both workers restart from
    second = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Resuming from the backup" in second.stderr
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["resumed_from"] == killed_at
    steps_per_epoch = summary["steps_per_epoch"]
    assert summary["optimizer_steps"] == killed_at["batch"] + 1 + 2 * steps_per_epoch
    assert not (run_dir / "backup").exists()


def test_worker_environments_name_one_loopback_cluster():
    envs = worker_environments(3, base={})
    configs = [json.loads(env["TF_CONFIG"]) for env in envs]
    addresses = configs[0]["cluster"]["worker"]
    assert len(set(addresses)) == 3 and all(a.startswith("127.0.0.1:") for a in addresses)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": i} for i in range(3)]
    assert all(c["cluster"] == configs[0]["cluster"] for c in configs)
    assert worker_command(["tfsft", "train", "--model", "m"])[-2:] == ["--strategy",
                                                                       "multi-worker"]
    assert worker_command(["tfsft", "train", "--strategy", "auto"])[-1] == "auto"


def test_chief_and_tf_config_errors(monkeypatch):
    two = {"worker": ["a:1", "b:1"]}
    assert is_chief_task(two, {"type": "worker", "index": 0})
    assert not is_chief_task(two, {"type": "worker", "index": 1})
    assert not is_chief_task({"chief": ["c:1"], **two}, {"type": "worker", "index": 0})
    assert is_chief_task({}, {})
    with pytest.raises(ConfigError, match="not valid JSON"):
        cluster_spec({"TF_CONFIG": "{cluster"})
    with pytest.raises(ConfigError, match=r"TF_CONFIG must be .*; it holds a list"):
        cluster_spec({"TF_CONFIG": '["worker"]'})
    with pytest.raises(ConfigError, match="task index is 'one' written as a JSON string"):
        cluster_spec({"TF_CONFIG": json.dumps({"cluster": two,
                                               "task": {"type": "worker", "index": "one"}})})
    with pytest.raises(ConfigError, match="task index is '0' written as a JSON string: write "
                                          "it without quotes"):
        cluster_spec({"TF_CONFIG": json.dumps({"cluster": two,
                                               "task": {"type": "worker", "index": "0"}})})
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**two, "ps": ["p:1"]},
                                                "task": {"type": "ps", "index": 0}}))
    with pytest.raises(ConfigError, match="task type is 'ps'; tfsft trains with workers"):
        make_distribution("multi-worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": two}))
    with pytest.raises(ConfigError, match="names a cluster but not this process's task"):
        make_distribution("multi-worker")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        make_distribution("multi-worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": two,
                                                "task": {"type": "worker", "index": 5}}))
    with pytest.raises(ConfigError, match="is not in its cluster"):
        make_distribution("multi-worker")
    with pytest.raises(ConfigError, match="--strategy must be one of"):
        make_distribution("horovod")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": two,
                                                "task": {"type": "worker", "index": 1}}))
    for strategy in ("one-device", "mirrored"):  # each worker would train alone
        with pytest.raises(ConfigError, match=f"cluster of 2 tasks, but --strategy {strategy}"):
            make_distribution(strategy)
    # a one-worker cluster trains on one device, and its TF_CONFIG is checked all the same
    one = {"worker": ["localhost:23456"]}
    for task, problem in (({"type": "worker", "index": 5}, "is not in its cluster"),
                          ({"type": "ps", "index": 0}, "task type is 'ps'")):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": one, "task": task}))
        for strategy in ("auto", "one-device"):
            with pytest.raises(ConfigError, match=problem):
                make_distribution(strategy)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:99999"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="whose port 99999 is outside 1-65535"):
        make_distribution("auto")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["h:1", "h:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="names 'h:1' more than once"):
        make_distribution("auto")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["not an address"]},
                                                "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ConfigError, match="holds 'not an address', which is not a HOST:PORT"):
        make_distribution("auto")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": one,
                                                "task": {"type": "worker", "index": 0}}))
    assert make_distribution("auto").name == "one-device"
    monkeypatch.delenv("TF_CONFIG")
    assert make_distribution("one-device").per_replica_batch(3) == 3
    with pytest.raises(ConfigError, match="must divide evenly among the 2 replicas"):
        Distribution("mirrored", _TwoReplicas()).per_replica_batch(3)


class _TwoReplicas:
    num_replicas_in_sync = 2


TWO_REPLICAS = r'''
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np
from tfsft.models.metrics import MaskedTokenLoss
from tfsft.optimization.optimizers import LossScaleOptimizer, adamw

def run(strategy, loss_scaled=False):
    keras.utils.set_random_seed(0)
    x = np.array([[1, 2, 3, 4]] * 4, "int32")
    y = np.array([[1, -1, -1, -1], [2, 3, -1, -1], [1, 2, 3, 4], [4, 3, 2, 1]], "int32")
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,), dtype="int32"), keras.layers.Embedding(8, 4),
                                  keras.layers.Dense(8)])
        optimizer = adamw(0.1, 0.0, 1.0)
        if loss_scaled:
            optimizer = LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer, loss=MaskedTokenLoss())
    history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history
    return history["loss"], [w.tolist() for w in model.get_weights()]

# one strategy per process: two MirroredStrategy objects over the same devices share
# collective instance keys
mode = sys.argv[1]
strategy = (tf.distribute.get_strategy() if mode == "one"
            else tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print(json.dumps(run(strategy, loss_scaled=mode == "scaled")))
'''


def test_token_loss_and_loss_scaling_over_two_replicas_equal_one_process():
    """MaskedTokenLoss (rows with different token counts) gives the global batch's token mean and
    its gradients on 2 replicas; the loss-scaled optimizer steps like the plain one."""
    import numpy as np

    results = []
    for mode in ("one", "two", "scaled"):
        done = subprocess.run([sys.executable, "-c", TWO_REPLICAS, mode], env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    one, two, scaled = results
    np.testing.assert_allclose(two[0], one[0], rtol=1e-5)  # logged loss: the global mean
    for a, b, c in zip(one[1], two[1], scaled[1], strict=True):
        np.testing.assert_allclose(np.array(b), np.array(a), atol=1e-5)
        np.testing.assert_allclose(np.array(c), np.array(a), atol=1e-5)


def test_the_launcher_runs_tfsft_train_only(capsys):
    from tfsft.training import local_cluster

    for command in (["ls", "-la", "/"], ["tfsft", "predict", "runs/x", "text"]):
        with pytest.raises(SystemExit):
            local_cluster.main(["--workers", "2", "--", *command])
        assert "the workers run tfsft train" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        local_cluster.main(["--", "tfsft", "train", "--train", "t.csv", "--strategy",
                            "one-device"])
    printed = capsys.readouterr().err
    assert "--strategy one-device trains in one process alone" in printed
    assert "TF_CONFIG" not in printed  # the launcher sets it, not the user


def test_a_worker_whose_peers_never_start_stops_with_an_error():
    """TensorFlow waits for every TF_CONFIG task for ever, holding the interpreter lock; the
    watching child process stops the worker and names the missing peer."""
    import subprocess
    import sys

    from tfsft.training.distribution import peer_addresses, peer_timeout

    cluster = {"worker": ["localhost:1", "localhost:2"]}
    assert peer_addresses(cluster, {"type": "worker", "index": 0}) == ["localhost:2"]
    with pytest.raises(ConfigError, match="TFSFT_PEER_TIMEOUT must be a number of seconds"):
        peer_timeout({"TFSFT_PEER_TIMEOUT": "soon"})
    blocked = ("import time\nfrom tfsft.training.peer_watch import watch_peers\n"
               "watch_peers(['localhost:2'], 3)\ntime.sleep(120)\n")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == -9
    assert "the worker(s) at localhost:2 did not start within 3 s" in done.stderr
    # TensorFlow keeps SIGTERM while it waits (here: ignored); a signal to the process group
    # (timeout, a shell's Ctrl-C) still ends the worker, through the watching process
    import os
    import signal
    import time

    deaf = ("import signal, time\nfrom tfsft.training.peer_watch import watch_peers\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "watch_peers(['localhost:2'], 300)\ntime.sleep(120)\n")
    worker = subprocess.Popen([sys.executable, "-c", deaf], stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    time.sleep(3)
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=30) == -9
    assert "stopped by signal 15 while waiting for the worker(s) at localhost:2" in (
        worker.stderr.read())
