"""Bad input gets a clear error naming the source and the row or line, and what to do."""

from __future__ import annotations

import bz2
import json

import pandas as pd
import pytest

from tfsft.errors import DataError
from tfsft.tasks.text_classification.examples import read_text_classification


def read(path, **options):
    options.setdefault("text_column", "text")
    options.setdefault("label_column", "label")
    return read_text_classification(path, **options)


def error_of(path, **options) -> str:
    with pytest.raises(DataError) as info:
        read(path, **options)
    return str(info.value)


def test_missing_column_lists_the_columns(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("review,stars\ngood,1\n")
    message = error_of(path)
    assert str(path) in message
    assert "column 'text' not found" in message
    assert "'review', 'stars'" in message


def test_empty_text_names_the_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\ngood film,1\n   ,0\n")
    message = error_of(path)
    assert f"{path}, line 3" in message and "text (column 'text') is empty" in message


def test_missing_text_in_jsonl_names_the_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"text": "fine", "label": 1}\n{"label": 0}\n')
    assert f"{path}, line 2" in error_of(path)


def test_label_unseen_in_training_names_the_line(tmp_path):
    path = tmp_path / "dev.tsv"
    path.write_text("text\tlabel\nnice\tpos\nmeh\tneutral\n")
    message = error_of(path, labels=("neg", "pos"))
    assert f"{path}, line 3" in message
    assert "label 'neutral' was not seen in training" in message and "'neg', 'pos'" in message


def test_undecodable_bytes_name_line_and_column(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,label\nok,1\ncaf\u00e9,0\n".encode("latin-1"))
    message = error_of(path)
    assert f"{path}, line 3, column 4" in message and "not valid utf-8" in message
    assert "--encoding" in message
    assert read(path, encoding="latin-1").texts[1] == "caf\u00e9"


def test_ragged_csv_row_names_the_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("text,label\ngood,1\nbad,0,extra\n")
    message = error_of(path)
    assert f"{path}, line 3" in message and "expected 2 fields" in message and "found 3" in message


def test_ragged_tsv_row_names_the_line(tmp_path):
    path = tmp_path / "ragged.tsv"
    path.write_text("text\tlabel\ngood\n")
    assert f"{path}, line 2" in error_of(path)


def test_invalid_json_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"text": "a", "label": 1}\n\n{"text": "b", "label": \n')
    message = error_of(path)
    assert f"{path}, line 3" in message and "invalid JSON" in message


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"text": "a", "label": 1}\n["b", 0]\n')
    message = error_of(path)
    assert f"{path}, line 2" in message and "expected a JSON object" in message


def test_empty_label_names_the_line(tmp_path):
    path = tmp_path / "nolabel.csv"
    path.write_text("text,label\ngood,1\nbad,\n")
    message = error_of(path)
    assert f"{path}, line 3" in message and "label (column 'label') is empty" in message


def test_non_string_text_in_parquet_names_the_row(tmp_path):
    path = tmp_path / "train.parquet"
    pd.DataFrame({"text": ["fine", "also fine", None], "label": [1, 0, 1]}).to_parquet(path)
    message = error_of(path)
    assert f"{path}, row 3" in message and "missing" in message


def test_dataframe_error_names_the_index(tmp_path):
    frame = pd.DataFrame({"text": ["good", ""], "label": [1, 0]}, index=[10, 11])
    with pytest.raises(DataError, match=r"DataFrame, row with index 11: the text .* is empty"):
        read(frame)


def test_hf_dataset_error_names_the_example():
    import datasets

    dataset = datasets.Dataset.from_dict({"text": ["good", "fine", " "], "label": [1, 1, 0]})
    with pytest.raises(DataError, match=r"example 2: the text .* is empty"):
        read(dataset)


def test_duplicate_header_column(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("text,text,label\na,b,1\n")
    message = error_of(path)
    assert f"{path}, line 1" in message and "appears twice" in message


def test_unbalanced_quote_names_the_line(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text('text,label\n"fine",1\n"unterminated,0\n')
    message = error_of(path)
    assert str(path) in message and "line" in message


def test_unknown_extension_and_missing_file(tmp_path):
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    assert "cannot tell the file format" in error_of(odd)
    assert "file not found" in error_of(tmp_path / "nope.csv")


def test_corrupt_compressed_file(tmp_path):
    path = tmp_path / "train.csv.bz2"
    path.write_bytes(bz2.compress(b"text,label\ngood,1\n")[:20])
    message = error_of(path)
    assert str(path) in message and "decompress" in message


def test_all_rows_excluded_is_an_error(tmp_path):
    path = tmp_path / "plots.jsonl"
    path.write_text(json.dumps({"text": "a plot", "label": "plot"}) + "\n")
    assert "no rows are left" in error_of(path, exclude_labels=["plot"])


def test_a_pipe_is_refused_before_it_is_drained(tmp_path):
    import os

    from tfsft.data.readers import read_text_lines

    pipe = tmp_path / "rows.tsv"
    os.mkfifo(pipe)
    with pytest.raises(DataError, match=r"rows.tsv: is a device or a pipe, not a file.*Save it"):
        read_text_classification(pipe, text_column="sentence")
    with pytest.raises(DataError, match="is a device or a pipe"):
        read_text_lines(pipe)


def test_a_jsonl_key_given_twice_in_one_object_is_refused(tmp_path):
    from tfsft.data.readers import read_table

    path = tmp_path / "twice.jsonl"
    path.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "pos", "label": "neg"}\n')
    with pytest.raises(DataError, match="line 2: the key 'label' occurs twice in one object"):
        read_table(path)
