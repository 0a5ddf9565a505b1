"""Read report files into clean `Document`s, whatever encoding and debris they arrive with.

Government files come as GB18030/GBK or UTF-8 (with or without BOM) text, web pages, Word files and
PDF extractions. Decoding is strict: a file that would need replacement characters is refused with
its name, never silently mangled. Cleaning removes the debris seen in real files (page headers,
"(上接1版)", HTML tags, portal metadata, markdown marks) and rejoins sentences broken across lines.

Every file is read within limits, so that one hostile or broken file costs an error message, not the
machine: regular files only, at most `pipeline.io.MAX_FILE_BYTES`; a `.docx` is measured through
its zip directory before it is parsed (`MAX_DOCX_ENTRIES`, `MAX_DOCX_BYTES`, `MAX_DOCX_XML_BYTES`);
CSV fields at most `pipeline.io.FIELD_LIMIT` characters, as is the `text` of a `.jsonl` row.
"""
from __future__ import annotations

import codecs
import html
import io
import json
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from pipeline.errors import IngestError
from pipeline.io import FIELD_LIMIT, csv_records, read_bytes, sheet_value

TEXT_SUFFIXES = {".txt", ".md", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
DOCX_SUFFIXES = {".docx"}
TABLE_SUFFIXES = {".jsonl", ".csv"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | DOCX_SUFFIXES | TABLE_SUFFIXES

MAX_DOCX_ENTRIES = 5_000
"""Most parts a .docx may hold (a long report with pictures has a few hundred)."""
MAX_DOCX_BYTES = 256 * 2 ** 20
"""Largest total expanded size of a .docx's parts (256 MB; pictures included)."""
MAX_DOCX_XML_BYTES = 32 * 2 ** 20
"""Largest total expanded size of its XML parts (32 MB, about ten times a 300-page report): parsed
XML takes some 30 times its size in memory, so this is the cap that stops a zip bomb."""


@dataclass
class Document:
    """One report: cleaned original text, plus what later stages need to know about it."""

    doc_id: str
    path: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    traditional: bool = False


@dataclass
class SentenceTable:
    """Already-split sentences (`.jsonl`/`.csv` with a `text` column): classified as given."""

    doc_id: str
    path: str
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)


Source = Document | SentenceTable


# ---------------------------------------------------------------- decoding

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_HAN = re.compile(r"[\u3400-\u9fff]")


def decode_bytes(data: bytes, name: str) -> tuple[str, str]:
    """Decode strictly; return (text, encoding). BOMs decide first, then UTF-8, then GB18030."""
    if not data.strip():
        raise IngestError(f"{name}: empty file")
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as exc:
                raise IngestError(f"{name}: has a {enc} byte-order mark but is not valid {enc} "
                                  f"(byte {exc.start})") from exc
    if b"\x00" in data[:4096]:
        raise IngestError(f"{name}: binary file (NUL bytes and no UTF-16 byte-order mark)")
    try:
        text, enc = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_exc:
        try:
            text, enc = data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            line = data[: utf8_exc.start].count(b"\n") + 1
            raise IngestError(
                f"{name}: line {line}: not valid UTF-8, GB18030/GBK or UTF-16 "
                f"(undecodable byte at offset {utf8_exc.start}); convert it to UTF-8"
            ) from utf8_exc
        if not _looks_like_text(text):
            raise IngestError(f"{name}: binary file or an unsupported encoding such as Big5 "
                              "(decodes as GB18030 only to non-text characters); convert text to UTF-8") from None
    if len(_CONTROL.findall(text[:20000])) > max(3, len(text[:20000]) // 100):
        raise IngestError(f"{name}: binary file (control characters in the text)")
    return text, enc


def _looks_like_text(text: str) -> bool:
    """GB18030 accepts most byte soup; real Chinese text is mostly common Han, ASCII and punctuation."""
    sample = text[:20000]
    ordinary = sum(1 for ch in sample if ch.isascii() or "\u3000" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef")
    return ordinary >= 0.95 * len(sample)


# ---------------------------------------------------------------- HTML / DOCX

class _HTMLText(HTMLParser):
    """Text of an HTML page: block elements become line breaks, script/style are dropped."""

    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section",
             "article", "table", "ul", "ol", "title", "blockquote", "pre", "hr"}
    SKIP = {"script", "style", "noscript", "head"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    return "".join(parser.parts)


def docx_to_text(path: Path, data: bytes | None = None) -> str:
    """The paragraphs of a Word file, one per line.

    The zip directory is checked against the size caps before anything is expanded. python-docx
    then parses untrusted bytes: whatever it raises on a broken package (malformed XML, a corrupt
    deflate stream, a missing part) means the file cannot be read, and is reported as such."""
    import zipfile

    import docx  # python-docx
    from docx.opc.exceptions import PackageNotFoundError

    data = read_bytes(path) if data is None else data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            _check_docx_sizes(path, package.infolist())
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise IngestError(f"{path}: not a readable .docx file (not a zip package)") from exc
    try:
        document = docx.Document(io.BytesIO(data))
        return "\n".join(p.text for p in document.paragraphs)
    except PackageNotFoundError as exc:
        raise IngestError(f"{path}: not a readable .docx file (not a Word package)") from exc
    except Exception as exc:  # noqa: BLE001 - a third-party parser on a broken file: see the docstring
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise IngestError(f"{path}: not a readable .docx file ({reason})") from exc


def _check_docx_sizes(path: Path, entries: list[Any]) -> None:
    xml = sum(e.file_size for e in entries if e.filename.lower().endswith((".xml", ".rels")))
    total = sum(e.file_size for e in entries)
    if len(entries) > MAX_DOCX_ENTRIES:
        raise IngestError(f"{path}: {len(entries):,} parts in the .docx package, over the limit of "
                          f"{MAX_DOCX_ENTRIES:,}; not read")
    if xml > MAX_DOCX_XML_BYTES or total > MAX_DOCX_BYTES:
        raise IngestError(f"{path}: the .docx expands to {max(xml, total) / 2 ** 20:,.1f} MB"
                          f"{' of XML' if xml > MAX_DOCX_XML_BYTES else ''}, over the limit of "
                          f"{(MAX_DOCX_XML_BYTES if xml > MAX_DOCX_XML_BYTES else MAX_DOCX_BYTES) / 2 ** 20:,.0f} MB "
                          "(a zip bomb, or save it as .txt); not read")


# ---------------------------------------------------------------- cleaning

_INLINE_TAG = re.compile(r"</?(?:sub|sup|span|b|i|em|strong|font|a|u|p|br|div)\b[^<>]*>", re.I)
_BLOCK_TAG = re.compile(r"<(?:br|/p|p|/div|div)\b[^<>]*>", re.I)
_PAGE_HEADER = re.compile(
    r"^.{0,60}[(（]第\s*\d+\s*/\s*\d+\s*页[)）]\s*$"      # 工作报告-51篇(第63/322页)
    r"|^\s*第\s*\d+\s*页(?:\s*[,，/]?\s*共\s*\d+\s*页)?\s*$"  # 第3页 共20页
    r"|^\s*[-—–]\s*\d{1,4}\s*[-—–]\s*$"                   # - 12 -
)
_CONTINUATION = re.compile(r"[(（]\s*[上下][接转]\s*(?:第?\s*[\d一二三四五六七八九十]+\s*[版页])\s*[)）]")
_MARKDOWN_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]*", re.M)
_METADATA = re.compile(
    r"(信息类别|文件编号|信息索取号|公开方式|公开时限|公开范围|生成日期|规范性文件有效性|索\s*引\s*号|发文机关|主题分类)\s*[:：]"
    r"|发布日期\s*[:：].*(字号|【|打印|关闭)"
    r"|字号\s*【\s*[大中小]?"
    r"|^\s*【\s*(打印|关闭|字体)"
)
_SENTENCE_END = "。！？!?；;…”’」』)）】》"
_HEADING_START = re.compile(
    r"^\s*(?:第[一二三四五六七八九十百零〇\d]+[篇章节部分]|[(（][一二三四五六七八九十\d]+[)）]"
    r"|[一二三四五六七八九十]+[、.．]|[一二三四五六七八九十]+是|——|专栏\s*\d+|附件|\d+[、.．](?!\d))"
)
_WS = re.compile(r"[ \t\u3000\xa0]+")


def clean_text(raw: str, heading_max_chars: int = 50) -> str:
    """Remove web/PDF debris and rejoin broken sentences; one paragraph per line in the result."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    if "<" in text:
        text = _INLINE_TAG.sub("", _BLOCK_TAG.sub("\n", text))
    if "&" in text:
        text = html.unescape(text)
    text = _WS.sub(" ", text)
    if "接" in text or "转" in text:  # "(上接1版)" opens a continued page, "(下转4版)" ends one
        text = _CONTINUATION.sub("", text)
    if "#" in text:
        text = _MARKDOWN_HEADING.sub("", text)
    lines = [line.strip() for line in text.split("\n")]
    lines = [line for line in lines if line and not _is_debris(line)]
    return "\n".join(_rejoin(lines, heading_max_chars))


def _is_debris(line: str) -> bool:
    # cheap character tests first: the regexes only run on the few lines that could match
    if ("页" in line or line[:1] in "-—–") and _PAGE_HEADER.search(line):
        return True
    return (":" in line or "：" in line or "【" in line) and bool(_METADATA.search(line))


def _rejoin(lines: list[str], heading_max_chars: int) -> Iterator[str]:
    """Join a line that stops mid-sentence with the line that continues it (PDF line breaks)."""
    buffer = ""
    for line in lines:
        if buffer and _continues(buffer, line, heading_max_chars):
            buffer += line
            continue
        if buffer:
            yield buffer
        buffer = line
    if buffer:
        yield buffer


def _continues(previous: str, line: str, heading_max_chars: int) -> bool:
    if previous[-1] in _SENTENCE_END or previous[-1] in "：:" or _HEADING_START.match(line):
        return False  # a finished sentence, a salutation/lead-in ending in a colon, or a new heading
    if previous[-1] in "，,、（(“‘《—-":
        return True
    # No final punctuation: a long line was cut by the extractor; so was a short one that already holds
    # a clause of a sentence (a full-width comma) without being a numbered heading.
    if len(previous) > heading_max_chars:
        return True
    return "，" in previous and not _HEADING_START.match(previous)


# ---------------------------------------------------------------- normalisation

@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    return _t2s().convert(text)


@lru_cache(maxsize=1)
def _traditional_chars() -> frozenset[str]:
    """Han characters that OpenCC's character table maps to a different simplified form."""
    han = "".join(chr(c) for c in range(0x4E00, 0xA000))
    return frozenset(a for a, b in zip(han, to_simplified(han)) if a != b)


@lru_cache(maxsize=1)
def _traditional_pattern() -> re.Pattern[str]:
    return re.compile("[" + "".join(sorted(_traditional_chars())) + "]")


def is_traditional(text: str, sample: int = 5000) -> bool:
    """True when a meaningful share of a document's Han characters are traditional-only forms."""
    head = text[:sample]
    han = len(_HAN.findall(head))
    if not han:
        return False
    return len(_traditional_pattern().findall(head)) >= max(3, han // 100)


def _narrow(text: str) -> str:
    """NFKC's own mapping of the full-width ASCII forms (U+FF01-FF5E) and the ideographic space,
    done on the code points in numpy: `str.translate` looks every character up in a dict, six
    times slower on Chinese text. Applied first, it leaves almost every Chinese unit already in
    NFKC, which the quick check confirms; only the rest pay for the full normalisation."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).copy()
    points[(points >= 0xFF01) & (points <= 0xFF5E)] -= 0xFEE0
    points[points == 0x3000] = 0x20
    return points.tobytes().decode("utf-32-le", "surrogatepass")


def fold(texts: list[str]) -> list[str]:
    """Width- and space-insensitive form of units (NFKC, collapsed spaces): the basis of text hashes."""
    if not texts:
        return []
    parts = _narrow("\n".join(t.replace("\n", " ") for t in texts)).split("\n")
    done, nfkc = unicodedata.is_normalized, unicodedata.normalize
    joined = "\n".join(p if done("NFKC", p) else nfkc("NFKC", p) for p in parts)
    out = [t.strip() for t in _WS.sub(" ", joined).split("\n")]
    return out if len(out) == len(texts) else [fold([t])[0] for t in texts]


def normalise_many(texts: list[str], traditional: bool | None = None) -> list[str]:
    """The model's view of units: folded, and converted to simplified characters when traditional.

    `traditional` is a document's own verdict (`Document.traditional`). Without one (sentence
    tables, bare sentences, the MLflow model), each unit decides for itself: it is converted when it
    holds a traditional-only character. So a unit's view never depends on what else is in the
    batch. Conversion runs once over the joined units that need it (per-unit calls cost more).
    """
    return simplify_folded(fold(texts), traditional)


def simplify_folded(folded: list[str], traditional: bool | None = None) -> list[str]:
    """`normalise_many` for texts already folded (the segmenter folds once for hashes and model)."""
    if traditional is False or not folded:
        return folded
    if traditional:
        todo = list(range(len(folded)))
    else:
        search = _traditional_pattern().search
        todo = [i for i, t in enumerate(folded) if search(t)]
    if not todo:
        return folded
    converted = to_simplified("\n".join(folded[i] for i in todo)).split("\n")
    if len(converted) != len(todo):
        converted = [to_simplified(folded[i]) for i in todo]
    out = list(folded)
    for i, text in zip(todo, converted):
        out[i] = text
    return out


# ---------------------------------------------------------------- files

def iter_paths(inputs: list[str | Path], exclude: Iterable[str | Path] = ()) -> Iterator[Path]:
    """Files named, and supported files under directories named (sorted, recursive).

    Under a directory, only regular files count (a FIFO or a link to a device is no report), hidden
    files and Office's ``~$`` owner files are skipped, and so is any file in `exclude`: a command's
    own output inside an input folder is not an input."""
    skipped = {Path(p).resolve() for p in exclude}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                              and not p.name.startswith((".", "~$")) and p.resolve() not in skipped)
        else:
            yield path


def is_sentence_table(path: str | Path) -> bool:
    """Whether a file holds already-split sentences (one unit per row) rather than a report."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def doc_id_for(path: Path) -> str:
    """The document id of a file: its name without suffix, with bytes that are not UTF-8 (a file
    name from another system) shown as \\x.. escapes, so that every output format can hold it."""
    return printable_path(path.stem)


def printable_path(name: str | Path) -> str:
    """`name` with undecodable file-name bytes (Python's surrogate escapes) as \\x.. escapes."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_source(path: str | Path, doc_id: str | None = None, heading_max_chars: int = 50) -> Source:
    """Read one file into a Document (or a SentenceTable); raise IngestError naming the file."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise IngestError(f"{path}: no such file")
    if path.is_dir():
        raise IngestError(f"{path}: is a directory")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise IngestError(f"{path}: unsupported file type '{suffix}' (expected one of "
                          f"{', '.join(sorted(SUPPORTED_SUFFIXES))})")
    doc_id = doc_id or doc_id_for(path)
    data = read_bytes(path)
    if suffix in DOCX_SUFFIXES:
        raw, encoding = docx_to_text(path, data), "docx"
    else:
        raw, encoding = decode_bytes(data, str(path))
    if suffix in TABLE_SUFFIXES:
        return _read_table(raw, path, doc_id, encoding)
    if suffix in HTML_SUFFIXES:
        raw = html_to_text(raw)
    return document_from_text(doc_id, raw, str(path), heading_max_chars,
                              {"encoding": encoding, "format": suffix.lstrip(".")})


def document_from_text(doc_id: str, raw: str, where: str = "", heading_max_chars: int = 50,
                       meta: dict[str, Any] | None = None) -> Document:
    """A report whose text is already decoded (a file's, or a row of a document table or a Spark
    DataFrame): cleaned, and judged traditional or simplified as a whole. `where` names it in errors."""
    text = clean_text(raw, heading_max_chars)
    if not text.strip():
        raise IngestError(f"{where or doc_id}: no text left after cleaning")
    return Document(doc_id, where, text, {"path": where, "chars": len(text), **(meta or {})},
                    traditional=is_traditional(text))


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
UNPAIRED_SURROGATE = ("holds an unpaired surrogate escape (\\ud800 to \\udfff alone), which is no character: "
                      "remove it or give the character it was meant to be")


def has_unpaired_surrogate(text: str, value: Any) -> bool:
    """Whether `value`, parsed from the JSON `text`, holds an unpaired surrogate escape: no
    character, which no UTF-8 file, Arrow column or hash can hold. The text is searched for a
    surrogate escape first (a pair, as emoji are written, is fine), so a clean file costs one scan."""
    if not _SURROGATE_ESCAPE.search(text):
        return False
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_lines(raw: str, path: Path) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line. All lines are parsed in one call (as one JSON
    array; a call per line costs most of the time on big tables); only when that fails are they
    parsed one by one, to name the line that is wrong. Lines end at \\n only: a JSON string may
    hold U+2028 and the other characters `str.splitlines` would also cut at."""
    numbered = [(n, line) for n, line in enumerate(raw.split("\n"), 1) if line.strip()]
    try:
        values = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except (json.JSONDecodeError, RecursionError):
        values = []
    if len(values) != len(numbered):
        values = [_json_line(line, lineno, path) for lineno, line in numbered]
    if has_unpaired_surrogate(raw, values):
        lineno = next(n for (n, line), v in zip(numbered, values) if has_unpaired_surrogate(line, v))
        raise IngestError(f"{path}: line {lineno}: {UNPAIRED_SURROGATE}")
    return [(n, v) for (n, _), v in zip(numbered, values)]


def _json_line(line: str, lineno: int, path: Path) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from exc
    except RecursionError:
        raise IngestError(f"{path}: line {lineno}: JSON nested too deeply to be a sentence") from None


def _read_table(raw: str, path: Path, doc_id: str, encoding: str) -> SentenceTable:
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".jsonl":
        for lineno, row in _json_lines(raw, path):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise IngestError(f"{path}: line {lineno}: expected an object with a string 'text' field")
            if len(row["text"]) > FIELD_LIMIT:
                raise IngestError(f"{path}: line {lineno}: 'text' is longer than {FIELD_LIMIT:,} characters; "
                                  "split it into sentences (or give the report as .txt)")
            rows.append(row)
    else:
        header, records = csv_records(raw, str(path), IngestError)
        if "text" not in header:
            raise IngestError(f"{path}: line 1: no 'text' column (columns: {header})")
        for lineno, fields in records:
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise IngestError(f"{path}: line {lineno}: {len(fields)} fields, the header has {len(header)} "
                                  "(a comma inside a cell needs quotes around the cell)")
            rows.append({h: sheet_value(f) for h, f in zip(header, fields)})
    if not rows:
        raise IngestError(f"{path}: no sentences in the table")
    meta = {"path": str(path), "encoding": encoding, "rows": len(rows), "format": path.suffix.lstrip(".")}
    return SentenceTable(doc_id, str(path), rows, meta)
