"""The label files' one home: parse, validate (in memory or on disk), merge, join to units for
training, and write rows back.

Layout (see labels/GUIDE.md):
- ``labels/annotations/*.csv``: one file per annotator or batch, so that nobody edits another's file;
- ``labels/adjudicated.csv``: decisions on units where annotators disagree;
- ``labels/examples/*.csv``: codebook example sentences the team wrote (``source`` = ``codebook``);
  they train the model but never enter an evaluation.

Merge rule (implemented only in `merge`): an adjudicated row decides its unit. Otherwise the
annotators' rows for a unit (matched by ``text_hash``) must agree on the primary domain; the merged
label is that primary followed by the secondary ids any of them gave, in order, at most three.
Units whose primaries differ and that no adjudication decides are conflicts: `check` reports them
and they are left out of training until someone adjudicates them.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from pipeline.errors import LabelError
from pipeline.ingest import fold
from pipeline.io import atomic_path
from pipeline.segment import text_hash
from pipeline.taxonomy import domain_ids, suggest_id

COLUMNS = ["sent_id", "text_hash", "doc", "text", "domains", "annotator", "note", "updated_at"]
OPTIONAL_COLUMNS = ["source"]
REQUIRED = ["text", "domains", "annotator"]
MAX_DOMAINS = 3
EXAMPLE_SOURCE = "codebook"
_ANNOTATOR = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class Issue:
    """One finding of the validator; `level` is "error" (blocks) or "warning"."""

    file: str
    line: int
    level: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.level}: {self.message}"


def split_domains(value: str) -> list[str]:
    return [d.strip() for d in str(value or "").replace("｜", "|").split("|") if d.strip()]


def label_files(labels_dir: str | Path) -> dict[str, list[Path]]:
    root = Path(labels_dir)
    adjudicated = root / "adjudicated.csv"
    return {
        "annotation": sorted((root / "annotations").glob("*.csv")),
        "adjudicated": [adjudicated] if adjudicated.exists() else [],
        "codebook": sorted((root / "examples").glob("*.csv")),
    }


def read_csv_records(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line, fields) records of a CSV, numbered as a spreadsheet numbers its rows."""
    text = Path(path).read_bytes().decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    return header, list(enumerate(reader, 2))


def read_label_file(path: str | Path, kind: str = "annotation") -> tuple[pd.DataFrame, list[Issue]]:
    """Parse and validate one label file. Rows with errors are dropped from the returned frame."""
    path = Path(path)
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return _empty(), [Issue(name, 0, "error", f"cannot read ({exc.strerror})")]
    issues: list[Issue] = []
    if not raw.startswith(b"\xef\xbb\xbf"):
        issues.append(Issue(name, 0, "warning", "no UTF-8 BOM: Excel and WPS may show the Chinese text garbled"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return _empty(), [Issue(name, line, "error", "not UTF-8 (save it as 'CSV UTF-8')")]
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    frame, found = validate_records(header, enumerate(reader, 2), name, kind)
    return frame, issues + found


def validate_rows(rows: Sequence[dict[str, Any] | None], shown_as: str,
                  kind: str = "annotation") -> tuple[pd.DataFrame, list[Issue]]:
    """Validate rows held in memory exactly as `labels check` validates a file: row i is line i+2
    of `shown_as`; a `None` entry holds a line number without a row."""
    records = ((i + 2, [str(row.get(c) or "") for c in COLUMNS] if row is not None else [])
               for i, row in enumerate(rows))
    return validate_records(COLUMNS, records, shown_as, kind)


def validate_records(header: list[str], records: Iterable[tuple[int, list[str]]], name: str,
                     kind: str = "annotation") -> tuple[pd.DataFrame, list[Issue]]:
    """The one validator: (line, fields) records under `header` → valid rows and the issues found."""
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        return _empty(), [Issue(name, 1, "error", f"missing column(s): {', '.join(missing)} "
                                                  f"(expected {','.join(COLUMNS)})")]
    issues: list[Issue] = []
    if header[: len(COLUMNS)] != COLUMNS:
        issues.append(Issue(name, 1, "warning", f"columns out of the standard order {','.join(COLUMNS)}"))
    known = set(domain_ids())
    rows: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    seen_hashes: dict[str, int] = {}
    for lineno, fields in records:
        if not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            issues.append(Issue(name, lineno, "error", f"{len(fields)} fields, header has {len(header)}"))
            continue
        row = dict(zip(header, (f.strip() for f in fields)))
        bad = [f"empty '{c}'" for c in REQUIRED if not row.get(c)]
        ids = split_domains(row.get("domains", ""))
        for d in ids:
            if d not in known:
                hint = suggest_id(d)
                bad.append(f"unknown domain id '{d}'" + (f" (did you mean '{hint}'?)" if hint else ""))
        if len(ids) > MAX_DOMAINS:
            bad.append(f"{len(ids)} domain ids; at most {MAX_DOMAINS} (primary first)")
        if len(set(ids)) != len(ids):
            bad.append("the same id twice in 'domains'")
        computed = hash_text(row.get("text", ""))
        if row.get("text_hash") and row["text_hash"] != computed:
            bad.append(f"text_hash {row['text_hash']} does not match the text (expected {computed}); "
                       "was the text edited?")
        for key, seen, label in ((row.get("sent_id"), seen_ids, "sent_id"), (computed, seen_hashes, "text")):
            if key and key in seen:
                bad.append(f"duplicate row: same {label} as line {seen[key]}")
            elif key:
                seen[key] = lineno
        if bad:
            issues.extend(Issue(name, lineno, "error", msg) for msg in bad)
            continue
        rows.append({
            "sent_id": row.get("sent_id", ""), "text_hash": computed, "doc": row.get("doc", ""),
            "text": row["text"], "domains": ids, "annotator": row["annotator"], "note": row.get("note", ""),
            "updated_at": row.get("updated_at", ""), "source": row.get("source") or kind,
            "file": name, "line": lineno,
        })
    return (pd.DataFrame(rows) if rows else _empty()), issues


def hash_text(text: str) -> str:
    """The text hash of a label row's text (the same identity the segmenter gives a unit)."""
    return text_hash(fold([text])[0])


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS + ["source", "file", "line"])


def read_all(labels_dir: str | Path) -> tuple[dict[str, pd.DataFrame], list[Issue]]:
    """Every label file under labels_dir, by kind (annotation, adjudicated, codebook)."""
    frames, issues = {}, []
    for kind, paths in label_files(labels_dir).items():
        parts = []
        for path in paths:
            frame, found = read_label_file(path, kind)
            parts.append(frame)
            issues.extend(found)
        frames[kind] = pd.concat(parts, ignore_index=True) if parts else _empty()
    return frames, issues


def merge(annotations: pd.DataFrame, adjudicated: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the merge rule. Returns (merged labels of real text, unresolved conflicts)."""
    decided = {r.text_hash: r for r in adjudicated.itertuples()}
    merged, conflicts = [], []
    for h, group in annotations.groupby("text_hash", sort=False):
        first = group.iloc[0]
        annotators = sorted(set(group["annotator"]))
        if h in decided:
            r = decided[h]
            merged.append(_merged_row(first, r.domains, annotators, "adjudicated"))
            continue
        primaries = {d[0] for d in group["domains"]}
        if len(primaries) > 1:
            conflicts.append({"text_hash": h, "sent_id": first["sent_id"], "doc": first["doc"], "text": first["text"],
                              "labels": "; ".join(f"{a}={'|'.join(d)}" for a, d in zip(group["annotator"], group["domains"])),
                              "where": ", ".join(f"{f}:{ln}" for f, ln in zip(group["file"], group["line"]))})
            continue
        domains: list[str] = []
        for ids in group["domains"]:
            domains.extend(d for d in ids if d not in domains)
        merged.append(_merged_row(first, domains[:MAX_DOMAINS], annotators, "annotation"))
    return pd.DataFrame(merged, columns=MERGED_COLUMNS), pd.DataFrame(conflicts)


MERGED_COLUMNS = ["text_hash", "sent_id", "doc", "text", "domains", "primary", "annotators", "source"]


def _merged_row(first: pd.Series, domains: list[str], annotators: list[str], source: str) -> dict:
    return {"text_hash": first["text_hash"], "sent_id": first["sent_id"], "doc": first["doc"],
            "text": first["text"], "domains": list(domains), "primary": domains[0],
            "annotators": "|".join(annotators), "source": source}


def examples_table(examples: pd.DataFrame) -> pd.DataFrame:
    """Codebook examples in the merged shape; each is its own 'document' for grouping."""
    rows = [_merged_row(r, r["domains"], [r["annotator"]], EXAMPLE_SOURCE) for _, r in examples.iterrows()]
    return pd.DataFrame(rows, columns=MERGED_COLUMNS)


def check(labels_dir: str | Path, units: pd.DataFrame | None = None) -> tuple[list[Issue], pd.DataFrame]:
    """Validate every label file; with `units`, also flag annotation rows that match no unit (stale).

    Returns (issues, merged labels). Errors mean the files need fixing before training.
    """
    frames, issues = read_all(labels_dir)
    ann, adj = frames["annotation"], frames["adjudicated"]
    if units is not None and len(ann):
        current = set(units["text_hash"])
        for r in pd.concat([ann, adj]).itertuples():
            if r.text_hash not in current:
                issues.append(Issue(r.file, r.line, "error",
                                    f"stale: text of {r.sent_id or 'this row'} matches no unit of the corpus "
                                    "(re-segmented or edited?)"))
    if len(adj):
        labelled = set(ann["text_hash"])
        for r in adj.itertuples():
            if r.text_hash not in labelled:
                issues.append(Issue(r.file, r.line, "warning", "adjudicates a unit no annotation file labels"))
    merged, conflicts = merge(ann, adj)
    for c in conflicts.itertuples():
        issues.append(Issue(c.where.split(":")[0], int(c.where.split(", ")[0].rsplit(":", 1)[1]), "error",
                            f"conflicting labels for {c.sent_id} ({c.labels}) and no row in adjudicated.csv "
                            f"decides them (also at {c.where})"))
    return issues, merged


def load_labels(labels_dir: str | Path, include_examples: bool = True, units: pd.DataFrame | None = None,
                strict: bool = True) -> pd.DataFrame:
    """The single source of training truth: merged real-text labels, plus examples if asked.

    With ``strict`` any validation error raises, so nothing trains on files that fail `labels check`.
    """
    issues, merged = check(labels_dir, units)
    errors = [i for i in issues if i.level == "error"]
    if strict and errors:
        shown = "\n".join(str(e) for e in errors[:20])
        raise LabelError(f"{len(errors)} label error(s); run `policy-domains labels check`:\n{shown}")
    if include_examples:
        frames, _ = read_all(labels_dir)
        merged = pd.concat([merged, examples_table(frames["codebook"])], ignore_index=True)
    return merged




def labelled_texts(labels_dir: str | Path) -> pd.DataFrame:
    """text_hash and text of every row of every label file (annotations, adjudicated, examples)."""
    frames, _ = read_all(labels_dir)
    parts = [f[["text_hash", "text"]] for f in frames.values() if len(f)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["text_hash", "text"])


# ---------------------------------------------------------------- the training table

TRAIN_COLUMNS = ["text_hash", "doc", "index", "text", "heading", "domains", "primary", "source"]


def is_example(table: pd.DataFrame) -> pd.Series:
    """Rows that are team-written codebook examples (training only, never evaluated)."""
    return table["source"] == EXAMPLE_SOURCE


def split_examples(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled real report units, codebook examples) of a training table."""
    mask = is_example(table)
    return table[~mask], table[mask]


def training_table(labels_dir: str | Path, units: pd.DataFrame, include_examples: bool = True,
                   strict: bool = True) -> pd.DataFrame:
    """Labelled units joined to the context the model reads (heading, document, position);
    examples have no heading and are their own 'documents'."""
    merged = load_labels(labels_dir, include_examples=include_examples, units=units, strict=strict)
    context = units.drop_duplicates("text_hash").set_index("text_hash").reindex(columns=["heading", "doc", "index"])
    real, examples = (part.copy() for part in split_examples(merged))
    real["heading"] = real["text_hash"].map(context["heading"]).fillna("")
    real["doc"] = real["text_hash"].map(context["doc"]).fillna(real["doc"])
    real["index"] = real["text_hash"].map(context["index"])
    examples["heading"] = ""
    return pd.concat([real, examples], ignore_index=True)[TRAIN_COLUMNS]


# ---------------------------------------------------------------- writing rows

def check_annotator(name: str) -> str:
    """Annotator names become file names: letters, digits, '_', '.', '-' only."""
    name = name.strip()
    if not _ANNOTATOR.fullmatch(name) or name.startswith("."):
        raise LabelError(f"annotator name '{name}' must be letters, digits, '_', '.' or '-' (it names a file)")
    return name


def write_label_rows(path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str] = COLUMNS) -> Path:
    """Write a label-format CSV atomically, UTF-8 with BOM (so Excel/WPS show the Chinese correctly)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return Path(path)


def write_records(path: str | Path, header: list[str], records: Iterable[list[str]]) -> None:
    """Rewrite a CSV from raw records (a queue keeps its rows exactly as the annotator left them)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(records)


def append_label_rows(target: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append in the file's own column order, rewriting the whole file atomically (BOM kept/added)."""
    target = Path(target)
    if target.exists():
        raw = target.read_bytes().decode("utf-8-sig")
        header = [h.strip() for h in next(csv.reader(io.StringIO(raw)), [])] or COLUMNS
    else:
        raw, header = "", COLUMNS
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\r\n")
    if not raw:
        writer.writeheader()
    elif not raw.endswith(("\n", "\r")):
        buffer.write("\r\n")
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in header})
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"\xef\xbb\xbf" + (raw + buffer.getvalue()).encode("utf-8"))
