"""``tfsft data clean``: every step counts what it changed or dropped, the input is kept."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

import pytest

from tfsft.cli import main as cli

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_tsv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def mojibake(text: str) -> str:
    return text.encode("utf-8").decode("cp1252", errors="replace")


def test_each_step_counts_its_rows_and_the_input_is_kept(tmp_path, capsys):
    source = write_tsv(tmp_path / "in.tsv", ["text", "label"], [
        ["Great  <b>film</b>", "1"], ["great film!", "1"], ["dull", "0"], ["dull", "1"],
        [mojibake("café society"), "1"], ["<p></p>", "0"], ["Great  <b>film</b>", "1"],
        ["slow", "0"], ["slow", "0"], ["slow", "1"], ["fine", "1"]])
    before = hashlib.sha256(source.read_bytes()).hexdigest()
    assert cli(["data", "clean", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    assert "Train with --normalize mojibake,html,nfkc,whitespace" in capsys.readouterr().out
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    kept = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert kept == [{"text": "Great film", "label": "1"}, {"text": "café society", "label": "1"},
                    {"text": "fine", "label": "1"}]
    report = json.loads((tmp_path / "out.jsonl.report.json").read_text())
    counts = {step["step"]: step["rows"] for step in report["steps"]}
    assert counts == {"text is not a string": 0, "label missing or not valid": 0,
                      "mojibake": 1, "html": 3, "nfkc": 0, "whitespace": 3,
                      "empty after cleaning": 1, "conflicting labels": 5,
                      "exact duplicates": 1, "normalised duplicates": 1}
    assert len(report["dropped"]) == report["dropped_rows"] == 8  # every dropped row listed
    assert {d["where"] for d in report["dropped"] if d["reason"] == "exact duplicates"} == {
        "line 8"}
    assert (tmp_path / "out.jsonl.report.txt").read_text().startswith(f"{source}: 11 rows")

    # the majority rule keeps one row per conflicting text; a tie ("dull") still drops both
    assert cli(["data", "clean", str(source), "--output", str(tmp_path / "majority.tsv"),
                "--conflicts", "majority"]) == 0
    assert read_tsv(tmp_path / "majority.tsv")[1:] == [
        ["Great film", "1"], ["café society", "1"], ["slow", "0"], ["fine", "1"]]


def test_bad_requests_are_refused_before_any_output(tmp_path, capsys):
    source = write_tsv(tmp_path / "in.tsv", ["text", "label"], [["a", "1"], ["b", "0"]])
    (tmp_path / "taken.tsv").write_text("keep me\n")
    cases = [
        (["--output", str(source)], "would replace the input"),
        (["--output", str(tmp_path / "taken.tsv")], "exists; pass --overwrite"),
        (["--output", str(tmp_path / "o.tsv"), "--steps", "default,htlm"], "unknown text "
         "normalization step(s) htlm"),
        (["--output", str(tmp_path / "o.tsv"), "--label-column", "y"], "no column 'y'"),
        (["--output", str(tmp_path / "o.tsv"), "--task", "token-classification"],
         "tables of texts and labels"),
        (["--output", str(tmp_path / "o.tsv"), "--against", str(source),
          "--against-text-column", "sentence"], "--against-text-column"),
    ]
    for extra, message in cases:
        assert cli(["data", "clean", str(source), *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert (tmp_path / "taken.tsv").read_text() == "keep me\n"
    assert not (tmp_path / "o.tsv").exists()


def test_labels_compare_as_the_task_reads_them_and_bad_rows_are_counted(tmp_path, capsys):
    scores = tmp_path / "scores.tsv"
    scores.write_text("text\tscore\na\t4.5\nb\t1\na\t4.50\nb\t1e0\nc\t\n")
    assert cli(["data", "clean", str(scores), "--task", "regression", "--target-columns",
                "score", "--output", str(tmp_path / "scores.out.tsv")]) == 0
    report = json.loads((tmp_path / "scores.out.tsv.report.json").read_text())
    counts = {step["step"]: step["rows"] for step in report["steps"]}
    assert counts["conflicting labels"] == 0 and counts["exact duplicates"] == 2
    assert counts["label missing or not valid"] == 1
    tags = tmp_path / "tags.jsonl"
    tags.write_text('{"text": "x", "label": "LOC|PER"}\n{"text": "x", "label": "PER|LOC"}\n'
                    '{"text": null, "label": "LOC"}\n{"text": ["y"], "label": "LOC"}\n'
                    '{"text": "z", "label": "PER"}\n')
    assert cli(["data", "clean", str(tags), "--task", "multi-label-classification",
                "--output", str(tmp_path / "tags.out.csv")]) == 0
    report = json.loads((tmp_path / "tags.out.csv.report.json").read_text())
    counts = {step["step"]: step["rows"] for step in report["steps"]}
    assert counts["conflicting labels"] == 0 and counts["exact duplicates"] == 1
    assert counts["text is not a string"] == 1 and counts["empty after cleaning"] == 1
    header, *rows = read_tsv_or_csv(tmp_path / "tags.out.csv")
    assert header == ["text", "label"] and len(rows) == 2  # a CSV, by its name


def read_tsv_or_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t" if path.suffix == ".tsv" else ","))


@pytest.mark.skipif(not SST2.exists(), reason="needs ../shared/data/sst2")
def test_counts_equal_what_was_injected_into_sst2(tmp_path, capsys):
    """SST-2 rows (cleaned once, so that only what is injected is left to find) with mojibake,
    HTML, duplicates, conflicting labels and dev rows injected: the report counts each."""
    train = read_tsv(SST2 / "train.tsv")
    dev = read_tsv(SST2 / "dev.tsv")
    base_file = write_tsv(tmp_path / "raw.tsv", train[0], train[1:4001])
    dev_file = write_tsv(tmp_path / "dev.tsv", dev[0], dev[1:])
    assert cli(["data", "clean", str(base_file), "--output", str(tmp_path / "base.tsv"),
                "--text-column", "sentence", "--against", str(dev_file),
                "--against-text-column", "content"]) == 0
    header, *rows = read_tsv(tmp_path / "base.tsv")
    rng = random.Random(7)
    picks = rng.sample(range(len(rows)), 100)
    moji, html, copies, loose, flips = picks[:25], picks[25:50], picks[50:70], picks[70:85], \
        picks[85:100]
    for i in moji:  # UTF-8 read as Windows-1252, on a text with characters beyond ASCII
        rows[i][1] = mojibake(rows[i][1] + " — café")
    for i in html:
        rows[i][1] = f"<p>{rows[i][1]}</p>"
    injected = [list(rows[i]) for i in copies]  # exact duplicates
    injected += [[rows[i][0], rows[i][1].upper() + " !"] for i in loose]  # normalised
    injected += [[str(1 - int(rows[i][0])), rows[i][1]] for i in flips]  # conflicting labels
    injected += [[label, text] for label, text in rng.sample(dev[1:], 30)]  # dev rows
    messy = write_tsv(tmp_path / "messy.tsv", header, rows + injected)
    capsys.readouterr()
    assert cli(["data", "clean", str(messy), "--output", str(tmp_path / "clean.tsv"),
                "--text-column", "sentence", "--against", str(dev_file),
                "--against-text-column", "content"]) == 0
    report = json.loads((tmp_path / "clean.tsv.report.json").read_text())
    counts = {step["step"]: step["rows"] for step in report["steps"]}
    assert counts["mojibake"] == 25 and counts["html"] == 25
    assert counts["also in --against"] == 30
    conflicts = next(s for s in report["steps"] if s["step"] == "conflicting labels")
    assert conflicts["groups"] == 15 and conflicts["rows"] == 30  # each text's two rows
    assert counts["exact duplicates"] == 20 and counts["normalised duplicates"] == 15
    assert report["kept"] == len(rows) - 15
