"""Which numeric precision a training run computes in.

``float32`` computes everything in float32. ``mixed_bfloat16`` / ``mixed_float16`` keep the
weights and optimizer state in float32 but run the backbone's matmuls in 16 bits (Keras mixed
precision; the classifier head, the loss and the saved model stay float32; ``mixed_float16``
trains with dynamic loss scaling). ``auto`` picks, on a GPU, ``mixed_bfloat16`` where it has
bfloat16 tensor cores (NVIDIA Ampere or newer: compute capability 8.0 and up), ``mixed_float16``
on Volta and Turing (7.x) and ``float32`` on older ones; on a CPU, ``mixed_bfloat16`` where it has AMX-BF16 or
AVX512-BF16 instructions, whose bfloat16 matmuls run several times faster than float32 ones, and
``float32`` everywhere else.

>>> resolve_precision("float32")
'float32'
>>> resolve_precision("auto") in ("float32", "mixed_bfloat16")
True
"""

from __future__ import annotations

import functools
from pathlib import Path

from tfsft.choices import PRECISIONS
from tfsft.errors import ConfigError

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def resolve_precision(precision: str) -> str:
    """The Keras dtype policy name for a ``precision`` option (``auto`` decided here)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    capabilities = gpu_compute_capabilities()
    if capabilities:
        return gpu_precision(capabilities)
    return "mixed_bfloat16" if cpu_has_fast_bfloat16() else "float32"


def gpu_precision(capabilities: list[tuple[int, int]]) -> str:
    """``mixed_bfloat16`` when every GPU has bfloat16 tensor cores (compute capability >= 8.0),
    ``mixed_float16`` when every GPU has float16 ones (>= 7.0, Volta; trained with loss
    scaling), else ``float32`` (older GPUs, or an unknown capability).

    >>> gpu_precision([(8, 0)]), gpu_precision([(7, 5)]), gpu_precision([(9, 0), (7, 0)])
    ('mixed_bfloat16', 'mixed_float16', 'mixed_float16')
    >>> gpu_precision([(6, 1)]), gpu_precision([(0, 0)])
    ('float32', 'float32')
    """
    if all(c >= (8, 0) for c in capabilities):
        return "mixed_bfloat16"
    return "mixed_float16" if all(c >= (7, 0) for c in capabilities) else "float32"


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """The compute capability of each GPU TensorFlow sees (none without GPUs)."""
    import tensorflow as tf

    out = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        out.append(tuple(details.get("compute_capability") or (0, 0)))
    return out


@functools.cache
def cpu_has_fast_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 matmul instructions (read from ``/proc/cpuinfo`` on Linux)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path(cpuinfo).read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)

