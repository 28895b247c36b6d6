"""Start N ``tfsft train`` workers on this machine as one ``MultiWorkerMirroredStrategy`` job,
to try multi-worker training (and its restart after a lost worker) before using several hosts.

Each worker is a separate process with its own ``TF_CONFIG`` naming the same cluster of
loopback addresses (``127.0.0.1``, free ports picked here); worker 0 is the chief and writes
the run folder. Worker 0's output is shown as it is, the others' with a ``[worker N]`` prefix.
When one worker fails or is killed, the others are stopped too and the exit code is the failed
worker's: run the same command again and the job resumes from the chief's last backup.
Each worker gets ``cores / workers`` TensorFlow threads unless ``TF_NUM_INTRAOP_THREADS`` is set.

    python -m tfsft.training.local_cluster --workers 2 -- \\
        tfsft train --model minilm-l6 --train train.tsv --output-dir runs/mw --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"
#: Seconds the other workers get to exit after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 10


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on the loopback address now."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_environments(workers: int, ports: Sequence[int] | None = None,
                        base: dict[str, str] | None = None) -> list[dict[str, str]]:
    """One environment per worker: ``TF_CONFIG`` of a loopback cluster, and its share of the
    cores as TensorFlow threads.

    >>> envs = worker_environments(2, ports=[5001, 5002], base={})
    >>> json.loads(envs[1]["TF_CONFIG"])
    {'cluster': {'worker': ['127.0.0.1:5001', '127.0.0.1:5002']}, 'task': {'type': 'worker', 'index': 1}}
    """
    base = dict(os.environ if base is None else base)
    ports = list(ports or free_ports(workers))
    cluster = {"worker": [f"{LOOPBACK}:{port}" for port in ports]}
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    envs = []
    for index in range(workers):
        env = dict(base, TF_CONFIG=json.dumps({"cluster": cluster,
                                                "task": {"type": "worker", "index": index}}))
        env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
        envs.append(env)
    return envs


def is_train_command(command: Sequence[str]) -> bool:
    """Whether ``command`` is ``tfsft train ...`` (or ``python -m tfsft.cli train ...``).

    >>> is_train_command(["tfsft", "train", "--model", "m"]), is_train_command(["ls", "/"])
    (True, False)
    """
    command = list(command)
    if command[:1] == ["tfsft"]:
        return command[1:2] == ["train"]
    return (len(command) >= 4 and command[1:3] == ["-m", "tfsft.cli"]
            and command[3] == "train")


def worker_command(command: Sequence[str]) -> list[str]:
    """The command each worker runs: ``tfsft ...`` through this Python, with
    ``--strategy multi-worker`` unless the command names a strategy."""
    command = list(command)
    if command and command[0] == "tfsft":
        command = [sys.executable, "-m", "tfsft.cli", *command[1:]]
    if "--strategy" not in command and not any(a.startswith("--strategy=") for a in command):
        command += ["--strategy", "multi-worker"]
    return command


def worker_pid(launcher_pid: int, index: int) -> int | None:
    """The process id of worker ``index`` started by the launcher ``launcher_pid`` (found by
    its ``TF_CONFIG`` under ``/proc``; Linux), or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent != launcher_pid:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        for item in environ:
            if item.startswith(b"TF_CONFIG="):
                task = json.loads(item[len(b"TF_CONFIG="):]).get("task", {})
                if task.get("index") == index:
                    return int(entry.name)
    return None


#: A TensorFlow C++ log line (``E0000 00:00:1796685444.955979  4242 file.cc:252] ...``), or
#: the gRPC detail TensorFlow prints when a peer worker has gone.
_NATIVE_LOG_LINE = re.compile(rb"^([IWEF]\d{4} [\d:.]+ +\d+ [\w./-]+:\d+\] |Additional GRPC "
                              rb"error information |:\w+:Error received from peer )")


def _relay(stream, prefix: str) -> None:
    """A worker's output to standard error, each line headed ``prefix``; TensorFlow's C++ log
    lines (a worker's collective runtime announcing that another worker left) only with
    ``--debug`` in the command."""
    debug = "--debug" in sys.argv
    for line in iter(stream.readline, b""):
        if not debug and _NATIVE_LOG_LINE.match(line):
            continue
        sys.stderr.buffer.write(prefix.encode() + line)
        sys.stderr.flush()


def run(command: Sequence[str], workers: int) -> int:
    """Run ``command`` as ``workers`` local workers; the exit code of the first that fails,
    else 0."""
    command = worker_command(command)
    processes: list[subprocess.Popen] = []
    relays = []
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM,
                                                                     signal.SIGHUP)}
    try:
        for index, env in enumerate(worker_environments(workers)):
            if index == 0:
                processes.append(subprocess.Popen(command, env=env))
                continue
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT)
            relay = threading.Thread(target=_relay, args=(process.stdout, f"[worker {index}] "),
                                     daemon=True)
            relay.start()
            processes.append(process)
            relays.append(relay)
        code = _wait(processes)
    except OSError as exc:  # the command cannot be started
        print(f"tfsft local cluster: cannot start {command[0]}: {exc.strerror or exc}",
              file=sys.stderr)
        code = 127
    except KeyboardInterrupt:
        code = 130
    except _Stopped as stopped:
        code = 128 + stopped.signal
    finally:
        _stop(processes)  # no worker outlives the launcher
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for relay in relays:
        relay.join(timeout=5)
    return code


class _Stopped(Exception):
    """The launcher got SIGTERM or SIGHUP."""

    def __init__(self, signal_number: int):
        super().__init__(signal_number)
        self.signal = signal_number


def _raise_stopped(signal_number, frame) -> None:
    raise _Stopped(signal_number)


def _wait(processes: list[subprocess.Popen]) -> int:
    while True:
        codes = [process.poll() for process in processes]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if failed:
            index, code = failed[0]
            reason = f"signal {-code}" if code < 0 else f"exit code {code}"
            advice = ("Fix what its error says, then run the command again." if code == 2 else
                      "Run the same command again to resume from the last backup.")
            print(f"tfsft local cluster: worker {index} ended with {reason}; stopping the "
                  f"others. {advice}",
                  file=sys.stderr, flush=True)
            _stop(processes)
            return 128 - code if code < 0 else code
        if all(code == 0 for code in codes):
            return 0
        time.sleep(0.2)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfsft.training.local_cluster",
        description="Run a tfsft train command as N local MultiWorkerMirroredStrategy workers.")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="-- tfsft train ... (the same command for every worker)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if not command:
        parser.error("give the command after --, e.g. -- tfsft train --model minilm-l6 ...")
    if not is_train_command(command):
        parser.error(f"the workers run tfsft train (with --strategy multi-worker); got "
                     f"{' '.join(command[:3])!r}: give -- tfsft train ...")
    strategy = strategy_of(command)
    if strategy in ("one-device", "mirrored"):
        parser.error(f"--strategy {strategy} trains in one process alone, so each worker would "
                     "train the whole model by itself and write the same run folder; leave "
                     "out --strategy (the workers use multi-worker), or run the command "
                     "without local_cluster")
    return run(command, args.workers)


def strategy_of(command: Sequence[str]) -> str | None:
    """The ``--strategy`` a command names, if any.

    >>> strategy_of(["tfsft", "train", "--strategy=one-device"])
    'one-device'
    """
    for i, word in enumerate(command):
        if word == "--strategy" and i + 1 < len(command):
            return command[i + 1]
        if word.startswith("--strategy="):
            return word.split("=", 1)[1]
    return None


if __name__ == "__main__":
    sys.exit(main())
