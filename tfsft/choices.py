"""Option choices shared by the configuration, the CLI and the code that uses them.

This module imports nothing heavy, so ``tfsft --help`` can list the choices without TensorFlow.
"""

LR_DECAYS = ("linear", "cosine", "exponential", "constant")
POOLINGS = ("mean", "cls", "pooled")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")
#: What `tfsft data clean` does with rows whose text is labelled two ways.
CONFLICT_RULES = ("drop", "majority", "keep")
#: Losses of the classification tasks.
CLASSIFICATION_LOSSES = ("cross-entropy", "focal")
#: Class-balanced training epochs (text classification).
SAMPLINGS = ("none", "oversample", "undersample")
