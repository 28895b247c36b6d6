"""Where a MiniLM training step's time goes: ``python -m benchmarks.profile [--out F]``.

Two measurements behind ``docs/performance.md``, each a ratio within one process:

- the matmuls of one training step at SST-2 batch shapes (forward, and the two backward matmuls
  of each forward one), timed alone, against the 2048 x 2048 matmul peak, in float32 and
  bfloat16: how fast a step could be if it were only matmuls;
- one AdamW update (global-norm clipping, decoupled weight decay, moments) of MiniLM's 22.6 M
  trainable weights: tfsft's fused update against ``keras.optimizers.AdamW``.

>>> len(step_matmul_shapes(tokens=8, hidden=16, intermediate=32, layers=2))
36
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Shape = tuple[tuple[int, int], tuple[int, int]]


def step_matmul_shapes(tokens: int, hidden: int, intermediate: int, layers: int) -> list[Shape]:
    """``(x, w)`` shapes of every projection matmul of one training step (attention left out)."""
    forward = [((tokens, hidden), (hidden, hidden))] * 4 + [
        ((tokens, hidden), (hidden, intermediate)), ((tokens, intermediate), (intermediate, hidden))]
    input_grads = [((t, o), (o, i)) for (t, i), (_, o) in forward]  # dX = dY W^T
    weight_grads = [((i, t), (t, o)) for (t, i), (_, o) in forward]  # dW = X^T dY
    return (forward + input_grads + weight_grads) * layers


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(shapes: list[Shape], dtype: str, repeats: int = 20) -> dict[str, float]:
    """GFLOP/s and milliseconds of running all ``shapes`` matmuls once, best of ``repeats``."""
    import tensorflow as tf

    pairs = [(tf.cast(tf.random.normal(a), dtype), tf.cast(tf.random.normal(b), dtype))
             for a, b in shapes]

    @tf.function
    def run():
        return tf.add_n([tf.cast(tf.linalg.matmul(x, w)[0, 0], tf.float32) for x, w in pairs])

    seconds = _best_seconds(lambda: run().numpy(), repeats)
    flops = sum(2 * a[0] * a[1] * b[1] for a, b in shapes)
    return {"gflops": round(flops / seconds / 1e9, 1), "ms": round(seconds * 1000, 2)}


def optimizer_update_ms(repeats: int = 20) -> dict[str, float]:
    """Median milliseconds of one AdamW update of MiniLM's weights: tfsft's and Keras's."""
    import keras
    import tensorflow as tf

    from tfsft.optimization.optimizers import adamw
    from tfsft.tasks.text_classification.model import TextClassifier

    model = TextClassifier.from_pretrained("minilm-l6", num_classes=2)
    variables = model.trainable_variables
    grads = [tf.random.normal(v.shape, stddev=1e-3) for v in variables]
    optimizers = {"tfsft_fused_adamw": adamw(1e-5, 0.01, clipnorm=1.0),
                  "keras_adamw": keras.optimizers.AdamW(1e-5, weight_decay=0.01,
                                                        global_clipnorm=1.0)}
    found = {"parameters": int(sum(np.prod(v.shape) for v in variables))}
    for name, optimizer in optimizers.items():
        optimizer.build(variables)
        update = tf.function(lambda o=optimizer: o.apply(grads, variables))
        update()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            update()
            times.append(time.perf_counter() - start)
        found[f"{name}_ms"] = round(1000 * float(np.median(times)), 1)
    return found


def main(argv: list[str] | None = None) -> None:
    from benchmarks.hardware import matmul_gflops
    from tfsft.io_utils import atomic_write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=452,
                        help="padded tokens per batch (SST-2, batch 32, length-grouped: 452)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "profile.json")
    args = parser.parse_args(argv)
    shapes = step_matmul_shapes(args.tokens, hidden=384, intermediate=1536, layers=6)
    found: dict = {"tokens_per_batch": args.tokens, "matmul": {}}
    print("| precision | 2048^2 GFLOP/s | step matmuls GFLOP/s | share of peak | step matmuls ms |")
    print("|---|---|---|---|---|")
    for dtype in ("float32", "bfloat16"):
        peak = matmul_gflops(dtype=dtype)["best_gflops"]
        step = matmul_rate(shapes, dtype)
        found["matmul"][dtype] = {"peak": {"gflops": peak}, "step": step}
        print(f"| {dtype} | {peak} | {step['gflops']} | {step['gflops'] / peak:.2f} | "
              f"{step['ms']} |")
    found["adamw_update"] = update = optimizer_update_ms()
    print(f"\nAdamW update of {update['parameters']:,} weights: tfsft fused "
          f"{update['tfsft_fused_adamw_ms']} ms, keras.optimizers.AdamW {update['keras_adamw_ms']} ms "
          f"({update['keras_adamw_ms'] / update['tfsft_fused_adamw_ms']:.2f}x)")
    atomic_write_json(args.out, found)


if __name__ == "__main__":
    main()
