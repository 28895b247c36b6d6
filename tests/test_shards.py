"""Streaming readers, task state learned from chunks, tfsft preprocess shards and training on them."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import (
    multi_label_rows,
    regression_rows,
    sentiment_rows,
    tiny_config,
    write_csv,
    write_hf_checkpoint,
)
from tfsft.data.readers import iter_table_chunks, read_table
from tfsft.errors import ConfigError, DataError
from tfsft.tasks.base import create_task

# -- streaming readers --------------------------------------------------------------------------

QUOTED_CSV = ('\ufefftext,label\n"a, quoted\nfield",pos\n\nplain,neg\r\n"say ""hi""",pos\r'
              'last,neg\n')


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    opener = {".gz": gzip.open, ".bz2": bz2.open}.get(path.suffix, open)
    with opener(path, "wb") as handle:
        handle.write(text.encode(encoding))
    return path


@pytest.mark.parametrize("name,text", [
    ("quoted.csv", QUOTED_CSV),
    ("quoted.csv.gz", QUOTED_CSV),
    ("rows.tsv.bz2", "text\tlabel\n" + "".join(f"row {i}\t{i % 3}\n" for i in range(23))),
    ("rows.jsonl", "".join(json.dumps({"text": f"t\u2028{i}", "label": i % 2}) + "\n"
                           + ("\n" if i == 4 else "") for i in range(11))),
])
@pytest.mark.parametrize("chunk_rows", [1, 3, 100])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_chunks_hold_the_rows_and_locations_of_the_whole_table(tmp_path, name, text, chunk_rows,
                                                               encoding):
    from tfsft.data import readers

    path = _write(tmp_path / name, text, encoding)
    whole = read_table(path, encoding=encoding)
    with readers._open_binary(path) as stream:  # blocks of 7 bytes: lines cut anywhere
        assert "".join(readers._decoded_lines(path, stream, encoding, block_size=7)) == (
            text.removeprefix("\ufeff"))
    chunks = list(iter_table_chunks(path, chunk_rows=chunk_rows, encoding=encoding))
    assert all(len(chunk) <= chunk_rows for chunk in chunks)
    assert [row for chunk in chunks for row in chunk.rows] == whole.rows
    assert [where for chunk in chunks for where in chunk.locations] == whole.locations
    assert chunks[-1].columns == whole.columns
    assert len(chunks) == math.ceil(len(whole) / chunk_rows)


def test_parquet_dataframes_and_datasets_come_in_chunks(tmp_path):
    import datasets
    import pandas as pd

    frame = pd.DataFrame({"text": [f"row {i}" for i in range(10)], "label": [i % 2 for i in
                                                                            range(10)]})
    frame.to_parquet(tmp_path / "rows.parquet")
    dataset = datasets.Dataset.from_pandas(frame).cast_column(
        "label", datasets.ClassLabel(names=["neg", "pos"]))
    dataset.save_to_disk(str(tmp_path / "saved"))
    for source in (tmp_path / "rows.parquet", frame, dataset, tmp_path / "saved"):
        chunks = list(iter_table_chunks(source, chunk_rows=4))
        assert [len(c) for c in chunks] == [4, 4, 2]
        assert [r for c in chunks for r in c.rows] == read_table(source).rows
        assert chunks[1].locations[0] == read_table(source).locations[4]


@pytest.mark.parametrize("name,data", [
    ("bad_byte.csv", b"text,label\nfine,pos\ncaf\xe9 ok,neg\n"),
    ("nul.csv", b"text,label\nfine,pos\nbad\x00,neg\n"),
    ("open_quote.csv", b'text,label\nfine,pos\n"never closed,neg\n'),
    ("fields.csv", b"text,label\nfine,pos\ntoo,many,fields\n"),
    ("header.csv", b"text,text\na,b\n"),
    ("empty.csv", b""),
    ("broken.jsonl", b'{"text": "a", "label": 1}\n{"text": \n'),
    ("list.jsonl", b'{"text": "a", "label": 1}\n[1, 2]\n'),
    ("empty.jsonl", b"\n\n"),
    ("cut.csv.gz", gzip.compress(b"text,label\n" + b"fine,pos\n" * 5000)[:-40]),
    ("cut_character.csv", b"text,label\nfine,pos\ncaf\xc3"),
    ("late_byte.csv", b"text,label\n" + b"fine,pos\n" * 20000 + b"caf\xe9 ok,neg\n"),
    ("late_nul.csv", b"text,label\n" + b"fine,pos\n" * 20000 + b"bad\x00,neg\n"),
])
def test_streamed_files_fail_with_the_errors_of_whole_files(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as whole:
        read_table(path)
    with pytest.raises(DataError) as streamed:
        list(iter_table_chunks(path, chunk_rows=2))
    assert str(streamed.value) == str(whole.value)


# -- task state learned from chunks --------------------------------------------------------------

def assert_same_state(state: dict, expected: dict) -> None:
    """Task states equal, target statistics to rounding (pooled from chunks, or in one go)."""
    state, expected = dict(state), dict(expected)
    counts = state.pop("label_counts", None)  # learned from chunks for balanced class weights
    if counts is not None:
        assert len(counts) == len(expected["labels"]) and min(counts) > 0
    for key in ("mean", "std"):
        if key in expected:
            np.testing.assert_allclose(state.pop(key), expected.pop(key), rtol=1e-9)
    assert state == expected


def _state_from_chunks(task_name, options, path, chunk_rows=4):
    task = create_task(task_name, options)
    summaries = [task.data.learn_chunk(chunk) for chunk in iter_table_chunks(path, chunk_rows)]
    task.data.merge_chunks(summaries, str(path))
    return task


@pytest.mark.parametrize("task_name,options,rows", [
    ("text-classification", {"class_weight": "balanced", "exclude_labels": ["meh"]},
     sorted(sentiment_rows(40) + [("so so", "meh")] * 3, key=lambda r: r[1])),
    ("regression", {"target_columns": ["label"]}, regression_rows(37)),
    ("regression", {"target_columns": ["label"], "standardize": False}, regression_rows(9)),
    ("multi-label-classification", {}, multi_label_rows(30)),
])
def test_sentence_tasks_learn_from_chunks_what_they_learn_from_the_whole_file(
        tmp_path, task_name, options, rows):
    path = write_csv(tmp_path / "train.csv", rows)
    whole = create_task(task_name, options)
    examples = whole.data.read(path)
    chunked = _state_from_chunks(task_name, options, path)
    assert_same_state(chunked.state_dict(), whole.state_dict())
    if task_name == "text-classification":  # sorted by label: most chunks hold one label
        reread = chunked.data.read(path, role="eval")
        np.testing.assert_allclose(chunked.data.sample_weights(reread),
                                   whole.data.sample_weights(examples))


def test_token_classification_learns_its_tag_set_from_chunks(tmp_path):
    path = tmp_path / "ner.jsonl"
    rows = [{"tokens": ["Ann", "sings"], "tags": ["B-PER", "O"]},
            {"tokens": ["in", "Rome"], "tags": ["O", "B-LOC"]},
            {"tokens": ["plain", "words"], "tags": ["O", "O"]},
            {"tokens": ["Bo", "Li", "Oslo"], "tags": ["B-PER", "I-PER", "B-LOC"]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole = create_task("token-classification")
    whole.data.read(path)
    chunked = _state_from_chunks("token-classification", {}, path, chunk_rows=1)
    assert chunked.state_dict() == whole.state_dict()


def test_whole_data_checks_still_apply_to_chunked_data(tmp_path):
    path = write_csv(tmp_path / "one.csv", [(f"text {i}", "pos") for i in range(9)])
    with pytest.raises(DataError) as whole:
        create_task("text-classification").data.read(path)
    with pytest.raises(DataError) as chunked:
        _state_from_chunks("text-classification", {}, path)
    assert str(chunked.value) == str(whole.value)
    constant = write_csv(tmp_path / "constant.csv", [(f"text {i}", 2.5) for i in range(9)])
    with pytest.raises(DataError, match="same value in every training row"):
        _state_from_chunks("regression", {"target_columns": ["label"]}, constant)
    with pytest.raises(DataError, match="never occur"):
        _state_from_chunks("text-classification", {"exclude_labels": ["nope"]},
                           write_csv(tmp_path / "two.csv", sentiment_rows(12)))


# -- shards ------------------------------------------------------------------------------------

def _rows_of(dataset, tokens_only=False):
    """Multiset of rows (token ids, segment ids, target, weight) in a dataset of batches."""
    rows = Counter()
    for batch in dataset:
        features, target = batch[0], batch[1]
        weights = batch[2].numpy() if len(batch) == 3 else None
        mask = features["padding_mask"].numpy().astype(bool)
        for i in range(mask.shape[0]):
            ids = tuple(features["token_ids"].numpy()[i][mask[i]].tolist())
            segments = tuple(features["segment_ids"].numpy()[i][mask[i]].tolist())
            value = target.numpy()[i]
            value = tuple(np.round(value[mask[i]] if value.ndim and value.shape[0] == mask.shape[1]
                                   else np.atleast_1d(value), 5).tolist())
            rows[(ids, segments, value, None if weights is None else round(float(weights[i]),
                                                                          5))] += 1
    return rows


@pytest.mark.parametrize("task_name,options,rows", [
    ("text-classification", {"class_weight": "balanced", "exclude_labels": ["meh"]},
     sorted(sentiment_rows(90)[:70] + [("so so", "meh")] * 20, key=lambda r: r[1])),
    ("regression", {"target_columns": ["label"]}, regression_rows(70)),
])
def test_shards_hold_the_batches_of_the_in_memory_pipeline(tiny_checkpoint, tmp_path, task_name,
                                                           options, rows):
    from tfsft.data.pipeline import make_dataset
    from tfsft.data.shards import read_manifest, shard_dataset, write_shards

    path = write_csv(tmp_path / "train.csv", rows)
    manifest = write_shards(create_task(task_name, options), path, tmp_path / "shards", model=tiny_checkpoint,
                            max_length=12, shards=3, chunk_rows=16, workers=2, progress=False)
    task = create_task(task_name, options)
    examples = task.data.read(path)
    tokenizer = task.data.load_tokenizer(tiny_checkpoint, 12)
    encoded = task.data.encode(tokenizer, examples, 12, training=True)
    assert_same_state(manifest.task_state, task.state_dict())
    assert manifest.rows == len(examples) == sum(s["rows"] for s in manifest.shards)
    assert manifest.tokens == int(encoded.lengths.sum())
    assert manifest.skipped == ({"excluded_labels": 20} if task_name == "text-classification"
                                else {})
    again = read_manifest(tmp_path / "shards")
    batches = shard_dataset(again, batch_size=8, seed=3)
    assert int(batches.cardinality()) == math.ceil(len(examples) / 8)
    sizes = [int(b[0]["token_ids"].shape[0]) for b in batches]
    assert sorted(sizes)[1:] == [8] * (len(sizes) - 1)
    assert _rows_of(batches) == _rows_of(make_dataset(encoded, batch_size=8))
    first = [b[0]["token_ids"].numpy().tolist() for b in batches.take(3)]
    second = [b[0]["token_ids"].numpy().tolist() for b in batches.take(3)]
    assert first != second  # every epoch another order
    assert (tmp_path / "shards" / "calibration.jsonl").read_text().count("\n") == min(
        len(examples), 256)


def test_shards_mix_a_file_sorted_by_label(tiny_checkpoint, tmp_path):
    from tfsft.data.shards import read_manifest, shard_dataset, write_shards

    rows = sorted(sentiment_rows(2000), key=lambda r: r[1])  # 1,000 neg, then 1,000 pos
    path = write_csv(tmp_path / "sorted.csv", rows)
    write_shards(create_task("text-classification", {}), path, tmp_path / "shards", model=tiny_checkpoint,
                 max_length=16, shards=4, chunk_rows=128, progress=False)
    manifest = read_manifest(tmp_path / "shards")
    assert [s["rows"] for s in manifest.shards] == [500] * 4  # dealt in turn, in random order
    one_label = [len(set(y.numpy().tolist())) == 1 for _, y in
                 shard_dataset(manifest, batch_size=16, seed=1)]
    assert sum(one_label) <= 3  # a random batch of 16 holds one label with p = 2 ** -15


def test_no_empty_shard_files(tiny_checkpoint, tmp_path, caplog):
    from tfsft.data.shards import read_manifest, shard_dataset, write_shards

    path = write_csv(tmp_path / "few.csv", sentiment_rows(6))
    write_shards(create_task("text-classification", {}), path, tmp_path / "shards",
                 model=tiny_checkpoint, max_length=16, shards=300, progress=False)
    assert "6 rows cannot fill 300 shards; writing at most 6 (one a row" in caplog.text
    manifest = read_manifest(tmp_path / "shards")
    assert [s["rows"] for s in manifest.shards] == [1] * 6  # one a row, as the warning says
    assert sum(s["rows"] for s in manifest.shards) == 6
    assert len(list((tmp_path / "shards").glob("*.tfrecord"))) == len(manifest.shards)
    assert sum(len(y) for _, y in shard_dataset(manifest, batch_size=4, seed=0)) == 6
    # rows are dealt in turn: the shards differ by at most one row
    write_shards(create_task("text-classification", {}),
                 write_csv(tmp_path / "more.csv", sentiment_rows(43)), tmp_path / "dealt",
                 model=tiny_checkpoint, max_length=16, shards=8, progress=False, chunk_rows=10)
    assert sorted(s["rows"] for s in read_manifest(tmp_path / "dealt").shards) == [5] * 5 + [6] * 3


def test_an_edited_manifest_is_refused(tiny_checkpoint, tmp_path, capsys):
    from tfsft.data.shards import read_manifest, write_shards

    path = write_csv(tmp_path / "train.csv", sentiment_rows(30))
    write_shards(create_task("text-classification", {}), path, tmp_path / "shards",
                 model=tiny_checkpoint, max_length=16, shards=2, progress=False)
    from tfsft.cli import main as cli

    capsys.readouterr()
    assert cli(["data", "inspect", str(tmp_path / "shards")]) == 0  # its manifest's report
    report = json.loads(capsys.readouterr().out)
    assert (report["rows"], report["shards"], report["task"]) == (30, 2, "text-classification")
    with pytest.raises(DataError, match="is a shard folder written by tfsft preprocess, not a "
                                        "table"):
        read_table(tmp_path / "shards")  # e.g. given as --validation
    file = tmp_path / "shards" / "manifest.json"
    data = json.loads(file.read_text())
    file.write_text(json.dumps(data, indent=4, sort_keys=True))  # layout alone: still fine
    assert read_manifest(tmp_path / "shards").task_state == data["task_state"]
    data["task_state"]["labels"] = data["task_state"]["labels"][::-1]  # inverted label names
    file.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"manifest.json: was changed after tfsft preprocess"):
        read_manifest(tmp_path / "shards")
    from tfsft.config import TrainConfig

    def config():  # no --model: it comes from the manifest
        return TrainConfig.from_dict({"train": str(tmp_path / "shards"), "output_dir": "o"})

    file.write_text(data and "{truncated")
    with pytest.raises(DataError, match="manifest.json: cannot be read .* manifest is damaged"):
        config()
    file.unlink()
    with pytest.raises(DataError, match="manifest.json is missing, so the shards cannot be read"):
        config()


def test_token_aligned_targets_survive_the_shards(tiny_checkpoint, tmp_path):
    from tfsft.data.pipeline import make_dataset
    from tfsft.data.shards import read_manifest, shard_dataset, write_shards

    path = tmp_path / "ner.jsonl"
    words = ["good", "bad", "film", "the", "great"]
    rng = np.random.default_rng(0)
    with open(path, "w") as handle:
        for _ in range(40):
            tokens = [str(w) for w in rng.choice(words, rng.integers(2, 14))]
            tags = ["B-X" if t == "film" else ("B-Y" if t == "great" else "O") for t in tokens]
            handle.write(json.dumps({"tokens": tokens, "tags": tags}) + "\n")
    manifest = write_shards(create_task("token-classification", {}), path, tmp_path / "shards",
                            model=tiny_checkpoint, max_length=10, shards=2, chunk_rows=7,
                            progress=False)
    task = create_task("token-classification")
    examples = task.data.read(path)
    tokenizer = task.data.load_tokenizer(tiny_checkpoint, 10)
    encoded = task.data.encode(tokenizer, examples, 10, training=True)
    batches = shard_dataset(read_manifest(tmp_path / "shards"), batch_size=6, seed=0,
                            buckets=(8, 16))
    assert {b[0]["token_ids"].shape[1] for b in batches} <= {8, 16}
    assert _rows_of(batches) == _rows_of(make_dataset(encoded, batch_size=6))
    # long sentences are split into windows: more training rows than sentences, both counted
    assert manifest.extra["examples"] == 40 < manifest.rows == len(encoded)


def test_shard_folders_are_checked(tiny_checkpoint, tmp_path):
    from tfsft.data.shards import read_manifest, write_shards

    path = write_csv(tmp_path / "train.csv", sentiment_rows(30))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not written by tfsft preprocess"):
        write_shards(create_task("text-classification", {}), path, tmp_path / "mine", model=tiny_checkpoint,
                     progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    out = tmp_path / "shards"
    write_shards(create_task("text-classification", {}), path, out, model=tiny_checkpoint, shards=2,
                 progress=False)
    with pytest.raises(ConfigError, match="pass --overwrite"):
        write_shards(create_task("text-classification", {}), path, out, model=tiny_checkpoint, progress=False)
    write_shards(create_task("text-classification", {}), path, out, model=tiny_checkpoint, shards=3,
                 overwrite=True, progress=False)
    with pytest.raises(ConfigError, match="--workers must be at least 1, got 0"):
        write_shards(create_task("text-classification", {}), path, tmp_path / "new",
                     model=tiny_checkpoint, workers=0, progress=False)
    with pytest.raises(ConfigError, match="--max-length must be between 8 and 512, got 0"):
        write_shards(create_task("text-classification", {}), path, tmp_path / "new",
                     model=tiny_checkpoint, max_length=0, progress=False)
    (out / "notes.txt").write_text("mine")  # a user's file inside the shard folder
    with pytest.raises(ConfigError, match=r"holds files tfsft preprocess did not write \(notes"):
        write_shards(create_task("text-classification", {}), path, out, model=tiny_checkpoint,
                     shards=2, overwrite=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine"
    assert len(read_manifest(out).shards) == 3 and len(list(out.glob("*.tfrecord"))) == 3
    shard = sorted(out.glob("*.tfrecord"))[1]
    shard.write_bytes(shard.read_bytes()[:-5])
    with pytest.raises(DataError, match="cut short"):
        read_manifest(out)
    shard.unlink()
    with pytest.raises(DataError, match="is missing"):
        read_manifest(out)
    with pytest.raises(DataError, match="not a folder written by tfsft preprocess"):
        read_manifest(tmp_path / "mine")


def test_preprocess_and_train_from_shards_on_the_command_line(tiny_checkpoint, tmp_path, capsys,
                                                              caplog):
    from tfsft.cli import main

    train = write_csv(tmp_path / "train.csv", sentiment_rows(200), header=("review", "label"))
    validation = write_csv(tmp_path / "dev.csv", sentiment_rows(40, seed=5))
    shards = tmp_path / "shards"
    assert main(["preprocess", "--train", str(train), "--output", str(shards), "--model",
                 str(tiny_checkpoint), "--text-column", "review", "--max-length", "16",
                 "--shards", "4", "--chunk-rows", "64", "--no-progress"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["rows"] == 200 and printed["shards"] == 4

    common = ["train", "--train", str(shards), "--epochs", "6", "--batch-size", "16",
              "--learning-rate", "3e-3", "--precision", "float32", "--no-tensorboard",
              "--backup-every-steps", "5", "--validation-text-column", "text"]
    assert main([*common, "--output-dir", str(tmp_path / "nope")]) == 2
    assert "pass a --validation file" in capsys.readouterr().err
    assert main([*common, "--validation", str(train), "--output-dir", str(tmp_path / "nope")]) == 2
    printed = capsys.readouterr().err
    assert "the validation data is the training file itself" in printed
    assert "shards cannot be split" in printed and "leave it out" not in printed
    assert main([*common, "--validation", str(validation), "--label-column", "stars",
                 "--output-dir", str(tmp_path / "nope")]) == 2
    assert "preprocessed with --label-column 'label'" in capsys.readouterr().err
    assert main([*common, "--validation", str(validation), "--max-length", "32",
                 "--output-dir", str(tmp_path / "nope")]) == 2
    assert "--max-length 16" in capsys.readouterr().err
    other = write_hf_checkpoint(tmp_path / "other-bert", ["[PAD]", "[UNK]", "[CLS]", "[SEP]",
                                                          "good", "bad"])
    assert main([*common, "--validation", str(validation), "--model", str(other),
                 "--output-dir", str(tmp_path / "nope")]) == 2
    assert "another tokenizer" in capsys.readouterr().err

    run = tmp_path / "run"
    assert main([*common, "--validation", str(validation), "--output-dir", str(run)]) == 0
    summary = json.loads((run / "run.json").read_text())
    assert summary["train_data"] == "shards" and summary["train_examples"] == 200
    assert summary["optimizer_steps"] == 6 * math.ceil(200 / 16)
    assert (run / "calibration.jsonl").is_file() and (run / "model.keras").is_file()
    check = json.loads((run / "data_check.json").read_text())
    assert check["train"]["rows"] == 200 and check["train"]["labels"]["counts"] == {
        "neg": 100, "pos": 100}
    with caplog.at_level(logging.INFO, logger="tfsft"):  # --max-train-rows: the rows trained
        assert main([*common, "--validation", str(validation), "--max-train-rows", "40",
                     "--epochs", "1", "--output-dir", str(tmp_path / "first40")]) == 0
    assert "40 training and 40 validation examples" in caplog.text
    assert json.loads((tmp_path / "first40" / "run.json").read_text())["train_examples"] == 40


def test_training_from_shards_matches_training_from_the_file(tiny_checkpoint, tmp_path):
    """Same rows, same steps: a tiny model reaches the same quality either way."""
    from tfsft.data.shards import write_shards
    from tfsft.training.trainer import train

    path = write_csv(tmp_path / "train.csv", sentiment_rows(512, seed=1))
    validation = write_csv(tmp_path / "dev.csv", sentiment_rows(64, seed=9))
    write_shards(create_task("text-classification", {}), path, tmp_path / "shards", model=tiny_checkpoint,
                 max_length=16, shards=4, progress=False)
    results = {}
    for name, data in (("file", path), ("shards", tmp_path / "shards")):
        config = tiny_config(tiny_checkpoint, data, tmp_path / f"run-{name}",
                             validation=str(validation))
        results[name] = train(config)
    assert results["shards"].summary["optimizer_steps"] == results["file"].summary[
        "optimizer_steps"]
    assert results["file"].metrics["accuracy"] >= 0.9
    assert results["shards"].metrics["accuracy"] >= 0.9


def test_a_damaged_shard_is_named(tiny_checkpoint, tmp_path):
    from tfsft.data.shards import read_manifest, write_shards
    from tfsft.training.trainer import train

    path = write_csv(tmp_path / "train.csv", sentiment_rows(64, seed=1))
    write_shards(create_task("text-classification", {}), path, tmp_path / "shards",
                 model=tiny_checkpoint, max_length=16, shards=2, progress=False)
    damaged = read_manifest(tmp_path / "shards").files[1]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped: the size is unchanged
    damaged.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{damaged.name}: the shard file is damaged"):
        train(tiny_config(tiny_checkpoint, tmp_path / "shards", tmp_path / "run", epochs=1,
                          validation=str(write_csv(tmp_path / "dev.csv", sentiment_rows(8)))))


@pytest.mark.parametrize("task_name,name,text,message", [
    ("token-classification", "train.conll", "Ann B-PER\nsings O\n", "CoNLL file cannot"),
    ("question-answering", "train.json", '{"data": []}', "SQuAD-style JSON document cannot"),
])
def test_documents_that_are_not_rows_are_refused_by_preprocess(tmp_path, task_name, name, text,
                                                              message):
    from tfsft.data.shards import write_shards

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        write_shards(create_task(task_name, {}), path, tmp_path / "shards", progress=False)
    assert not (tmp_path / "shards").exists()


def test_workers_read_their_own_shards_for_the_same_steps(tiny_checkpoint, tmp_path):
    """What each of two workers reads (tfsft.training.trainer._worker_shards): its own shard
    files only, the same number of full batches, together nearly every row once per epoch."""
    from tfsft.data.shards import read_manifest, shard_dataset, write_shards

    path = write_csv(tmp_path / "train.csv", sentiment_rows(300))
    write_shards(create_task("text-classification", {}), path, tmp_path / "shards", model=tiny_checkpoint,
                 max_length=16, shards=4, progress=False)
    manifest = read_manifest(tmp_path / "shards")
    steps = math.ceil(manifest.rows / 16)
    every_row = Counter(r[0] for r in _rows_of(shard_dataset(manifest, 16)).elements())
    seen: Counter = Counter()
    for worker in (0, 1):
        own = Counter(r[0] for r in _rows_of(shard_dataset(manifest, 16, seed=1,
                                                           files=[worker, worker + 2])).elements())
        batches = list(shard_dataset(manifest, 8, seed=1, files=[worker, worker + 2],
                                     steps=steps))
        assert len(batches) == steps and {len(b[1]) for b in batches} == {8}
        rows = Counter(r[0] for r in _rows_of(batches).elements())
        assert set(rows) <= set(own)  # nothing from the other worker's files
        seen += rows
    assert sum((seen & every_row).values()) >= 0.95 * manifest.rows


def test_a_shard_folder_of_an_older_format_version_is_refused(tmp_path):
    from tfsft.data.shards.manifest import MANIFEST_FILE, read_manifest

    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"format": "tfsft-shards", "version": 1}))
    with pytest.raises(DataError, match=r"version 1; this tfsft reads 'tfsft-shards' version 2. "
                                        r"Run tfsft preprocess again"):
        read_manifest(tmp_path)
