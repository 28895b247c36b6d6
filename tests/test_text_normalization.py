"""Text normalization: the steps themselves, and the same normalization in training, predict and
the exported SavedModel."""

from __future__ import annotations

import json

import ftfy
import numpy as np
import pytest
import tensorflow as tf

from tfsft.errors import ConfigError
from tfsft.text_normalization import DEFAULT_STEPS, normalize_graph, normalize_texts, parse_steps

from .conftest import sentiment_rows, tiny_config, write_csv

MOJIBAKE = ["cafÃ© très", "itâ€™s great", "Â£5 and Ã©tÃ©", "ðŸ˜€ emoji", "crÃƒÂ¨me brÃ»lÃ©e"]
CLEAN = ["", "plain", "naïve café", "€ 5", "x < y > z", "Ã", "10 ¼ cups"]


def test_mojibake_is_undone_as_ftfy_does_and_clean_text_is_kept():
    fixed = normalize_texts(MOJIBAKE + CLEAN, ("mojibake",))
    assert fixed == [ftfy.fix_encoding(text) for text in MOJIBAKE] + CLEAN
    assert fixed[:2] == ["café très", "it’s great"]


@pytest.mark.parametrize("steps, text, expected", [
    ("html", "<p class='x'>Hi&nbsp;there</p><!-- note --><br/>&amp;lt; &lt;b&gt;x",
     " Hi\u00a0there   &amp;lt;  x"),
    ("html,whitespace", "<p>a</p>\n\n<p>b\u2009c</p>", "a b c"),
    ("nfkc", "ﬁne ＡＢＣ", "fine ABC"),
    ("urls", "see https://example.org/a?b=1. or www.x.io!", "see [URL]. or [URL]!"),
    ("emails,handles", "ann.lee@mail.example.com or @ann_lee, not a@b", "[EMAIL] or [USER], not a@b"),
    ("numbers", "3 cats, 1,500.25 dogs, B52", "[NUMBER] cats, [NUMBER] dogs, B52"),
    ("whitespace", "  a \t b\n", "a b"),
])
def test_each_step(steps, text, expected):
    assert normalize_texts([text], parse_steps(steps)) == [expected]


def test_every_step_gives_the_same_text_when_applied_twice():
    from tfsft.text_normalization import STEPS

    texts = MOJIBAKE + CLEAN + ["&lt;b&gt;x&lt;/b&gt;", "a &amp;amp; b &amp; c", "<b>1</b> @ann",
                                "mail a@b.io https://x.io/[1] 3,5 <URL>", "&amp;lt;p&amp;gt;"]
    once = normalize_texts(texts, STEPS)
    assert normalize_texts(once, STEPS) == once


def test_steps_are_checked_and_put_in_order():
    assert parse_steps(["whitespace", "mojibake"]) == ("mojibake", "whitespace")
    assert parse_steps("none") == () and parse_steps("default") == DEFAULT_STEPS
    with pytest.raises(ConfigError, match="unknown text normalization step.*htlm"):
        parse_steps("htlm,nfkc")


def test_the_graph_function_takes_any_shape_and_traces():
    traced = tf.function(lambda t: normalize_graph(t, DEFAULT_STEPS),
                         input_signature=[tf.TensorSpec([None, None], tf.string)])
    out = traced(tf.constant([["cafÃ©  <i>x</i>", ""], ["a", "b "]])).numpy()
    assert out.tolist() == [["café x".encode(), b""], [b"a", b"b"]]
    assert traced(tf.zeros([0, 2], tf.string)).shape == (0, 2)


def test_a_run_normalizes_in_training_predict_and_the_savedmodel(tiny_checkpoint, tmp_path):
    from exporters import export
    from tfsft.runs import TrainedRun
    from tfsft.training.trainer import train

    rows = [(f"<p>{text}</p>" if i % 3 == 0 else text, label)
            for i, (text, label) in enumerate(sentiment_rows(256, seed=1))]
    result = train(tiny_config(tiny_checkpoint, write_csv(tmp_path / "train.csv", rows),
                               tmp_path / "run", normalize="html,whitespace,mojibake", epochs=3))
    config = json.loads((result.run_dir / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["tfsft_text_normalization"] == ["mojibake", "html", "whitespace"]
    run = TrainedRun(result.run_dir)
    damaged = ["cafÃ© <b>brilliant</b>", "a  boring\u00a0film", "itâ€™s <i>dull</i> &amp; slow"]
    clean = ["café brilliant", "a boring film", "it’s dull & slow"]
    predicted = run.predict(damaged)
    assert predicted == run.predict(clean)

    report = export(result.run_dir, tmp_path / "export", formats=["savedmodel", "tflite"],
                    quantize=[])
    assert report["passed"]
    assert not (tmp_path / "export" / "tflite" / "model_text.tflite").exists()  # not in LiteRT
    sidecar = json.loads((tmp_path / "export" / "tflite" / "tokenizer_config.json").read_text())
    assert sidecar["tfsft_text_normalization"] == ["mojibake", "html", "whitespace"]
    served = tf.saved_model.load(str(tmp_path / "export" / "1")).signatures["serving_default"]
    for texts in (damaged, clean):
        outputs = served(text=tf.constant(texts))
        probabilities = outputs["probabilities"].numpy()
        labels = [run.labels[i] for i in probabilities.argmax(-1)]
        assert labels == [p["label"] for p in predicted]
        np.testing.assert_allclose(probabilities.max(-1), [p["score"] for p in predicted],
                                   atol=1e-5)
    assert "Texts are normalized before tokenizing (mojibake, html, whitespace" in (
        tmp_path / "export" / "README.md").read_text()


def test_span_tasks_take_no_normalization(tiny_checkpoint):
    from tfsft.tasks import create_task

    with pytest.raises(ConfigError, match="normalize"):
        create_task("token-classification", {"normalize": "html"})
