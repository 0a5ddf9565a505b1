"""Batch classification: reports in, one row per unit and one summary row per report out.

Documents stream through ingest → segment → predict → write one at a time (in chunks of units), so
memory depends on the largest document, not on the size of the batch. A file that fails is
reported and skipped; the others are still classified. Output files appear only when complete.
"""
from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.ingest import IngestError, iter_paths, read_source
from pipeline.io import TableWriter
from pipeline.model import DomainClassifier
from pipeline.model import load_model as _load_model
from pipeline.segment import SegmentParams, segment_source

OUTPUT_COLUMNS = ["doc", "sent_id", "index", "text", "heading", "domain", "confidence", "scores"]


def default_model_dir() -> Path:
    return config.project_path(config.section("paths")["model_dir"])


def load_model(path: str | Path | None = None) -> DomainClassifier:
    """The verified model at `path`, or the one `dvc repro` produced."""
    target = Path(path) if path else default_model_dir()
    if not target.exists():
        raise FileNotFoundError(f"no trained model at {target}: run `dvc repro` (or `make run`) to train one, "
                                "or pass --model PATH")
    return _load_model(target)


def predictions_frame(model: DomainClassifier, units: pd.DataFrame) -> pd.DataFrame:
    """domain, confidence and the score of every domain for each unit (index kept)."""
    if len(units) == 0:
        return pd.DataFrame({"domain": [], "confidence": [], "scores": []})
    proba = model.predict_proba(units)
    ids = list(model.classes_)
    best = proba.argmax(axis=1)
    rounded = np.round(proba, 4)
    return pd.DataFrame({
        "domain": np.asarray(ids)[best],
        "confidence": rounded[np.arange(len(units)), best],
        "scores": [dict(zip(ids, row)) for row in rounded.tolist()],
    }, index=units.index)


def classify_units(model: DomainClassifier, units: pd.DataFrame) -> pd.DataFrame:
    """Units frame → output rows: unit columns, predictions, then any pass-through columns."""
    preds = predictions_frame(model, units)
    base = ["doc", "sent_id", "index", "text", "heading"]
    extra = [c for c in units.columns if c not in base and c not in ("text_norm", "text_hash", "is_heading",
                                                                     "position")]
    return pd.concat([units[base], preds, units[extra]], axis=1)


def classify_texts(texts: Iterable[str], model: DomainClassifier | None = None) -> pd.DataFrame:
    """Bare sentences (no document context) → text, domain, confidence, scores."""
    from pipeline.ingest import normalise_many

    texts = [str(t) for t in texts]
    units = pd.DataFrame({"text": texts, "text_norm": normalise_many(texts), "heading": [""] * len(texts)})
    preds = predictions_frame(model or load_model(), units)
    return pd.concat([units[["text"]], preds], axis=1)


# ---------------------------------------------------------------- summaries

@dataclass
class Summary:
    """Per-document counts accumulated chunk by chunk (so the summary never needs all rows)."""

    ids: list[str]
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, rows: pd.DataFrame) -> None:
        for doc, g in rows.groupby("doc", sort=False):
            entry = self.docs.setdefault(doc, {"sentences": 0, "chars": 0, "n": dict.fromkeys(self.ids, 0),
                                               "c": dict.fromkeys(self.ids, 0)})
            lengths = g["text"].str.len()
            entry["sentences"] += len(g)
            entry["chars"] += int(lengths.sum())
            for dom, n in g["domain"].value_counts().items():
                entry["n"][dom] += int(n)
            for dom, c in lengths.groupby(g["domain"]).sum().items():
                entry["c"][dom] += int(c)

    def frame(self) -> pd.DataFrame:
        rows = []
        for doc, e in self.docs.items():
            row: dict[str, Any] = {"doc": doc, "sentences": e["sentences"], "chars": e["chars"]}
            row.update({f"share_{d}": round(e["n"][d] / e["sentences"], 4) if e["sentences"] else 0.0 for d in self.ids})
            row.update({f"char_share_{d}": round(e["c"][d] / e["chars"], 4) if e["chars"] else 0.0 for d in self.ids})
            rows.append(row)
        return pd.DataFrame(rows)


# ---------------------------------------------------------------- batches

@dataclass
class FileResult:
    path: str
    ok: bool
    units: int = 0
    error: str = ""


def _units_of(path: Path, seg: SegmentParams) -> pd.DataFrame:
    return segment_source(read_source(path, heading_max_chars=seg.heading_max_chars), seg)


def _classify_path(model: DomainClassifier, path: Path, seg: SegmentParams,
                   chunk_size: int) -> Iterator[pd.DataFrame]:
    units = _units_of(path, seg)
    for start in range(0, len(units), chunk_size):
        yield classify_units(model, units.iloc[start:start + chunk_size])


_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: str, seg: SegmentParams, chunk_size: int) -> None:
    _WORKER.update(model=load_model(model_dir), seg=seg, chunk_size=chunk_size)


def _worker(path: Path) -> tuple[Path, list[pd.DataFrame] | None, str]:
    try:
        return path, list(_classify_path(_WORKER["model"], path, _WORKER["seg"], _WORKER["chunk_size"])), ""
    except IngestError as exc:
        return path, None, str(exc)


def iter_classified(inputs: list[str | Path], model_dir: str | Path | None = None,
                    model: DomainClassifier | None = None, jobs: int = 1, chunk_size: int = 2000,
                    seg: SegmentParams | None = None) -> Iterator[tuple[FileResult, list[pd.DataFrame]]]:
    """(result, chunks) per input file, in input order; `jobs` > 1 spreads files over processes."""
    seg = seg or SegmentParams.from_dict(config.section("segment"))
    paths = list(iter_paths(inputs))
    if jobs > 1 and len(paths) > 1:
        ctx = mp.get_context("fork")
        with ctx.Pool(jobs, _init_worker, (str(model_dir or default_model_dir()), seg, chunk_size)) as pool:
            for path, chunks, error in pool.imap(_worker, paths):
                yield _result(path, chunks, error), chunks or []
        return
    model = model or load_model(model_dir)
    for path in paths:
        try:
            chunks = list(_classify_path(model, path, seg, chunk_size))
            yield _result(path, chunks, ""), chunks
        except IngestError as exc:
            yield _result(path, None, str(exc)), []


def _result(path: Path, chunks: list[pd.DataFrame] | None, error: str) -> FileResult:
    if chunks is None:
        return FileResult(str(path), False, error=error)
    n = sum(len(c) for c in chunks)
    if n == 0:
        return FileResult(str(path), False, error=f"{path}: no sentences found")
    return FileResult(str(path), True, units=n)


def run_batch(inputs: list[str | Path], out: str | Path, summary: str | Path | None = None,
              model_dir: str | Path | None = None, jobs: int = 1, chunk_size: int = 2000,
              on_file: Callable[[FileResult], None] = lambda r: None) -> list[FileResult]:
    """Classify every input into `out` (and `summary`); returns one result per file."""
    results: list[FileResult] = []
    model = None if jobs > 1 else load_model(model_dir)
    ids = list(model.classes_) if model is not None else list(load_model(model_dir).classes_)
    acc = Summary(ids)
    with TableWriter(out) as writer:
        for result, chunks in iter_classified(inputs, model_dir, model, jobs, chunk_size):
            for chunk in chunks:
                writer.write(chunk)
                acc.add(chunk)
            results.append(result)
            on_file(result)
    if summary:
        with TableWriter(summary) as writer:
            writer.write(acc.frame())
    return results


def classify_reports(paths: list[str | Path], model: DomainClassifier | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Python API: (one row per unit, one summary row per report). Failed files raise nothing;
    their errors are in ``sentences.attrs["errors"]``."""
    model = model or load_model()
    acc = Summary(list(model.classes_))
    frames, errors = [], []
    for result, chunks in iter_classified(list(paths), model=model):
        if not result.ok:
            errors.append(result.error)
        for chunk in chunks:
            frames.append(chunk)
            acc.add(chunk)
    sentences = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OUTPUT_COLUMNS)
    sentences.attrs["errors"] = errors
    return sentences, acc.frame()


def throughput(model: DomainClassifier, units: pd.DataFrame) -> float:
    """Model-only units per second on an already segmented frame (used by the benchmark)."""
    start = time.perf_counter()
    model.predict_proba(units)
    return len(units) / (time.perf_counter() - start)
