"""Cut cleaned report text into units (sentences and headings), each with the heading it sits under.

The boundary rules live in one pure function, `iter_units`, which works on plain strings so that
batch jobs run at disk speed. `PolicySentencizer` is the same rules as a spaCy `Language`
component (registered as ``policy_sentencizer``), for users who want spaCy `Doc`s with jieba
tokens; a test checks that both give identical units.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

from pipeline.errors import IngestError
from pipeline.ingest import Document, SentenceTable, Source, fold, iter_paths, read_source, simplify_folded
from pipeline.io import text_series

UNIT_COLUMNS = ["doc", "sent_id", "index", "text", "text_norm", "text_hash", "heading",
                "is_heading", "position"]

_CLOSERS = "”’」』)）】》"
# One match per sentence: text up to a run of terminators, plus the quotes/brackets closing it.
_SENTENCE = re.compile(r"[^。！？!?]*[。！？!?]+[”’」』)）】》]*|[^。！？!?]+")
_CLAUSE = re.compile(r"[^。！？!?；;]*[。！？!?；;]+[”’」』)）】》]*|[^。！？!?；;]+")
_COMMAS = "，,、；;：:"
_NUM = "一二三四五六七八九十百零〇"
_LEVELS = (
    (re.compile(rf"^\s*第[{_NUM}\d]+[篇部]"), 1),
    (re.compile(rf"^\s*[{_NUM}]+[、．.]"), 1),
    (re.compile(rf"^\s*第[{_NUM}\d]+章"), 2),
    (re.compile(rf"^\s*[(（][{_NUM}]+[)）]"), 2),
    (re.compile(rf"^\s*第[{_NUM}\d]+节"), 3),
    (re.compile(r"^\s*专栏\s*\d+"), 3),
    (re.compile(r"^\s*\d{1,2}[、．.](?!\d)"), 3),
    (re.compile(r"^\s*[(（]\d{1,2}[)）]"), 3),
)
_LEAD = re.compile(rf"^\s*(?:——|[{_NUM}]+是)")
_DATE_LINE = re.compile(r"^[\d年月日\s:：.\-/]+$")


@dataclass(frozen=True)
class SegmentParams:
    """The knobs of `params.yaml: segment`."""

    clause_units: bool = False
    max_chars: int = 500
    heading_max_chars: int = 50
    lead_max_chars: int = 20

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "SegmentParams":
        d = d or {}
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True)
class RawUnit:
    start: int
    end: int
    text: str
    heading_level: int  # 0 for an ordinary sentence, 1 (part) … 4 (lead phrase) for headings


def text_hash(folded: str) -> str:
    """Identity of a unit's folded text (see `ingest.fold`): matches labels to units after re-segmentation."""
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=8).hexdigest()


def _split_sentences(par: str, params: SegmentParams) -> list[str]:
    """The sentences of one paragraph; together they are exactly the paragraph's text."""
    pieces = (_CLAUSE if params.clause_units else _SENTENCE).findall(par)
    if '"' in par:  # a half-width closing quote after the terminator belongs to the sentence it closes
        for i in range(1, len(pieces)):
            if pieces[i].startswith('"') and pieces[i - 1].count('"') % 2:
                pieces[i - 1] += '"'
                pieces[i] = pieces[i][1:]
    if any(len(p) > params.max_chars for p in pieces):
        pieces = [b for p in pieces for b in _bounded(p, params.max_chars)]
    return pieces


def _bounded(text: str, max_chars: int) -> Iterator[str]:
    """Cut a run longer than max_chars at the last comma before the limit (or hard at the limit)."""
    start, end = 0, len(text)
    while end - start > max_chars:
        limit = start + max_chars
        cut = max(text.rfind(c, start + 1, limit) for c in _COMMAS)
        cut = cut + 1 if cut > start else limit
        yield text[start:cut]
        start = cut
    yield text[start:end]


_HEADING_FIRST_CHARS = frozenset("第专(（" + _NUM + "0123456789")


def _heading_level(unit: str, first: bool, only: bool, params: SegmentParams) -> int:
    if unit[0] in _HEADING_FIRST_CHARS:
        for pattern, level in _LEVELS:
            if pattern.match(unit):
                return level
    if first and only and len(unit) <= params.heading_max_chars and unit[-1] not in "。！？!?；;：:，," \
            and not _DATE_LINE.match(unit):
        return 3
    if (unit[0] == "—" or unit[0] in _NUM) and _LEAD.match(unit):
        return 4
    if first and not only and len(unit) <= params.lead_max_chars and unit[-1] in "。！？!?":
        return 4
    return 0


def iter_units(text: str, params: SegmentParams | None = None) -> Iterator[RawUnit]:
    """Every unit of a cleaned document (one paragraph per line), in order, with its offsets."""
    params = params or SegmentParams()
    offset = 0
    for par in text.split("\n"):
        spans = []
        pos = offset
        for piece in _split_sentences(par, params):
            stripped = piece.strip()
            if stripped:
                spans.append((pos + len(piece) - len(piece.lstrip()), stripped))
            pos += len(piece)
        only = len(spans) == 1
        for i, (start, stripped) in enumerate(spans):
            yield RawUnit(start, start + len(stripped), stripped, _heading_level(stripped, i == 0, only, params))
        offset += len(par) + 1


def segment_document(doc: Document, params: SegmentParams | None = None) -> pd.DataFrame:
    """The units of one document as the fixed-column DataFrame every later stage consumes."""
    units = list(iter_units(doc.text, params))
    texts = [u.text for u in units]
    headings: list[str] = []
    stack: list[tuple[int, str]] = []  # (level, heading text), outermost first
    for unit in units:
        if unit.heading_level:
            while stack and stack[-1][0] >= unit.heading_level:
                stack.pop()
        headings.append(stack[-1][1] if stack else "")
        if unit.heading_level:
            stack.append((unit.heading_level, unit.text))
    return _frame(doc.doc_id, texts, headings, [bool(u.heading_level) for u in units], doc.traditional)


def _frame(doc_id: str, texts: list[str], headings: list[str], is_heading: list[bool],
           traditional: bool | None, docs: list[str] | None = None) -> pd.DataFrame:
    n = len(texts)
    folded = fold(texts)
    norms = simplify_folded(folded, traditional)

    return pd.DataFrame({
        "doc": text_series(docs if docs is not None else [doc_id] * n),
        "sent_id": text_series([f"{doc_id}:{i}" for i in range(n)]),
        "index": range(n),
        "text": text_series(texts),
        "text_norm": text_series(norms),
        "text_hash": text_series([text_hash(t) for t in folded]),
        "heading": text_series(headings),
        "is_heading": is_heading,
        "position": [round(i / max(n, 1), 4) for i in range(n)],
    })


def table_units(table: SentenceTable) -> pd.DataFrame:
    """Units of an already-split sentence table: one per row, as given; other columns pass through.

    A table's own `sent_id` and `index` are kept (ids must survive a round trip through a
    spreadsheet or a queue); rows without a `sent_id` get ``<doc>:<row>``, and `index` is the row
    number when the table has none."""
    rows = table.rows
    frame = _frame(table.doc_id, [str(r.get("text") or "") for r in rows],
                   [str(r.get("heading") or "") for r in rows], [False] * len(rows), None,
                   docs=[str(r.get("doc") or table.doc_id) for r in rows])
    if "sent_id" in rows[0]:
        frame["sent_id"] = [str(r.get("sent_id") or s) for r, s in zip(rows, frame["sent_id"])]
    if "index" in rows[0]:  # the table's own column, not a position: rows are classified alone
        frame["index"] = [r.get("index") for r in rows]
    if set().union(*rows) <= set(UNIT_COLUMNS):
        return frame
    extra = pd.DataFrame(rows).drop(columns=UNIT_COLUMNS, errors="ignore")
    return pd.concat([frame, extra.reset_index(drop=True)], axis=1)


def segment_source(source: Source, params: SegmentParams | None = None) -> pd.DataFrame:
    if isinstance(source, SentenceTable):
        return table_units(source)
    return segment_document(source, params)


def units_from_path(path: str | Path, params: SegmentParams | None = None, doc_id: str | None = None) -> pd.DataFrame:
    """The units of one input file: the one recipe (read, clean, cut) every command uses.

    A report is cut with `params` (the `segment` section of params.yaml); a sentence table gives
    one unit per row. Raises `IngestError` naming the file when it cannot be read or holds no text.
    """
    params = params or SegmentParams()
    units = segment_source(read_source(path, doc_id, params.heading_max_chars), params)
    if units.empty:
        raise IngestError(f"{path}: no sentences found")
    return units


def units_from_paths(inputs: Iterable[str | Path], params: SegmentParams | None = None) -> pd.DataFrame:
    """The units of every file under `inputs`, concatenated (the first unreadable file raises)."""
    frames = [units_from_path(p, params) for p in iter_paths(list(inputs))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=UNIT_COLUMNS)


# ---------------------------------------------------------------- spaCy

def _register_spacy_component() -> None:
    from spacy.language import Language

    if Language.has_factory("policy_sentencizer"):
        return

    @Language.factory(
        "policy_sentencizer",
        default_config={"clause_units": False, "max_chars": 500, "heading_max_chars": 50, "lead_max_chars": 20},
    )
    def make_policy_sentencizer(nlp: Language, name: str, clause_units: bool, max_chars: int,
                                heading_max_chars: int, lead_max_chars: int) -> "PolicySentencizer":
        return PolicySentencizer(SegmentParams(clause_units, max_chars, heading_max_chars, lead_max_chars))


class PolicySentencizer:
    """spaCy component: sets sentence starts by `iter_units` and records headings in doc.spans."""

    def __init__(self, params: SegmentParams) -> None:
        self.params = params

    def __call__(self, doc: Any) -> Any:
        units = list(iter_units(doc.text, self.params))
        starts = iter(sorted(u.start for u in units))
        next_start = next(starts, None)
        for i, token in enumerate(doc):
            end = token.idx + len(token.text)
            hit = False
            while next_start is not None and next_start < end:  # a start inside this token marks it
                hit = hit or next_start >= token.idx
                next_start = next(starts, None)
            token.is_sent_start = i == 0 or (hit and not token.is_space)
        doc.spans["headings"] = [span for u in units if u.heading_level
                                 for span in [doc.char_span(u.start, u.end, alignment_mode="expand")] if span]
        return doc


def build_nlp(params: SegmentParams | None = None) -> Any:
    """A blank Chinese spaCy pipeline (jieba segmenter) with the policy sentencizer."""
    import spacy

    _register_spacy_component()
    params = params or SegmentParams()
    nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
    nlp.add_pipe("policy_sentencizer", config=params.__dict__)
    return nlp
