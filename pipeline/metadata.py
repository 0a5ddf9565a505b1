"""Documents with metadata: document tables (one whole report per row) and a metadata file joined
to the inputs of `classify`, so that shares can be grouped by year, place or level.

- A **document table** (`.jsonl`, `.csv` or `.parquet`, read with `classify --documents`) holds one
  report per row, as public corpora are usually shared: the text column (default `text`) is cleaned
  and segmented like a report file; the id column (default `doc`, else `id`, else
  ``<file>:<row>``) names the document; every other column is metadata. A row without text is a
  failed document named with file and line; the other rows go on.
- A **metadata file** (`--meta`: `.csv`, `.jsonl` or `.parquet`) has a `doc` column (document id) or
  a `path` column (input file, relative to the working directory or to the metadata file) and any
  other columns (`year`, `place`, `level`, …). A row matching no classified document and a
  document without a row are both reported (`MetadataTable.warnings`). Where a document table and
  the metadata file give the same column, the metadata file wins (and the difference is reported).
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pandas as pd

from pipeline.errors import IngestError, UsageError
from pipeline.ingest import (UNPAIRED_SURROGATE, Document, SentenceTable, decode_bytes, document_from_text,
                             has_unpaired_surrogate, html_to_text)
from pipeline.io import check_regular, read_bytes
from pipeline.segment import SegmentParams, segment_document, table_units, units_from_path

DOCUMENT_TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
_HTML = re.compile(r"<(?:p|div|br|html|body|span|table|h\d)\b", re.I)


@dataclass(frozen=True)
class TableOptions:
    """How to read a document table: which column holds the text and which the document id
    (None: `doc` if the table has one, else `id`, else ``<file>:<row>``)."""

    text_column: str = "text"
    id_column: str | None = None


@dataclass(eq=False)
class DocumentRow(Document):
    """One row of a document table: the report, its line in the table and its other columns."""

    line: int = 0
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RowFailure:
    """A row (or a whole table) that could not be read; classify reports it like a failed file."""

    path: str
    error: str


Source = Path | DocumentRow | RowFailure | SentenceTable  # SentenceTable: a table file already read


def is_document_table(path: str | Path) -> bool:
    return Path(path).suffix.lower() in DOCUMENT_TABLE_SUFFIXES


# ---------------------------------------------------------------- reading tables

@contextlib.contextmanager
def _large_csv_fields() -> Iterator[None]:
    """A whole report in one CSV cell is longer than the csv module's default field limit (128 KiB)."""
    previous = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2 ** 31 - 1))
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _value(value: Any) -> Any:
    """A cell as metadata: scalars as they are, nested JSON as text, empty and NaN as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def iter_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | IngestError]]:
    """(line, row) of a `.jsonl`/`.csv`/`.parquet` table, or (line, IngestError) for a row that is
    not an object. A file that cannot be read at all raises IngestError naming it."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in DOCUMENT_TABLE_SUFFIXES:
        raise IngestError(f"{path}: a document or metadata table must be {', '.join(DOCUMENT_TABLE_SUFFIXES)}")
    check_regular(path)  # a FIFO or device is refused without being opened
    if suffix == ".parquet":
        yield from _parquet_rows(path)
        return
    raw, _ = decode_bytes(read_bytes(path), str(path))  # at most io.MAX_FILE_BYTES
    if suffix == ".jsonl":
        for line, text in enumerate(raw.split("\n"), 1):  # not splitlines: JSON text may hold U+2028
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                yield line, IngestError(f"{path}: line {line}: invalid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                yield line, IngestError(f"{path}: line {line}: not a JSON object")
            elif has_unpaired_surrogate(text, row):
                yield line, IngestError(f"{path}: line {line}: {UNPAIRED_SURROGATE}")
            else:
                yield line, row
        return
    with _large_csv_fields():
        reader = csv.reader(io.StringIO(raw, newline=""))
        header = next(reader, None)
        if not header:
            raise IngestError(f"{path}: line 1: no header row")
        start = reader.line_num + 1
        for cells in reader:
            if any(c.strip() for c in cells):
                if len(cells) != len(header):
                    yield start, IngestError(f"{path}: line {start}: {len(cells)} fields, the header has {len(header)}")
                else:
                    yield start, dict(zip(header, cells))
            start = reader.line_num + 1


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | IngestError]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    row = 0
    for batch in table.iter_batches(batch_size=256):
        for record in batch.to_pylist():
            row += 1
            yield row, record


def table_columns(path: str | Path) -> list[str]:
    """Every column of a table, in order of first appearance (a JSON lines file's keys may vary)."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise IngestError(f"{path}: not a readable Parquet file ({exc})") from exc
    if path.suffix.lower() == ".csv":
        with _large_csv_fields():
            raw, _ = decode_bytes(read_bytes(path), str(path))
            return next(csv.reader(io.StringIO(raw, newline="")), [])
    seen: dict[str, None] = {}
    for _, row in iter_rows(path):
        if isinstance(row, dict):
            seen.update(dict.fromkeys(row))
    return list(seen)


def _id_column(columns: Sequence[str], options: TableOptions, path: Path) -> str | None:
    if options.id_column:
        if options.id_column not in columns:
            raise IngestError(f"{path}: line 1: no id column '{options.id_column}' (columns: {', '.join(columns)})")
        return options.id_column
    return next((c for c in ("doc", "id") if c in columns), None)


def _text_columns(path: Path, options: TableOptions) -> list[str]:
    """The table's columns, checked to hold the text column (a table of failed rows has no columns:
    its rows' own errors say what is wrong)."""
    columns = table_columns(path)
    if columns and options.text_column not in columns:
        raise IngestError(f"{path}: line 1: no text column '{options.text_column}' (columns: {', '.join(columns)}); "
                          "name it with --text-column")
    return columns


def metadata_columns(path: str | Path, options: TableOptions) -> list[str]:
    """The metadata a document table gives each of its documents: every column but the text and `doc`."""
    return [c for c in _text_columns(Path(path), options) if c not in (options.text_column, "doc")]


def read_document_table(path: str | Path, options: TableOptions, prefix: str,
                        heading_max_chars: int = 50) -> Iterator[DocumentRow | RowFailure]:
    """Each row of a document table as a cleaned report (`DocumentRow`), or a `RowFailure` naming the
    file and line (no text, a repeated id, not an object). Ids default to ``<prefix>:<row>``."""
    path = Path(path)
    try:
        id_column = _id_column(_text_columns(path, options), options, path)
        seen: dict[str, int] = {}
        for number, (line, row) in enumerate(iter_rows(path), 1):
            if isinstance(row, IngestError):
                yield RowFailure(str(path), str(row))
                continue
            yield _document_row(path, line, number, row, options, id_column, prefix, seen, heading_max_chars)
    except IngestError as exc:
        yield RowFailure(str(path), str(exc))


def _document_row(path: Path, line: int, number: int, row: dict[str, Any], options: TableOptions,
                  id_column: str | None, prefix: str, seen: dict[str, int],
                  heading_max_chars: int) -> DocumentRow | RowFailure:
    where = f"{path}: line {line}" if path.suffix.lower() != ".parquet" else f"{path}: row {line}"
    doc_id = f"{prefix}:{number}" if id_column is None else _value(row.get(id_column))
    if doc_id is None:
        return RowFailure(str(path), f"{where}: no document id in column '{id_column}'")
    doc_id = str(doc_id)
    if doc_id in seen:
        return RowFailure(str(path), f"{where}: document id '{doc_id}' again (first at line {seen[doc_id]}); "
                                     "ids must be unique")
    seen[doc_id] = line
    raw = row.get(options.text_column)
    if not isinstance(raw, str) or not raw.strip():
        return RowFailure(str(path), f"{where}: no text in column '{options.text_column}'")
    try:
        doc = document_from_text(doc_id, html_to_text(raw) if _HTML.search(raw[:5000]) else raw, where,
                                 heading_max_chars, {"line": line, "format": path.suffix.lstrip(".")})
    except IngestError as exc:
        return RowFailure(str(path), str(exc))
    fields = {k: _value(v) for k, v in row.items() if k not in (options.text_column, "doc")}
    return DocumentRow(doc_id, str(path), doc.text, {**doc.meta, "path": str(path)}, doc.traditional,
                       line=line, fields=fields)


def units_of(source: Source, seg: SegmentParams, doc_id: str) -> pd.DataFrame:
    """The units of one source: a file (the usual recipe), a sentence table already read, a
    document-table row (segmented like a report, its metadata as columns) or a failed row (raises
    its IngestError)."""
    if isinstance(source, RowFailure):
        raise IngestError(source.error)
    if isinstance(source, SentenceTable):
        return table_units(source)
    if isinstance(source, DocumentRow):
        units = segment_document(source, seg)
        if units.empty:
            raise IngestError(f"{source.path}: line {source.line}: no sentences found")
        return units.assign(**source.fields)
    return units_from_path(source, seg, doc_id)


def source_name(source: Source) -> str:
    """The file a source came from (a document-table row: its table)."""
    return str(source) if isinstance(source, Path) else source.path


def sources(paths: Iterable[Path], ids: dict[Path, str], options: TableOptions | None,
            heading_max_chars: int = 50) -> Iterator[tuple[Source, str]]:
    """(source, document id) for every input: files as they are; with `options`, each row of a
    document table as its own document (streamed, one row at a time)."""
    for path in paths:
        if options is not None and is_document_table(path):
            for row in read_document_table(path, options, ids[path], heading_max_chars):
                yield row, row.doc_id if isinstance(row, DocumentRow) else ids[path]
        else:
            yield path, ids[path]


# ---------------------------------------------------------------- metadata file

def _absolute(path: str, base: Path) -> str:
    return os.path.normpath(os.path.join(base, path))


@dataclass
class _MetaRow:
    line: int
    key: str
    values: dict[str, Any]
    used: bool = False


class MetadataTable:
    """A `--meta` file: one row per document, matched by document id (`doc`) or input file (`path`).

    `lookup` records what matched, so that `warnings` can name the rows that matched no document
    and the documents that had no row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        columns = table_columns(self.path)
        if not {"doc", "path"} & set(columns):
            raise IngestError(f"{self.path}:1: a metadata file needs a 'doc' (document id) or 'path' (input file) "
                              f"column (columns: {', '.join(columns)})")
        self.columns = [c for c in columns if c not in ("doc", "path")]
        self._by_doc: dict[str, _MetaRow] = {}
        self._by_path: dict[str, _MetaRow] = {}
        self._rows: list[_MetaRow] = []
        self._missing: list[str] = []
        self._conflicts: list[str] = []
        self._memo: dict[tuple[str, str], dict[str, Any]] = {}
        for line, row in iter_rows(self.path):
            if isinstance(row, IngestError):
                raise row
            self._add(line, row)

    def _add(self, line: int, row: dict[str, Any]) -> None:
        doc, path = _value(row.get("doc")), _value(row.get("path"))
        if doc is None and path is None:
            raise IngestError(f"{self.path}:{line}: neither 'doc' nor 'path' is filled in")
        entry = _MetaRow(line, f"doc '{doc}'" if doc is not None else f"path '{path}'",
                         {c: _value(row.get(c)) for c in self.columns})
        self._rows.append(entry)
        if doc is not None:
            self._index(self._by_doc, str(doc), entry, f"doc '{doc}'")
        if path is not None:  # relative to the working directory, or else to the metadata file
            self._index(self._by_path, _absolute(str(path), Path.cwd()), entry, f"path '{path}'")
            self._by_path.setdefault(_absolute(str(path), self.path.resolve().parent), entry)

    def _index(self, index: dict[str, _MetaRow], key: str, entry: _MetaRow, what: str) -> None:
        if key in index:
            raise IngestError(f"{self.path}:{entry.line}: {what} already has metadata at line {index[key].line}")
        index[key] = entry

    def lookup(self, doc_id: str, source: str, given: dict[str, Any] | None = None) -> dict[str, Any]:
        """The metadata of one document (by id, else by its file); {} when it has none. `given` is what
        a document table already says about it, compared for the conflict report."""
        key = (doc_id, source)
        if key not in self._memo:
            entry = self._by_doc.get(doc_id) or self._by_path.get(_absolute(source, Path.cwd()))
            if entry is None:
                self._missing.append(f"document '{doc_id}' ({source}) has no row in {self.path}")
                self._memo[key] = {}
            else:
                entry.used = True
                self._memo[key] = entry.values
                for column, value in (given or {}).items():
                    mine = entry.values.get(column)
                    if column in entry.values and value is not None and mine is not None and str(mine) != str(value):
                        self._conflicts.append(f"document '{doc_id}': {column} is '{value}' in its table and "
                                               f"'{mine}' in {self.path}:{entry.line}; the metadata file wins")
        return self._memo[key]

    def warnings(self) -> list[str]:
        """Rows that matched no document, documents without a row, and values the file overrode."""
        unused = [f"{self.path}:{r.line}: {r.key} matches no classified document" for r in self._rows if not r.used]
        return unused + self._missing + self._conflicts


def check_names(columns: Iterable[str], taken: Iterable[str], where: str) -> None:
    """Metadata may not take the name of a column classify writes itself (e.g. `domain`, `share_economy`)."""
    clash = sorted(set(columns) & set(taken))
    if clash:
        raise UsageError(f"{where}: metadata column(s) {', '.join(clash)} would overwrite output columns of the "
                         "same name; rename them")


def typed(series: pd.Series) -> pd.Series:
    """A metadata column with one type: whole numbers (years) as nullable integers, other numbers as
    floats, true/false as booleans, else text. CSV cells arrive as text and JSON values as numbers;
    grouping and sorting need one type."""
    values = [_value(v) for v in series]
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, index=series.index, dtype="boolean")
    numbers = pd.to_numeric(pd.Series([None if v is None else str(v).strip() for v in values], index=series.index,
                                      dtype=object), errors="coerce")
    if present and numbers.notna().sum() == len(present):
        return numbers.astype("Int64") if (numbers.dropna() % 1 == 0).all() else numbers.astype(float)
    return pd.Series([None if v is None else str(v) for v in values], index=series.index, dtype=object)
