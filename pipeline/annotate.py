"""The annotation loop: pick the units worth labelling next (`suggest`), take completed rows in (`accept`).

- `suggest` ranks unlabelled units by how unsure the current model is (active learning), skips
  units already labelled or near-identical to labelled/picked ones, and spreads the picks over
  predicted domains (or text clusters) and documents, so that one long, hard document or one
  confusing domain does not fill the whole queue. The queue is a label file with `domains` left
  empty: the model's guess sits in a separate `suggested` column so it can never slip into training
  unreviewed.
- `accept` moves the rows an annotator completed from a queue into their file under
  ``labels/annotations/``, validated by the same rules as `labels check` (`labels.validate_rows`).

A queue makes a round trip through a spreadsheet, so it is written to survive one: cells that
would run as formulas get a protecting apostrophe, and the identifiers (`sent_id`, `text_hash`,
`doc`) always do, so that Excel or WPS keeps them as text instead of turning a hash into a number or
a unit id into a time; `accept` removes the apostrophes, reads the file in whatever encoding and
delimiter the spreadsheet saved it, and refuses rows whose identifiers were changed anyway. Both
files are changed under exclusive locks, so two `accept` runs never lose each other's rows.

Finding labels that may be wrong is `pipeline.audit`; the label files themselves are `pipeline.labels`.
"""
from __future__ import annotations

import datetime as dt
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pipeline.errors import IngestError, LabelError, UsageError
from pipeline.ingest import iter_paths, normalise_many
from pipeline.io import locked, read_table, sheet_id, sheet_id_value, sheet_safe, sheet_value
from pipeline.labels import (COLUMNS, Issue, append_label_rows, check_annotator, hash_text, read_annotator_file,
                             read_csv_records, validate_rows, write_label_rows, write_records)
from pipeline.segment import SegmentParams, units_from_path

QUEUE_EXTRA = ["suggested", "confidence", "heading"]
QUEUE_COLUMNS = COLUMNS + QUEUE_EXTRA
QUEUE_IDS = ("sent_id", "text_hash", "doc")  # written as text a spreadsheet will not convert
STRATEGIES = ("uncertainty", "margin", "diverse")
HEAD_FACTOR = 5  # picks are spread over the HEAD_FACTOR * n most uncertain candidates


def today() -> str:
    return dt.date.today().isoformat()


# ---------------------------------------------------------------- pool and what is already labelled

def pool_units(inputs: Sequence[str | Path], seg: SegmentParams | None = None,
               exclude: Sequence[str | Path] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Units of report files/directories, sentence tables (.jsonl/.csv) or a segmented .parquet corpus.

    Returns (units, errors); a file that cannot be read is reported, not fatal, as in `classify`.
    Files in `exclude` (the queue being written) found in a folder are not part of the pool.
    """
    frames, errors = [], []
    for path in iter_paths(list(inputs), exclude):
        try:
            frames.append(read_table(path) if path.suffix.lower() == ".parquet" else units_from_path(path, seg))
        except IngestError as exc:
            errors.append(str(exc))
    units = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["doc", "sent_id", "text"])
    for col, default in (("heading", ""), ("doc", ""), ("sent_id", "")):
        if col not in units:
            units[col] = default
    if "text_hash" not in units:
        units["text_hash"] = [hash_text(t) for t in units["text"].astype(str)]
    return units, errors


def _ngram_vectors(texts: Sequence[str]) -> Any:
    """L2-normalised binary character 2-3-gram vectors: their dot product is a set-overlap similarity."""
    from sklearn.preprocessing import normalize

    from pipeline.features import CharNgramHasher

    counts = CharNgramHasher((2, 3), 2 ** 18).transform([str(t) for t in texts])
    if counts.shape[0] == 0:
        return counts
    counts.data[:] = 1.0
    return normalize(counts, norm="l2")


def _max_similarity(vectors: Any, others: Any, chunk: int = 4096) -> np.ndarray:
    if others.shape[0] == 0 or vectors.shape[0] == 0:
        return np.zeros(vectors.shape[0])
    out = []
    for start in range(0, vectors.shape[0], chunk):
        sims = vectors[start:start + chunk] @ others.T
        out.append(np.asarray(sims.max(axis=1).todense()).ravel())
    return np.concatenate(out)


# ---------------------------------------------------------------- suggest

def uncertainty_scores(proba: np.ndarray, strategy: str) -> np.ndarray:
    """Higher = the model is less sure. Least confidence for uncertainty/diverse, 1 - margin for margin."""
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy '{strategy}' ({', '.join(STRATEGIES)})")
    top = np.sort(proba, axis=1)[:, ::-1]
    if strategy == "margin":
        return 1.0 - (top[:, 0] - (top[:, 1] if proba.shape[1] > 1 else 0.0))
    return 1.0 - top[:, 0]


def _clusters(vectors: Any, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k <= 1 or vectors.shape[0] <= k:
        return np.arange(vectors.shape[0]) if k > 1 else np.zeros(vectors.shape[0], dtype=int)
    return KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(vectors)


def _near(vectors: Any, i: int, picked: list[int], threshold: float) -> bool:
    """Whether unit i is a near-duplicate (n-gram similarity >= threshold) of a unit already picked."""
    return bool(picked) and float((vectors[i] @ vectors[picked].T).max()) >= threshold


def _spread(order: np.ndarray, groups: np.ndarray, docs: np.ndarray, vectors: Any, n: int,
            max_per_doc: int, threshold: float) -> list[int]:
    """Round-robin over groups (best group first), each taking its most uncertain remaining unit.

    A unit whose document already has `max_per_doc` picks waits for a second pass (the cap is soft:
    it only bites while other documents still have candidates); a unit near-identical to a pick
    is dropped for good.
    """
    queues: dict[Any, list[int]] = {}
    for i in order:  # `order` is most uncertain first, so each group's queue is too
        queues.setdefault(groups[i], []).append(int(i))
    picked: list[int] = []
    per_doc: dict[Any, int] = {}
    deferred: list[int] = []

    while len(picked) < n and any(queues.values()):
        for g in list(queues):
            while queues[g] and len(picked) < n:
                i = queues[g].pop(0)
                if _near(vectors, i, picked, threshold):
                    continue
                if per_doc.get(docs[i], 0) >= max_per_doc:
                    deferred.append(i)
                    continue
                picked.append(i)
                per_doc[docs[i]] = per_doc.get(docs[i], 0) + 1
                break
    rank = {int(i): r for r, i in enumerate(order)}
    for i in sorted(deferred, key=rank.__getitem__):
        if len(picked) >= n:
            break
        if not _near(vectors, i, picked, threshold):
            picked.append(i)
    return picked


@dataclass
class Suggestion:
    """The queue and what was left out of it, for the command line to report."""

    queue: pd.DataFrame
    pool: int
    skipped_labelled: int
    skipped_duplicates: int


def suggest(units: pd.DataFrame, model: Any, labelled: pd.DataFrame, n: int, strategy: str = "uncertainty",
            threshold: float = 0.8, max_per_doc: int | None = None, seed: int = 0) -> Suggestion:
    """The `n` unlabelled units most worth labelling next, as a queue in label-file format.

    `labelled` is `labelled_texts(...)`: units with the same text hash, or a character n-gram
    similarity of at least `threshold` to a labelled text, are skipped, as are repeats inside the
    pool. `max_per_doc` defaults to an even share of `n` over the pool's documents (at least 1).
    """
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy '{strategy}' ({', '.join(STRATEGIES)})")
    pool = len(units)
    units = units.reset_index(drop=True)
    # predict the whole pool in document order: the model may read a unit's neighbours
    proba_all = model.predict_proba(units) if pool and n > 0 else np.zeros((pool, len(model.classes_)))
    candidates = units[units["text"].astype(str).str.strip() != ""]
    known = set(labelled["text_hash"])
    fresh = candidates[~candidates["text_hash"].isin(known)]
    skipped_labelled = len(candidates) - len(fresh)
    unique = fresh.drop_duplicates("text_hash")
    duplicates = len(fresh) - len(unique)
    texts = unique["text_norm"].tolist() if "text_norm" in unique else normalise_many(unique["text"].astype(str).tolist())
    vectors = _ngram_vectors(texts)
    near_labelled = _max_similarity(vectors, _ngram_vectors(normalise_many(labelled["text"].astype(str).tolist())))
    keep = near_labelled < threshold
    skipped_labelled += int((~keep).sum())
    unique, vectors = unique[keep], vectors[np.flatnonzero(keep)]
    if unique.empty or n <= 0:
        return Suggestion(_queue(unique.iloc[:0], np.zeros((0, 1)), []), pool, skipped_labelled, duplicates)

    proba = proba_all[unique.index.to_numpy()]
    unique = unique.reset_index(drop=True)
    ids = list(model.classes_)
    scores = uncertainty_scores(proba, strategy)
    order = np.argsort(-scores, kind="stable")
    # Spread only among the most uncertain few times n: round-robin over all domains would otherwise
    # pull in confident units of domains that happen to have no hard cases.
    head = order[: n * HEAD_FACTOR]
    if strategy == "diverse":
        groups = np.full(len(unique), -1)
        groups[head] = _clusters(vectors[head], min(n, len(head)), seed)
    else:
        groups = proba.argmax(axis=1)
    docs = unique["doc"].astype(str).to_numpy()
    cap = max_per_doc or max(1, math.ceil(n / max(1, len(set(docs)))))
    picked = _spread(head, groups, docs, vectors, n, cap, threshold)
    for i in order[len(head):]:  # the head ran short (near-duplicates): top up in plain priority order
        if len(picked) >= n:
            break
        if not _near(vectors, int(i), picked, threshold):
            picked.append(int(i))
    return Suggestion(_queue(unique.iloc[picked], proba[picked], ids), pool, skipped_labelled, duplicates)


def _queue(units: pd.DataFrame, proba: np.ndarray, ids: list[str]) -> pd.DataFrame:
    best = proba.argmax(axis=1) if len(units) else np.zeros(0, dtype=int)
    return pd.DataFrame({
        "sent_id": units["sent_id"].astype(str).tolist(),
        "text_hash": units["text_hash"].tolist(),
        "doc": units["doc"].astype(str).tolist(),
        "text": units["text"].astype(str).tolist(),
        "domains": "", "annotator": "", "note": "", "updated_at": "",
        "suggested": [ids[b] for b in best],
        "confidence": np.round(proba[np.arange(len(units)), best], 4) if len(units) else [],
        "heading": units["heading"].fillna("").astype(str).tolist(),
    }, columns=QUEUE_COLUMNS)


def _queue_cell(column: str | None, value: Any) -> Any:
    """A queue cell as written: identifiers kept text (`sheet_id`), everything else formula-safe."""
    value = "" if value is None else value
    return sheet_id(str(value)) if column in QUEUE_IDS else sheet_safe(value)


def _queue_value(column: str | None, cell: str) -> str:
    """A queue cell as it was before `_queue_cell` protected it."""
    return sheet_id_value(cell) if column in QUEUE_IDS else str(sheet_value(cell))


def write_queue(queue: pd.DataFrame, path: str | Path) -> Path:
    return write_label_rows(path, queue.to_dict(orient="records"), QUEUE_COLUMNS, cell=_queue_cell)


def read_queue(path: str | Path) -> list[dict[str, str]]:
    """A queue's rows with their values as `accept` reads them (the spreadsheet protection removed)."""
    header, records = read_csv_records(path)
    return [{h: _queue_value(h, f) for h, f in zip(header, fields)} for _, fields in records
            if any(f.strip() for f in fields)]


# ---------------------------------------------------------------- accept

@dataclass
class Accepted:
    moved: int
    kept: int
    target: Path
    issues: list[Issue]


def accept(queue_path: str | Path, annotator: str, labels_dir: str | Path, now: str | None = None) -> Accepted:
    """Move completed, valid rows of a queue into ``labels/annotations/<annotator>.csv``.

    A row is complete when `domains` is filled in. Complete rows get the annotator and date where
    empty (and a text_hash computed from the text where empty), then pass `labels.validate_rows`
    (the `labels check` rules, including identifiers a spreadsheet converted and a text_hash that
    no longer matches the text) and must not repeat a unit already in the annotator's file. Invalid
    and incomplete rows stay in the queue, the invalid ones reported by queue file and row. An
    annotator file that rows cannot be appended to without loss (a header without `domains`) takes
    nothing. Both files are locked for the whole run and replaced atomically, the annotation file
    first, so a crash in between leaves rows in both, never in neither.
    """
    annotator = check_annotator(annotator)
    queue_path = Path(queue_path)
    shown = str(queue_path)
    target = Path(labels_dir) / "annotations" / f"{annotator}.csv"
    if target.exists() and queue_path.exists() and os.path.samefile(queue_path, target):
        raise UsageError(f"{queue_path}: this is {annotator}'s annotation file itself; accept a queue written by "
                         "`policy-domains suggest`")
    with locked(queue_path, target):
        header, records = read_csv_records(queue_path)
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            return Accepted(0, len(records), target,
                            [Issue(shown, 1, "error", f"missing column(s): {', '.join(missing)}")])
        try:
            existing = _existing(target)
        except LabelError as exc:
            where = getattr(exc, "line", 0)
            return Accepted(0, len(records), target, [Issue(str(target), where, "error",
                                                            f"{getattr(exc, 'reason', exc)}; nothing was accepted")])
        return _move(queue_path, header, records, target, existing, annotator, now)


def _move(queue_path: Path, header: list[str], records: list[tuple[int, list[str]]], target: Path,
          existing: dict[tuple[str, str], int], annotator: str, now: str | None) -> Accepted:
    """The body of `accept`, with both files locked and the annotator's file known to be sound."""
    shown = str(queue_path)
    issues: list[Issue] = []
    rows: list[dict[str, Any] | None] = [None] * len(records)
    originals: dict[int, list[str]] = {}
    for pos, (line, fields) in enumerate(records):
        if not any(f.strip() for f in fields):
            continue
        originals[line] = fields
        if len(fields) != len(header):
            issues.append(Issue(shown, line, "error", f"{len(fields)} fields, header has {len(header)}"))
            continue
        row = {h: _queue_value(h, f).strip() for h, f in zip(header, fields)}
        if not row.get("domains"):
            continue
        row["annotator"] = row.get("annotator") or annotator
        row["updated_at"] = row.get("updated_at") or now or today()
        row["text_hash"] = row.get("text_hash") or hash_text(row.get("text", ""))
        rows[pos] = row
    frame, found = validate_rows(rows, shown)
    issues += [i for i in found if i.level == "error"]
    good: list[int] = []
    for r in frame.itertuples():
        clash = existing.get(("text", r.text_hash)) or (existing.get(("sent_id", r.sent_id)) if r.sent_id else None)
        if clash:
            issues.append(Issue(shown, r.line, "error", f"already labelled in {target}:{clash} (same unit); "
                                                        "edit that row instead"))
        else:
            good.append(int(r.line))
    errors_at = {i.line for i in issues}
    good = [line for line in good if line not in errors_at]
    moved = [rows[line - 2] for line in good]  # text_hash given and matching the text, or computed from it
    if moved:
        append_label_rows(target, moved)
    kept = [_protected(header, fields) for line, fields in originals.items() if line not in set(good)]
    write_records(queue_path, header, kept)
    return Accepted(len(moved), len(kept), target, issues)


def _protected(header: list[str], fields: list[str]) -> list[str]:
    """A row kept in the queue, re-protected for the spreadsheet (a row with the wrong number of
    fields is kept exactly as it is: it has to be fixed by hand)."""
    if len(fields) != len(header):
        return fields
    return [_queue_cell(h, _queue_value(h, f)) for h, f in zip(header, fields)]


def _existing(target: Path) -> dict[tuple[str, str], int]:
    """(kind, key) → line of the rows already in an annotator's file, to refuse repeats. Raises
    `LabelError` for a file rows cannot be appended to (`labels.read_annotator_file`)."""
    if not target.exists():
        return {}
    _, header, records = read_annotator_file(target)
    seen: dict[tuple[str, str], int] = {}
    for line, fields in records:
        row = dict(zip(header, (str(sheet_value(f)) for f in fields)))
        if row.get("text"):
            seen.setdefault(("text", hash_text(row["text"])), line)
        if row.get("sent_id"):
            seen.setdefault(("sent_id", row["sent_id"].strip()), line)
    return seen


def completed_rows(path: str | Path) -> int:
    """How many rows of an existing queue have `domains` filled in (work that overwriting would lose)."""
    path = Path(path)
    if not path.exists():
        return 0
    header, records = read_csv_records(path)
    if "domains" not in header:
        return 0
    at = header.index("domains")
    return sum(1 for _, fields in records if len(fields) > at and fields[at].strip())
