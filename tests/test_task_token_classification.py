"""token-classification (NER) on the task contract; readers, tag schemes, alignment, windows."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest

from tfsft.errors import ConfigError, DataError
from tfsft.tasks import create_task
from tfsft.tasks.token_classification import tags as tag_schemes
from tfsft.tasks.token_classification.examples import read_token_data

from .conftest import TINY_VOCAB, write_hf_checkpoint
from .task_contract import run_task_contract

PEOPLE = ["anna", "bob", "carla", "dirk"]
PLACES = ["paris", "oslo", "rome"]
FILLER = ["the", "movie", "was", "a", "story", "and", "really", "it", "this", "very", "of"]


def ner_sentences(count: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Synthetic sentences: names (PER, one or two words) and cities (LOC) among filler words."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        tokens, tags = [], []
        for _ in range(rng.randint(1, 3)):
            filler = rng.sample(FILLER, rng.randint(1, 3))
            tokens += filler
            tags += ["O"] * len(filler)
            if rng.random() < 0.5:
                name = [rng.choice(PEOPLE).title()] + ([rng.choice(PEOPLE).title()]
                                                       if rng.random() < 0.3 else [])
                tokens += name
                tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
            else:
                tokens.append(rng.choice(PLACES).title())
                tags.append("B-LOC")
        tokens.append(".")
        tags.append("O")
        sentences.append((tokens, tags))
    return sentences


def write_conll(path, sentences, docstart: bool = True) -> object:
    lines = ["-DOCSTART- -X- O", ""] if docstart else []
    for tokens, tags in sentences:
        lines += [f"{token} NN {tag}" for token, tag in zip(tokens, tags, strict=True)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ner_checkpoint(tmp_path_factory):
    """The tiny BERT with the first names in its vocabulary (places are spelled in pieces)."""
    return write_hf_checkpoint(tmp_path_factory.mktemp("tiny-ner-bert"), TINY_VOCAB + PEOPLE)


TEXTS = ["the movie of Anna and Paris .", "this story of Bob Carla", "  Rome ,  really"]


@pytest.fixture(scope="module")
def ner_contract(ner_checkpoint, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ner-contract")
    train_file = write_conll(tmp_path / "train.txt", ner_sentences(500, seed=3))
    return run_task_contract("token-classification", ner_checkpoint, train_file, tmp_path,
                             TEXTS, options={"stride": 4}, quality_at_least=0.8, epochs=8,
                             max_length=24)


def test_token_classification_meets_the_task_contract(ner_contract):
    result, texts = ner_contract, TEXTS
    first = result.predictions[0]["entities"]
    assert [(e["type"], e["text"]) for e in first] == [("PER", "Anna"), ("LOC", "Paris")]
    for text, record in zip(texts, result.predictions, strict=True):
        for entity in record["entities"]:
            assert text[entity["start"]:entity["end"]] == entity["text"]
    # the SavedModel decodes the same entities, with character offsets into the raw strings
    served = result.extra["served"]
    for i, record in enumerate(result.predictions):
        count = int(served["entity_count"][i])
        spans = [(served["entity_types"][i][j].decode(), int(served["entity_starts"][i][j]),
                  int(served["entity_ends"][i][j])) for j in range(count)]
        assert spans == [(e["type"], e["start"], e["end"]) for e in record["entities"]]
    # ... also in a fresh process that has only TensorFlow and tf-text
    assert _served_in_fresh_process(result.export_dir / "1", texts) == [
        [(e["type"], e["text"], e["start"], e["end"]) for e in record["entities"]]
        for record in result.predictions]
    for name in ("ner_report.txt", "entity_confusion.tsv", "errors.jsonl"):
        assert (result.run_dir / name).exists(), name
    assert {"f1", "precision", "recall", "f1_macro", "token_accuracy", "per_type"} <= set(
        result.metrics)
    assert json.loads((result.run_dir / "task.json").read_text())["state"]["scheme"] == "BIO"


def test_cli_predicts_entities_from_text_and_jsonl_files(ner_contract, tmp_path, capsys):
    from tfsft.cli import main as cli

    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n")
    records = tmp_path / "texts.jsonl"
    records.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    outputs = []
    for source in (lines, records):
        capsys.readouterr()
        assert cli(["predict", str(ner_contract.run_dir), "--input", str(source)]) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    for output in outputs:  # each record names its input's line
        assert [record.pop("line") for record in output] == list(range(1, len(TEXTS) + 1))
    assert outputs[0] == outputs[1] == ner_contract.predictions
    conll = tmp_path / "tagged.txt"  # CoNLL token lines: read as sentences, not one text a line
    conll.write_text("\n\n".join("\n".join(f"{token} O" for token in text.split())
                                 for text in TEXTS) + "\n")
    capsys.readouterr()
    assert cli(["predict", str(ner_contract.run_dir), "--input", str(conll)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == [" ".join(text.split()) for text in TEXTS]
    starts = [1] + [i + 2 for i, line in enumerate(conll.read_text().splitlines()) if not line]
    assert [r["line"] for r in records] == starts  # each sentence's first line
    assert [[e["text"] for e in r["entities"]] for r in records] == [
        [e["text"] for e in p["entities"]] for p in ner_contract.predictions]


def test_cli_evaluates_character_span_data(ner_contract, tmp_path, capsys):
    from tfsft.cli import main as cli

    spans = tmp_path / "spans.jsonl"
    spans.write_text(json.dumps({"text": "the movie of Anna and Paris .", "entities": [
        {"start": 13, "end": 17, "label": "PER"}, {"start": 22, "end": 27, "label": "LOC"}]})
        + "\n")
    capsys.readouterr()
    assert cli(["evaluate", str(ner_contract.run_dir), "--data", str(spans)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["examples"] == 1 and metrics["entities"] == 2


SERVE = """
import json, sys
import tensorflow as tf, tensorflow_text  # noqa: F401
texts = json.loads(sys.argv[2])
out = tf.saved_model.load(sys.argv[1]).signatures["serving_default"](text=tf.constant(texts))
spans = []
for i, text in enumerate(texts):
    row = []
    for j in range(int(out["entity_count"][i])):
        start, end = int(out["entity_starts"][i][j]), int(out["entity_ends"][i][j])
        entity_text = out["entity_texts"][i][j].numpy().decode()
        assert text[start:end] == entity_text, (text, start, end, entity_text)
        row.append([out["entity_types"][i][j].numpy().decode(), entity_text, start, end])
    spans.append(row)
print(json.dumps(spans))
"""


def _served_in_fresh_process(saved_model, texts):
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", SERVE, str(saved_model), json.dumps(texts)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    return [[tuple(entity) for entity in row] for row in json.loads(done.stdout)]


# -- readers --------------------------------------------------------------------------------

def test_conll_reader_joins_tokens_skips_docstart_and_keeps_lines(tmp_path):
    path = write_conll(tmp_path / "a.txt", [(["EU", "rejects", "German", "call"],
                                             ["B-ORG", "O", "B-MISC", "O"]),
                                            (["Peter", "Blackburn"], ["B-PER", "I-PER"])])
    data = read_token_data(path)
    assert data.texts == ["EU rejects German call", "Peter Blackburn"]
    assert data.locations == ["line 3", "line 8"] and data.skipped == {"-DOCSTART- lines": 1}
    assert data.entities(1) == [(0, 15, "PER")] and data.scheme == "BIO"


def test_conll_reader_drops_a_byte_order_mark_and_refuses_nul_bytes(tmp_path):
    from tfsft.errors import DataError

    path = write_conll(tmp_path / "a.txt", [(["EU", "rejects"], ["B-ORG", "O"])])
    text = path.read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8-sig")  # a BOM, as some editors write
    assert read_token_data(path).texts == ["EU rejects"]
    lines = text.splitlines()
    lines[3] = lines[3].replace("rejects", "rej\x00ects")  # line 4
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a.txt, line 4, column \d+: holds a NUL byte"):
        read_token_data(path)


def test_conll_tags_written_as_ids_read_with_tag_names(tmp_path):
    path = tmp_path / "ids.conll"
    path.write_text("EU 3\nrejects 0\n\nPeter 1\nBlackburn 2\n")
    data = read_token_data(path, tag_names=["O", "B-PER", "I-PER", "B-ORG"])
    assert data.tags == [["B-ORG", "O"], ["B-PER", "I-PER"]]
    with pytest.raises(DataError, match="tag id 3 is outside the 2 tag names"):
        read_token_data(path, tag_column=1, tag_names=["O", "B-PER"])


CONLLU = """# sent_id = 1
# text = Obama visited Paris .
1\tObama\tObama\tPROPN\tNNP\t_\t2\tnsubj\t_\t_
2\tvisited\tvisit\tVERB\tVBD\t_\t0\troot\t_\t_
3-4\tParis.\t_\t_\t_\t_\t_\t_\t_\t_
3\tParis\tParis\tPROPN\tNNP\t_\t2\tobj\t_\t_
4\t.\t.\tPUNCT\t.\t_\t2\tpunct\t_\t_

# sent_id = 2
1\tMerkel\tMerkel\tPROPN\tNNP\t_\t0\troot\t_\t_
"""


def test_comment_lines_are_left_out_and_a_hash_token_is_kept(tmp_path):
    path = tmp_path / "comments.txt"
    path.write_text("# sent_id = 0\nEU B-ORG\n# O\nrejects O\n\n# newdoc\nPeter B-PER\n")
    data = read_token_data(path)
    assert data.texts == ["EU # rejects", "Peter"]
    assert data.skipped == {"comment lines": 2} and data.locations == ["line 2", "line 7"]


def test_conllu_is_read_from_its_form_column_and_refused_for_training(tmp_path):
    from tfsft.tasks.token_classification.examples import looks_like_conll

    path = tmp_path / "ud.txt"
    path.write_text(CONLLU)
    assert looks_like_conll(path)
    data = read_token_data(path, labelled=False)
    assert data.texts == ["Obama visited Paris .", "Merkel"]  # no range line, no comments
    with pytest.raises(DataError, match="a CoNLL-U file .* none of its columns holds entity"):
        read_token_data(path)


def test_a_named_tag_column_does_not_turn_sentences_into_conll(tmp_path):
    from tfsft.tasks.token_classification.examples import looks_like_conll

    sentences = tmp_path / "sentences.txt"
    sentences.write_text("Obama visited Paris on Monday .\nMerkel met Macron .\nNew York\n")
    conll = tmp_path / "ids.txt"
    conll.write_text("EU 3\nrejects 0\n\nPeter 1\nBlackburn 2\n")
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("EU\nrejects\n\nPeter\nBlackburn\nsaid\n")
    assert not looks_like_conll(sentences, tag_column=1)
    assert looks_like_conll(conll, tag_column=1) and not looks_like_conll(conll)
    assert looks_like_conll(tokens, tag_column=3)  # a run's tag column, a tokens-only file


def test_a_typo_or_a_comment_in_the_entity_column_does_not_switch_columns(tmp_path):
    rows = [("EU", "NNP", "B-NP", "B-ORG"), ("rejects", "VBZ", "B-VP", "O"),
            ("German", "JJ", "B-NP", "B-MISC"), ("call", "NN", "I-NP", "O")] * 30
    lines = [" ".join(r) for r in rows]
    lines[29] = "call NN I-NP 0"  # one tag typed as a zero, line 30
    path = tmp_path / "typo.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"typo.txt, line 30: tag '0' is a number"):
        read_token_data(path)
    lines[29] = "call NN I-NP O"
    path.write_text("# from O Globo\n" + "\n".join(lines) + "\n")
    data = read_token_data(path)
    assert {t for _, _, t in data.entities(0)} == {"ORG", "MISC"}
    assert data.skipped == {"comment lines": 1}


def test_conllu_with_an_entity_column_and_texts_that_only_look_like_tags(tmp_path):
    from tfsft.tasks.token_classification.examples import looks_like_conll

    ud = tmp_path / "ud_ner.txt"
    ud.write_text("".join(line + ("\tB-PER" if line.startswith("1\t") else "\tO")
                          + "\n" if line and not line.startswith("#") else line + "\n"
                          for line in CONLLU.splitlines()))
    data = read_token_data(ud)
    assert data.texts == ["Obama visited Paris .", "Merkel"]
    assert data.entities(1) == [(0, 6, "PER")]
    texts = tmp_path / "models.txt"
    texts.write_text("Interstate I-95\nBoeing B-52\nVitamin B-12\nRoute E-3\n")
    assert not looks_like_conll(texts)


def test_sentences_are_not_taken_for_a_conll_file(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_text("Obama visited Paris\nMerkel met Macron\n\nGoogle bought YouTube today\n")
    with pytest.raises(DataError, match="this looks like one text a line, not a CoNLL file"):
        read_token_data(path)
    path.write_text("Obama visited Paris\nMerkel met Macron\n\nGoogle bought YouTube\n")
    with pytest.raises(DataError, match="the tag column holds no tag such as O or B-PER"):
        read_token_data(path, tag_column=1)


def test_a_tag_column_that_holds_no_tags_is_refused(tmp_path):
    path = tmp_path / "conll.txt"
    path.write_text("EU 3 B-ORG\nrejects 0 O\nGerman 7 B-MISC\n\nPeter 1 B-PER\nBlackburn 2 I-PER\n")
    assert read_token_data(path).scheme == "BIO"  # the last column that holds tags
    with pytest.raises(DataError, match="the tags are the tokens themselves for 5 of 5 tokens"):
        read_token_data(path, tag_column=0)
    with pytest.raises(DataError, match=r"conll.txt, line 1: tag '3' is a number"):
        read_token_data(path, tag_column=1)
    words = [[f"w{i}{j}" for j in range(3)] for i in range(90)]  # words, no tag at all
    frame = pd.DataFrame({"tokens": [["a", "b", "c"]] * 90, "tags": words})
    with pytest.raises(DataError, match="the tag column holds no tag such as O or B-PER "
                                        "\\(the first is 'w00'\\)"):
        create_task("token-classification").data.read(frame)
    words = [["O", f"w{i}1", f"w{i}2", f"w{i}3"] for i in range(90)]  # 270 distinct "types"
    frame = pd.DataFrame({"tokens": [["a", "b", "c", "d"]] * 90, "tags": words})
    with pytest.raises(DataError, match="the tags name 270 entity types"):
        create_task("token-classification").data.read(frame)


def test_a_bad_token_of_a_jsonl_row_is_named_by_its_row(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]})
                    + "\n" + json.dumps({"tokens": ["EU", ""], "tags": ["B-ORG", "O"]}) + "\n")
    with pytest.raises(DataError, match=r"rows.jsonl, line 2, token 2: token 2 \(''\) is empty"):
        read_token_data(path)
    conll = tmp_path / "a.txt"  # one token a line: the token's own line
    conll.write_text("Peter B-PER\nBlackburn I-PER\n\nEU B-ORG\nsays I-LOC\n")
    with pytest.raises(DataError, match=r"a.txt, line 5: tag"):
        read_token_data(conll)


def test_span_offsets_must_be_whole_numbers():
    task = create_task("token-classification", {"entities_column": "entities"})
    for offset in ("0", 0.5):
        frame = pd.DataFrame({"text": ["Peter sings"],
                              "entities": [[{"start": offset, "end": 5, "label": "PER"}]]})
        with pytest.raises(DataError, match=f"entity 1 has the offset {offset!r} .* not a whole"):
            task.data.read(frame)


def test_entities_that_all_lie_inside_words_are_an_error(tmp_path, caplog):
    folder = write_hf_checkpoint(tmp_path / "ckpt", TINY_VOCAB)
    task = create_task("token-classification", {"entities_column": "entities"})
    frame = pd.DataFrame({"text": ["NewYork is big", "goodfilm here"],
                          "entities": [[{"start": 3, "end": 7, "label": "LOC"}],
                                       [{"start": 4, "end": 8, "label": "MISC"}]]})
    examples = task.data.read(frame)
    tokenizer = task.data.load_tokenizer(folder, 16)
    with pytest.raises(DataError, match="none of the 2 entities covers a word piece"):
        task.data.encode(tokenizer, examples, 16, training=True)
    task.data.encode(tokenizer, examples, 16)  # held-out data: counted, with a warning
    assert "2 entities lie inside a single word piece and are left out" in caplog.text


def test_character_per_line_chinese_data_is_joined_without_spaces(tmp_path):
    path = tmp_path / "msra.txt"
    path.write_text("我 O\n在 O\n北 B-LOC\n京 E-LOC\n\n张 B-PER\n三 E-PER\n说 O\n", "utf-8")
    data = read_token_data(path)
    assert data.texts == ["我在北京", "张三说"] and data.scheme == "BIOES"
    assert data.entities(0) == [(2, 4, "LOC")]


def test_bmes_tags_are_detected(tmp_path):
    path = tmp_path / "bmes.txt"
    path.write_text("中 B-ORG\n国 M-ORG\n队 E-ORG\n赢 O\n了 S-LOC\n", "utf-8")
    data = read_token_data(path)
    assert data.scheme == "BMES" and data.entities(0) == [(0, 3, "ORG"), (4, 5, "LOC")]


def test_jsonl_tokens_and_tags(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"tokens": ["Bob", "runs"], "tags": ["B-PER", "O"]}) + "\n")
    data = read_token_data(path)
    assert data.texts == ["Bob runs"] and data.entities(0) == [(0, 3, "PER")]


def test_jsonl_character_spans_split_words_at_entity_edges(tmp_path):
    path = tmp_path / "spans.jsonl"
    text = "Obamacare, said Mr. Obama."
    path.write_text(json.dumps({"text": text, "entities": [
        {"start": 0, "end": 5, "label": "PER"}, {"start": 20, "end": 25, "label": "PER"}]}) + "\n")
    data = read_token_data(path)
    assert [text[s:e] for s, e, _ in data.entities(0)] == ["Obama", "Obama"]
    assert data.texts == [text]


def test_hf_dataset_with_classlabel_tag_names():
    import datasets

    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})
    dataset = datasets.Dataset.from_dict(
        {"tokens": [["Ann", "Lee", "sings"]], "ner_tags": [[1, 2, 0]]}, features=features)
    data = read_token_data(dataset)
    assert data.tags == [["B-PER", "I-PER", "O"]] and data.entities(0) == [(0, 7, "PER")]


def _bad_conll(tmp_path, content: str):
    path = tmp_path / "bad.txt"
    path.write_text(content, "utf-8")
    return path


@pytest.mark.parametrize("content, where, problem", [
    ("EU B-ORG\nrejects\n", "line 2", "one column"),
    ("EU NNP B-ORG\nrejects O\n", "line 2", "2 columns where earlier lines have 3"),
    ("Big B-ORG\nthe O\nEU I-ORG\n", "line 3", "tag I-ORG follows O"),
    ("EU B-ORG\nrejects 0\n", None, "no column holds tags"),
    ("EU B-ORG\nvisits O\nBerlin I-LOC\n", "line 3", "tag I-LOC follows O"),
    ("\n\n-DOCSTART- O\n\n", None, "no sentences found"),
])
def test_bad_conll_lines_are_named(tmp_path, content, where, problem):
    path = _bad_conll(tmp_path, content)
    location = f"{path}, {where}" if where else f"{path}"
    with pytest.raises(DataError, match=f"^{location}: .*{problem}"):
        read_token_data(path)


def test_unclosed_bioes_entity_is_reported(tmp_path):
    path = _bad_conll(tmp_path, "Big B-ORG\nCorp I-ORG\nsays O\nhi S-PER\n")
    with pytest.raises(DataError, match="line 2: tag I-ORG is not closed before O"):
        read_token_data(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("EU B-ORG\nK\u00f6ln B-LOC\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 2, column 2: bytes .* are not valid utf-8"):
        read_token_data(path)


def test_repair_tags_fixes_and_counts(tmp_path):
    path = _bad_conll(tmp_path, "the O\nEU I-ORG\nand B-MISC\nBonn I-LOC\n")
    data = read_token_data(path, repair=True)
    assert data.tags == [["O", "B-ORG", "B-MISC", "B-LOC"]] and data.repaired == 2


@pytest.mark.parametrize("entities, problem", [
    ([{"start": 0, "end": 40, "label": "PER"}], "outside the text"),
    ([{"start": 3, "end": 3, "label": "PER"}], "outside the text of 9 characters or empty"),
    ([{"start": 0, "end": 3, "label": "PER"}, {"start": 2, "end": 5, "label": "LOC"}], "overlap"),
    ([{"start": 0, "end": 3}], "is not an object with start, end and label"),
    ([{"start": 0, "end": 3, "label": "B-PER"}], "has the label 'B-PER'"),
])
def test_bad_character_spans_are_errors(tmp_path, entities, problem):
    path = tmp_path / "spans.jsonl"
    path.write_text(json.dumps({"text": "Ann Smith", "entities": entities}) + "\n")
    with pytest.raises(DataError, match=f"{path}, line 1: .*{problem}"):
        read_token_data(path)


def test_token_and_tag_counts_must_match():
    frame = pd.DataFrame({"tokens": [["a", "b"]], "tags": [["O"]]})
    with pytest.raises(DataError, match="row with index 0: 2 tokens but 1 tags"):
        read_token_data(frame)


def test_numeric_tags_need_names():
    frame = pd.DataFrame({"tokens": [["a", "b"]], "tags": [[0, 1]]})
    with pytest.raises(DataError, match="no tag names are known.*--tag-names"):
        read_token_data(frame)
    data = read_token_data(frame, tag_names=["O", "B-X"])
    assert data.tags == [["O", "B-X"]]


def test_unknown_entity_type_in_validation_data_is_an_error(tmp_path):
    task = create_task("token-classification")
    task.data.read(write_conll(tmp_path / "train.txt", [(["Ann"], ["B-PER"])]))
    with pytest.raises(DataError, match=r"line \d+: entity type\(s\) ORG were not in the training"):
        task.data.read(write_conll(tmp_path / "valid.txt", [(["IBM"], ["B-ORG"])]),
                       role="validation")


# -- schemes, alignment, windows ------------------------------------------------------------

def test_schemes_round_trip_through_spans():
    entities = [(0, 2, "PER"), (3, 4, "LOC"), (4, 7, "ORG")]
    for scheme in tag_schemes.SCHEMES:
        tags = tag_schemes.tags_from_spans(8, entities, scheme)
        assert not tag_schemes.validate(tags, scheme), (scheme, tags)
        if scheme != "IO":  # IO cannot separate adjacent entities
            assert tag_schemes.spans(tags, scheme) == entities, scheme


def test_words_split_into_pieces_take_continuation_tags(tiny_checkpoint):
    from tfsft.tasks.token_classification.pieces import text_pieces
    from tfsft.tokenization import WordPieceTokenizer

    task = create_task("token-classification")
    data = task.data.read_tokens([["the", "U.S.", "and", "Anna"]],
                                 [["O", "B-LOC", "O", "B-PER"]])
    tokenizer = WordPieceTokenizer.from_pretrained(tiny_checkpoint)
    _, pieces = text_pieces(tokenizer, data.texts)
    tags, lost, inside = task.data.unit_tags(data, 0, pieces[0])
    # units: the | u . s . | and | anna (a ##n ##n ##a is one unit)
    assert tags == ["O", "B-LOC", "I-LOC", "I-LOC", "I-LOC", "O", "B-PER"]
    assert (lost, inside) == (0, 0)


def test_long_sentences_become_overlapping_windows_and_merge_back(tiny_checkpoint):
    from tfsft.tasks.token_classification.pieces import windows
    from tfsft.tokenization import WordPieceTokenizer

    assert windows(30, 10, 4) == [0, 6, 12, 18, 20]
    task = create_task("token-classification", {"stride": 3})
    tokens = ["the", "movie"] * 12 + ["Anna"]
    data = task.data.read_tokens([tokens, ["Bob"]], [["O"] * 24 + ["B-PER"], ["B-PER"]])
    tokenizer = WordPieceTokenizer.from_pretrained(tiny_checkpoint)
    encoded = task.data.encode(tokenizer, data, max_length=12)
    assert task.data.last_encoding["windowed_sentences"] == 1
    assert max(encoded.lengths) <= 12 and len(encoded) > 2
    assert encoded.row_sentence.tolist().count(0) == len(encoded) - 1


def test_stride_must_leave_room_in_a_window(tiny_checkpoint):
    from tfsft.tokenization import WordPieceTokenizer

    tokenizer = WordPieceTokenizer.from_pretrained(tiny_checkpoint)
    task = create_task("token-classification", {"stride": 32})
    data = task.data.read_tokens([["Ann"]], [["B-PER"]])
    with pytest.raises(ConfigError, match="--stride 32 must be smaller than max_length - 2"):
        task.data.encode(tokenizer, data, max_length=16)
    default = create_task("token-classification")  # 32, or a quarter of the window if less
    assert len(default.data.encode(tokenizer, default.data.read_tokens([["Ann"]], [["B-PER"]]),
                                   max_length=16)) == 1


def test_tags_are_normalised(tmp_path):
    path = _bad_conll(tmp_path, "Ann b_PER\nLee I_PER\nsings O\n")
    assert read_token_data(path).tags == [["B-PER", "I-PER", "O"]]


@pytest.mark.parametrize("tokens, tags", [
    (["John", "O'Neil", "sings"], ["B-PER", "E-PER", "O"]),
    (["the", "Hewlett-Packard", "way"], ["O", "S-ORG", "O"]),
])
def test_perfect_unit_tags_give_the_gold_word_tags_in_bioes(tiny_checkpoint, tokens, tags):
    """Words split into several units keep valid BIOES tags in the metrics."""
    from tfsft.tasks.token_classification.evaluation import word_tags
    from tfsft.tasks.token_classification.pieces import text_pieces
    from tfsft.tokenization import WordPieceTokenizer

    task = create_task("token-classification")
    data = task.data.read_tokens([tokens], [tags])
    task.labels = tag_schemes.label_set(["ORG", "PER"], "BIOES")
    task.label_index = {label: i for i, label in enumerate(task.labels)}
    _, pieces = text_pieces(WordPieceTokenizer.from_pretrained(tiny_checkpoint), data.texts)
    unit_tags, _, _ = task.data.unit_tags(data, 0, pieces[0])
    logits = np.full((len(pieces[0].starts), len(task.labels)), -5.0)
    for unit, tag in zip(np.flatnonzero(pieces[0].unit_start), unit_tags, strict=True):
        logits[unit, task.label_index[tag]] = 5.0
    assert word_tags(data, 0, logits, pieces[0], data.texts[0], task.labels, task.scheme) == tags


def test_tag_names_may_be_comma_separated():
    task = create_task("token-classification", {"tag_names": ["O,B-PER,I-PER"]})
    data = task.data.read(pd.DataFrame({"tokens": [["Ann", "Lee", "sings"]], "tags": [[1, 2, 0]]}))
    assert data.tags == [["B-PER", "I-PER", "O"]]


def test_token_classification_defaults_to_its_own_learning_rate():
    from tfsft.config import TrainConfig

    config = TrainConfig.from_dict({"train": "t.txt", "model": "m", "output_dir": "o",
                                    "task": "token-classification"})
    assert (config.learning_rate, config.lr_schedule) == (1e-4, "linear")
    given = TrainConfig.from_dict({"train": "t.txt", "model": "m", "output_dir": "o",
                                   "task": "token-classification", "learning_rate": 3e-5})
    assert given.learning_rate == 3e-5


def test_numeric_tag_errors_name_the_token_line(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("EU 2\nrejects 2\nGerman 7\n\nPeter 0\n")
    with pytest.raises(DataError, match=r"ids.txt, line 3: tag id 7 is outside the 3 tag"):
        read_token_data(path, tag_column=1, tag_names=["B-LOC", "B-MISC", "O"])


def test_a_chunk_column_gives_way_to_the_entity_column(tmp_path, caplog):
    path = tmp_path / "four.txt"
    path.write_text("EU B-ORG NNP B-NP\nrejects O VBZ B-VP\nGerman B-MISC JJ B-NP\n")
    with caplog.at_level("WARNING"):
        data = read_token_data(path)
    assert data.tags == [["B-ORG", "O", "B-MISC"]]
    assert "column 3 also holds tags; reading column 1" in caplog.text
    assert read_token_data(path, tag_column=3).tags == [["B-NP", "B-VP", "B-NP"]]


def test_numeric_tag_columns_get_advice_about_tag_names(tmp_path):
    path = tmp_path / "ids.txt"
    path.write_text("EU 3\nrejects 0\nGerman 8\n")
    with pytest.raises(DataError, match=r"column 1 holds numbers, not tags.*--tag-names"):
        read_token_data(path)
    with pytest.raises(DataError, match=r"column 1 holds tag ids up to 8, but --tag-names names "
                                        r"4 tags \(ids 0-3\)"):
        read_token_data(path, tag_names=["O", "B-PER", "I-PER", "B-ORG"])


def test_a_null_token_is_refused_with_its_row(tmp_path):
    path = tmp_path / "tokens.jsonl"
    path.write_text('{"tokens": ["EU", null, "x"], "tags": ["B-ORG", "O", "O"]}\n')
    with pytest.raises(DataError, match=r"tokens.jsonl, line 1, token 2: the token is null"):
        read_token_data(path)


def test_tags_in_lower_case_read_with_their_prefixes_and_outside():
    task = create_task("token-classification")
    task.data.read(pd.DataFrame({"tokens": [["anna", "was", "in", "new", "york"]],
                                 "tags": [["b-per", "o", "o", "b-loc", "i-loc"]]}))
    assert sorted(task.labels) == ["B-loc", "B-per", "I-loc", "I-per", "O"]  # "o" is outside
