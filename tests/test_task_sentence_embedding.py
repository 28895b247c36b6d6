"""sentence-embedding: pair reading and its checks, the losses and duplicate masking, retrieval
metrics, and the task contract (train, evaluate, predict, export) on a tiny BERT."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import create_task

from .conftest import FILLER, NEGATIVE, POSITIVE
from .task_contract import run_task_contract

KEYS = POSITIVE + NEGATIVE


def pair_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Synthetic pairs: an anchor and its positive share two key words (120 pairs of keys)
    among other words."""
    rng = random.Random(seed)
    keys = list(itertools.combinations(KEYS, 2))
    rng.shuffle(keys)
    rows = []
    for i in range(count):
        key = list(keys[i % len(keys)])
        anchor = rng.sample(FILLER, 2) + key
        positive = key + rng.sample(FILLER, 3)
        rng.shuffle(positive)
        rows.append({"anchor": " ".join(anchor), "positive": " ".join(positive)})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_pairs_are_checked_row_by_row(tmp_path):
    task = create_task("sentence-embedding")
    good = write_jsonl(tmp_path / "good.jsonl", [{"anchor": "a", "positive": "b"},
                                                 {"anchor": "c", "positive": "c"},
                                                 {"anchor": "a", "positive": "d"}])
    pairs = task.data.read(good)
    assert (pairs.texts, pairs.text_pairs) == (["a", "a"], ["b", "d"])
    assert pairs.skipped == {"positive_equals_anchor": 1} and pairs.duplicate_anchors == 1
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"anchor": "a", "positive": "b"},
                                                   {"anchor": "c", "positive": "  "}])
    with pytest.raises(DataError, match=r"empty.jsonl, line 2: the text \(column 'positive'\)"):
        task.data.read(empty)
    missing = write_jsonl(tmp_path / "missing.jsonl", [{"anchor": "a", "answer": "b"}])
    with pytest.raises(DataError, match=r"no column\(s\) \['positive'\]"):
        task.data.read(missing)
    scored = create_task("sentence-embedding", {"score_column": "score", "score_range": [0, 5]})
    frame = pd.DataFrame({"anchor": ["a", "b"], "positive": ["c", "d"], "score": [4.5, 5.5]})
    with pytest.raises(DataError, match=r"row with index 1: the score .* outside the score range 0..5"):
        scored.data.read(frame)
    frame["score"] = [4.5, float("nan")]
    with pytest.raises(DataError, match=r"row with index 1: the score .* is missing or NaN"
                                        r"\. Fill it in or remove the row"):
        scored.data.read(frame)
    frame["score"] = [5.0, 0.0]
    assert scored.data.read(frame).scores.tolist() == [1.0, 0.0]
    negatives = create_task("sentence-embedding", {"negative_column": "negative"})
    rows = [{"anchor": "a", "positive": "b", "negative": "c"},
            {"anchor": "h", "positive": "i", "negative": "j"},
            {"anchor": "d", "positive": "e", "negative": "e"},
            {"anchor": "f", "positive": "g", "negative": "f"}]
    read = negatives.data.read(write_jsonl(tmp_path / "negatives.jsonl", rows))
    assert (read.texts, read.negatives) == (["a", "h"], ["c", "j"])
    assert read.skipped == {"negative_equals_pair": 2}
    with pytest.raises(DataError, match=r"every pair was skipped \(2 rows whose hard negative"):
        negatives.data.read(write_jsonl(tmp_path / "negatives2.jsonl", rows[2:]))
    same = write_jsonl(tmp_path / "same.jsonl", [{"anchor": "a", "positive": "a"}] * 3)
    with pytest.raises(DataError, match=r"every pair was skipped \(3 rows whose positive is"):
        task.data.read(same)
    from tfsft.tasks.sentence_embedding.examples import read_corpus

    odd = tmp_path / "corpus.lst"
    odd.write_text("a\nb\n")
    with pytest.raises(DataError, match=r"Name it .txt \(one text a line\) or .csv"):
        read_corpus(str(odd))
    with pytest.raises(DataError, match=r"index.NPZ: is a vector index, and only tfsft search"):
        read_corpus(str(tmp_path / "index.NPZ"))


def test_loss_options_are_checked():
    with pytest.raises(ConfigError, match="--loss triplet needs hard negatives"):
        create_task("sentence-embedding", {"loss": "triplet"})
    with pytest.raises(ConfigError, match="--loss cosine needs scored pairs"):
        create_task("sentence-embedding", {"loss": "cosine"})
    with pytest.raises(ConfigError, match="score_range must be two numbers"):
        create_task("sentence-embedding", {"score_range": [1, 0]})
    assert create_task("sentence-embedding", {"score_column": "s"}).loss_kind() == "cosine"


def test_in_batch_loss_masks_duplicates_and_rewards_matching_pairs():
    import tensorflow as tf

    from tfsft.tasks.sentence_embedding.model import MASKED, ContrastiveModel, in_batch_loss

    features = {"anchor_group": tf.constant([0, 1, 0]), "positive_group": tf.constant([0, 1, 2])}
    mask = ContrastiveModel._duplicate_mask(features, with_negatives=False).numpy()
    # rows 0 and 2 share an anchor: neither is the other's negative; the diagonal stays
    assert mask.tolist() == [[0, 0, MASKED], [0, 0, 0], [MASKED, 0, 0]]
    matching = tf.constant([[20.0, 0.0], [0.0, 20.0]])
    swapped = tf.constant([[0.0, 20.0], [20.0, 0.0]])
    assert float(tf.reduce_mean(in_batch_loss(None, matching))) < 1e-6
    assert float(tf.reduce_mean(in_batch_loss(None, swapped))) > 19


def test_sentence_embedding_meets_the_task_contract(tiny_checkpoint, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", pair_rows(240))
    result = run_task_contract("sentence-embedding", tiny_checkpoint, train_file, tmp_path,
                               ["good movie", "the plot was dull"], quality_at_least=0.3,
                               validation_fraction=0.2, epochs=8)
    assert {"recall@1", "recall@5", "mrr@10", "ndcg@10"} <= set(result.metrics)
    # the pretrained (random, here) checkpoint measured on the same pairs, for the report
    assert result.metrics["untuned"]["recall@1"] < result.metrics["recall@1"]
    # every artifact's quality is the recall@1 of its own vectors on the held-out pairs
    keras_quality = next(a["quality"] for a in result.export_report["artifacts"]
                         if a["artifact"] == "keras")
    assert keras_quality == pytest.approx(result.metrics["recall@1"], abs=1e-6)
    vectors = np.array([p["embedding"] for p in result.predictions])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    served = result.extra["served"]["embedding"]
    np.testing.assert_allclose(np.sum(served * vectors, axis=1), 1.0, atol=1e-4)
    errors = (result.run_dir / "errors.jsonl").read_text().splitlines()
    assert all(json.loads(line)["rank"] > 1 for line in errors)


@pytest.mark.parametrize("kind", ["triplet", "cosine"])
def test_triplet_and_scored_pairs_train_and_evaluate(tiny_checkpoint, tmp_path, kind):
    from tfsft.training.trainer import train

    from .conftest import tiny_config

    rows = pair_rows(160, seed=3)
    rng = random.Random(4)
    if kind == "triplet":  # the negative: another row's positive
        options = {"negative_column": "negative", "loss": "triplet"}
        for row in rows:
            row["negative"] = rng.choice(rows)["positive"]
    else:  # scored pairs: half matching (4 or 5), half another row's positive (0 or 1)
        options = {"score_column": "score", "score_range": [0, 5]}
        others = [row["positive"] for row in rows]
        for i, row in enumerate(rows):
            if i % 2:
                row["positive"], row["score"] = rng.choice(others), rng.choice([0, 1])
            else:
                row["score"] = rng.choice([4, 5])
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    result = train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", epochs=8,
                               task="sentence-embedding", validation_fraction=0.2, **options))
    history = result.history
    assert history["loss"][-1] < history["loss"][0]
    if kind == "triplet":  # well above chance: one positive among the corpus
        assert result.metrics["recall@1"] >= 3 / result.metrics["corpus"], result.metrics
    else:  # the cosine regression generalises: its best error on held-out pairs (the epoch
        # whose weights early stopping keeps) is below the first epoch's
        assert min(history["val_loss"]) < history["val_loss"][0], history
        assert {"pearson", "spearman", "untuned"} <= set(result.metrics)


def test_embed_and_search_on_the_command_line(tiny_checkpoint, tmp_path, capsys):
    from tfsft.cli import main as cli
    from tfsft.training.trainer import train

    from .conftest import tiny_config

    rows = pair_rows(96, seed=5)
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    run_dir = train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", epochs=2,
                                task="sentence-embedding", validation_fraction=0.25)).run_dir
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(row["positive"] + "\n\n" for row in rows[:20]))  # blank lines
    index = tmp_path / "index.npz"
    capsys.readouterr()
    assert cli(["embed", str(run_dir), "--input", str(corpus), "--output", str(index)]) == 0
    assert json.loads(capsys.readouterr().out) == {"output": str(index), "texts": 20,
                                                   "dimensions": 16}
    assert cli(["embed", str(run_dir), "--input", str(corpus), "--output", str(index)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    folder = tmp_path / "folder.npz"
    folder.mkdir()
    assert cli(["embed", str(run_dir), "--input", str(corpus), "--output", str(folder),
                "--overwrite"]) == 2
    assert f"--output {folder} is a folder; name a file" in capsys.readouterr().err
    for source in (index, corpus):  # the index, or the texts embedded on the fly
        assert cli(["search", str(run_dir), rows[3]["anchor"], "--corpus", str(source),
                    "--top-k", "3"]) == 0
        hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [h["rank"] for h in hits] == [1, 2, 3]
        assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert cli(["search", str(run_dir), "x", "--corpus", str(empty)]) == 2
    assert "there are no texts" in capsys.readouterr().err
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(index.read_bytes()[:100])
    other = tmp_path / "other.npz"
    np.savez(other, values=np.ones((2, 16)))
    vectors_only = tmp_path / "vectors.npy"
    np.save(vectors_only, np.ones((2, 16)))
    zeros = tmp_path / "zeros.npz"
    np.savez(zeros, vectors=np.zeros((2, 16)), texts=np.array(["a", "b"]))
    # a pickled object in an index would run code when loaded: such files are not read
    ran = tmp_path / "ran"
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, vectors=np.ones((1, 16)),
             texts=np.array([_RunsWhenUnpickled(str(ran))], dtype=object))
    for corpus, message in ((truncated, "cannot be read as an index"),
                            (other, "is not an index written by tfsft embed"),
                            (vectors_only, "holds vectors only, without their texts"),
                            (zeros, "vector 1: is zero or not finite"),
                            (pickled, "cannot be read as an index")):
        assert cli(["search", str(run_dir), "x", "--corpus", str(corpus)]) == 2
        assert message in capsys.readouterr().err
    assert not ran.exists()
    assert cli(["search", str(run_dir), " ", "--corpus", str(index)]) == 2
    assert "query 1 is empty" in capsys.readouterr().err


class _RunsWhenUnpickled:
    """Creates a file when unpickled: what a malicious index could do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_in_batch_negatives_refuse_a_batch_of_one(tiny_checkpoint, tmp_path):
    from tfsft.training.trainer import train

    from .conftest import tiny_config

    train_file = write_jsonl(tmp_path / "train.jsonl", pair_rows(40))
    with pytest.raises(ConfigError, match="at least 2 rows a batch .* --batch-size 1 gives 1"):
        train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", batch_size=1,
                          task="sentence-embedding", validation_fraction=0.25))


def test_pairs_of_one_text_are_spread_over_batches(tiny_checkpoint):
    from tfsft.data.pipeline import make_dataset

    task = create_task("sentence-embedding")
    tokenizer = task.data.load_tokenizer(tiny_checkpoint, 16)
    # five questions per passage, as in SQuAD: 12 passages, 60 pairs
    rows = [{"anchor": f"{FILLER[q]} {key}", "positive": f"{key} {FILLER[p]}"}
            for p, key in enumerate(KEYS[:12]) for q in range(5)]
    encoded = task.data.encode(tokenizer, task.data.read(pd.DataFrame(rows)), 16, training=True)
    assert encoded.batch_groups.shape == (60, 2)
    for epoch in range(2):
        for features, _ in make_dataset(encoded, batch_size=12, shuffle=True, seed=epoch):
            positives = features["positive_group"].numpy()
            assert len(set(positives)) == len(positives), positives  # no duplicate to mask


def test_pairs_train_from_shards(tiny_checkpoint, tmp_path):
    from tfsft.data.shards.manifest import read_manifest
    from tfsft.data.shards.reading import shard_dataset
    from tfsft.data.shards.writing import write_shards

    rows = [{"anchor": f"{FILLER[q]} {key}", "positive": f"{key} {FILLER[p]}"}
            for p, key in enumerate(KEYS[:12]) for q in range(5)]
    source = write_jsonl(tmp_path / "pairs.jsonl", rows)
    # chunks of 7 rows: a text's id must be the same in every chunk, and only equal texts
    # may share one
    manifest = write_shards(create_task("sentence-embedding"), source, tmp_path / "shards",
                            model=tiny_checkpoint, max_length=16, shards=3, chunk_rows=7,
                            workers=1, progress=False)
    ids: dict[int, set] = {}
    distinct = []
    for features, _ in shard_dataset(read_manifest(manifest.folder), batch_size=6, seed=0):
        assert "batch_groups" not in features
        for group, tokens in zip(features["positive_group"].numpy(),
                                 features["token_ids"].numpy().tolist(), strict=True):
            ids.setdefault(int(group), set()).add(tuple(t for t in tokens if t))
        positives = features["positive_group"].numpy()
        distinct.append(len(set(positives)) / len(positives))
    assert len(ids) == 12 and all(len(tokens) == 1 for tokens in ids.values())
    assert np.mean(distinct) > 0.8, distinct


def test_corpus_and_normalisation_options(tiny_checkpoint, tmp_path, capsys):
    from tfsft.cli import main as cli
    from tfsft.training.trainer import train

    from .conftest import tiny_config

    rows = pair_rows(80, seed=6)
    train_file = write_jsonl(tmp_path / "train.jsonl", rows[:60])
    valid_file = write_jsonl(tmp_path / "valid.jsonl", rows[60:])
    corpus = tmp_path / "corpus.txt"  # 10 distractors, a validation positive, blank lines
    corpus.write_text("\n".join(r["positive"] for r in rows[:10]) + "\n\n"
                      + rows[70]["positive"] + "\n")
    result = train(tiny_config(tiny_checkpoint, train_file, tmp_path / "run", epochs=2,
                               validation=str(valid_file), task="sentence-embedding",
                               corpus=str(corpus), normalize="no"))
    distinct = len({r["positive"] for r in rows[60:]})
    assert result.metrics["corpus"] == distinct + 10
    assert result.metrics["untuned"]["corpus"] == distinct + 10
    state = json.loads((result.run_dir / "task.json").read_text())["state"]
    assert state["embedding"] == {"pooling": "mean", "normalize": False}
    capsys.readouterr()
    assert cli(["predict", str(result.run_dir), "a good film"]) == 0
    vector = np.array(json.loads(capsys.readouterr().out.splitlines()[0])["embedding"])
    assert abs(np.linalg.norm(vector) - 1.0) > 1e-3  # not unit length: --normalize no
    # the evaluation corpus can be another file at evaluate time
    other = write_jsonl(tmp_path / "other.jsonl", [{"text": r["positive"]} for r in rows[:30]])
    assert cli(["evaluate", str(result.run_dir), "--data", str(valid_file),
                "--corpus", str(other)]) == 0
    assert json.loads(capsys.readouterr().out)["corpus"] == distinct + 30
    assert cli(["evaluate", str(result.run_dir), "--data", str(valid_file),
                "--corpus", str(other), "--corpus-column", "body"]) == 2
    assert "no column 'body'" in capsys.readouterr().err


def test_quantized_exports_are_gated_on_recall():
    from exporters.verify import Check
    from tfsft.tasks.roles import OutputCheck

    rule = {"embedding": OutputCheck(kind="scores", min_correlation=0.99)}
    vectors = [np.eye(4, dtype=np.float32)]
    mask = [np.ones((4, 3), np.int32)]

    def check(variant, quality):
        return Check("onnx", variant, "m.onnx", 1, rule, {"embedding": vectors},
                     {"embedding": vectors}, mask, quality, "recall@1",
                     reference_quality=0.80, max_quality_loss=0.01)

    assert check("int8-dynamic", 0.795).passed
    failed = check("int8-dynamic", 0.785)
    assert not failed.passed and failed.quality_loss == pytest.approx(0.015)
    assert "loss +0.0150 (at most 0.01)" in failed.gate_text()
    assert check("fp32", 0.70).passed  # fp32 artifacts are held to their outputs, not quality
