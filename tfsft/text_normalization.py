"""Text normalization that runs the same in training, prediction and exported graphs.

A run trained with ``--normalize`` keeps its steps with its tokenizer, which applies them before
word pieces: to the training texts, in ``tfsft predict`` and inside the SavedModel's raw-text
signature. Every step is TensorFlow ops (regular expressions in RE2 syntax, tf-text Unicode
normalization), so the served model sees exactly what training saw. Steps, always applied in
this order:

- ``mojibake``: a text that is UTF-8 read as Windows-1252 or Latin-1 (``cafÃ©``, ``itâ€™s``) is
  decoded back (``café``, ``it’s``), up to twice; a text with any other character is left as it
  is. ``tfsft data clean`` fixes more (ftfy: mixed and partial mojibake) in training files.
- ``html``: the common entities (``&amp;`` ``&lt;`` ``&gt;`` ``&quot;`` ``&#39;`` ``&apos;``
  ``&nbsp;`` ``&#160;`` and the typographic quotes and dashes) become their characters, then tags
  and comments become a space (an escaped tag, ``&lt;b&gt;``, too). ``&amp;`` followed by an
  entity name stays: the step gives the same text when applied twice, so data cleaned with it
  and normalized again in training reads as served texts do.
- ``nfkc``: Unicode NFKC (full-width letters, ligatures and compatibility characters folded).
- ``urls``, ``emails``, ``handles``, ``numbers``: replaced by ``[URL]``, ``[EMAIL]``,
  ``[USER]``, ``[NUMBER]``.
- ``whitespace``: runs of whitespace (Unicode spaces too) become one space; ends trimmed.

>>> normalize_texts(["caf\u00c3\u00a9 <b>tr\u00e8s</b>  bon &amp; cheap"], DEFAULT_STEPS)
['café très bon & cheap']
>>> normalize_texts(["mail me: ann@example.org, see https://x.io/a?b=1"],
...                 ("emails", "urls", "whitespace"))
['mail me: [EMAIL], see [URL]']
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from tfsft.errors import ConfigError

#: Every step, in the order they are applied.
STEPS = ("mojibake", "html", "nfkc", "urls", "emails", "handles", "numbers", "whitespace")
#: The steps ``tfsft data clean`` applies unless told otherwise: those that keep the meaning.
DEFAULT_STEPS = ("mojibake", "html", "nfkc", "whitespace")
PLACEHOLDERS = {"urls": "[URL]", "emails": "[EMAIL]", "handles": "[USER]",
                "numbers": "[NUMBER]"}

# RE2 patterns (TensorFlow's regex ops).
_HTML_TAG = (r"<!--(?s:.*?)-->|<[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>"
             r"|</[A-Za-z][A-Za-z0-9:-]*\s*>|<![A-Za-z][^<>]*>")
_HTML_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&#0?39;|&#x0?27;|&apos;", "'"),
                  ("&nbsp;|&#160;|&#xa0;", "\u00a0"), ("&lsquo;", "\u2018"),
                  ("&rsquo;", "\u2019"), ("&ldquo;", "\u201c"), ("&rdquo;", "\u201d"),
                  ("&ndash;", "\u2013"), ("&mdash;", "\u2014"), ("&hellip;", "\u2026"),
                  ("&amp;([^A-Za-z#]|$)", "&\\1"))  # &amp;lt; stays (idempotent)
_PATTERNS = {
    "urls": (r"(?i)\b(?:https?://|ftp://|www\.)[^\s<>\"'\[\]]+[^\s<>\"'.,;:!?)\[\]]", "[URL]"),
    "emails": (r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b", "[EMAIL]"),
    "handles": (r"(^|[^\w@./])@[A-Za-z0-9_]{1,30}\b", r"\1[USER]"),
    "numbers": (r"\b\d+(?:[.,]\d+)*\b", "[NUMBER]"),
}
_BATCH = 4096


def parse_steps(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Checked steps in application order from ``"html,nfkc"``, a list, ``"default"``
    (:data:`DEFAULT_STEPS`) or ``"none"``/None (no step).

    >>> parse_steps("whitespace, html"), parse_steps("none"), parse_steps("default")[:2]
    (('html', 'whitespace'), (), ('mojibake', 'html'))
    """
    if value is None:
        return ()
    names = [v.strip().lower() for v in (value.split(",") if isinstance(value, str) else value)]
    names = [n for n in names if n]
    if names in (["none"], []):
        return ()
    if names == ["default"]:
        return DEFAULT_STEPS
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ConfigError(f"unknown text normalization step(s) {', '.join(unknown)}; the steps "
                          f"are {', '.join(STEPS)} (or default, none)")
    return tuple(step for step in STEPS if step in names)


def normalize_graph(texts: tf.Tensor, steps: Sequence[str]) -> tf.Tensor:
    """``texts`` (a string tensor of any shape) with ``steps`` applied: TensorFlow ops only,
    for training, prediction and exported graphs alike."""
    for step in steps:
        if step == "mojibake":
            texts = _undo_mojibake(_undo_mojibake(texts))
        elif step == "html":
            for pattern, character in _HTML_ENTITIES:
                texts = tf.strings.regex_replace(texts, f"(?i:{pattern})", character)
            texts = tf.strings.regex_replace(texts, _HTML_TAG, " ")
        elif step == "nfkc":
            import tensorflow_text as tf_text

            texts = tf_text.normalize_utf8(texts, "NFKC")
        elif step == "whitespace":
            texts = tf.strings.regex_replace(texts, r"[\s\p{Z}]+", " ")
            texts = tf.strings.regex_replace(texts, r"^ | $", "")
        else:
            pattern, replacement = _PATTERNS[step]
            texts = tf.strings.regex_replace(texts, pattern, replacement)
    return texts


def normalize_texts(texts: Sequence[str], steps: Sequence[str]) -> list[str]:
    """:func:`normalize_graph` on Python strings (in batches), as the exported graph does it."""
    if not steps:
        return list(texts)
    out: list[str] = []
    for start in range(0, len(texts), _BATCH):
        batch = tf.constant(list(texts[start:start + _BATCH]), tf.string)
        out += [t.decode("utf-8") for t in normalize_graph(batch, steps).numpy().tolist()]
    return out


def _byte_of_character() -> list[int]:
    """For each code point up to the last that Windows-1252 decodes a byte to (U+2122), that
    byte; -1 for the others (and in a last entry, for every code point beyond). Bytes that
    Windows-1252 leaves unassigned, and the C1 controls, are read as Latin-1."""
    table = {byte: byte for byte in range(256)}  # Latin-1: the code point is the byte
    for byte in range(0x80, 0xA0):
        try:
            table[ord(bytes([byte]).decode("cp1252"))] = byte
        except UnicodeDecodeError:
            pass
    size = max(table) + 2
    return [table.get(code, -1) for code in range(size)]


_BYTE_OF_CHARACTER = _byte_of_character()
_BYTES = [bytes([i]) for i in range(256)]


def _undo_mojibake(texts: tf.Tensor) -> tf.Tensor:
    """Each run of characters above ASCII that all map back to bytes (Windows-1252 / Latin-1)
    and whose bytes are valid UTF-8, read as UTF-8 (``cafÃ©`` -> ``café``); every other
    character unchanged (``très`` stays: ``è`` alone is no UTF-8)."""
    shape = tf.shape(texts)
    flat = tf.reshape(texts, [-1])
    characters = tf.strings.unicode_split(flat, "UTF-8", errors="replace")
    codes = tf.strings.unicode_decode(flat, "UTF-8", errors="replace").flat_values
    last = len(_BYTE_OF_CHARACTER) - 1
    byte = tf.gather(tf.constant(_BYTE_OF_CHARACTER, tf.int32), tf.minimum(codes, last))
    rows = characters.value_rowids()
    high = byte >= 128
    # a segment: one character, or a run of such characters within one text
    previous_high = tf.concat([[False], high[:-1]], axis=0)
    same_row = tf.concat([[False], tf.equal(rows[1:], rows[:-1])], axis=0)
    starts = tf.logical_not(high & previous_high & same_row)
    segment = tf.cumsum(tf.cast(starts, tf.int32)) - 1
    segments = tf.reduce_sum(tf.cast(starts, tf.int32))
    original = tf.strings.unsorted_segment_join(characters.flat_values, segment, segments)
    as_bytes = tf.where(high, tf.gather(tf.constant(_BYTES), tf.maximum(byte, 0)),
                        characters.flat_values)
    candidate = tf.strings.unsorted_segment_join(as_bytes, segment, segments)
    is_run = tf.math.unsorted_segment_max(tf.cast(high, tf.int32), segment, segments) > 0
    valid = tf.equal(tf.strings.unicode_transcode(candidate, "UTF-8", "UTF-8", errors="replace",
                                                  replacement_char=0xFFFD), candidate)
    chosen = tf.where(is_run & valid, candidate, original)
    segment_row = tf.gather(rows, tf.boolean_mask(tf.range(tf.size(rows)), starts))
    fixed = tf.strings.unsorted_segment_join(chosen, tf.cast(segment_row, tf.int32),
                                             tf.size(flat))
    return tf.reshape(fixed, shape)
