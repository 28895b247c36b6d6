"""Task recipes against their Hugging Face peers: ``python -m benchmarks.tasks RECIPE --out F``.

Recipes (all: all-MiniLM-L6-v2 weights, max_length 128, batch 32, AdamW lr 5e-5 with weight
decay 0.01, 10 % linear warm-up then linear decay, gradient clipping at 1.0):

- ``regression-tfsft``: ``tfsft train --task regression`` (its defaults: standardised target,
  MSE) on VADER ``tweets.tsv`` (human mean sentiment, -4 … 4), 3 epochs, 80/20 split seeded 42
  (``sklearn.model_selection.train_test_split``), scored on the held-out 20 %.
- ``regression-hf``: transformers ``TFBertForSequenceClassification(num_labels=1)`` + tf-keras
  ``fit`` (its built-in MSE loss on raw scores), per-batch padding with
  ``DataCollatorWithPadding`` through ``prepare_tf_dataset``, on the same split and epochs.

- ``ner-tfsft``: ``tfsft train --task token-classification`` on CoNLL-2003 ``train.txt`` (all
  14,041 sentences), 2 epochs, validated on ``valid.txt``; entity F1 (``seqeval``) on
  ``valid.txt`` and ``test.txt``.
- ``ner-hf``: transformers ``TFBertForTokenClassification`` + tf-keras ``fit``, its documented
  recipe: words tokenized with ``is_split_into_words``, the first piece of each word labelled
  (-100 elsewhere), ``DataCollatorForTokenClassification`` per-batch padding; predictions
  read off each word's first piece and scored with ``seqeval`` on the same files.

- ``qa-tfsft``: ``tfsft train --task question-answering`` on one file of the SQuAD v1.1
  sample, validated and scored on the other (``--direction train-dev`` or ``dev-train``),
  3 epochs, batch 16, max_length 384, doc_stride 128; EM / F1 of its answers (official
  normalisation).
- ``qa-hf``: transformers ``TFBertForQuestionAnswering`` + tf-keras ``fit``, the recipe of its
  ``run_qa.py`` example: a fast tokenizer with ``truncation="only_second"``, ``stride=128`` and
  overflowing windows, answers labelled by offset mapping (``[CLS]`` when outside the window),
  its n-best post-processing (20 best starts and ends per window, spans up to 30 tokens, the
  highest start + end logit over all windows); per-batch padding (``DataCollatorWithPadding``,
  faster than the example's default padding to 384); same files, epochs, batch size and
  schedule. Examples/s count windows, the same for both.

Each writes one JSON: wall time from process start to the end of ``fit``, steady examples/s,
peak RSS and the held-out metrics.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before TensorFlow is imported: wall time includes loading it

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks import common  # noqa: E402

RECIPES = ("regression-tfsft", "regression-hf", "ner-tfsft", "ner-hf", "qa-tfsft", "qa-hf",
           "qa-tfsft-dev-train", "qa-hf-dev-train")
VADER = Path(os.environ.get("TFSFT_BENCHMARK_DATA", common.REPO.parent / "shared" / "data")) \
    / "vader-sentiment" / "tweets.tsv"
REGRESSION_EPOCHS = 3
HELD_OUT = 0.2
CONLL = VADER.parent.parent / "conll2003"
NER_EPOCHS = 2
SQUAD = VADER.parent.parent / "squad-sample"
SQUAD_FILES = {"train-dev": ("train-v1.1-sample.json", "dev-v1.1-sample.json"),
               "dev-train": ("dev-v1.1-sample.json", "train-v1.1-sample.json")}
QA_EPOCHS, QA_BATCH_SIZE, QA_MAX_LENGTH, QA_DOC_STRIDE, QA_MAX_ANSWER = 3, 16, 384, 128, 30


def vader_split() -> tuple[tuple[list[str], list[float]], tuple[list[str], list[float]]]:
    """(texts, scores) of the 80 % training and 20 % held-out rows of VADER ``tweets.tsv``."""
    from sklearn.model_selection import train_test_split

    with open(VADER, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    train_rows, held_out = train_test_split(rows, test_size=HELD_OUT, random_state=common.SEED)

    def columns(part):
        return [row["text"] for row in part], [float(row["score"]) for row in part]

    return columns(train_rows), columns(held_out)


def regression_scores(true, predicted) -> dict[str, float]:
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    true, predicted = np.asarray(true, float), np.asarray(predicted, float).reshape(-1)
    return {"pearson": float(pearsonr(true, predicted)[0]),
            "spearman": float(spearmanr(true, predicted)[0]),
            "mae": float(np.mean(np.abs(true - predicted))),
            "rmse": float(np.sqrt(np.mean((true - predicted) ** 2)))}


def _write_scores(path: Path, texts: list[str], scores: list[float]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for text, score in zip(texts, scores, strict=True):
            handle.write(json.dumps({"text": text, "score": score}) + "\n")


def run_regression_tfsft(train_part, held_out, seed: int = common.SEED,
                         precision: str = "auto", overrides: dict | None = None) -> dict:
    import keras

    from tfsft.config import TrainConfig
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    timer = common.step_timer(keras.callbacks.Callback)
    with tempfile.TemporaryDirectory() as folder:
        train_file, held_out_file = Path(folder) / "train.jsonl", Path(folder) / "held_out.jsonl"
        _write_scores(train_file, *train_part)
        _write_scores(held_out_file, *held_out)
        config = TrainConfig(train=str(train_file), validation=str(held_out_file),
                             model="minilm-l6", output_dir=str(Path(folder) / "run"),
                             task="regression", task_options={"target_columns": ["score"]},
                             epochs=REGRESSION_EPOCHS, batch_size=common.BATCH_SIZE,
                             max_length=common.MAX_LENGTH, seed=seed, precision=precision,
                             tensorboard=False, **(overrides or {}))
        result = train(config, callbacks=[timer])
        predicted = [r["score"] for r in TrainedRun(result.run_dir).predict(held_out[0])]
    return {"timer": timer, "precision": result.summary["precision"],
            **regression_scores(held_out[1], predicted)}


def run_regression_hf(train_part, held_out, seed: int = common.SEED) -> dict:
    from benchmarks.training import hf_model_and_tokenizer, schedule_steps

    model, tokenizer = hf_model_and_tokenizer(num_labels=1, seed=seed)
    import numpy as np
    import tf_keras
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, create_optimizer

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=common.MAX_LENGTH)

    def dataset(texts, scores, shuffle):
        rows = Dataset.from_dict({"text": texts, "label": np.asarray(scores, np.float32)})
        return model.prepare_tf_dataset(rows.map(tokenize, batched=True), shuffle=shuffle,
                                        batch_size=common.BATCH_SIZE, tokenizer=tokenizer,
                                        collate_fn=DataCollatorWithPadding(tokenizer,
                                                                           return_tensors="np"))

    train_ds, held_out_ds = dataset(*train_part, True), dataset(*held_out, False)
    steps, warmup = schedule_steps(len(train_part[0]), REGRESSION_EPOCHS)
    optimizer, _ = create_optimizer(init_lr=common.LEARNING_RATE, num_train_steps=steps,
                                    num_warmup_steps=warmup,
                                    weight_decay_rate=common.WEIGHT_DECAY,
                                    adam_global_clipnorm=common.CLIPNORM)
    model.compile(optimizer=optimizer)  # num_labels=1: transformers' own MSE loss
    timer = common.step_timer(tf_keras.callbacks.Callback)
    model.fit(train_ds, validation_data=held_out_ds, epochs=REGRESSION_EPOCHS, callbacks=[timer],
              verbose=2)
    predicted = model.predict(held_out_ds, verbose=0).logits[:, 0]
    return {"timer": timer, "precision": "float32", **regression_scores(held_out[1], predicted)}


def conll_sentences(name: str) -> tuple[list[list[str]], list[list[str]]]:
    """Tokens and tags of a CoNLL-2003 file (read with tfsft's reader, as both recipes use)."""
    from tfsft.tasks.token_classification.examples import read_conll

    data = read_conll(CONLL / name)
    return [data.word_tokens(i) for i in range(len(data))], data.tags


def run_ner_tfsft(seed: int = common.SEED, precision: str = "auto",
                  train_rows: int | None = None, overrides: dict | None = None) -> dict:
    import keras

    from tfsft.config import TrainConfig
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    timer = common.step_timer(keras.callbacks.Callback)
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(train=str(CONLL / "train.txt"), validation=str(CONLL / "valid.txt"),
                             model="minilm-l6", output_dir=str(Path(folder) / "run"),
                             task="token-classification", epochs=NER_EPOCHS,
                             batch_size=common.BATCH_SIZE, max_length=common.MAX_LENGTH,
                             seed=seed, precision=precision, tensorboard=False,
                             max_train_rows=train_rows, **(overrides or {}))
        result = train(config, callbacks=[timer])
        run = TrainedRun(result.run_dir)
        test = run.evaluate(run.read(str(CONLL / "test.txt")), verbose=0)
    return {"timer": timer, "precision": result.summary["precision"],
            "train_examples": result.summary["train_examples"],
            "valid_f1": result.metrics["f1"], "test_f1": test["f1"],
            "valid_per_type": result.metrics["per_type"]}


def run_ner_hf(seed: int = common.SEED, train_rows: int | None = None) -> dict:
    from benchmarks.training import hf_model_and_tokenizer, schedule_steps

    train_tokens, train_tags = conll_sentences("train.txt")
    train_tokens, train_tags = train_tokens[:train_rows], train_tags[:train_rows]
    labels = sorted({t for s in train_tags for t in s}, key=lambda t: (t != "O", t[2:], t))
    index = {label: i for i, label in enumerate(labels)}
    model, tokenizer = hf_model_and_tokenizer(num_labels=len(labels),
                                              head="TFBertForTokenClassification", seed=seed)
    import numpy as np
    import tf_keras
    from datasets import Dataset
    from seqeval.metrics import f1_score
    from transformers import DataCollatorForTokenClassification, create_optimizer

    def tokenize(batch):
        encoded = tokenizer(batch["tokens"], truncation=True, max_length=common.MAX_LENGTH,
                            is_split_into_words=True)
        encoded["labels"] = []
        for i, tags in enumerate(batch["tags"]):
            previous, row = None, []
            for word in encoded.word_ids(i):
                row.append(-100 if word is None or word == previous else index[tags[word]])
                previous = word
            encoded["labels"].append(row)
        return encoded

    collator = DataCollatorForTokenClassification(tokenizer, return_tensors="np")

    def dataset(tokens, tags, shuffle):
        rows = Dataset.from_dict({"tokens": tokens, "tags": tags}).map(
            tokenize, batched=True, remove_columns=["tokens", "tags"])
        return rows, model.prepare_tf_dataset(rows, shuffle=shuffle, tokenizer=tokenizer,
                                              batch_size=common.BATCH_SIZE, collate_fn=collator)

    def f1_on(name):
        tokens, tags = conll_sentences(name)
        rows, ds = dataset(tokens, tags, False)
        logits = model.predict(ds, verbose=0).logits  # ragged when batch widths differ
        predicted = []
        for row, label_row, gold in zip(logits, rows["labels"], tags, strict=True):
            first = [j for j, label in enumerate(label_row) if label != -100]
            words = [labels[k] for k in np.asarray(row)[first].argmax(-1)]
            predicted.append(words + ["O"] * (len(gold) - len(words)))  # truncated words: O
        return float(f1_score(tags, predicted))

    _, train_ds = dataset(train_tokens, train_tags, True)
    _, valid_ds = dataset(*conll_sentences("valid.txt"), False)
    steps, warmup = schedule_steps(len(train_tokens), NER_EPOCHS)
    optimizer, _ = create_optimizer(init_lr=common.LEARNING_RATE, num_train_steps=steps,
                                    num_warmup_steps=warmup,
                                    weight_decay_rate=common.WEIGHT_DECAY,
                                    adam_global_clipnorm=common.CLIPNORM)
    model.compile(optimizer=optimizer)  # transformers' own loss (ignores -100)
    timer = common.step_timer(tf_keras.callbacks.Callback)
    model.fit(train_ds, validation_data=valid_ds, epochs=NER_EPOCHS, callbacks=[timer],
              verbose=2)
    return {"timer": timer, "precision": "float32", "train_examples": len(train_tokens),
            "valid_f1": f1_on("valid.txt"), "test_f1": f1_on("test.txt")}


def run_qa_tfsft(direction: str, seed: int = common.SEED, precision: str = "auto",
                 run_dir: Path | None = None) -> dict:
    import keras

    from tfsft.config import TrainConfig
    from tfsft.training.trainer import train

    train_name, eval_name = SQUAD_FILES[direction]
    timer = common.step_timer(keras.callbacks.Callback)
    with tempfile.TemporaryDirectory() as folder:
        config = TrainConfig(train=str(SQUAD / train_name), validation=str(SQUAD / eval_name),
                             model="minilm-l6", output_dir=str(run_dir or Path(folder) / "run"),
                             task="question-answering", epochs=QA_EPOCHS,
                             batch_size=QA_BATCH_SIZE, max_length=QA_MAX_LENGTH,
                             task_options={"doc_stride": QA_DOC_STRIDE,
                                           "max_answer_length": QA_MAX_ANSWER},
                             learning_rate=common.LEARNING_RATE, seed=seed, precision=precision,
                             tensorboard=False, overwrite=run_dir is not None)
        result = train(config, callbacks=[timer])
    return {"timer": timer, "precision": result.summary["precision"],
            "train_examples": result.summary["encoding"]["train"]["windows"],
            "questions": result.summary["train_examples"],
            "exact_match": result.metrics["exact_match"], "f1": result.metrics["f1"],
            "eval_questions": result.metrics["questions"]}


def hf_answers(start_logits, end_logits, features, contexts, n_best: int = 20,
               max_answer_length: int = QA_MAX_ANSWER) -> list[str]:
    """The answer of every question from its windows' logits, as transformers' ``run_qa.py``
    post-processes them (``utils_qa.postprocess_qa_predictions``, v1: always an answer)."""
    import numpy as np

    best: dict[int, tuple[float, str]] = {}
    for start, end, feature in zip(start_logits, end_logits, features, strict=True):
        example, offsets = feature["example"], feature["offsets"]
        starts = np.argsort(start)[-1:-n_best - 1:-1]
        ends = np.argsort(end)[-1:-n_best - 1:-1]
        for s in starts:
            for e in ends:
                if (s >= len(offsets) or e >= len(offsets) or offsets[s] is None
                        or offsets[e] is None or e < s or e - s + 1 > max_answer_length):
                    continue
                score = float(start[s] + end[e])
                if example not in best or score > best[example][0]:
                    best[example] = (score, contexts[example][offsets[s][0]:offsets[e][1]])
    return [best.get(i, (0.0, ""))[1] for i in range(len(contexts))]


def run_qa_hf(direction: str, seed: int = common.SEED) -> dict:
    from benchmarks.training import hf_model_and_tokenizer
    from tfsft.evaluation.squad_metrics import squad_metrics
    from tfsft.tasks.question_answering.examples import read_qa_data

    train_name, eval_name = SQUAD_FILES[direction]
    train_data, eval_data = read_qa_data(SQUAD / train_name), read_qa_data(SQUAD / eval_name)
    model, tokenizer = hf_model_and_tokenizer(head="TFBertForQuestionAnswering", seed=seed)
    import numpy as np
    import tf_keras
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, create_optimizer

    def features(data, labelled: bool):
        encoded = tokenizer([q.lstrip() for q in data.questions], data.contexts,
                            truncation="only_second", max_length=QA_MAX_LENGTH,
                            stride=QA_DOC_STRIDE, return_overflowing_tokens=True,
                            return_offsets_mapping=True)
        rows, meta = {"input_ids": [], "attention_mask": [], "token_type_ids": []}, []
        if labelled:
            rows.update(start_positions=[], end_positions=[])
        for i, example in enumerate(encoded["overflow_to_sample_mapping"]):
            sequence = encoded.sequence_ids(i)
            offsets = [o if sequence[k] == 1 else None
                       for k, o in enumerate(encoded["offset_mapping"][i])]
            for name in ("input_ids", "attention_mask", "token_type_ids"):
                rows[name].append(encoded[name][i])
            meta.append({"example": example, "offsets": offsets})
            if labelled:
                text, start = data.answers[example][0]
                end = start + len(text)
                context = [k for k, s in enumerate(sequence) if s == 1]
                first, last = context[0], context[-1]
                if offsets[first][0] > start or offsets[last][1] < end:
                    span = (0, 0)  # the answer is not inside this window: [CLS]
                else:
                    s = first
                    while s <= last and offsets[s][0] <= start:
                        s += 1
                    e = last
                    while e >= first and offsets[e][1] >= end:
                        e -= 1
                    span = (s - 1, e + 1)
                rows["start_positions"].append(span[0])
                rows["end_positions"].append(span[1])
        return Dataset.from_dict(rows), meta

    collator = DataCollatorWithPadding(tokenizer, return_tensors="np")
    train_rows, _ = features(train_data, True)
    eval_rows, eval_meta = features(eval_data, True)  # labelled: validation loss in fit
    train_ds = model.prepare_tf_dataset(train_rows, shuffle=True, batch_size=QA_BATCH_SIZE,
                                        tokenizer=tokenizer, collate_fn=collator)
    eval_ds = model.prepare_tf_dataset(eval_rows, shuffle=False, batch_size=QA_BATCH_SIZE,
                                       tokenizer=tokenizer, collate_fn=collator)
    import math

    steps = QA_EPOCHS * math.ceil(len(train_rows) / QA_BATCH_SIZE)
    optimizer, _ = create_optimizer(init_lr=common.LEARNING_RATE, num_train_steps=steps,
                                    num_warmup_steps=math.ceil(common.WARMUP_RATIO * steps),
                                    weight_decay_rate=common.WEIGHT_DECAY,
                                    adam_global_clipnorm=common.CLIPNORM)
    model.compile(optimizer=optimizer)  # transformers' own loss: mean of start and end CE
    timer = common.step_timer(tf_keras.callbacks.Callback)
    model.fit(train_ds, validation_data=eval_ds, epochs=QA_EPOCHS, callbacks=[timer], verbose=2)
    start_logits, end_logits = [], []
    for batch in eval_ds:
        inputs = batch[0] if isinstance(batch, tuple) else batch
        out = model(inputs, training=False)
        start_logits += [np.asarray(r) for r in out.start_logits.numpy()]
        end_logits += [np.asarray(r) for r in out.end_logits.numpy()]
    answers = hf_answers(start_logits, end_logits, eval_meta, eval_data.contexts)
    metrics = squad_metrics(answers, eval_data.gold_texts)
    return {"timer": timer, "precision": "float32", "train_examples": len(train_rows),
            "questions": len(train_data), "exact_match": metrics["exact_match"],
            "f1": metrics["f1"], "eval_questions": metrics["questions"]}


def parse_overrides(pairs: list[str]) -> dict:
    """``["lr_schedule=constant", "clipnorm=null"]`` as TrainConfig keywords (YAML values).

    >>> parse_overrides(["lr_schedule=constant", "warmup_ratio=0", "clipnorm=null"])
    {'lr_schedule': 'constant', 'warmup_ratio': 0, 'clipnorm': None}
    """
    import yaml

    overrides = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set {pair!r}: write OPTION=VALUE")
        overrides[name.strip()] = yaml.safe_load(value)
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=RECIPES)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=common.SEED,
                        help="training seed (the data split stays seeded 42)")
    parser.add_argument("--precision", default="auto", help="tfsft recipes: --precision")
    parser.add_argument("--direction", choices=tuple(SQUAD_FILES), default="train-dev",
                        help="qa recipes: train on the first file, score on the second "
                             "(the -dev-train recipes: dev-train)")
    parser.add_argument("--run-dir", type=Path, help="qa-tfsft: keep the run folder here")
    parser.add_argument("--train-rows", type=int, help="ner recipes: the first N training "
                        "sentences only")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE",
                        help="tfsft recipes: a training option changed from its default "
                        "(e.g. lr_schedule=constant; null for none), for ablations")
    args = parser.parse_args(argv)
    args.overrides = parse_overrides(args.set)
    if args.overrides and "-tfsft" not in args.recipe:
        raise SystemExit("--set changes tfsft recipes only")
    if args.recipe.startswith("qa"):
        return _main_qa(args)
    needed = VADER if args.recipe.startswith("regression") else CONLL / "train.txt"
    if not needed.exists():
        raise SystemExit(f"{needed} not found; set TFSFT_BENCHMARK_DATA to the folder that holds "
                         "vader-sentiment/ and conll2003/")
    if args.recipe.startswith("regression"):
        train_part, held_out = vader_split()
        runner = run_regression_tfsft if args.recipe == "regression-tfsft" else run_regression_hf
        options = ({"precision": args.precision, "overrides": args.overrides}
                   if args.recipe == "regression-tfsft" else {})
        result = runner(train_part, held_out, seed=args.seed, **options)
        epochs, data, counts = REGRESSION_EPOCHS, "VADER tweets.tsv", {
            "train_examples": len(train_part[0]), "held_out_examples": len(held_out[0])}
    else:
        result = (run_ner_tfsft(args.seed, args.precision, args.train_rows, args.overrides)
                  if args.recipe == "ner-tfsft" else run_ner_hf(args.seed, args.train_rows))
        epochs, data = NER_EPOCHS, "CoNLL-2003 train.txt -> valid.txt, test.txt"
        counts = {"train_examples": result.pop("train_examples")}
    timer = result.pop("timer")
    from tfsft.io_utils import atomic_write_json  # after the recipe: HF needs tf-keras set first
    atomic_write_json(args.out, {
        "recipe": args.recipe, "task": args.recipe.rsplit("-", 1)[0], "data": data, **counts,
        "seed": args.seed, "overrides": args.overrides, "machine": common.machine(),
        "epochs": epochs, "max_length": common.MAX_LENGTH, "batch_size": common.BATCH_SIZE,
        **timer.steady(epochs * counts["train_examples"]),
        "wall_seconds": round(timer.fit_end - STARTED, 3), **result,
        "peak_rss_mb": round(common.peak_rss_mb(), 1)})


def _main_qa(args: argparse.Namespace) -> None:
    if not SQUAD.exists():
        raise SystemExit(f"{SQUAD} not found; set TFSFT_BENCHMARK_DATA to the folder that holds "
                         "squad-sample/")
    if args.recipe.endswith("-dev-train"):
        args.direction = "dev-train"
    result = (run_qa_tfsft(args.direction, args.seed, args.precision, args.run_dir)
              if args.recipe.startswith("qa-tfsft") else run_qa_hf(args.direction, args.seed))
    timer = result.pop("timer")
    from tfsft.io_utils import atomic_write_json

    windows = result["train_examples"]
    atomic_write_json(args.out, {
        "recipe": args.recipe, "task": "question-answering", "direction": args.direction,
        "data": "SQuAD v1.1 sample " + " -> ".join(SQUAD_FILES[args.direction]),
        "seed": args.seed, "epochs": QA_EPOCHS, "max_length": QA_MAX_LENGTH,
        "doc_stride": QA_DOC_STRIDE, "batch_size": QA_BATCH_SIZE,
        **timer.steady(QA_EPOCHS * windows), "wall_seconds": round(timer.fit_end - STARTED, 3),
        **result, "machine": common.machine(), "peak_rss_mb": round(common.peak_rss_mb(), 1)})


if __name__ == "__main__":
    main()
