"""Extractive question answering: readers, windows, answer search (Python = graph), metrics,
and the task contract on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfsft.errors import DataError
from tfsft.evaluation.squad_metrics import best_null_threshold, squad_metrics
from tfsft.tasks import create_task
from tfsft.tasks.question_answering import postprocess as qa_postprocess
from tfsft.tasks.question_answering.examples import QAColumns, examples_from_rows, read_qa_data
from tfsft.tasks.question_answering.graph import question_windows, span_answers
from tfsft.tokenization import WordPieceTokenizer

from .conftest import TINY_VOCAB, qa_rows, write_hf_checkpoint
from .task_contract import run_task_contract


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def squad_document(rows):
    paragraphs = {}
    for row in rows:
        answers = [{"text": t, "answer_start": s}
                   for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"],
                                   strict=True)]
        qa = {"id": row["id"], "question": row["question"], "answers": answers}
        if not answers:
            qa["is_impossible"] = True
        paragraphs.setdefault(row["context"], []).append(qa)
    return {"version": "v2.0", "data": [{"title": "synthetic", "paragraphs": [
        {"context": c, "qas": qas} for c, qas in paragraphs.items()]}]}


# -- readers ---------------------------------------------------------------------------------
def test_squad_json_and_flat_rows_read_the_same_questions(tmp_path):
    rows = qa_rows(40, unanswerable=True)
    squad = tmp_path / "train.json"
    squad.write_text(json.dumps(squad_document(rows)))
    nested = read_qa_data(write_jsonl(tmp_path / "nested.jsonl", rows))
    flat_rows = [{"id": r["id"], "question": r["question"], "context": r["context"],
                  "answer_text": (r["answers"]["text"] or [""])[0],
                  "answer_start": (r["answers"]["answer_start"] or [-1])[0]} for r in rows]
    import pandas as pd

    pd.DataFrame(flat_rows).to_csv(tmp_path / "flat.csv", index=False)
    flat = read_qa_data(tmp_path / "flat.csv")
    from_squad = read_qa_data(squad)
    for data in (nested, flat):
        by_id = dict(zip(data.ids, data.answers, strict=True))
        assert {i: by_id[i] for i in from_squad.ids} == dict(zip(from_squad.ids,
                                                                 from_squad.answers, strict=True))
    assert from_squad.unanswerable == 8 and nested.unanswerable == 8 and flat.unanswerable == 8


def test_real_squad_sample_reads_with_every_answer_checked():
    from .conftest import requires_shared_data

    folder = requires_shared_data() / "squad-sample"
    dev = read_qa_data(folder / "dev-v1.1-sample.json")
    train = read_qa_data(folder / "train-v1.1-sample.json")
    assert (len(dev), len(train)) == (810, 269)
    assert max(len(a) for a in dev.answers) >= 3  # evaluation data: several answers each
    for context, answers in zip(dev.contexts, dev.answers, strict=True):
        for text, start in answers:
            assert context[start:start + len(text)] == text


@pytest.mark.parametrize("row, message", [
    ({"answer_text": "good", "answer_start": 1}, "is not at answer_start 1"),
    ({"answer_text": "great", "answer_start": 0}, "does not occur in the context"),
    ({"answer_text": "good", "answer_start": 99}, "past the end of the context"),
    ({"answer_text": "good", "answer_start": "x"}, "not a character offset"),
    ({"question": "  "}, "the question is empty"),
    ({"context": None}, "the context is missing"),
])
def test_bad_answers_are_refused_with_the_question_id(row, message):
    base = {"id": "q7", "question": "what ?", "context": "good film", "answer_text": "good",
            "answer_start": 0}
    with pytest.raises(DataError, match=message) as caught:
        examples_from_rows([{**base, **row}])
    assert "q7" in str(caught.value)


def test_skip_bad_answers_counts_them():
    rows = [{"question": "what ?", "context": "good film", "answer_text": "good",
             "answer_start": s} for s in (0, 1, 0)]
    from tfsft.tasks.question_answering.examples import Table, examples_from_table

    table = Table("rows", list(rows[0]), rows, ["row 1", "row 2", "row 3"])
    data = examples_from_table(table, QAColumns(), skip_bad_answers=True)
    assert len(data) == 2 and data.skipped == {"answer not at answer_start": 1}
    bad = Table("rows", list(rows[0]), [rows[1]] * 2, ["row 1", "row 2"])
    with pytest.raises(DataError, match=r"every question was skipped \(2 answer not at "):
        examples_from_table(bad, QAColumns(), skip_bad_answers=True)


def test_question_ids_must_be_unique():
    rows = [{"id": i, "question": "what ?", "context": "good film", "answer_text": "good",
             "answer_start": 0} for i in ("a", "b", "a")]
    with pytest.raises(DataError, match=r"row 3 \(id 'a'\): the question id 'a' is also the id "
                                        r"of the question at row 1 \(id 'a'\)"):
        examples_from_rows(rows)


def test_question_ids_of_squad_json_must_be_unique():
    from tfsft.tasks.question_answering.examples import examples_from_squad

    qa = {"id": "q1", "question": "what ?", "answers": [{"text": "good", "answer_start": 0}]}
    document = {"data": [{"paragraphs": [{"context": "good film", "qas": [qa, qa]}]}]}
    with pytest.raises(DataError, match="the question id 'q1' occurs more than once"):
        examples_from_squad(document, "squad.json")


def test_skip_bad_answers_is_an_option_of_evaluate_predict_and_export():
    from tfsft.cli.parser import build_parser

    for command in (["evaluate", "RUN", "--data", "d.json"], ["export", "RUN", "--output", "o"],
                    ["predict", "RUN", "x"]):
        args = build_parser("question-answering").parse_args([*command, "--skip-bad-answers"])
        assert args.skip_bad_answers is True


# -- windows ---------------------------------------------------------------------------------
def test_windows_match_the_hugging_face_fast_tokenizer(tmp_path):
    """Same windows as ``tokenizers`` with truncation only_second, stride and overflow."""
    tokenizers = pytest.importorskip("tokenizers")
    (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
    hf = tokenizers.BertWordPieceTokenizer(str(tmp_path / "vocab.txt"), lowercase=True)
    ours = WordPieceTokenizer(TINY_VOCAB)
    rows = qa_rows(30, seed=4)
    max_length, stride = 20, 4
    windows = question_windows(ours, tf.constant([r["question"] for r in rows]),
                               tf.constant([r["context"] for r in rows]), max_length, stride, 64)
    mask = windows["padding_mask"].numpy().astype(bool)
    got = [row[keep].tolist() for row, keep in zip(windows["token_ids"].numpy(), mask,
                                                   strict=True)]
    expected = []
    for row in rows:
        hf.enable_truncation(max_length, stride=stride, strategy="only_second")
        first = hf.encode(row["question"], row["context"])
        expected += [first.ids] + [o.ids for o in first.overflowing]
    assert got == expected
    assert windows["window_example"].numpy().tolist() == sorted(
        windows["window_example"].numpy().tolist())


def test_graph_answers_equal_the_numpy_post_processing():
    """span_answers (SavedModel) and qa_postprocess.best_answers pick the same spans."""
    tokenizer = WordPieceTokenizer(TINY_VOCAB)
    rows = qa_rows(24, seed=5)
    questions = [r["question"] for r in rows]
    contexts = [r["context"].replace("film", "fïlm") for r in rows]  # non-ASCII offsets
    task = create_task("question-answering", {"doc_stride": 3, "max_answer_length": 4,
                                              "max_question_length": 5})
    windows = question_windows(tokenizer, tf.constant(questions), tf.constant(contexts), 16, 3,
                               5)
    rng = np.random.default_rng(0)
    raw = rng.standard_normal((*windows["token_ids"].shape, 2)).astype(np.float32)
    python = task.data.windows(tokenizer, questions, contexts, 16)
    offsets = np.full((len(raw), raw.shape[1], 2), -1, np.int32)
    for w, row in enumerate(python["offsets"]):
        offsets[w, :len(row)] = row
    mask = windows["padding_mask"].numpy()
    margins = qa_postprocess.null_margins(raw[..., 0], raw[..., 1], offsets,
                                          python["window_example"], len(contexts), mask, 4)
    for threshold in (None, float(np.median(margins))):
        graph = span_answers(tf.constant(raw), windows, tf.constant(contexts), 4, threshold)
        numpy = qa_postprocess.best_answers(raw[..., 0], raw[..., 1], offsets,
                                            python["window_example"], contexts, mask, 4,
                                            threshold)
        assert [a.decode() for a in graph["answer"].numpy()] == [a["answer"] for a in numpy]
        assert graph["start"].numpy().tolist() == [a["start"] for a in numpy]
        np.testing.assert_allclose(graph["score"].numpy(), [a["score"] for a in numpy],
                                   atol=2e-6)
        for answer, context in zip(numpy, contexts, strict=True):
            if answer["start"] >= 0:
                assert context[answer["start"]:answer["end"]] == answer["answer"]
    empty = sum(a["answer"] == "" for a in numpy)
    assert 0 < empty < len(numpy)  # the threshold gave some no-answers


# -- metrics ---------------------------------------------------------------------------------
def test_squad_metrics_follow_the_official_definitions():
    metrics = squad_metrics(["Denver Broncos", "the panthers", "", "1998"],
                            [["Denver Broncos"], ["Carolina Panthers"], [], ["1997", "1999"]])
    assert metrics["exact_match"] == 50.0
    assert metrics["f1"] == pytest.approx(100 * (1 + 2 / 3 + 1 + 0) / 4, abs=1e-3)
    assert metrics["NoAns_f1"] == 100.0 and metrics["HasAns_questions"] == 3
    threshold, f1 = best_null_threshold([0.5, -1.0, 2.0], [1.0, 0.0, 0.0], [True, True, False])
    assert threshold == 0.5 and f1 == pytest.approx(200 / 3, abs=1e-3)


# -- the task contract -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def qa_checkpoint(tmp_path_factory):
    return write_hf_checkpoint(tmp_path_factory.mktemp("qa-bert"), TINY_VOCAB)


CONTRACT_OPTIONS = {"doc_stride": 4, "max_question_length": 6, "max_answer_length": 4}


def test_question_answering_meets_the_task_contract(qa_checkpoint, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", qa_rows(320, seed=1))
    rows = qa_rows(12, seed=9)
    inputs = {"question": [r["question"] for r in rows], "context": [r["context"] for r in rows]}
    result = run_task_contract("question-answering", qa_checkpoint, train_file, tmp_path, inputs,
                               options=CONTRACT_OPTIONS, quality_at_least=30.0, epochs=8,
                               max_length=24, learning_rate=2e-3)
    run_json = json.loads((result.run_dir / "run.json").read_text())
    assert run_json["encoding"]["train"]["windowed_questions"] > 0  # contexts were windowed
    for context, answer in zip(inputs["context"], result.predictions, strict=True):
        assert set(answer) == {"answer", "start", "end", "score"}
        assert context[answer["start"]:answer["end"]] == answer["answer"]
    served = result.extra["served"]
    assert [a.decode() for a in served["answer"]] == [p["answer"] for p in result.predictions]
    assert served["start"].tolist() == [p["start"] for p in result.predictions]
    for folder in ("tflite", "onnx", "1/assets"):
        assert (result.export_dir / folder / "qa_postprocess.py").exists()
    answers = {a["variant"]: a["outputs"]["answer"] for a in result.export_report["artifacts"]
               if a["artifact"] == "onnx"}
    assert answers["fp32"]["agreement"] >= 0.99


def test_hugging_face_datasets_in_the_squad_layout(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = qa_rows(20, seed=3, unanswerable=True)
    dataset = datasets.Dataset.from_list(rows)
    in_memory = read_qa_data(dataset)
    dataset.save_to_disk(str(tmp_path / "saved"))
    from_disk = read_qa_data(tmp_path / "saved")
    expected = [[(t, s) for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"],
                                         strict=True)] for r in rows]
    assert in_memory.answers == expected and from_disk.answers == expected
    assert in_memory.ids == [r["id"] for r in rows]


def test_unanswerable_questions_learn_a_threshold_and_predict_from_the_cli(
        qa_checkpoint, tmp_path, capsys):
    """SQuAD v2 data: a no-answer threshold is learned on validation and saved with the run;
    metrics split HasAns / NoAns; predict answers --question/--context and JSONL input."""
    from tfsft.cli import main as cli
    from tfsft.training.trainer import train

    from .conftest import tiny_config

    train_file = tmp_path / "train.json"
    train_file.write_text(json.dumps(squad_document(qa_rows(240, seed=6, unanswerable=True))))
    config = tiny_config(qa_checkpoint, train_file, tmp_path / "run", task="question-answering",
                         epochs=3, max_length=24, learning_rate=2e-3, **CONTRACT_OPTIONS)
    result = train(config)
    assert {"HasAns_f1", "NoAns_f1", "HasAns_questions"} <= set(result.metrics)
    state = json.loads((result.run_dir / "task.json").read_text())["state"]
    assert state["unanswerable"] is True and isinstance(state["null_threshold"], float)
    wrong = (result.run_dir / "wrong_answers.jsonl").read_text().splitlines()
    predictions = json.loads((result.run_dir / "predictions.json").read_text())
    assert len(predictions) == result.metrics["questions"] and len(wrong) < len(predictions)

    row = qa_rows(1, seed=11)[0]
    capsys.readouterr()
    assert cli(["predict", str(result.run_dir), "--question", row["question"], "--context",
                row["context"]]) == 0
    record = json.loads(capsys.readouterr().out)
    assert set(record) == {"answer", "start", "end", "score"}
    if record["start"] >= 0:
        assert row["context"][record["start"]:record["end"]] == record["answer"]
    write_jsonl(tmp_path / "questions.jsonl",
                [{"question": r["question"], "context": r["context"]} for r in qa_rows(5)])
    assert cli(["predict", str(result.run_dir), "--input", str(tmp_path / "questions.jsonl")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5] and all("id" in r for r in records)
