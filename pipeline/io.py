"""Files in and out, shared by every stage: careful reading, atomic writing, exclusive locks, CSV
records and spreadsheet-safe cells.

- Reading (`read_bytes`, `check_regular`): only regular files, opened without blocking, so that a
  FIFO, a device such as /dev/zero or a socket is refused by name instead of hanging or filling
  memory; at most `MAX_FILE_BYTES`.
- Writing (`atomic_path`, `TableWriter`): everything goes to a temporary file in the target's
  folder and is renamed into place, which is atomic on POSIX file systems, so a killed run never
  leaves a half-written output. A write that fails (read-only folder, full disk, a folder where a
  file should go) becomes one `UsageError` naming the target, and leaves no temporary file and no
  folder it created. `check_output` refuses to replace a file the user did not ask to replace.
- Locks (`locked`): an exclusive `flock` on a hidden lock file beside the target, held across a
  read-modify-write, so that two processes appending to one file both keep their rows.
- CSV (`csv_records`): header and rows of a CSV as a spreadsheet numbers them, refusing what would
  otherwise lose rows silently (an unclosed quote, a repeated column, an over-long field).
- Spreadsheets (`sheet_safe`/`sheet_value`, `sheet_id`/`sheet_id_value`): CSV files meant for
  Excel or WPS never hold a cell the spreadsheet would run as a formula, and identifiers it would
  turn into numbers, dates or times are written so that it keeps them as text.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import math
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import orjson
import pandas as pd

from pipeline.errors import IngestError, PolicyDomainsError, UsageError

TABLE_FORMATS = (".jsonl", ".csv", ".parquet")

MAX_FILE_BYTES = 200 * 2 ** 20
"""Largest input file read (200 MB): far above any report or label file, far below what a machine
can hold once parsed. Bigger files are refused by name."""

FIELD_LIMIT = 131_072
"""Longest CSV field, in characters (Python's csv default, stated here because it is a promise):
a sentence or a note is far shorter; a longer field is an unclosed quote or not a table."""

LOCK_TIMEOUT = 60.0
"""Seconds to wait for another process's lock on a file before giving up with a message."""

# a line per object; datetimes and keys that are not text as the standard library writes them
_ORJSON = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def file_error(error: type[PolicyDomainsError], name: str, reason: str, line: int = 0) -> PolicyDomainsError:
    """An error whose message is ``name: [line N: ]reason`` (N: the row as a spreadsheet numbers
    it); `.line` and `.reason` keep the parts for callers that report (file, line, message)."""
    exc = error(f"{name}: line {line}: {reason}" if line else f"{name}: {reason}")
    exc.line, exc.reason = line, reason  # type: ignore[attr-defined]
    return exc


# ---------------------------------------------------------------- reading

def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def check_regular(path: str | Path, error: type[PolicyDomainsError] = IngestError) -> os.stat_result:
    """The file's status if it is a regular file (symlinks followed); otherwise raise `error` by name.
    Never opens the file, so a FIFO cannot block."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise file_error(error, str(path), "no such file") from None
    except OSError as exc:
        raise file_error(error, str(path), f"cannot read ({_reason(exc)})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _kind(info.st_mode)
        raise file_error(error, str(path), f"is {kind}" + ("" if kind == "a folder" else ", not a regular file; "
                                                         "give the file itself"))
    return info


def read_bytes(path: str | Path, limit: int | None = None,
               error: type[PolicyDomainsError] = IngestError) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (default `MAX_FILE_BYTES`).

    The file is opened non-blocking and checked on the open descriptor, so a FIFO, a device or a
    symlink to one is refused without waiting or reading, and a file swapped after a check cannot
    slip through. Raises `error` naming the file."""
    limit = MAX_FILE_BYTES if limit is None else limit
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise file_error(error, name, "no such file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO on some systems
            raise file_error(error, name, "is not a regular file; give the file itself") from None
        raise file_error(error, name, f"cannot read ({_reason(exc)})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = _kind(info.st_mode)
        raise file_error(error, name, f"is {kind}" + ("" if kind == "a folder" else
                                                    ", not a regular file; give the file itself"))
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > limit:
            raise file_error(error, name, f"{_size(info.st_size)}, over the {_size(limit)} limit for one file")
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise file_error(error, name, f"cannot read ({_reason(exc)})") from None
    if len(data) > limit:
        raise file_error(error, name, f"over the {_size(limit)} limit for one file")
    return data


def _size(n: int) -> str:
    return f"{n / 2 ** 20:,.1f} MB" if n >= 2 ** 20 else f"{n:,} bytes"


# ---------------------------------------------------------------- writing

def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (existing or not)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output(path: str | Path, force: bool = False, inputs: Iterable[str | Path] = (),
                 option: str = "--out", dataset: bool = False) -> Path:
    """Refuse an output path that would destroy something nobody asked to replace: one of the
    inputs (even with --force), a folder, or an existing file without --force. A `dataset` output
    (the Spark engine's Parquet folder) may replace a folder, with --force."""
    path = Path(path)
    for item in inputs:
        if Path(item).exists() and same_file(path, item):
            raise UsageError(f"{path}: {option} names an input of this command; choose another file name")
    if path.is_dir() and dataset:
        if not force:
            raise UsageError(f"{path} exists: pass --force to replace it, or choose another name")
        return path
    if path.is_dir():
        raise UsageError(f"{path}: {option} is a folder; give a file name")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise UsageError(f"{path}: {option} exists and is not a regular file; choose another file name")
        if not force:
            raise UsageError(f"{path} exists: pass --force to replace it, or choose another file name")
    return path


def _make_folder(folder: Path, target: Path) -> list[Path]:
    """Create `folder` and its missing parents; returns those created (deepest last)."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{target}: cannot create the folder {folder} ({_reason(exc)})") from None
    return missing


def _remove_folders(created: list[Path]) -> None:
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if still empty


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds.

    An `OSError` while writing becomes a `UsageError` naming the target; on any failure the
    temporary file and the folders created for it are removed."""
    target = Path(target)
    if target.is_dir():
        raise UsageError(f"{target}: is a folder; give a file name")
    created = _make_folder(target.parent, target)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:200]}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        _remove_folders(created)
        raise UsageError(f"{target}: cannot write ({_reason(exc)})") from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private (0600); outputs get the usual mode
        yield Path(tmp)
        os.replace(tmp, target)
        created = []
    except OSError as exc:
        raise UsageError(f"{target}: cannot write ({_reason(exc)})") from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        _remove_folders(created)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def table_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise UsageError(f"{path}: a table's format is chosen by its extension: {', '.join(TABLE_FORMATS)}")
    return suffix


def _arrow_table(frame: pd.DataFrame) -> "pa.Table":
    """`frame` as an Arrow table. Struct columns already in Arrow (the `scores` of every domain) go
    in as they are and stay out of the pandas metadata: pandas records their dtype by a name it
    cannot read back, and without it reads them as a dict per row, as it always has. One thread:
    pyarrow would otherwise start (and join) a thread pool for every chunk, which costs more than
    converting a chunk's columns."""
    import pyarrow as pa

    structs = [c for c in frame
               if isinstance(frame[c].dtype, pd.ArrowDtype) and pa.types.is_struct(frame[c].dtype.pyarrow_dtype)]
    table = pa.Table.from_pandas(frame.drop(columns=structs), preserve_index=False, nthreads=1)
    for column in structs:  # in column order, so every one lands at its own position
        table = table.add_column(frame.columns.get_loc(column), column, pa.array(frame[column].array))
    return table


class TableWriter:
    """Write a table chunk by chunk into a temporary file, then move it into place.

    Memory stays bounded by the chunk size; an exception (or a kill) leaves no output file. Closing
    is two steps, `finish` (complete the temporary file) and `commit` (rename it), so that several
    outputs of one run can all be completed before any replaces what was there (`commit_all`).
    CSV cells are written spreadsheet-safe (`sheet_safe`)."""

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.suffix = table_format(self.target)
        self._ctx = atomic_path(self.target)
        self.tmp = self._ctx.__enter__()
        self._fh = None
        self._parquet = None
        self._schema = None
        self._open = True
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        try:
            self._write(frame)
        except OSError as exc:
            raise UsageError(f"{self.target}: cannot write ({_reason(exc)})") from None
        self.rows += len(frame)

    def _write(self, frame: pd.DataFrame) -> None:
        if self.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = _arrow_table(frame)
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.tmp, self._schema)
            self._parquet.write_table(table.cast(self._schema))
            return
        if self._fh is None:  # JSON lines come from the encoder as UTF-8 bytes, a line per write: a big
            # buffer saves a system call every dozen rows
            self._fh = open(self.tmp, "w", encoding="utf-8-sig", newline="") if self.suffix == ".csv" else \
                open(self.tmp, "wb", buffering=1 << 20)
        if self.suffix == ".csv":
            sheet_safe_frame(frame).to_csv(self._fh, index=False, header=self.rows == 0)
        else:
            names = list(frame.columns)
            _write_json_lines(self._fh, (dict(zip(names, values))
                                         for values in zip(*(_python_values(frame[c]) for c in names))))

    def _close_handles(self) -> None:
        handles, self._parquet, self._fh = (self._parquet, self._fh), None, None
        for handle in handles:
            if handle is not None:
                handle.close()

    def finish(self) -> None:
        """Complete the temporary file (an empty table if nothing was written); no rename yet."""
        try:
            self._close_handles()
            if self.rows == 0 and self.suffix == ".parquet":
                pd.DataFrame().to_parquet(self.tmp)
            elif self.rows == 0:
                self.tmp.write_text("", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{self.target}: cannot write ({_reason(exc)})") from None

    def commit(self) -> None:
        """Rename the finished temporary file onto the target."""
        if self._open:
            self._open = False
            self._ctx.__exit__(None, None, None)

    def discard(self) -> None:
        """Remove the temporary file; the target stays as it was."""
        if self._open:
            self._open = False
            with contextlib.suppress(OSError):
                self._close_handles()
            self._ctx.__exit__(RuntimeError, RuntimeError("discarded"), None)

    def close(self, ok: bool = True) -> None:
        commit_all([self], ok)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def commit_all(writers: Sequence[TableWriter], ok: bool) -> None:
    """Outputs of one run, together: every file is finished before any is renamed into place, so
    one that fails (a full disk while writing the summary) leaves all the old files as they were."""
    try:
        if ok:
            for writer in writers:
                writer.finish()
            for writer in writers:
                writer.commit()
    finally:
        for writer in writers:
            writer.discard()


def _write_json_lines(fh: Any, records: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, in UTF-8 (characters as they are, no \\u escapes), each written
    as soon as it is encoded: holding a chunk's encoded lines before writing them cost more than
    encoding them.

    orjson encodes a classified row ten times faster than the standard library (whose float
    formatting is most of the cost). A row with a value orjson refuses (an integer beyond 64 bits,
    a lone surrogate from a hostile input) goes through the standard library instead, with every
    character beyond ASCII escaped: a lone surrogate cannot be written as UTF-8, only as the
    ``\\ud800`` escape it came in as."""
    dumps, write = orjson.dumps, fh.write
    for record in records:
        try:
            line = dumps(record, default=_jsonable, option=_ORJSON)
        except TypeError:  # orjson.JSONEncodeError is one
            plain = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
            line = (json.dumps(plain, default=_jsonable) + "\n").encode("ascii")  # NaN as null, as orjson
        write(line)


def text_series(values: Iterable[Any], index: pd.Index | None = None) -> pd.Series:
    """Text values as an object column. Left to infer, pandas 3 copies every string into its
    Arrow-backed `str` dtype, and the writers copy them back out: for a batch's domain and text
    columns that costs more than anything done with them."""
    return pd.Series(values, index=index, dtype=object)


def _python_values(column: pd.Series) -> list[Any]:
    """A column as Python values; an Arrow-backed one in one Arrow call (pandas converts its values
    one by one)."""
    if isinstance(column.dtype, pd.ArrowDtype):
        import pyarrow as pa

        return pa.array(column.array).to_pylist()
    return column.tolist()


def _jsonable(value: Any) -> Any:
    """A value JSON has no type for: numpy's as Python's, pandas' missing values as null, the rest
    as text."""
    if value is pd.NA or value is pd.NaT:
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_table(frame: pd.DataFrame, target: str | Path) -> None:
    with TableWriter(target) as writer:
        writer.write(frame)


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by `TableWriter` (any of its formats); an unreadable one is an `IngestError`."""
    suffix = table_format(path)
    check_regular(path)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            frame = pd.read_csv(path, encoding="utf-8-sig")
            return frame.assign(**{c: frame[c].map(sheet_value) for c in frame.columns
                                   if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])})
        return pd.read_json(path, lines=True, dtype=False, precise_float=True)  # the fast parser is off by an ulp
    except (ValueError, OSError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise IngestError(f"{path}: not a readable {suffix} table ({first[:200]})") from None


# ---------------------------------------------------------------- locks

_HELD: dict[str, int] = {}


@contextlib.contextmanager
def locked(*paths: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on each of `paths` for the block (re-entrant within a process).

    The lock is a hidden ``.<name>.lock`` file beside each path, removed again on release. Paths
    are locked in a fixed order, so two processes locking the same files cannot deadlock."""
    keys = sorted({str(Path(p).absolute()) for p in paths})
    with contextlib.ExitStack() as stack:
        for key in keys:
            stack.enter_context(_lock_one(Path(key)))
        yield


@contextlib.contextmanager
def _lock_one(path: Path) -> Iterator[None]:
    key = str(path)
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock = path.parent / f".{path.name}.lock"
    created = _make_folder(path.parent, path)
    try:
        fd = _acquire(lock, path)
    except BaseException:
        _remove_folders(created)
        raise
    _HELD[key] = 1
    try:
        yield
    finally:
        _HELD.pop(key, None)
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still holding it: a waiter then sees a new inode and retries
        os.close(fd)
        _remove_folders(created)  # a folder made only for the lock (nothing was written into it)


def _acquire(lock: Path, path: Path) -> int:
    """A descriptor holding the flock on `lock`, checked to still be the file at that path (another
    process may have removed it between our open and our lock)."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise UsageError(f"{path}: cannot lock it for writing ({_reason(exc)} on {lock})") from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise UsageError(f"{path}: another process has been writing it for {LOCK_TIMEOUT:.0f}s "
                                         f"(lock {lock}); try again when it is done") from None
                    time.sleep(0.02)
            mine = os.fstat(fd)
            current = os.stat(lock)
            if (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino):
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


# ---------------------------------------------------------------- CSV records

_CSV_REASONS = {
    "field larger than field limit": f"a field is longer than {FIELD_LIMIT:,} characters (an unclosed quote, "
                                     "or not a table of sentences?)",
    "line contains NUL": "contains NUL bytes: not a text CSV (save it as 'CSV UTF-8')",
    "unexpected end of data": "a quote opened in this row is never closed: the rest of the file would be one "
                              "field; close the quote (or double a quote inside a quoted field)",
    "expected after": "text after a closing quote: a quote inside a quoted field must be doubled (\"\")",
}


def csv_records(text: str, name: str, error: type[PolicyDomainsError]) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (row, fields) records of CSV text, rows numbered as a spreadsheet numbers them.

    The delimiter is the header's (comma, tab as in Excel's "Unicode text", or semicolon). Raises
    `error` naming the row for a repeated column name, a field over `FIELD_LIMIT` characters, NUL
    bytes, and a quote left open, whether it runs to the end of the file or swallows the following
    rows into one field."""
    if "\x00" in text:  # Python's csv reads NUL as data since 3.11; in a CSV it is always corruption
        row = text[: text.index("\x00")].count("\n") + 1
        raise file_error(error, name, _CSV_REASONS["line contains NUL"], row)
    first = text.split("\n", 1)[0]
    delimiter = max(",\t;", key=first.count) if any(d in first for d in ",\t;") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    records: list[tuple[int, list[str], int]] = []
    previous = csv.field_size_limit(FIELD_LIMIT)
    try:
        header = [h.strip() for h in next(reader, [])]
        for row, fields in enumerate(_tracked(reader), 2):
            start = fields.pop()
            records.append((row, fields, start))
    except csv.Error as exc:
        message = str(exc)
        reason = next((r for key, r in _CSV_REASONS.items() if key in message), f"not a readable CSV ({message})")
        failing = 1 if header is None else (records[-1][0] + 1 if records else 2)
        raise file_error(error, name, reason, failing) from None
    finally:
        csv.field_size_limit(previous)
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise file_error(error, name, f"column(s) {', '.join(repeated)} appear twice in the header: keep one", 1)
    if len(header) >= 3:
        for row, fields, start in records:
            if any("\n" in f and _holds_records(f, len(header), delimiter) for f in fields):
                raise file_error(error, name, f"a quote opened in row {row} (line {start}) is not closed where the "
                                            "cell ends: the following rows became part of one field; close it", row)
    return header, [(row, fields) for row, fields, _ in records]


def _tracked(reader: Iterator[list[str]]) -> Iterator[list]:
    """Records with the physical line each starts on appended (reader.line_num is its last line)."""
    start = reader.line_num + 1
    for fields in reader:
        yield [*fields, start]
        start = reader.line_num + 1


def _holds_records(field: str, width: int, delimiter: str) -> bool:
    """Whether a multi-line field contains lines that parse as whole records of the table: the mark of
    a quote left open that swallowed the rows after it (a note written over two lines does not)."""
    for line in field.split("\n")[1:]:
        if line.count(delimiter) >= width - 1 and len(next(csv.reader([line], delimiter=delimiter), [])) == width:
            return True
    return False


# ---------------------------------------------------------------- spreadsheet-safe cells

_FORMULA = "=+-@\t\r"
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?")


def sheet_safe(value: object) -> object:
    """A cell Excel, WPS and LibreOffice show as text, never run as a formula: text starting with
    = + - @ (or a tab) gets a leading apostrophe, as does text already starting with one before such
    a character (so `sheet_value` restores every value exactly). Plain numbers such as -5 stay."""
    if not isinstance(value, str) or not value:
        return value
    if (value[0] in _FORMULA and not _PLAIN_NUMBER.fullmatch(value)) or (value[0] == "'" and value[1:2]
                                                                          and value[1] in _FORMULA + "'"):
        return "'" + value
    return value


def sheet_value(value: object) -> object:
    """The value `sheet_safe` protected (a cell read back from a spreadsheet-bound CSV)."""
    if isinstance(value, str) and len(value) > 1 and value[0] == "'" and value[1] in _FORMULA + "'":
        return value[1:]
    return value


def sheet_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    text = [c for c in frame.columns if frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c])]
    return frame.assign(**{c: frame[c].map(sheet_safe) for c in text}) if text else frame


def sheet_id(value: str) -> str:
    """An identifier a spreadsheet keeps as typed: a text hash such as 39131806e6834099 would become
    a number (3.9E+6834099, saved back as 1.79769313486232E+308) and a unit id such as 1978:40 a
    time (1978:40:00). A leading apostrophe makes both text."""
    return f"'{value}" if value else value


def sheet_id_value(value: str) -> str:
    """The identifier `sheet_id` protected (one leading apostrophe removed)."""
    return value[1:] if value.startswith("'") else value
