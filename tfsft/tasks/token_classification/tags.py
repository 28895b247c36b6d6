"""Entity tag schemes (IO, BIO, BIOES/BIOUL, BMES): detect, validate, repair, decode to spans.

A tag is ``O`` or ``PREFIX-TYPE`` (``B-PER``; ``PER`` alone counts as ``I-PER`` in IO data).
Schemes and their prefixes:

- ``IO``: ``I``;  ``BIO`` (IOB2): ``B`` begins, ``I`` continues;
- ``BIOES``: also ``E`` ends and ``S`` is a single-token entity (``BIOUL``: ``L`` and ``U``);
- ``BMES``: ``B`` begins, ``M`` continues, ``E`` ends, ``S`` single (Chinese NER data).

>>> detect_scheme(["B-PER", "I-PER", "O", "B-LOC"])
'BIO'
>>> problems = validate(["O", "I-PER", "B-LOC", "I-ORG"], "BIO")
>>> [(p.position, p.message) for p in problems]
[(1, 'I-PER follows O'), (3, 'I-ORG follows B-LOC')]
>>> repair(["O", "I-PER", "I-PER"], "BIO")
(['O', 'B-PER', 'I-PER'], 1)
>>> spans(["B-PER", "I-PER", "O", "S-LOC"], "BIOES")
[(0, 2, 'PER'), (3, 4, 'LOC')]
>>> tags_from_spans(4, [(0, 2, "PER"), (3, 4, "LOC")], "BIO")
['B-PER', 'I-PER', 'O', 'B-LOC']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SCHEMES = ("IO", "BIO", "BIOES", "BIOUL", "BMES")
OUTSIDE = "O"
# Per scheme: (begin, inside, end, single) prefixes; None where the scheme has no such tag.
_PREFIXES: dict[str, tuple[str | None, str, str | None, str | None]] = {
    "IO": (None, "I", None, None),
    "BIO": ("B", "I", None, None),
    "BIOES": ("B", "I", "E", "S"),
    "BIOUL": ("B", "I", "L", "U"),
    "BMES": ("B", "M", "E", "S"),
}


def split_tag(tag: str) -> tuple[str, str | None]:
    """``("B", "PER")`` from ``B-PER`` (also ``B_PER``, ``b-PER``); ``("O", None)`` for ``O`` (or
    ``o``: prefixes are read in either case); a bare type such as ``PER`` is ``("I", "PER")``.

    >>> split_tag("B-PER"), split_tag("o"), split_tag("I-MISC-X"), split_tag("LOC")
    (('B', 'PER'), ('O', None), ('I', 'MISC-X'), ('I', 'LOC'))
    """
    if tag in (OUTSIDE, OUTSIDE.lower()):
        return OUTSIDE, None
    for separator in ("-", "_"):
        prefix, found, kind = tag.partition(separator)
        if found and len(prefix) == 1 and prefix.isalpha() and kind:
            return prefix.upper(), kind
    return "I", tag


def normalize_tag(tag: str) -> str:
    """``B-PER`` for ``B_PER`` or ``b-PER``; ``I-PER`` for a bare ``PER`` (IO data).

    >>> normalize_tag("b_PER"), normalize_tag("PER"), normalize_tag("O")
    ('B-PER', 'I-PER', 'O')
    """
    prefix, kind = split_tag(tag)
    return OUTSIDE if kind is None else f"{prefix}-{kind}"


def prefixes_of(scheme: str) -> set[str]:
    return {p for p in _PREFIXES[scheme] if p is not None}


def detect_scheme(tags: Iterable[str]) -> str:
    """The smallest scheme whose prefixes cover every tag in ``tags``.

    >>> detect_scheme(["B-PER", "M-PER", "E-PER", "S-LOC", "O"])
    'BMES'
    >>> detect_scheme(["U-PER", "B-LOC", "L-LOC"])
    'BIOUL'
    """
    seen = {split_tag(tag)[0] for tag in tags} - {OUTSIDE}
    for scheme in ("IO", "BIO", "BIOES", "BIOUL", "BMES"):
        if seen <= prefixes_of(scheme):
            return scheme
    raise ValueError(f"tags with the prefixes {sorted(seen)} fit none of the schemes "
                     f"{', '.join(SCHEMES)}")


@dataclass(frozen=True)
class TagProblem:
    position: int  # index of the offending tag in the sentence
    message: str


def _continues(prefix: str, scheme: str) -> bool:
    _, inside, end, _ = _PREFIXES[scheme]
    return prefix in (inside, end)


def _open_after(prefix: str, scheme: str) -> bool:
    """Whether an entity is still open after a tag with ``prefix`` (the next may continue it)."""
    begin, inside, _, _ = _PREFIXES[scheme]
    return prefix in (begin, inside)


def validate(tags: Sequence[str], scheme: str) -> list[TagProblem]:
    """Every tag that breaks ``scheme``: an unknown prefix, a continuation (``I``/``M``/``E``)
    that does not continue an open entity of its type, or an entity left open where the scheme
    closes each one explicitly (BIOES, BIOUL, BMES)."""
    allowed = prefixes_of(scheme) | {OUTSIDE}
    problems = []
    previous_prefix, previous_type, previous_tag = OUTSIDE, None, OUTSIDE
    explicit_end = _PREFIXES[scheme][2] is not None
    for position, tag in enumerate(tags):
        prefix, kind = split_tag(tag)
        if prefix not in allowed:
            problems.append(TagProblem(position, f"{tag} has a prefix that {scheme} does not use"))
        elif scheme != "IO" and _continues(prefix, scheme) and not (
                _open_after(previous_prefix, scheme) and previous_type == kind):
            problems.append(TagProblem(position, f"{tag} follows {previous_tag}"))
        elif explicit_end and _open_after(previous_prefix, scheme) and not (
                _continues(prefix, scheme) and previous_type == kind):
            problems.append(TagProblem(position - 1, f"{previous_tag} is not closed before "
                                                     f"{tag}"))
        previous_prefix, previous_type, previous_tag = prefix, kind, tag
    if explicit_end and tags and _open_after(previous_prefix, scheme):
        problems.append(TagProblem(len(tags) - 1, f"{previous_tag} ends the sentence unclosed"))
    return problems


def repair(tags: Sequence[str], scheme: str) -> tuple[list[str], int]:
    """Tags decoded leniently and re-encoded in ``scheme``; returns them and how many changed.

    A continuation that continues nothing starts a new entity (``O I-PER`` -> ``O B-PER``); in
    schemes with explicit ends, an unclosed entity is closed.
    """
    fixed = tags_from_spans(len(tags), spans(tags, scheme), scheme)
    return fixed, sum(a != b for a, b in zip(tags, fixed, strict=True))


def spans(tags: Sequence[str], scheme: str) -> list[tuple[int, int, str]]:
    """Entities as ``(start, end, type)`` tag positions, ``end`` exclusive, decoded leniently
    (as ``seqeval``'s default mode: a continuation of another type starts a new entity)."""
    begin, _, end_prefix, single = _PREFIXES[scheme]
    found: list[tuple[int, int, str]] = []
    start, kind = None, None
    for position, tag in enumerate(tags):
        prefix, tag_type = split_tag(tag)
        if prefix == OUTSIDE or tag_type is None:
            if start is not None:
                found.append((start, position, kind))
            start, kind = None, None
            continue
        starts_new = (start is None or tag_type != kind or prefix == begin or prefix == single)
        if starts_new:
            if start is not None:
                found.append((start, position, kind))
            start, kind = position, tag_type
        if prefix in (end_prefix, single) and prefix is not None:
            found.append((start, position + 1, kind))
            start, kind = None, None
    if start is not None:
        found.append((start, len(tags), kind))
    return found


def tags_from_spans(length: int, entities: Iterable[tuple[int, int, str]],
                    scheme: str) -> list[str]:
    """Tags of ``length`` positions with ``entities`` (``(start, end, type)``) in ``scheme``."""
    begin, inside, end, single = _PREFIXES[scheme]
    tags = [OUTSIDE] * length
    for start, stop, kind in entities:
        for position in range(start, stop):
            tags[position] = f"{inside}-{kind}"
        if begin is not None:
            tags[start] = f"{begin}-{kind}"
        if end is not None and stop - start > 1:
            tags[stop - 1] = f"{end}-{kind}"
        if single is not None and stop - start == 1:
            tags[start] = f"{single}-{kind}"
    return tags


def entity_types(tags: Iterable[str]) -> list[str]:
    """The entity types named in ``tags``, sorted."""
    return sorted({kind for kind in (split_tag(t)[1] for t in tags) if kind is not None})


def label_set(types: Sequence[str], scheme: str) -> list[str]:
    """Every tag of ``scheme`` for ``types``: ``O`` first, then each type's prefixes in order.

    >>> label_set(["LOC", "PER"], "BIO")
    ['O', 'B-LOC', 'I-LOC', 'B-PER', 'I-PER']
    """
    prefixes = [p for p in _PREFIXES[scheme] if p is not None]
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in types for prefix in prefixes]


def seqeval_scheme(scheme: str) -> str | None:
    """The ``seqeval.scheme`` class name for strict evaluation (None: default mode)."""
    return {"BIO": "IOB2", "BIOES": "IOBES", "BIOUL": "BILOU"}.get(scheme)


def to_seqeval_tags(tags: Sequence[str], scheme: str) -> list[str]:
    """Tags as seqeval reads them: BMES becomes BIOES (``M`` -> ``I``), IO becomes BIO."""
    if scheme == "BMES":
        return [("I" + tag[1:]) if tag.startswith("M-") else tag for tag in tags]
    if scheme == "IO":
        return tags_from_spans(len(tags), spans(tags, scheme), "BIO")
    return list(tags)
