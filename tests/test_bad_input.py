"""The bad-input suite: one line per case, run through the ``tfsft`` command line as a user
would. Each case names its command, the files it writes, and what must come back: a one-line
error holding the given text (exit 1 or 2) or a run that succeeds and reports the given text.
No case may print a Python traceback, and no case may change a file it was not told to write.

Placeholders in a command: ``{d}`` the case's folder, ``{ckpt}`` a tiny BERT checkpoint,
``{run}`` a trained tiny run (labels neg/pos, column text).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shlex
import shutil
from pathlib import Path

import pytest

from tfsft.cli import main as cli

from .conftest import qa_rows, sentiment_rows

ROWS = sentiment_rows(60, seed=3)
CSV = "text,label\n" + "".join(f"{t},{label}\n" for t, label in ROWS)
TSV = "text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in ROWS)
JSONL = "".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in ROWS)
TRAIN = ("train --model {ckpt} --output-dir {d}/run --epochs 1 --batch-size 16 --max-length 16 "
         "--precision float32 --no-tensorboard --backup-every-steps 1000 ")
TRAIN_CSV = TRAIN + "--train {d}/train.csv "
CONLL = "".join(f"{w} {t}\n" for w, t in [("Anna", "B-PER"), ("was", "O"), ("in", "O"),
                                           ("Rome", "B-LOC")]) + "\n"
CONLL_TRAIN = CONLL * 30
REGRESSION = "text,score\n" + "".join(f"{t},{i % 7 - 3}\n" for i, (t, _) in enumerate(ROWS))
QA_ROWS = [{k: r[k] for k in ("question", "context")} | {
    "answer_text": r["answers"]["text"][0], "answer_start": r["answers"]["answer_start"][0]}
    for r in qa_rows(40, seed=2)]
QA_JSONL = "".join(json.dumps(r) + "\n" for r in QA_ROWS)
QA_TRAIN = ("train --task question-answering --model {ckpt} --output-dir {d}/run --epochs 1 "
            "--batch-size 16 --max-length 24 --max-question-length 6 --doc-stride 4 "
            "--precision float32 --no-tensorboard --backup-every-steps 1000 ")
QA_TRAIN_FILE = QA_TRAIN + "--train {d}/train.jsonl "


def qa_jsonl(**changes) -> str:
    """QA_JSONL with one more row (line 41): a good row with ``changes``."""
    return QA_JSONL + json.dumps({**QA_ROWS[0], **changes}) + "\n"


SQUAD_GOOD = {"data": [{"title": "t", "paragraphs": [
    {"context": r["context"], "qas": [{"id": f"q{i}", "question": r["question"], "answers": [
        {"text": r["answer_text"], "answer_start": r["answer_start"]}]}]}
    for i, r in enumerate(QA_ROWS)]}]}
MULTI = "text,labels\n" + "".join(f"{t},{'a|b' if i % 3 else 'b'}\n"
                                   for i, (t, _) in enumerate(ROWS))


def rows_csv(*extra: str, header: str = "text,label") -> str:
    return header + "\n" + "".join(f"{t},{label}\n" for t, label in ROWS[:40]) + "".join(
        line + "\n" for line in extra)


# (case id, command, files to write, expected text; "ok: TEXT" means success reporting TEXT)
CASES = [
    # -- data files: existence, formats, encodings -------------------------------------------
    ("train-missing-file", TRAIN + "--train {d}/nope.csv", {}, "nope.csv: file not found"),
    ("train-folder-not-dataset", TRAIN + "--train {d}/folder", {"folder/x.txt": "x"},
     "is not a saved Hugging Face dataset"),
    ("train-unknown-extension", TRAIN + "--train {d}/train.xlsx", {"train.xlsx": "x"},
     "cannot tell the file format from the extension 'xlsx'"),
    ("train-no-extension", TRAIN + "--train {d}/train", {"train": CSV},
     "cannot tell the file format from the extension ''"),
    ("train-empty-file", TRAIN_CSV, {"train.csv": ""}, "the file is empty"),
    ("train-only-header", TRAIN_CSV, {"train.csv": "text,label\n"}, "there are no data rows"),
    ("train-blank-lines-only", TRAIN_CSV, {"train.csv": "\n\n\n"}, "the file is empty"),
    ("train-latin1", TRAIN_CSV, {"train.csv": rows_csv("caf\u00e9 bad,neg").encode("latin-1")},
     "line 42, column 4: bytes b'\\xe9' are not valid utf-8"),
    ("train-latin1-declared", TRAIN_CSV + "--encoding latin-1 --max-train-rows 20",
     {"train.csv": rows_csv("caf\u00e9 bad,neg").encode("latin-1")}, "ok: 18 training"),
    ("train-utf16", TRAIN_CSV, {"train.csv": rows_csv().encode("utf-16-le")},
     "looks UTF-16: pass --encoding utf-16"),
    ("train-nul-byte", TRAIN_CSV, {"train.csv": rows_csv("good\x00film,pos")},
     "line 42, column 5: holds a NUL byte"),
    ("train-utf8-bom", TRAIN_CSV + "--max-train-rows 20",
     {"train.csv": "\ufeff" + rows_csv()}, "ok: 18 training"),
    ("train-unknown-encoding", TRAIN_CSV + "--encoding utf-9", {"train.csv": CSV},
     "argument --encoding: 'utf-9' is not a known text encoding"),
    ("train-gzip-truncated", TRAIN + "--train {d}/train.csv.gz",
     {"train.csv.gz": gzip.compress(CSV.encode())[:40]}, "cannot decompress the .gz file"),
    ("train-gzip-good", TRAIN + "--train {d}/train.csv.gz --max-train-rows 20",
     {"train.csv.gz": gzip.compress(CSV.encode())}, "ok: 18 training"),
    ("train-parquet-garbage", TRAIN + "--train {d}/train.parquet", {"train.parquet": "nope"},
     "cannot read the Parquet file"),
    ("train-format-override", TRAIN + "--train {d}/data.txt --format tsv --max-train-rows 20",
     {"data.txt": TSV}, "ok: 18 training"),
    # -- CSV structure --------------------------------------------------------------------------
    ("csv-missing-text-column", TRAIN_CSV, {"train.csv": "review,label\ngood,pos\n"},
     "column 'text' not found; the columns are 'review', 'label'"),
    ("csv-missing-label-column", TRAIN_CSV, {"train.csv": "text,stars\ngood,1\n"},
     "column 'label' not found"),
    ("csv-wrong-column-flag", TRAIN_CSV + "--text-column body", {"train.csv": CSV},
     "column 'body' not found"),
    ("csv-label-equals-text", TRAIN_CSV + "--label-column text", {"train.csv": CSV},
     "column 'text' is named for two roles"),
    ("csv-duplicate-header", TRAIN_CSV, {"train.csv": "text,text\na,b\n"},
     "column name 'text' appears twice"),
    ("csv-unnamed-column", TRAIN_CSV, {"train.csv": "text,,label\na,b,c\n"},
     "column 2 of the header has no name"),
    ("csv-ragged-row", TRAIN_CSV, {"train.csv": rows_csv("good,pos,extra")},
     "line 42: expected 2 fields (text, label) but found 3"),
    ("csv-short-row", TRAIN_CSV, {"train.csv": rows_csv("good")},
     "line 42: expected 2 fields (text, label) but found 1"),
    ("csv-unclosed-quote", TRAIN_CSV, {"train.csv": rows_csv('"good film,pos', "nice,pos")},
     "line 42: a quoted field that starts on this line is never closed"),
    ("csv-text-after-quote", TRAIN_CSV, {"train.csv": rows_csv('"good" film,pos')},
     "line 42: text follows the closing quote"),
    ("csv-quoted-newline-ok", TRAIN_CSV + "--max-train-rows 20",
     {"train.csv": 'text,label\n"good\nfilm",pos\n' + rows_csv().split("\n", 1)[1]},
     "ok: 18 training"),
    ("csv-line-separators-in-text-ok", TRAIN_CSV + "--max-train-rows 20",
     {"train.csv": 'text,label\n"good\x0cfilm\u2028really\x1c",pos\n' + rows_csv().split("\n", 1)[1]},
     "ok: 18 training"),
    ("csv-huge-field-ok", TRAIN_CSV + "--max-train-rows 20",
     {"train.csv": f"text,label\n{'good ' * 40000},pos\n" + rows_csv().split("\n", 1)[1]},
     "ok: 18 training"),
    ("csv-empty-text", TRAIN_CSV, {"train.csv": rows_csv("   ,pos")},
     "line 42: the text (column 'text') is empty"),
    ("csv-zero-width-text", TRAIN_CSV, {"train.csv": rows_csv("\u200b\u200b,pos")},
     "line 42: the text (column 'text') is only invisible (zero-width) characters"),
    ("csv-empty-label", TRAIN_CSV, {"train.csv": rows_csv("good film,")},
     "line 42: the label (column 'label') is empty"),
    ("csv-nan-label", TRAIN_CSV, {"train.csv": rows_csv("good film,NaN")},
     "line 42: the label (column 'label') is 'NaN', which marks a missing value"),
    ("csv-na-label", TRAIN_CSV, {"train.csv": rows_csv("good film,NA")},
     "line 42: the label (column 'label') is 'NA'"),
    ("csv-null-label", TRAIN_CSV, {"train.csv": rows_csv("good film,null")},
     "the label (column 'label') is 'null'"),
    ("csv-one-class", TRAIN_CSV, {"train.csv": "text,label\n" + "good film,pos\n" * 30},
     "every training row has the label 'pos'"),
    ("csv-exclude-unused", TRAIN_CSV + "--exclude-labels nuetral", {"train.csv": CSV},
     "--exclude-labels ['nuetral'] never occur in column 'label'"),
    ("csv-exclude-everything", TRAIN_CSV + "--exclude-labels neg pos", {"train.csv": CSV},
     "no rows are left after skipping labels ['neg', 'pos']"),
    ("csv-exclude-counted", TRAIN_CSV + "--exclude-labels neg", {"train.csv": rows_csv(
        "fine,neutral", "fine,neutral", "ok,neutral", "ok,neutral", "so so,neutral",
        "so so,neutral")}, "ok: skipped 20 rows whose label is one of ['neg']"),
    ("csv-delimiter-semicolon", TRAIN_CSV + "--delimiter ';' --max-train-rows 20",
     {"train.csv": CSV.replace(",", ";")}, "ok: 18 training"),
    ("csv-delimiter-bad", TRAIN_CSV + "--delimiter ab", {"train.csv": CSV},
     "delimiter must be one character"),
    ("csv-wrong-delimiter", TRAIN_CSV, {"train.csv": CSV.replace(",", ";")},
     "column 'text' not found; the columns are 'text;label'"),
    # -- TSV quoting --------------------------------------------------------------------------
    ("tsv-pandas-quotes-ok", TRAIN + "--train {d}/train.tsv --max-train-rows 20",
     {"train.tsv": 'text\tlabel\n"say ""hi"" now"\tpos\n' + TSV.split("\n", 1)[1]},
     "ok: 18 training"),
    ("tsv-raw-quote-refused", TRAIN + "--train {d}/train.tsv",
     {"train.tsv": TSV + '"hi" she said\tpos\n'}, "line 62: text follows the closing quote"),
    ("tsv-raw-quote-no-quoting", TRAIN + "--train {d}/train.tsv --no-quoting --max-train-rows 20",
     {"train.tsv": 'text\tlabel\n"hi" she said\tpos\n' + TSV.split("\n", 1)[1]},
     "ok: 18 training"),
    ("tsv-tab-in-field", TRAIN + "--train {d}/train.tsv --no-quoting",
     {"train.tsv": TSV + "a\tb\tpos\n"}, "line 62: expected 2 fields"),
    # -- JSONL ----------------------------------------------------------------------------------
    ("jsonl-invalid-json", TRAIN + "--train {d}/train.jsonl",
     {"train.jsonl": JSONL + '{"text": "x", "label": \n'}, "line 61: invalid JSON"),
    ("jsonl-not-object", TRAIN + "--train {d}/train.jsonl", {"train.jsonl": JSONL + "[1, 2]\n"},
     "line 61: expected a JSON object, found list"),
    ("jsonl-missing-text", TRAIN + "--train {d}/train.jsonl",
     {"train.jsonl": JSONL + '{"label": "pos"}\n'}, "line 61: the text (column 'text') is missing"),
    ("jsonl-number-text", TRAIN + "--train {d}/train.jsonl",
     {"train.jsonl": JSONL + '{"text": 5, "label": "pos"}\n'},
     "line 61: the text (column 'text') is 5 (int), not a string"),
    ("jsonl-null-label", TRAIN + "--train {d}/train.jsonl",
     {"train.jsonl": JSONL + '{"text": "ok", "label": null}\n'},
     "line 61: the label (column 'label') is empty"),
    ("jsonl-empty", TRAIN + "--train {d}/train.jsonl", {"train.jsonl": "\n\n"},
     "the file holds no records"),
    ("jsonl-numeric-labels-ok", TRAIN + "--train {d}/train.jsonl --max-train-rows 20",
     {"train.jsonl": JSONL.replace('"pos"', "1").replace('"neg"', "0")}, "ok: 18 training"),
    # -- validation data -----------------------------------------------------------------------
    ("validation-is-train", TRAIN_CSV + "--validation {d}/train.csv", {"train.csv": CSV},
     "the validation data is the training file itself"),
    ("validation-copy-of-train", TRAIN_CSV + "--validation {d}/dev.csv",
     {"train.csv": CSV, "dev.csv": CSV}, "every validation example also occurs in the training"),
    ("validation-unseen-label", TRAIN_CSV + "--validation {d}/dev.csv",
     {"train.csv": CSV, "dev.csv": "text,label\nfine,neutral\n"},
     "line 2: label 'neutral' was not seen in training"),
    ("validation-missing-column", TRAIN_CSV + "--validation {d}/dev.csv",
     {"train.csv": CSV, "dev.csv": "content,label\nfine,pos\n"}, "column 'text' not found"),
    ("validation-missing-file", TRAIN_CSV + "--validation {d}/dev.csv", {"train.csv": CSV},
     "dev.csv: file not found"),
    ("validation-overlap-warned", TRAIN_CSV + "--validation {d}/dev.csv --max-train-rows 20",
     {"train.csv": CSV, "dev.csv": "text,label\n" + "".join(
         f"{t},{label}\n" for t, label in ROWS[:3] + sentiment_rows(5, seed=99))},
     "ok: 3 validation examples (37.5 %) also occur in the training data"),
    ("validation-fraction-bad", TRAIN_CSV + "--validation-fraction 1.5", {"train.csv": CSV},
     "--validation-fraction must be in (0, 1)"),
    ("validation-split-too-small", TRAIN_CSV + "--validation-fraction 0.01 --max-train-rows 4",
     {"train.csv": CSV}, "cannot split off a validation set"),
    ("qa-impossible-with-answers", QA_TRAIN + "--train {d}/squad.json",
     {"squad.json": json.dumps({"data": [{"title": "t", "paragraphs": [
         {**SQUAD_GOOD["data"][0]["paragraphs"][0], "qas": [
             {**SQUAD_GOOD["data"][0]["paragraphs"][0]["qas"][0], "is_impossible": True}]}]}]})},
     "question 'q0': is_impossible is true, yet the question has answers. Set is_impossible "
     "to false, or move the answers to plausible_answers"),
    ("train-missing-shard-folder", "train --train {d}/no-shards --output-dir {d}/run", {},
     "no-shards: file or folder not found; check the path"),
    ("ner-lowercase-tags", TRAIN.replace("--model", "--task token-classification --model")
     + "--train {d}/train.jsonl", {"train.jsonl": "".join(json.dumps(
         {"tokens": ["anna", "was", "in", "rome"], "tags": ["b-per", "o", "o", "b-loc"]}) + "\n"
         for _ in range(30))}, 'ok: "task": "token-classification"'),
    ("cv-squad-document", "cv --task question-answering --model {ckpt} --train {d}/squad.json "
     "--output-dir {d}/run", {"squad.json": json.dumps(SQUAD_GOOD)},
     "tfsft cv splits the rows of a table, and this file is one document, not rows"),
    ("validation-file-and-fraction", TRAIN_CSV + "--validation {d}/train.csv "
     "--validation-fraction 0.2", {"train.csv": CSV},
     "--validation-fraction splits the training data when there is no validation file; with "
     "--validation"),
    # --max-train-rows hints at reading more rows only where more rows would help
    ("max-rows-missing-file", TRAIN + "--train {d}/none.csv --max-train-rows 20", {},
     "none.csv: file not found. Check the path."),
    ("max-rows-empty-file", TRAIN + "--train {d}/empty.csv --max-train-rows 20",
     {"empty.csv": ""}, "empty.csv: the file is empty. Add a header row and data rows."),
    ("max-rows-column-twice", TRAIN_CSV + "--label-column text --max-train-rows 20",
     {"train.csv": CSV}, "column 'text' is named for two roles (text, second text, label or "
     "target). Name a different column for each (--text-column / --text-pair-column / "
     "--label-column)."),
    ("max-rows-one-label-in-reach", TRAIN + "--train {d}/sorted.csv --max-train-rows 20",
     {"sorted.csv": "text,label\n" + "".join(f"{t},{label}\n" for t, label in sorted(
         ROWS, key=lambda row: row[1]))},
     "(in the first 20 rows, all that --max-train-rows 20 reads). Check --label-column, or add "
     "rows of the other classes; or read more rows: raise --max-train-rows, or leave it out."),
    # -- options ----------------------------------------------------------------------------------
    ("opt-epochs-word", TRAIN_CSV + "--epochs one", {"train.csv": CSV},
     "argument --epochs: invalid int value: 'one'"),
    ("opt-epochs-zero", TRAIN_CSV + "--epochs 0", {"train.csv": CSV}, "epochs must be >= 1"),
    ("opt-batch-zero", TRAIN_CSV + "--batch-size 0", {"train.csv": CSV}, "--batch-size must be >= 1"),
    ("opt-lr-negative", TRAIN_CSV + "--learning-rate -1", {"train.csv": CSV},
     "--learning-rate must be > 0"),
    ("opt-lr-inf", TRAIN_CSV + "--learning-rate inf", {"train.csv": CSV},
     "--learning-rate must be a finite number"),
    ("opt-lr-nan", TRAIN_CSV + "--learning-rate nan", {"train.csv": CSV},
     "--learning-rate must be a finite number"),
    ("opt-lr-diverges", TRAIN_CSV + "--learning-rate 1e30 --warmup-ratio 0", {"train.csv": CSV},
     "the training loss became nan"),
    ("opt-dropout", TRAIN_CSV + "--dropout 1.5", {"train.csv": CSV}, "dropout must be in [0, 1)"),
    ("opt-seed", TRAIN_CSV + "--seed -1", {"train.csv": CSV}, "seed must be >= 0"),
    ("opt-clipnorm", TRAIN_CSV + "--clipnorm -1", {"train.csv": CSV}, "clipnorm must be > 0"),
    ("opt-backup-steps", TRAIN_CSV + "--backup-every-steps -5", {"train.csv": CSV},
     "--backup-every-steps must be >= 1"),
    ("opt-max-length-small", TRAIN_CSV + "--max-length 2", {"train.csv": CSV},
     "--max-length must be between 8 and 512"),
    ("opt-max-length-big", TRAIN_CSV + "--max-length 4096", {"train.csv": CSV},
     "--max-length must be between 8 and 512"),
    ("opt-max-rows-zero", TRAIN_CSV + "--max-train-rows 0", {"train.csv": CSV},
     "--max-train-rows must be >= 1"),
    ("opt-warmup", TRAIN_CSV + "--warmup-ratio 1", {"train.csv": CSV},
     "--warmup-ratio must be in [0, 1)"),
    ("opt-weight-decay", TRAIN_CSV + "--weight-decay -0.1", {"train.csv": CSV},
     "--weight-decay must be >= 0"),
    ("opt-patience", TRAIN_CSV + "--early-stopping-patience -1", {"train.csv": CSV},
     "--early-stopping-patience must be >= 0"),
    ("opt-monitor-typo", TRAIN_CSV + "--monitor val_acc", {"train.csv": CSV},
     "--monitor 'val_acc' is not a metric of task 'text-classification'"),
    ("opt-class-weight-word", TRAIN_CSV + "--class-weight heavy", {"train.csv": CSV},
     "--class-weight must be 'balanced' or a mapping label -> weight such as"),
    ("opt-class-weight-unknown-label", TRAIN_CSV + """--class-weight '{"pos": 2, "meh": 1}'""",
     {"train.csv": CSV}, "meh"),
    ("opt-precision", TRAIN_CSV + "--precision float8", {"train.csv": CSV},
     "argument --precision: invalid choice: 'float8'"),
    ("opt-task-unknown", TRAIN_CSV + "--task summarise", {"train.csv": CSV},
     "argument --task: invalid choice: 'summarise'"),
    ("opt-other-task-option", TRAIN_CSV + "--target-columns score", {"train.csv": CSV},
     "unrecognized arguments: --target-columns"),
    ("opt-reduce-lr-needs-constant", TRAIN_CSV + "--reduce-lr-on-plateau", {"train.csv": CSV},
     "--reduce-lr-on-plateau needs --lr-schedule constant"),
    ("opt-missing-train", TRAIN, {}, "missing required option(s) --train"),
    ("opt-model-missing", TRAIN_CSV.replace("{ckpt}", "{d}/nomodel"), {"train.csv": CSV},
     "no such checkpoint folder"),
    ("opt-model-unknown-name", TRAIN_CSV.replace("{ckpt}", "bert-huge"), {"train.csv": CSV},
     "no such checkpoint folder"),
    # -- YAML configs -----------------------------------------------------------------------------
    ("yaml-missing", "train --config {d}/nope.yaml", {}, "config file not found"),
    ("yaml-invalid", "train --config {d}/c.yaml", {"c.yaml": "train: [a\nmodel: b\n"},
     "invalid YAML"),
    ("yaml-folder", "train --config {d}", {}, "is a folder; --config takes a YAML file"),
    ("yaml-latin1", "train --config {d}/c.yaml", {"c.yaml": "train: caf\xe9.csv\n".encode("latin-1")},
     "c.yaml: byte 10 is not UTF-8; save the config file as UTF-8"),
    ("yaml-duplicate-key", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\nepochs: 1\noutput_dir: r\nepochs: 3\n"},
     "line 5, column 1: invalid YAML: the key 'epochs' is given twice (lines 3 and 5); keep one"),
    ("yaml-dashed-key", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\n--output-dir: r\n"},
     "option name(s) ['--output-dir'] start with a dash; in a config file write them without "
     "dashes: output_dir"),
    ("yaml-number-key", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\non: 3\n"},
     "the key(s) [True] are not option names"),
    ("yaml-spelled-twice", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\nmax-length: 32\nmax_length: 64\n"},
     "the option max_length is given twice (as max-length and max_length); keep one"),
    ("yaml-train-list", "train --config {d}/c.yaml",
     {"c.yaml": "train: [a.csv, b.csv]\nmodel: m\noutput_dir: r\n"},
     "train must be one path (a string), not ['a.csv', 'b.csv']"),
    ("yaml-not-mapping", "train --config {d}/c.yaml", {"c.yaml": "- a\n- b\n"},
     "expected a mapping of option: value"),
    ("yaml-unknown-key", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\nepoch: 2\n"}, "unknown option(s) ['epoch']"),
    ("yaml-epochs-word", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\nepochs: two\n"},
     "epochs must be a whole number, got 'two'"),
    ("yaml-epochs-float", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\nepochs: 1.5\n"},
     "epochs must be a whole number, got 1.5"),
    ("yaml-lr-string-ok", "train --config {d}/c.yaml --max-train-rows 20",
     {"c.yaml": "train: {d}/train.csv\nmodel: {ckpt}\noutput_dir: {d}/run\nlearning_rate: 5e-5\n"
      "epochs: 1\nmax_length: 16\nprecision: float32\ntensorboard: false\n", "train.csv": CSV},
     "ok: 18 training"),
    ("yaml-batch-list", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\nbatch_size: [16]\n"},
     "c.yaml: batch_size must be a whole number, got [16]"),
    ("yaml-bool-word", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\ntensorboard: maybe\n"},
     "tensorboard must be true or false, got 'maybe'"),
    ("yaml-unknown-task", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\ntask: summarise\n"},
     "unknown task 'summarise'"),
    ("yaml-task-section-scalar", "train --config {d}/c.yaml",
     {"c.yaml": "train: t.csv\nmodel: m\noutput_dir: r\ntext-classification: 3\n"},
     "the 'text-classification' section must be a mapping"),
    ("yaml-exclude-scalar-ok", "train --config {d}/c.yaml",
     {"c.yaml": "train: {d}/train.csv\nmodel: {ckpt}\noutput_dir: {d}/run\nexclude_labels: neg\n"
      "epochs: 1\nmax_length: 16\nprecision: float32\ntensorboard: false\n", "train.csv": CSV},
     "every training row has the label 'pos'"),  # neg, not the letters n, e, g
    # -- output folders ---------------------------------------------------------------------------
    ("out-is-a-file", TRAIN_CSV.replace("{d}/run", "{d}/train.csv"), {"train.csv": CSV},
     "is a file, not a folder"),
    ("out-overwrite-cwd", TRAIN_CSV.replace("{d}/run", ".") + "--overwrite", {"train.csv": CSV},
     "--overwrite would delete the working directory"),
    ("out-overwrite-data-folder", TRAIN_CSV.replace("{d}/run", "{d}") + "--overwrite",
     {"train.csv": CSV}, "which holds the data file"),
    ("out-overwrite-foreign", TRAIN_CSV + "--overwrite", {"train.csv": CSV, "run/notes.txt": "x"},
     "is not a tfsft run folder, so --overwrite leaves it alone"),
    ("out-exists-no-overwrite", TRAIN_CSV, {"train.csv": CSV, "run/notes.txt": "x"},
     "is not empty and is not a tfsft run folder"),
    ("out-parent-is-file", TRAIN_CSV.replace("{d}/run", "{d}/train.csv/run"), {"train.csv": CSV},
     "not a directory"),
    # -- token classification data ------------------------------------------------------------
    ("ner-bad-tag", TRAIN + "--task token-classification --train {d}/train.conll",
     {"train.conll": CONLL_TRAIN + "Bob X-PER\n\n"}, "tag 'X-PER' has the prefix 'X', which no "
     "tag scheme uses"),
    ("ner-i-after-o", TRAIN + "--task token-classification --train {d}/train.conll --tag-scheme BIO",
     {"train.conll": CONLL_TRAIN + "Bob O\nSmith I-PER\n\n"}, "line 152"),
    ("ner-repair-counted", TRAIN + "--task token-classification --train {d}/train.conll "
     "--tag-scheme BIO --repair-tags --max-train-rows 20",
     {"train.conll": "Bob O\nSmith I-PER\n\n" + CONLL_TRAIN}, "ok: tags repaired"),
    ("ner-only-o", TRAIN + "--task token-classification --train {d}/train.conll",
     {"train.conll": "a O\nb O\n\n" * 20}, "no entity tags, only O"),
    ("ner-missing-tag-column", TRAIN + "--task token-classification --train {d}/train.conll",
     {"train.conll": "Anna\nwas\n\n" * 20}, "train.conll"),
    ("ner-jsonl-length-mismatch", TRAIN + "--task token-classification --train {d}/t.jsonl",
     {"t.jsonl": '{"tokens": ["a", "b"], "tags": ["O"]}\n'}, "line 1"),
    ("ner-span-out-of-range", TRAIN + "--task token-classification --train {d}/t.jsonl",
     {"t.jsonl": '{"text": "Anna", "entities": [{"start": 0, "end": 9, "label": "PER"}]}\n'},
     "line 1"),
    ("ner-docstart-counted", TRAIN + "--task token-classification --train {d}/train.conll "
     "--max-train-rows 20", {"train.conll": "-DOCSTART- O\n\n" + CONLL_TRAIN},
     "ok: -DOCSTART-"),
    # -- regression / multi-label data --------------------------------------------------------
    ("reg-word-target", TRAIN + "--task regression --train {d}/r.csv --target-columns score",
     {"r.csv": REGRESSION + "fine,high\n"}, "line 62: the target (column 'score') is 'high', not a number"),
    ("reg-inf-target", TRAIN + "--task regression --train {d}/r.csv --target-columns score",
     {"r.csv": REGRESSION + "fine,inf\n"}, "line 62"),
    ("reg-empty-target", TRAIN + "--task regression --train {d}/r.csv --target-columns score",
     {"r.csv": REGRESSION + "fine,\n"}, "line 62: the target (column 'score') is empty"),
    ("reg-constant", TRAIN + "--task regression --train {d}/r.csv --target-columns score",
     {"r.csv": "text,score\n" + "good,1\n" * 30}, "have the same value in every training row"),
    ("reg-missing-column", TRAIN + "--task regression --train {d}/r.csv --target-columns stars",
     {"r.csv": REGRESSION}, "column 'stars' not found"),
    ("ml-bad-json", TRAIN + "--task multi-label-classification --train {d}/m.csv "
     "--label-column labels",
     {"m.csv": MULTI + 'fine,"[""a"", "\n'}, "line 62"),
    ("ml-repeated", TRAIN + "--task multi-label-classification --train {d}/m.csv "
     "--label-column labels",
     {"m.csv": MULTI + "fine,a|a\n"}, "line 62: the labels (column 'labels') repeat a label"),
    ("ml-nan-label", TRAIN + "--task multi-label-classification --train {d}/m.csv "
     "--label-column labels",
     {"m.csv": MULTI + "fine,a|NaN\n"}, "line 62: the label (column 'labels') is 'NaN'"),
    # -- question answering -------------------------------------------------------------------
    ("qa-answer-not-in-context", QA_TRAIN_FILE,
     {"train.jsonl": qa_jsonl(answer_text="zebra", answer_start=0)},
     "line 41: the answer 'zebra' is not at answer_start 0"),
    ("qa-offset-off-by-one", QA_TRAIN_FILE,
     {"train.jsonl": qa_jsonl(answer_start=QA_ROWS[0]["answer_start"] + 1)},
     f"the text occurs at offset {QA_ROWS[0]['answer_start']}"),
    ("qa-offset-past-end", QA_TRAIN_FILE, {"train.jsonl": qa_jsonl(answer_start=999)},
     "line 41: answer_start 999 is past the end of the context"),
    ("qa-offset-not-integer", QA_TRAIN_FILE, {"train.jsonl": qa_jsonl(answer_start=2.5)},
     "answer_start is 2.5, not a character offset"),
    ("qa-offset-nan", QA_TRAIN_FILE, {"train.jsonl": qa_jsonl(answer_start=float("nan"))},
     "line 41: answer_start is nan, not a character offset"),
    ("qa-offset-infinite", QA_TRAIN_FILE, {"train.jsonl": qa_jsonl(answer_start=float("inf"))},
     "line 41: answer_start is inf, not a character offset"),
    ("qa-empty-question", QA_TRAIN_FILE, {"train.jsonl": qa_jsonl(question="   ")},
     "line 41: the question is empty"),
    ("qa-missing-context", QA_TRAIN_FILE,
     {"train.jsonl": QA_JSONL + json.dumps({"question": "what ?", "answer_text": "x",
                                            "answer_start": 0}) + "\n"},
     "line 41: the context is missing"),
    ("qa-no-answer-column", QA_TRAIN_FILE,
     {"train.jsonl": "".join(json.dumps({"question": r["question"], "context": r["context"]})
                             + "\n" for r in QA_ROWS)}, "no answer column"),
    ("qa-no-answer-start", QA_TRAIN_FILE,
     {"train.jsonl": "".join(json.dumps({"question": r["question"], "context": r["context"],
                                         "answer_text": r["answer_text"]}) + "\n"
                             for r in QA_ROWS)}, "no column 'answer_start'"),
    ("qa-squad-wrong-layout", QA_TRAIN + "--train {d}/train.json",
     {"train.json": json.dumps([{"question": "q"}])}, "not in the SQuAD layout: found a list"),
    ("qa-squad-no-paragraphs", QA_TRAIN + "--train {d}/train.json",
     {"train.json": json.dumps({"data": [{"title": "t"}]})},
     "data[0]: the article has no paragraphs list"),
    ("qa-squad-bad-answer", QA_TRAIN + "--train {d}/train.json",
     {"train.json": json.dumps({"data": [{"paragraphs": [{"context": "good film", "qas": [
         {"id": "x9", "question": "what ?", "answers": [{"text": "film",
                                                         "answer_start": 0}]}]}]}]})},
     "question 'x9': the answer 'film' is not at answer_start 0"),
    ("qa-squad-invalid-json", QA_TRAIN + "--train {d}/train.json",
     {"train.json": '{"data": [\n  {"paragraphs": ]}'}, "line 2, column 18: invalid JSON"),
    ("qa-doc-stride-too-big", QA_TRAIN_FILE.replace("--doc-stride 4", "--doc-stride 30"),
     {"train.jsonl": QA_JSONL}, "--doc-stride 30 must be smaller than the context pieces"),
    ("qa-question-longer-than-window", QA_TRAIN_FILE + "--max-question-length 200",
     {"train.jsonl": QA_JSONL}, "--max-question-length 200 leaves no room for the context"),
    ("qa-question-length-zero", QA_TRAIN_FILE + "--max-question-length 0",
     {"train.jsonl": QA_JSONL}, "--max-question-length must be >= 1"),
    ("qa-skip-bad-answers-counted", QA_TRAIN_FILE + "--skip-bad-answers",
     {"train.jsonl": qa_jsonl(answer_start=1)}, "ok: 1 questions skipped"),
    ("qa-long-context-windowed", QA_TRAIN + "--train {d}/train.json",
     {"train.json": json.dumps(SQUAD_GOOD)}, "ok: overlapping windows"),
    ("qa-predict-needs-context", "predict {run} --question 'who ?'", {},
     "--question and --context are for question-answering runs"),
    # -- evaluate / predict / export on a trained run ----------------------------------------
    ("eval-missing-data", "evaluate {run} --data {d}/nope.csv", {}, "file not found"),
    ("eval-unseen-label", "evaluate {run} --data {d}/dev.csv",
     {"dev.csv": "text,label\ngood,meh\n"}, "label 'meh' was not seen in training"),
    ("eval-batch-zero", "evaluate {run} --data {d}/dev.csv --batch-size 0",
     {"dev.csv": "text,label\ngood,pos\n"}, "batch size must be >= 1"),
    ("eval-column-override", "evaluate {run} --data {d}/dev.csv --text-column body",
     {"dev.csv": "body,label\ngood,pos\nbad,neg\n"}, "ok: accuracy"),
    ("eval-into-the-run", "evaluate {run} --data {d}/dev.csv --output-dir {run}",
     {"dev.csv": "text,label\ngood,pos\n"}, "is the run folder"),
    ("eval-into-a-file", "evaluate {run} --data {d}/dev.csv --output-dir {d}/dev.csv",
     {"dev.csv": "text,label\ngood,pos\n"}, "dev.csv is a file; name a folder"),
    ("eval-into-a-users-folder", "evaluate {run} --data {d}/dev.csv --output-dir {d}",
     {"dev.csv": "text,label\ngood,pos\n"},
     "already holds files that tfsft evaluate did not write (dev.csv)"),
    ("eval-not-a-run", "evaluate {d} --data {d}/dev.csv", {"dev.csv": "text,label\ngood,pos\n"},
     "is missing; this is not a finished tfsft run folder"),
    ("predict-no-input", "predict {run}", {}, "nothing to predict"),
    ("predict-blank-arg", "predict {run} ' '", {}, "text argument 1 (' ') is empty"),
    ("predict-missing-file", "predict {run} --input {d}/nope.txt", {}, "file not found"),
    ("predict-empty-file", "predict {run} --input {d}/empty.txt", {"empty.txt": "\n \n"},
     "empty.txt: the file holds no texts to predict"),
    ("predict-folder", "predict {run} --input {d}/f.txt", {"f.txt/x": "x"},
     "is a folder, not a text file"),
    ("predict-latin1-txt", "predict {run} --input {d}/t.txt", {"t.txt": "caf\u00e9\n".encode("latin-1")},
     "line 1, column 4: bytes b'\\xe9' are not valid utf-8"),
    ("predict-invisible-txt", "predict {run} --input {d}/t.txt", {"t.txt": "good\n\u200b\n"},
     "line 2: the text holds only invisible"),
    ("predict-csv-empty-text", "predict {run} --input {d}/t.csv", {"t.csv": "text\ngood\n  \n"},
     "line 3: the text (column 'text') is empty"),
    ("predict-csv-zero-width", "predict {run} --input {d}/t.csv",
     {"t.csv": "text\ngood\n\u200b\n"}, "line 3: the text (column 'text') is only invisible"),
    ("predict-jsonl-missing-text", "predict {run} --input {d}/t.jsonl",
     {"t.jsonl": '{"text": "good"}\n{"body": "bad"}\n'}, "line 2: the text (column 'text') is missing"),
    ("predict-blank-lines-counted", "predict {run} --input {d}/t.txt", {"t.txt": "good\n\n\nbad\n"},
     "ok: 2 blank lines skipped"),
    ("predict-batch-zero", "predict {run} good --batch-size 0", {}, "batch size must be >= 1"),
    ("predict-bad-encoding", "predict {run} --input {d}/t.txt --encoding utf-9", {"t.txt": "good\n"},
     "argument --encoding: 'utf-9' is not a known text encoding"),
    ("predict-not-a-run", "predict {d}/norun good", {}, "norun: no such run folder"),
    ("export-quantize-alone", "export {run} --output {d}/out --quantize int8", {},
     "--quantize makes TFLite, ONNX and (causal-lm) GGUF variants"),
    ("export-unknown-format", "export {run} --output {d}/out --format pdf", {},
     "unknown format(s) ['pdf']"),
    ("export-unknown-quantize", "export {run} --output {d}/out --format onnx --quantize int2", {},
     "unknown quantization(s) ['int2']; choose from fp16, int8-dynamic, int8-static, int8, int4"),
    ("export-int4-encoder", "export {run} --output {d}/out --format tflite --quantize int4", {},
     "--quantize int4: not a variant of text-classification exports (int4 is for causal-lm "
     "runs, in ONNX); the variants are fp16, int8-dynamic, int8-static"),
    ("export-max-examples-zero", "export {run} --output {d}/out --max-examples 0", {},
     "--max-examples must be >= 1"),
    ("export-output-empty", "export {run} --output ''", {}, "--output is empty; name the model's"),
    ("export-output-is-file", "export {run} --output {d}/out.txt", {"out.txt": "x"},
     "is a file; name a folder"),
    ("export-bad-data", "export {run} --output {d}/out --data {d}/dev.csv",
     {"dev.csv": "text,label\ngood,meh\n"}, "label 'meh' was not seen in training"),
    # -- data inspect -------------------------------------------------------------------------
    ("inspect-missing", "data inspect {d}/nope.csv --model {ckpt}", {}, "file not found"),
    ("inspect-bad-encoding", "data inspect {d}/train.csv --model {ckpt} --encoding utf-9",
     {"train.csv": CSV}, "argument --encoding: 'utf-9' is not a known text encoding"),
    ("inspect-conll-as-text", "data inspect {d}/train.conll --model {ckpt}",
     {"train.conll": CONLL_TRAIN}, "cannot tell the file format from the extension 'conll'"),
    ("inspect-blank-texts-counted", "data inspect {d}/train.csv --model {ckpt} --max-length 16",
     {"train.csv": rows_csv("  ,pos", "\u200b,neg")},
     "ok: 2 rows have an empty or whitespace-only text"),
    ("inspect-duplicates", "data inspect {d}/train.csv --model {ckpt} --max-length 16",
     {"train.csv": rows_csv("good film,pos", "Good film!,neg", "good film,pos")},
     "ok: texts occur again with a different label"),
    ("inspect-output-not-creatable",
     "data inspect {d}/train.csv --model {ckpt} --output-dir {d}/train.csv/report",
     {"train.csv": CSV}, "train.csv/report: "),  # the output is named, not a temporary folder
    ("inspect-output-exists", "data inspect {d}/train.csv --model {ckpt} --output-dir {d}",
     {"train.csv": CSV}, "already exists"),
    ("inspect-suspicious-labels", "data inspect {d}/train.csv --model {ckpt}",
     {"train.csv": rows_csv("ok,3", "fine,3")}, "ok: numbers mixed with words among the labels"),
]


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 3)])
    elif how == "garbage":
        path.write_text("{not json")
    elif how == "delete":
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    elif how == "other-task":  # valid JSON that names a task the run's options do not fit
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "task": "regression"}))


# (case id, file in the run folder to damage, how, command, expected text)
DAMAGED_RUNS = [
    ("run-task-json-truncated", "task.json", "truncate", "predict {run} good",
     "task.json: this run's task file is not valid JSON"),
    ("run-task-json-garbage", "task.json", "garbage", "evaluate {run} --data {d}/dev.csv",
     "task.json: this run's task file is not valid JSON"),
    ("run-task-json-missing", "task.json", "delete", "predict {run} good", "task.json is missing"),
    ("run-task-json-other-task", "task.json", "other-task", "predict {run} good",
     "task.json: task 'regression': unknown option(s)"),
    ("run-model-truncated", "model.keras", "truncate", "predict {run} good",
     "model.keras: the saved model is damaged or incomplete"),
    ("run-model-missing", "model.keras", "delete", "predict {run} good", "model.keras is missing"),
    ("run-tokenizer-missing", "tokenizer", "delete", "predict {run} good", "tokenizer is missing"),
    ("run-tokenizer-config-garbage", "tokenizer/tokenizer_config.json", "garbage",
     "predict {run} good", "tokenizer_config.json: this tokenizer config is not valid JSON"),
    ("run-vocab-missing", "tokenizer/vocab.txt", "delete", "predict {run} good",
     "no vocab.txt or tokenizer.json"),
    ("run-heldout-garbage-export", "heldout.jsonl", "garbage",
     "export {run} --output {d}/out", "heldout.jsonl"),
    ("run-config-garbage-predict-ok", "config.yaml", "garbage", "predict {run} good",
     'ok: "label"'),
]

# (case id, file of the checkpoint to damage, how, expected text)
DAMAGED_CHECKPOINTS = [
    ("ckpt-config-garbage", "config.json", "garbage",
     "config.json: this checkpoint config is not valid JSON"),
    ("ckpt-config-missing", "config.json", "delete", "config.json is missing"),
    ("ckpt-weights-truncated", "model.safetensors", "truncate",
     "model.safetensors: the weights cannot be read"),
    ("ckpt-weights-missing", "model.safetensors", "delete", "no weights found"),
    ("ckpt-vocab-missing", "vocab.txt", "delete", "no vocab.txt or tokenizer.json"),
]


def _write(folder: Path, files: dict[str, str | bytes], values: dict[str, str]) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(fill(content, values) if name.endswith(".yaml") else content,
                            encoding="utf-8")


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with the placeholders ``{d}``, ``{ckpt}``, ``{run}`` replaced."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def _snapshot(folder: Path, skip: Path | None = None) -> dict[str, str]:
    """Hash of every file under ``folder`` (outside ``skip``)."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not (skip and skip in path.parents):
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _run(argv: list[str], capsys, caplog) -> tuple[int, str]:
    caplog.clear()
    caplog.set_level(logging.INFO)
    try:
        code = cli(argv)
    except SystemExit as exc:  # argparse: usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err + caplog.text


def _check(code: int, output: str, expected: str) -> None:
    assert "Traceback" not in output, output[-3000:]
    if expected.startswith("ok: "):
        assert code == 0, output[-3000:]
        assert expected[4:] in output, output[-3000:]
    else:
        assert code in (1, 2), output[-3000:]
        assert "internal error" not in output, output[-3000:]
        # one line: "tfsft COMMAND: error: WHERE: WHAT. WHAT TO DO."
        lines = [line for line in output.splitlines() if expected in line]
        assert any(line.startswith("tfsft") and "error: " in line for line in lines), \
            output[-3000:]


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "case"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("name, command, files, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, command, files, expected, case_dir, tiny_checkpoint, trained_run,
                   capsys, caplog):
    values = {"d": str(case_dir), "ckpt": str(tiny_checkpoint), "run": str(trained_run.run_dir)}
    _write(case_dir, files, values)
    before = _snapshot(case_dir, skip=case_dir / "run")
    run_before = _snapshot(trained_run.run_dir)
    code, output = _run([fill(a, values) for a in shlex.split(command)], capsys, caplog)
    _check(code, output, expected)
    after = _snapshot(case_dir, skip=case_dir / "run")
    changed = {k for k in before if before[k] != after.get(k)}
    allowed = {"run", "out", "out.txt"}  # outputs the commands were told to write
    assert not {k for k in changed if k.split("/")[0] not in allowed}, changed
    assert _snapshot(trained_run.run_dir) == run_before


@pytest.fixture
def run_copy(trained_run, tmp_path):
    target = tmp_path / "run-copy"
    shutil.copytree(trained_run.run_dir, target)
    return target


@pytest.mark.parametrize("name, entry, how, command, expected", DAMAGED_RUNS,
                         ids=[c[0] for c in DAMAGED_RUNS])
def test_damaged_run_folder(name, entry, how, command, expected, run_copy, case_dir, capsys,
                            caplog):
    _damage(run_copy / entry, how)
    (case_dir / "dev.csv").write_text("text,label\ngood,pos\n")
    values = {"d": str(case_dir), "run": str(run_copy)}
    code, output = _run([fill(a, values) for a in shlex.split(command)], capsys, caplog)
    _check(code, output, expected)


@pytest.mark.parametrize("name, entry, how, expected", DAMAGED_CHECKPOINTS,
                         ids=[c[0] for c in DAMAGED_CHECKPOINTS])
def test_damaged_checkpoint(name, entry, how, expected, tiny_checkpoint, case_dir, capsys,
                            caplog):
    checkpoint = case_dir / "ckpt"
    shutil.copytree(tiny_checkpoint, checkpoint)
    _damage(checkpoint / entry, how)
    (case_dir / "train.csv").write_text(CSV)
    values = {"d": str(case_dir), "ckpt": str(checkpoint)}
    code, output = _run([fill(a, values) for a in shlex.split(TRAIN_CSV)], capsys, caplog)
    _check(code, output, expected)


def test_the_suite_has_enough_cases():
    assert len(CASES) + len(DAMAGED_RUNS) + len(DAMAGED_CHECKPOINTS) >= 120


def test_outputs_keep_the_umask(trained_run):
    """Files a run writes are readable by others under umask 022 (a service account serves)."""
    for name in ("task.json", "config.yaml", "run.json", "heldout.jsonl", "tokenizer"):
        mode = os.stat(trained_run.run_dir / name).st_mode & 0o777
        assert mode & 0o044 == 0o044, (name, oct(mode))


def test_staging_folders_of_killed_exports_are_removed(tmp_path):
    from exporters.savedmodel import remove_stale_staging, stage_dir
    from tfsft.io_utils import _umask

    dead = tmp_path / ".export-tmp-999999999-abc"  # no such process
    (dead / "savedmodel").mkdir(parents=True)
    mine = stage_dir(tmp_path)  # this process's own: stays
    other = tmp_path / ".export-tmp-notes"  # not named like one of ours: stays
    other.mkdir()
    assert not dead.exists() and mine.is_dir() and other.is_dir()
    assert remove_stale_staging(tmp_path) == []
    assert os.stat(mine).st_mode & 0o777 == 0o777 & ~_umask()


def test_a_failed_first_export_leaves_no_folder(trained_run, tmp_path):
    from exporters import export

    with pytest.raises(AttributeError):
        export(trained_run.run_dir, tmp_path / "out", data=object())  # fails inside the export
    assert not (tmp_path / "out").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(AttributeError):
        export(trained_run.run_dir, tmp_path / "kept", data=object())
    assert (tmp_path / "kept").is_dir()  # the user's folder stays


def test_an_evaluation_folder_keeps_one_evaluations_reports(trained_run, tmp_path):
    """A second evaluation into the folder of an earlier one replaces its reports and removes
    those it does not write again; a file the user added there is kept."""
    import json

    from tfsft.runs import EVALUATION_MARKER, TrainedRun

    run = TrainedRun(trained_run.run_dir)
    data = tmp_path / "dev.csv"
    data.write_text("text,label\na good film,pos\na bad film,neg\n")
    folder = tmp_path / "evaluation"
    run.evaluate(run.read(data), output_dir=folder, verbose=0)
    recorded = json.loads((folder / EVALUATION_MARKER).read_text())
    assert "metrics.json" in recorded
    from tfsft.io_utils import file_sha256

    for name, text in (("stale_report.txt", "from an earlier evaluation\n"),
                       ("edited_report.txt", "from an earlier evaluation\n")):
        (folder / name).write_text(text)
        recorded[name] = file_sha256(folder / name)
    (folder / EVALUATION_MARKER).write_text(json.dumps(recorded))
    with open(folder / "edited_report.txt", "a") as handle:  # the user's notes in a report
        handle.write("my notes\n")
    (folder / "notes.txt").write_text("mine\n")
    run.evaluate(run.read(data), output_dir=folder, verbose=0)
    assert not (folder / "stale_report.txt").exists()
    assert (folder / "edited_report.txt").read_text().endswith("my notes\n")  # kept
    assert (folder / "notes.txt").read_text() == "mine\n" and (folder / "metrics.json").exists()


def test_output_piped_into_a_reader_that_leaves_ends_quietly(trained_run, tmp_path):
    """``tfsft predict ... | head -1``: no error about a file or the disk once the reader has
    what it wanted; the exit status is that of a process ended by SIGPIPE."""
    import subprocess
    import sys

    texts = tmp_path / "texts.txt"
    texts.write_text("a good film\n" * 1500)  # more than a pipe holds: the writer sees it close
    script = (f"{shlex.quote(sys.executable)} -m tfsft.cli predict "
              f"{shlex.quote(str(trained_run.run_dir))} --input {shlex.quote(str(texts))} "
              "| head -1; echo \"status ${PIPESTATUS[0]}\" >&2")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert json.loads(done.stdout.strip())["label"] in ("pos", "neg")
    assert "error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert "status 141" in done.stderr
