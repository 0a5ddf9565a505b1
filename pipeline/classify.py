"""Batch classification: reports in, one row per unit and one summary row per report out.

Documents stream through ingest → segment → predict → write one at a time (in chunks of units), so
memory depends on the largest document, not on the size of the batch: the summary keeps counts
only, and `--jobs` keeps at most two documents per worker in flight. A file that fails is reported
and skipped; the others are still classified. Output files appear only when the run completes,
together: a summary that cannot be written leaves the old output in place too. A worker process
that dies (killed, out of memory) stops the run with the file it was on, instead of hanging it.
"""
from __future__ import annotations

import contextlib
import gc
import itertools
import json
import math
import multiprocessing as mp
import os
import signal
import threading
import traceback
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline import config
from pipeline.enrich import RANKED_COLUMNS, BatchOptions, Enricher
from pipeline.errors import IngestError, ModelError
from pipeline.ingest import (SentenceTable, doc_id_for, is_sentence_table, iter_paths, normalise_many,
                             printable_path, read_source)
from pipeline.io import TableWriter, commit_all, text_series
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
# Columns this run adds: an input table carrying them (a previous result) keeps them as input_<name>.
PREDICTION_COLUMNS = ("domain", "confidence", *RANKED_COLUMNS, "scores", "confident", "cap_code", "cap_topic")


def default_model_dir() -> Path:
    return config.project_path(config.section("paths")["model_dir"])


def load_model(path: str | Path | None = None) -> DomainClassifier:
    """The verified model at `path` (a folder, or an MLflow URI such as
    ``models:/policy-domains@champion``), or the one `dvc repro` produced."""
    target = resolve_model_dir(path)
    if not target.exists():
        raise ModelError(f"no trained model at {target}: run `dvc repro` (or `make run`) to train one, "
                         "or pass --model PATH")
    return _load_model(target)


def resolve_model_dir(model: str | Path | None) -> Path:
    """A local model folder for a folder, an MLflow model URI (downloaded), or the default model."""
    if model is not None and str(model).startswith(("models:/", "runs:/")):
        import mlflow

        try:
            local = Path(mlflow.artifacts.download_artifacts(str(model)))
        except Exception as exc:  # noqa: BLE001 - any registry failure is the user's to fix: name it
            raise ModelError(f"{model}: cannot fetch it from MLflow ({exc}); check MLFLOW_TRACKING_URI") from exc
        return local / "artifacts" / "model_dir"
    return Path(model) if model else default_model_dir()


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
    """domain, confidence and the score of every domain for each unit (index kept).

    `scores` is an Arrow struct column, one field per domain: each value reads as a dict
    (``row["scores"]["economy"]``), ``frame["scores"].struct.explode()`` gives a column per domain,
    and it goes to Parquet and Spark as a struct without a Python dict per unit being built."""
    ids, proba = scores_of(model, units)
    best = proba.argmax(axis=1)
    struct = pa.StructArray.from_arrays([pa.array(proba[:, i]) for i in range(len(ids))], names=ids)
    return pd.DataFrame({
        "domain": text_series(np.asarray(ids, dtype=object)[best], units.index),
        "confidence": proba[np.arange(len(units)), best],
        "scores": pd.arrays.ArrowExtensionArray(struct),
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
    warning: str = ""
    confident: int = 0  # units at or above --min-confidence


def input_names(columns: Iterable[str]) -> dict[str, str]:
    """New names for an input table's columns that this run's predictions would overwrite:
    ``domain`` → ``input_domain`` (``input_input_domain`` if that is taken too, and so on)."""
    taken = set(columns)
    renamed: dict[str, str] = {}
    for column in PREDICTION_COLUMNS:
        if column in taken:
            new = f"input_{column}"
            while new in taken:
                new = f"input_{new}"
            renamed[column] = new
            taken.add(new)
    return renamed


def doc_ids(paths: list[Path]) -> dict[Path, str]:
    """Each file's document id: its name without suffix, or its path below the inputs' common folder
    where names clash (2023/report.txt and 2024/report.txt must not merge into one document)."""
    stems = [p.stem for p in paths]
    clashing = {s for s in stems if stems.count(s) > 1} if len(set(stems)) < len(stems) else set()
    root = Path(os.path.commonpath([p.resolve().parent for p in paths])) if clashing else Path()
    return {p: printable_path(p.resolve().relative_to(root).as_posix()) if p.stem in clashing else doc_id_for(p)
            for p in paths}


def classify_file(model: DomainClassifier, path: Source, doc_id: str, seg: SegmentParams,
                   chunk_size: int) -> tuple[FileResult, list[pd.DataFrame]]:
    """One file's (or document-table row's) result and output chunks; a file that cannot be read is a
    failed result, not an error."""
    try:
        units = units_of(path, seg, doc_id)
    except IngestError as exc:
        return FileResult(source_name(path), False, error=str(exc)), []
    renamed = input_names(units.columns)
    units = units.rename(columns=renamed)
    warning = (f"{source_name(path)}: its column(s) {', '.join(renamed)} would clash with this run's predictions: "
               f"kept as {', '.join(renamed.values())}") if renamed else ""
    # the whole document at once, so that no unit loses its neighbours at a chunk edge
    alone = isinstance(path, SentenceTable) or (isinstance(path, Path) and is_sentence_table(path))
    rows = classify_units(model, units, in_sequence=not alone)
    chunks = [rows.iloc[i:i + chunk_size] for i in range(0, len(rows), chunk_size)]
    return FileResult(source_name(path), True, units=len(units), warning=warning), chunks


_WORKER: dict[str, Any] = {}


class WorkerError(RuntimeError):
    """An unexpected error in a worker process (a bug), carried back as text: the original exception
    may not survive pickling, and its traceback would otherwise be lost."""


def _init_worker(model_dir: str, seg: SegmentParams, chunk_size: int, started: Any) -> None:
    # Ctrl-C reaches the whole process group: the main process stops the run, workers just finish
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER.update(model=load_model(model_dir), seg=seg, chunk_size=chunk_size, started=started)
    gc.freeze()  # the worker's libraries and model live as long as it does: see `_collector_spared`


@contextlib.contextmanager
def _collector_spared() -> Iterator[None]:
    """Keep the objects alive when a batch starts (libraries, the model) out of the garbage
    collector's sight until it ends. A batch allocates many small objects (a row dict per table
    row, a score dict per unit), which sets off full collections, and each walked every one of them
    again: about 110 ms of a 20,000-row table's 0.9 s. They are not garbage: freezing them only
    spares the walk (they are still freed by reference counting)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _worker(path: Path, doc_id: str) -> tuple[FileResult, list[pd.DataFrame]]:
    _WORKER["started"].put((os.getpid(), str(path)))
    try:
        return classify_file(_WORKER["model"], path, doc_id, _WORKER["seg"], _WORKER["chunk_size"])
    except Exception as exc:  # noqa: BLE001 - re-raised in the main process with the worker's traceback
        raise WorkerError(f"{path}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}") from None


def _parallel(paths: list[Path], ids: dict[Path, str], model_dir: str, seg: SegmentParams, chunk_size: int,
              jobs: int) -> Iterator[tuple[FileResult, list[pd.DataFrame]]]:
    """Results in input order with at most 2 × jobs documents in flight (an unbounded map would
    buffer every finished document while the writer lags behind). Workers come from a fork server,
    not a fork of this process: forking a process with running threads (progress bar, BLAS) can
    deadlock; the server imports this module once, so workers start without re-importing
    scikit-learn. A process pool from concurrent.futures, not multiprocessing.Pool: when a worker
    dies, the former fails the pending results where the latter waits for them for ever."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    started = ctx.SimpleQueue()
    pending: deque[tuple[Path, Future]] = deque()
    todo = iter(paths)
    executor = None
    try:
        with _signals_held():  # the first submits start the workers
            _start_forkserver_deaf_to_ctrl_c()
            executor = ProcessPoolExecutor(jobs, ctx, _init_worker, (model_dir, seg, chunk_size, started))
            pending.extend((p, executor.submit(_worker, p, ids[p])) for p in itertools.islice(todo, 2 * jobs))
        while pending:
            future = pending[0][1]
            try:
                result = future.result()
            except BrokenProcessPool:
                raise _died(pending, started) from None
            pending.popleft()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, executor.submit(_worker, nxt, ids[nxt])))
            yield result
    finally:  # waiting lets running workers finish their file: killed mid-start they print tracebacks
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while worker processes start, and deliver them after: an
    exception raised while a new worker is being handed to the fork server (which takes seconds
    while it imports the model's libraries) leaves a half-started child behind that dies with a
    traceback once this process has gone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


def _start_forkserver_deaf_to_ctrl_c() -> None:
    """Start the fork server with SIGINT ignored, which it and every worker it forks inherit: Ctrl-C
    reaches the whole process group, and only the main process should act on it (it stops the run
    and removes its temporary files); a child interrupted while importing would print a traceback."""
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        forkserver.ensure_running()
        return
    # Blocked as well as ignored: Linux keeps a blocked signal pending even while it is ignored, so a
    # Ctrl-C that lands in this window reaches the caller's handler afterwards instead of vanishing.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Python handler would not survive the exec
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _died(pending: deque[tuple[Path, Future]], started: Any) -> IngestError:
    """The one-line error for a dead worker, naming the file it was classifying: among the files
    not finished, those a worker had started (the others were only queued)."""
    begun: set[str] = set()
    while not started.empty():
        begun.add(started.get()[1])
    unfinished = [str(p) for p, f in pending if not f.done() or isinstance(f.exception(), BrokenProcessPool)]
    culprits = [p for p in unfinished if p in begun] or unfinished
    which = culprits[0] if len(culprits) == 1 else "one of " + ", ".join(culprits)
    return IngestError(f"{which}: the worker process classifying it died (killed, out of memory or crashed); "
                       "the run stopped and wrote nothing. Run again with --jobs 1 to see that file's error")


def iter_classified(inputs: list[str | Path], model_dir: str | Path | None = None,
                    model: DomainClassifier | None = None, jobs: int = 1, chunk_size: int = 10_000,
                    seg: SegmentParams | None = None, documents: TableOptions | None = None,
                    read: SentenceTable | None = None) -> Iterator[tuple[FileResult, list[pd.DataFrame]]]:
    """(result, chunks) per input file, in input order; `jobs` > 1 spreads files over processes
    (each loads the model from `model_dir`). With `documents`, each row of a .jsonl/.csv/.parquet
    input is a document of its own, streamed in this process (`jobs` does not apply). `read` is
    one of the inputs' sentence tables already read (by `scan_tables`), used instead of its file."""
    seg = seg or SegmentParams.from_dict(config.section("segment"))
    paths = list(iter_paths(inputs))
    ids = doc_ids(paths)
    if documents is not None and any(is_document_table(p) for p in paths):
        model = model or load_model(model_dir)
        for source, doc_id in sources(paths, ids, documents, seg.heading_max_chars):
            yield classify_file(model, source, doc_id, seg, chunk_size)
        return
    if jobs > 1 and len(paths) > 1:
        yield from _parallel(paths, ids, str(model_dir or default_model_dir()), seg, chunk_size, jobs)
        return
    model = model or load_model(model_dir)
    for path in paths:
        source: Source = path
        if read is not None and read.path == str(path) and read.doc_id == ids[path]:
            source, read = read, None  # not kept once classified: memory holds one table at a time
        yield classify_file(model, source, ids[path], seg, chunk_size)


def scan_tables(paths: list[Path]) -> tuple[list[str], SentenceTable | None]:
    """(pass-through columns, the first table as read) of the sentence tables among `paths`.

    The columns are those the tables carry beyond the unit columns, and `index` when a table
    brings its own (the user's values then fill that column, as text). CSV headers and Parquet
    schemas are fixed by the first chunk written, so a batch mixing tables with different columns
    (or tables and plain reports) needs them all before the first row. The tables are read last to
    first, so the first is still in hand when its turn comes: a one-table batch is read once."""
    ids = doc_ids(paths)
    found: list[list[str]] = []
    table = None
    for path in reversed([p for p in paths if is_sentence_table(p)]):
        try:
            table = read_source(path, ids[path])
        except IngestError:
            table = None
            continue  # reported when the file itself is classified
        columns = list(dict.fromkeys(c for row in table.rows for c in row))
        renamed = input_names(columns)  # as `classify_file` renames them
        found.append([renamed.get(c, c) for c in columns])
    seen = dict.fromkeys(c for columns in reversed(found) for c in columns)
    return [c for c in seen if c not in UNIT_COLUMNS or c == "index"], table


def passthrough_columns(inputs: list[str | Path]) -> list[str]:
    """The pass-through columns of the sentence tables under `inputs` (see `scan_tables`)."""
    return scan_tables(list(iter_paths(inputs)))[0]


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
        # as Python objects, so a missing value is None and a CAP code stays an integer (not 1.0)
        return chunk.assign(**{c: chunk[c].astype(object).where(chunk[c].notna(), None) for c in cols})
    out = chunk.reindex(columns=order)
    out = out.assign(**{c: out[c].map(_as_text).astype("string") for c in extra})
    if suffix == ".csv":
        out["scores"] = out["scores"].map(lambda s: json.dumps(s, ensure_ascii=False))
    return out


@_collector_spared()
def run_batch(inputs: list[str | Path], out: str | Path, summary: str | Path | None = None,
              model_dir: str | Path | None = None, jobs: int = 1, chunk_size: int = 10_000,
              on_file: Callable[[FileResult], None] = lambda r: None,
              seg: SegmentParams | None = None, options: BatchOptions | None = None,
              model: DomainClassifier | None = None) -> list[FileResult]:
    """Classify every input into `out` (and `summary`); returns one result per file (with
    `options.documents`, per document-table row).

    Both files are committed together at the end, and only if some file was classified: an
    exception, or a batch in which every file failed, leaves neither behind. `out` and `summary`
    found inside an input folder (a previous run's result) are not inputs."""
    options = options or BatchOptions()
    record_dir = model_dir or (None if model is not None else default_model_dir())  # a bare model has no record
    model = model or load_model(model_dir)
    targets = [Path(p) for p in (out, summary) if p]
    paths = list(iter_paths(inputs, exclude=targets))
    enricher = Enricher.build(options, [str(c) for c in model.classes_], paths, record_dir,
                              OUTPUT_COLUMNS + UNIT_COLUMNS)
    acc = enricher.summary()
    passthrough, read = scan_tables([p for p in paths if not options.reads_as_documents(p)])
    extra = enricher.meta_columns + [c for c in passthrough if c not in enricher.meta_columns]
    results: list[FileResult] = []
    writers: list[TableWriter] = []
    done = False
    try:
        writers += [TableWriter(path) for path in targets]
        batch = iter_classified(paths, model_dir, None if jobs > 1 else model, jobs, chunk_size, seg,
                                options.documents, read)
        del read  # the batch lets go of the table once it has classified it
        for result, chunks in batch:
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
        commit_all(writers, done)
    return results


@_collector_spared()
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
