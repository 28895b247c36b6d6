"""What this machine can do: fp32 and bf16 matmul throughput, and the FLOPs a training step needs.

>>> per_example_training_flops([10], layers=1, hidden=4, intermediate=8)
array([12480.])
"""

from __future__ import annotations

import time

import numpy as np


def matmul_gflops(size: int = 2048, repeats: int = 20, rounds: int = 5,
                  dtype: str = "float32") -> dict[str, float]:
    """Best and median GFLOP/s of ``repeats`` chained ``size`` x ``size`` matmuls in ``dtype``."""
    import tensorflow as tf

    a = tf.cast(tf.random.stateless_normal([size, size], seed=[1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal([size, size], seed=[3, 4]) / size ** 0.5, dtype)

    @tf.function
    def chain(x):
        for _ in range(repeats):
            x = tf.linalg.matmul(x, b)
        return tf.reduce_sum(x)

    chain(a).numpy()  # trace and warm up
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        chain(a).numpy()
        rates.append(2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9)
    return {"size": size, "dtype": dtype, "best_gflops": round(max(rates), 1),
            "median_gflops": round(float(np.median(rates)), 1)}


def per_example_training_flops(lengths, layers: int, hidden: int,
                               intermediate: int) -> np.ndarray:
    """Training FLOPs (forward + backward = 3 x forward) of a BERT encoder per example.

    Per layer and token the forward pass multiplies by the Q, K, V and output projections
    (``8 H^2``), the feed-forward layers (``4 H I``) and attends over the ``L`` tokens of its
    own example (``4 L H``). Embedding lookups and the small head are left out.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    forward = layers * lengths * (8 * hidden ** 2 + 4 * hidden * intermediate + 4 * lengths * hidden)
    return 3 * forward


def main(argv: list[str] | None = None) -> None:
    import argparse
    from pathlib import Path

    from benchmarks import common
    from tfsft.io_utils import atomic_write_json

    parser = argparse.ArgumentParser(description="fp32 and bf16 matmul throughput of this machine")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    atomic_write_json(args.out, {"machine": common.machine(), "matmul": matmul_gflops(),
                                 "matmul_bf16": matmul_gflops(dtype="bfloat16")})


if __name__ == "__main__":
    main()
