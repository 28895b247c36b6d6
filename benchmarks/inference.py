"""Inference latency, side by side: every export of one fine-tuned run, and the HF-TF peer.

``python -m benchmarks.inference EXPORT_DIR RUN_DIR --hf-savedmodel DIR --out F``

Scenarios: batch 1 and batch 32 on SST-2 dev sentences at their real lengths (batches padded to
their longest sentence, as served), and batch 1 / 32 padded to 128 tokens. Artifacts are timed
in alternating blocks of calls (see :func:`measure`), so a slow spell of this machine hits all
of them; each number is a median. ``python -m benchmarks.inference --export-hf DIR`` writes the peer's
SavedModel (transformers ``save_pretrained(saved_model=True)``) in its own process.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks import common

Batch = dict[str, np.ndarray]


def export_hf_savedmodel(target: Path) -> Path:
    """The peer: ``TFBertForSequenceClassification`` on MiniLM, saved for TF Serving."""
    from benchmarks.training import hf_model_and_tokenizer

    model, _ = hf_model_and_tokenizer()
    model.save_pretrained(str(target), saved_model=True)
    return target / "saved_model" / "1"


def scenarios(run_dir: Path, rounds_b1: int = 100, rounds_b32: int = 20) -> dict[str, list[Batch]]:
    """Input batches per scenario, in the token-id layout of the exports."""
    from tfsft.runs import TrainedRun

    tokenizer = TrainedRun(run_dir).tokenizer
    texts, _ = common.sst2_dev()

    def encode(chunk: list[str], pad_to: int | None = None) -> Batch:
        encoded = tokenizer.encode(chunk, max_length=common.MAX_LENGTH)
        batch = {"input_ids": encoded["token_ids"].numpy(),
                 "attention_mask": encoded["padding_mask"].numpy(),
                 "token_type_ids": encoded["segment_ids"].numpy()}
        if pad_to:
            batch = {k: np.pad(v, [(0, 0), (0, pad_to - v.shape[1])]) for k, v in batch.items()}
        return batch

    return {
        "b1_real": [encode([t]) for t in texts[:rounds_b1]],
        "b32_real": [encode(texts[i:i + 32]) for i in range(0, 32 * rounds_b32, 32)],
        "b1_128": [encode([t], common.MAX_LENGTH) for t in texts[:rounds_b1 // 2]],
        "b32_128": [encode(texts[i:i + 32], common.MAX_LENGTH)
                    for i in range(0, 32 * (rounds_b32 // 2), 32)],
    }


def runners(export_dir: Path, run_dir: Path,
            hf_savedmodel: Path | None) -> dict[str, Callable[[Batch], np.ndarray]]:
    from exporters import onnx_model, tflite
    from exporters.savedmodel import TOKEN_IDS_SIGNATURE
    from tfsft.runs import TrainedRun

    model = TrainedRun(run_dir).model
    version = max((p for p in export_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    found = {
        "keras predict": lambda b: model.predict(
            {"token_ids": b["input_ids"], "padding_mask": b["attention_mask"],
             "segment_ids": b["token_type_ids"]}, verbose=0),
        "savedmodel": _signature_runner(version, TOKEN_IDS_SIGNATURE),
    }
    for variant, name in tflite.TOKEN_ID_VARIANTS.items():
        if (export_dir / "tflite" / name).exists():
            found[f"tflite {variant}"] = tflite.token_ids_runner(export_dir / "tflite" / name)
    for variant, name in onnx_model.FILES.items():
        if variant != "fp16" and (export_dir / "onnx" / name).exists():
            found[f"onnx {variant}"] = onnx_model.session_runner(export_dir / "onnx" / name)
    if hf_savedmodel is not None:
        found["hf-tf savedmodel (peer)"] = _signature_runner(hf_savedmodel, "serving_default")
    return found


def _signature_runner(path: Path, signature: str) -> Callable[[Batch], np.ndarray]:
    """A loaded SavedModel's token-id signature (``tf.saved_model.load``, as TF Serving does)."""
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures[signature]
    return lambda batch: serve(**{k: tf.constant(v, tf.int32) for k, v in batch.items()})[
        "logits"].numpy()


def measure(found: dict[str, Callable], inputs: dict[str, list[Batch]],
            blocks: int = 5) -> dict[str, dict[str, float]]:
    """Median milliseconds per call, artifacts timed in alternating blocks on the same inputs.

    Each scenario's inputs are cut into ``blocks`` blocks; every artifact runs a block (after
    one untimed call) before the next artifact takes it. Alternating shares a slow spell of the
    machine among the artifacts; running a whole block keeps one runtime's worker threads (ONNX
    Runtime spins its threads for a while after each call) from slowing the call after it.
    """
    medians: dict[str, dict[str, float]] = {name: {} for name in found}
    for scenario, batches in inputs.items():
        times: dict[str, list[float]] = {name: [] for name in found}
        size = -(-len(batches) // blocks)
        for start in range(0, len(batches), size):
            block = batches[start:start + size]
            for name, run in found.items():
                run(block[0])
                for batch in block:
                    began = time.perf_counter()
                    run(batch)
                    times[name].append((time.perf_counter() - began) * 1000)
        for name, values in times.items():
            medians[name][scenario] = round(float(np.median(values)), 2)
        print(f"{scenario}: " + ", ".join(f"{n} {m[scenario]} ms" for n, m in medians.items()),
              flush=True)
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", type=Path, nargs="?")
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--hf-savedmodel", type=Path)
    parser.add_argument("--export-hf", type=Path, help="only write the peer's SavedModel here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.export_hf:
        print(export_hf_savedmodel(args.export_hf))
        return
    if not (args.export_dir and args.run_dir and args.out):
        parser.error("EXPORT_DIR, RUN_DIR and --out are needed")
    from tfsft.io_utils import atomic_write_json
    latency = measure(runners(args.export_dir, args.run_dir, args.hf_savedmodel),
                      scenarios(args.run_dir))
    atomic_write_json(args.out, {"latency_ms": latency, "peak_rss_mb": round(common.peak_rss_mb())})


if __name__ == "__main__":
    main()
