"""Stop a multi-worker run whose other workers never start, instead of waiting for ever.

TensorFlow's ``MultiWorkerMirroredStrategy`` blocks, holding Python's interpreter lock, until
every task of ``TF_CONFIG`` has joined, so a thread of the waiting process cannot act. A small
child process (``python -m tfsft.training.peer_watch``) polls the other workers' addresses
instead: it ends as soon as all of them accept connections, and otherwise logs the waiting and,
past the timeout, prints an error naming the missing workers and stops the waiting process.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time


def reachable(address: str, timeout_s: float = 2.0) -> bool:
    """Whether ``HOST:PORT`` accepts a TCP connection.

    >>> reachable("localhost:1")
    False
    """
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


def watch_peers(addresses: list[str], timeout_s: float) -> subprocess.Popen | None:
    """Start the watching child process for this process (none when there are no peers)."""
    if not addresses:
        return None
    command = [sys.executable, "-m", "tfsft.training.peer_watch", str(os.getpid()),
               str(timeout_s), *addresses]
    # the worker closes the child's standard input once the cluster has formed (joined)
    return subprocess.Popen(command, stdin=subprocess.PIPE)


def joined(watcher: subprocess.Popen | None) -> None:
    """Tell the watching process that the cluster formed: it ends."""
    if watcher is not None and watcher.stdin is not None:
        watcher.stdin.close()


def _closed(stream: object) -> bool:
    """Whether the worker closed the watcher's standard input (the cluster formed)."""
    import select

    try:
        readable, _, _ = select.select([stream], [], [], 0)
        return bool(readable) and not os.read(stream.fileno(), 1)  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return True


def watch(parent: int, addresses: list[str], timeout_s: float, poll_s: float = 2.0,
          report_every_s: float = 30.0) -> int:
    """Wait until the parent says the cluster formed (closes standard input: 0) or is gone
    (0); past the timeout print an error naming the workers that are not reachable (or, if all
    are, that they did not join), stop ``parent`` and return 2. Signals to the process group
    stop the parent too. The addresses are polled for the messages."""
    def stop(number: int, _frame: object) -> None:
        # The waiting process takes no signal while TensorFlow holds it (its preemption
        # notifier keeps SIGTERM): a signal to the process group ends it here.
        sys.stderr.write(f"tfsft train: stopped by signal {number} while waiting for the "
                         f"worker(s) at {', '.join(waiting)}\n")
        os.kill(parent, signal.SIGKILL)
        os._exit(128 + number)

    start = last_report = time.monotonic()
    waiting = list(addresses)
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, stop)
    while True:
        if _closed(sys.stdin) or os.getppid() != parent:
            return 0
        waiting = [address for address in addresses if not reachable(address)]
        now = time.monotonic()
        if now - start > timeout_s:
            if waiting:
                problem = (f"the worker(s) at {', '.join(waiting)} did not start within "
                           f"{timeout_s:.0f} s. Start them (the same command, each with its own "
                           "TF_CONFIG task), check the addresses in TF_CONFIG")
            else:
                verb = "accepts" if len(addresses) == 1 else "accept"
                problem = (f"the cluster did not form within {timeout_s:.0f} s: "
                           f"{', '.join(addresses)} {verb} connections but did not join. Check "
                           "that each is a tfsft worker of this job (the same command, its own "
                           "TF_CONFIG task), not another service")
            sys.stderr.write(f"tfsft train: error: {problem}, or set TFSFT_PEER_TIMEOUT "
                             "(seconds) to wait longer.\n")
            sys.stderr.flush()
            os.kill(parent, signal.SIGKILL)  # blocked in TensorFlow: no signal handler runs
            return 2
        if now - last_report >= report_every_s:
            shown = ", ".join(waiting or addresses)
            sys.stderr.write(f"tfsft train: waiting for the worker(s) at {shown} to "
                             f"{'start' if waiting else 'join'} ({now - start:.0f} of "
                             f"{timeout_s:.0f} s)\n")
            sys.stderr.flush()
            last_report = now
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfsft.training.peer_watch",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("parent", type=int, help="the process to stop")
    parser.add_argument("timeout", type=float, help="seconds to wait")
    parser.add_argument("addresses", nargs="+", help="HOST:PORT of each other worker")
    args = parser.parse_args(argv)
    return watch(args.parent, args.addresses, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
