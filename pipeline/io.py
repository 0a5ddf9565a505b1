"""Atomic file writing and table formats chosen by extension, shared by every stage that writes.

A killed run must never leave a half-written output: everything is written to a temporary file
in the target's folder and renamed into place, which is atomic on POSIX file systems.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator

import pandas as pd

from pipeline.errors import UsageError

TABLE_FORMATS = (".jsonl", ".csv", ".parquet")


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private (0600); outputs get the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
        raise UsageError(f"{path}: output format is chosen by extension: {', '.join(TABLE_FORMATS)}")
    return suffix


class TableWriter:
    """Write a table chunk by chunk into a temporary file, then move it into place on `close()`.

    Memory stays bounded by the chunk size; an exception (or a kill) leaves no output file.
    """

    def __init__(self, target: str | Path) -> None:
        self.target = Path(target)
        self.suffix = table_format(self.target)
        self._ctx = atomic_path(self.target)
        self.tmp = self._ctx.__enter__()
        self._fh = None
        self._parquet = None
        self._schema = None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self.tmp, self._schema)
            self._parquet.write_table(table.cast(self._schema))
        else:
            if self._fh is None:
                self._fh = open(self.tmp, "w", encoding="utf-8-sig" if self.suffix == ".csv" else "utf-8",
                                newline="")
            if self.suffix == ".csv":
                frame.to_csv(self._fh, index=False, header=self.rows == 0)
            else:
                for record in frame.to_dict(orient="records"):
                    self._fh.write(json.dumps(record, ensure_ascii=False, default=_jsonable) + "\n")
        self.rows += len(frame)

    def close(self, ok: bool = True) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._fh is not None:
            self._fh.close()
        if ok and self.rows == 0 and self.suffix == ".parquet":
            pd.DataFrame().to_parquet(self.tmp)
        elif ok and self.rows == 0:
            self.tmp.write_text("", encoding="utf-8")
        if ok:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "TableWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_table(frame: pd.DataFrame, target: str | Path) -> None:
    with TableWriter(target) as writer:
        writer.write(frame)


def read_table(path: str | Path) -> pd.DataFrame:
    suffix = table_format(path)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path, encoding="utf-8-sig")
    return pd.read_json(path, lines=True, dtype=False, precise_float=True)  # the fast parser is off by an ulp
