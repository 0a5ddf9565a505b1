"""Batch classification: reports in, one row per unit and one summary row per report out.

Documents stream through ingest → segment → predict → write one at a time (in chunks of units), so
memory depends on the largest document, not on the size of the batch: the summary keeps counts
only, and `--jobs` keeps at most two documents per worker in flight. A file that fails is reported
and skipped; the others are still classified. Output files appear only when the run completes.
"""
from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from pipeline import config
from pipeline.enrich import RANKED_COLUMNS, BatchOptions, Enricher
from pipeline.errors import IngestError, ModelError
from pipeline.ingest import is_sentence_table, iter_paths, normalise_many, read_source
from pipeline.io import TableWriter
from pipeline.metadata import Source, TableOptions, is_document_table, source_name, sources, units_of
from pipeline.model import DomainClassifier
from pipeline.model import load_model as _load_model
from pipeline.multilabel import ranked
from pipeline.segment import UNIT_COLUMNS, SegmentParams
from pipeline.shares import Summary  # noqa: F401 - part of this module's API since the summary began here

OUTPUT_COLUMNS = ["doc", "sent_id", "index", "text", "heading", "is_heading", "domain", "confidence",
                  *RANKED_COLUMNS, "scores"]
# Unit columns the model or segmenter needs but that mean nothing to a reader of the output.
_INTERNAL = {"text_norm", "text_hash", "position"}


def default_model_dir() -> Path:
    return config.project_path(config.section("paths")["model_dir"])


def load_model(path: str | Path | None = None) -> DomainClassifier:
    """The verified model at `path`, or the one `dvc repro` produced."""
    target = Path(path) if path else default_model_dir()
    if not target.exists():
        raise ModelError(f"no trained model at {target}: run `dvc repro` (or `make run`) to train one, "
                                "or pass --model PATH")
    return _load_model(target)


SCORE_DECIMALS = 4  # every surface (CLI rows, MLflow model, Spark) reports the same rounded scores


def scores_of(model: DomainClassifier, units: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """(domain ids, rounded probabilities): the one prediction every surface reports.

    A unit is read with its neighbours when `units` has `doc` and `index` (consecutive units of a
    document); otherwise each row is classified alone."""
    ids = [str(c) for c in model.classes_]  # plain str: numpy strings leak `np.str_(...)` into CSV/JSON
    if len(units) == 0:
        return ids, np.zeros((0, len(ids)))
    return ids, np.round(model.predict_proba(units), SCORE_DECIMALS)


def predictions_frame(model: DomainClassifier, units: pd.DataFrame) -> pd.DataFrame:
    """domain, confidence and the score of every domain (a dict) for each unit (index kept)."""
    ids, proba = scores_of(model, units)
    best = proba.argmax(axis=1)
    return pd.DataFrame({
        "domain": np.asarray(ids, dtype=object)[best],
        "confidence": proba[np.arange(len(units)), best],
        "scores": [dict(zip(ids, row)) for row in proba.tolist()],
    }, index=units.index)


def prediction_columns(model: DomainClassifier, units: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """The same prediction as flat columns, for tables, serving and Spark: ``domain, confidence``,
    the runners-up ``domain_2, score_2, domain_3, score_3``, then ``score_<id>`` for every domain."""
    ids, proba = scores_of(model, units)
    names, best = ranked(proba, ids, top)
    columns: dict[str, Any] = {"domain": names[:, 0], "confidence": best[:, 0]}
    for k in range(1, names.shape[1]):
        columns[f"domain_{k + 1}"], columns[f"score_{k + 1}"] = names[:, k], best[:, k]
    columns.update({f"score_{d}": proba[:, i] for i, d in enumerate(ids)})
    return pd.DataFrame(columns, index=units.index)


def classify_units(model: DomainClassifier, units: pd.DataFrame, in_sequence: bool = True) -> pd.DataFrame:
    """Units frame → output rows: unit columns, predictions, then any pass-through columns.

    `in_sequence` says the units are a document's consecutive units, so the model may use their
    neighbours; rows of a sentence table are classified each on its own (the model sees no index).
    """
    preds = predictions_frame(model, units if in_sequence else units.drop(columns=["index"]))
    base = [c for c in OUTPUT_COLUMNS if c in units]
    extra = [c for c in units.columns if c not in base and c not in _INTERNAL]
    return pd.concat([units[base], preds, units[extra]], axis=1)


def classify_texts(texts: Iterable[str], model: DomainClassifier | None = None) -> pd.DataFrame:
    """Bare sentences (no document context, each classified alone) → text, domain, confidence, scores."""
    texts = [str(t) for t in texts]
    units = pd.DataFrame({"text": texts, "text_norm": normalise_many(texts), "heading": ""})
    return pd.concat([units[["text"]], predictions_frame(model or load_model(), units)], axis=1)


# ---------------------------------------------------------------- batches

@dataclass
class FileResult:
    path: str
    ok: bool
    units: int = 0
    error: str = ""
    confident: int = 0  # units at or above --min-confidence


def doc_ids(paths: list[Path]) -> dict[Path, str]:
    """Each file's document id: its name without suffix, or its path below the inputs' common folder
    where names clash (2023/report.txt and 2024/report.txt must not merge into one document)."""
    stems = [p.stem for p in paths]
    clashing = {s for s in stems if stems.count(s) > 1} if len(set(stems)) < len(stems) else set()
    root = Path(os.path.commonpath([p.resolve().parent for p in paths])) if clashing else Path()
    return {p: p.resolve().relative_to(root).as_posix() if p.stem in clashing else p.stem for p in paths}


def _classify_file(model: DomainClassifier, path: Source, doc_id: str, seg: SegmentParams,
                   chunk_size: int) -> tuple[FileResult, list[pd.DataFrame]]:
    """One file's (or document-table row's) result and output chunks; a file that cannot be read is a
    failed result, not an error."""
    try:
        units = units_of(path, seg, doc_id)
    except IngestError as exc:
        return FileResult(source_name(path), False, error=str(exc)), []
    # the whole document at once, so that no unit loses its neighbours at a chunk edge
    rows = classify_units(model, units, in_sequence=not (isinstance(path, Path) and is_sentence_table(path)))
    chunks = [rows.iloc[i:i + chunk_size] for i in range(0, len(rows), chunk_size)]
    return FileResult(source_name(path), True, units=len(units)), chunks


_WORKER: dict[str, Any] = {}


def _init_worker(model_dir: str, seg: SegmentParams, chunk_size: int) -> None:
    _WORKER.update(model=load_model(model_dir), seg=seg, chunk_size=chunk_size)


def _worker(path: Path, doc_id: str) -> tuple[FileResult, list[pd.DataFrame]]:
    return _classify_file(_WORKER["model"], path, doc_id, _WORKER["seg"], _WORKER["chunk_size"])


def _parallel(paths: list[Path], ids: dict[Path, str], model_dir: str, seg: SegmentParams, chunk_size: int,
              jobs: int) -> Iterator[tuple[FileResult, list[pd.DataFrame]]]:
    """Results in input order with at most 2 × jobs documents in flight (Pool.imap would buffer
    every finished document while the writer lags behind). Workers come from a fork server, not a
    fork of this process: forking a process with running threads (progress bar, BLAS) can deadlock;
    the server imports this module once, so workers start without re-importing scikit-learn."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    with ctx.Pool(jobs, _init_worker, (model_dir, seg, chunk_size)) as pool:
        todo = iter(paths)
        pending = deque(pool.apply_async(_worker, (p, ids[p])) for p in itertools.islice(todo, 2 * jobs))
        while pending:
            result = pending.popleft().get()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.apply_async(_worker, (nxt, ids[nxt])))
            yield result


def iter_classified(inputs: list[str | Path], model_dir: str | Path | None = None,
                    model: DomainClassifier | None = None, jobs: int = 1, chunk_size: int = 2000,
                    seg: SegmentParams | None = None,
                    documents: TableOptions | None = None) -> Iterator[tuple[FileResult, list[pd.DataFrame]]]:
    """(result, chunks) per input file, in input order; `jobs` > 1 spreads files over processes
    (each loads the model from `model_dir`). With `documents`, each row of a .jsonl/.csv/.parquet
    input is a document of its own, streamed in this process (`jobs` does not apply)."""
    seg = seg or SegmentParams.from_dict(config.section("segment"))
    paths = list(iter_paths(inputs))
    ids = doc_ids(paths)
    if documents is not None and any(is_document_table(p) for p in paths):
        model = model or load_model(model_dir)
        for source, doc_id in sources(paths, ids, documents, seg.heading_max_chars):
            yield _classify_file(model, source, doc_id, seg, chunk_size)
        return
    if jobs > 1 and len(paths) > 1:
        yield from _parallel(paths, ids, str(model_dir or default_model_dir()), seg, chunk_size, jobs)
        return
    model = model or load_model(model_dir)
    for path in paths:
        yield _classify_file(model, path, ids[path], seg, chunk_size)


def passthrough_columns(inputs: list[str | Path]) -> list[str]:
    """Columns that sentence tables (.jsonl/.csv inputs) carry beyond the unit columns, and `index`
    when a table brings its own (the user's values then fill that column, as text).

    CSV headers and Parquet schemas are fixed by the first chunk written, so a batch mixing tables
    with different columns (or tables and plain reports) needs them all before the first row."""
    seen: dict[str, None] = {}
    for path in iter_paths(inputs):
        if not is_sentence_table(path):
            continue
        try:
            table = read_source(path)
        except IngestError:
            continue  # reported when the file itself is classified
        for row in table.rows:
            seen.update(dict.fromkeys(row))
    return [c for c in seen if c not in UNIT_COLUMNS or c == "index"]


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_text(value: Any) -> str | None:
    if _missing(value):
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def format_chunk(chunk: pd.DataFrame, suffix: str, extra: list[str], optional: list[str] = ()) -> pd.DataFrame:
    """Output rows shaped for one file format, in the order output columns, `optional` columns
    (the batch's --min-confidence/--cap fields), pass-through and metadata columns (`extra`).

    JSON lines keep pass-through values as they came (a missing one is null, never NaN). CSV and
    Parquet need the same columns in every chunk: all pass-through columns, as text (one input may
    give `id` as a number and another as a string); in CSV the scores are a JSON object."""
    order = OUTPUT_COLUMNS + [c for c in [*optional, *extra] if c not in OUTPUT_COLUMNS]
    if suffix == ".jsonl":
        cols = [c for c in [*optional, *extra] if c in chunk]
        chunk = chunk[[c for c in order if c in chunk] + [c for c in chunk if c not in order]]
        return chunk.assign(**{c: chunk[c].map(lambda v: None if _missing(v) else v) for c in cols})
    out = chunk.reindex(columns=order)
    out = out.assign(**{c: out[c].map(_as_text).astype("string") for c in extra})
    if suffix == ".csv":
        out["scores"] = out["scores"].map(lambda s: json.dumps(s, ensure_ascii=False))
    return out


def run_batch(inputs: list[str | Path], out: str | Path, summary: str | Path | None = None,
              model_dir: str | Path | None = None, jobs: int = 1, chunk_size: int = 2000,
              on_file: Callable[[FileResult], None] = lambda r: None,
              seg: SegmentParams | None = None, options: BatchOptions | None = None) -> list[FileResult]:
    """Classify every input into `out` (and `summary`); returns one result per file (with
    `options.documents`, per document-table row).

    Both files are committed together at the end, and only if some file was classified: an
    exception, or a batch in which every file failed, leaves neither behind."""
    options = options or BatchOptions()
    model = load_model(model_dir)
    paths = list(iter_paths(inputs))
    enricher = Enricher.build(options, [str(c) for c in model.classes_], paths, model_dir or default_model_dir(),
                              OUTPUT_COLUMNS + UNIT_COLUMNS)
    acc = enricher.summary()
    extra = enricher.meta_columns + [c for c in passthrough_columns([p for p in paths if not options.reads_as_documents(p)])
                                     if c not in enricher.meta_columns]
    results: list[FileResult] = []
    writers: list[TableWriter] = []
    done = False
    try:
        writers += [TableWriter(path) for path in (out, summary) if path]
        for result, chunks in iter_classified(paths, model_dir, None if jobs > 1 else model, jobs, chunk_size, seg,
                                              options.documents):
            for chunk in chunks:
                chunk = enricher.rows(chunk, result.path)
                writers[0].write(format_chunk(chunk, writers[0].suffix, extra, enricher.optional_columns))
                acc.add(chunk)
                result.confident += int(chunk["confident"].sum()) if "confident" in chunk else 0
            results.append(result)
            on_file(result)
        if summary:
            writers[1].write(acc.frame())
        done = any(r.ok for r in results)
    finally:
        for writer in writers:
            writer.close(ok=done)
    return results


def classify_reports(paths: list[str | Path], model: DomainClassifier | None = None,
                     options: BatchOptions | None = None,
                     model_dir: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Python API: (one row per unit, one summary row per report). Failed files raise nothing;
    their errors are in ``sentences.attrs["errors"]``. `model_dir` is where the held-out record
    (secondary-domain threshold, confusions) is read (default: the model `dvc repro` trained)."""
    options = options or BatchOptions()
    record_dir = model_dir or (None if model is not None else default_model_dir())  # a bare model has no record
    model = model or load_model(model_dir)
    inputs = list(iter_paths(list(paths)))
    enricher = Enricher.build(options, [str(c) for c in model.classes_], inputs, record_dir,
                              OUTPUT_COLUMNS + UNIT_COLUMNS)
    acc = enricher.summary()
    frames, errors = [], []
    for result, chunks in iter_classified(inputs, model=model, documents=options.documents):
        if not result.ok:
            errors.append(result.error)
        for chunk in chunks:
            chunk = enricher.rows(chunk, result.path)
            frames.append(chunk)
            acc.add(chunk)
    sentences = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=OUTPUT_COLUMNS)
    sentences.attrs["errors"] = errors
    return sentences, acc.frame()
