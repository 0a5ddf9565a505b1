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

Label files are opened in spreadsheets, so cells are written formula-safe (`pipeline.io.sheet_safe`)
and read back without the protecting apostrophe; identifiers a spreadsheet converted (a text hash
turned into 1.79769313486232E+308, a unit id 1978:40 into the time 1978:40:00) are errors. Every
write to a label file holds an exclusive lock on it (`pipeline.io.locked`), so that two commands
appending to one annotator's file both keep their rows.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd

from pipeline.errors import LabelError
from pipeline.ingest import decode_bytes, fold
from pipeline.io import atomic_path, csv_records, file_error, locked, read_bytes, sheet_safe, sheet_value
from pipeline.segment import text_hash
from pipeline.taxonomy import domain_ids, suggest_id

COLUMNS = ["sent_id", "text_hash", "doc", "text", "domains", "annotator", "note", "updated_at"]
OPTIONAL_COLUMNS = ["source"]
REQUIRED = ["text", "domains", "annotator"]
MAX_DOMAINS = 3
EXAMPLE_SOURCE = "codebook"
_ANNOTATOR = re.compile(r"[\w.-]+")
_HASH = re.compile(r"[0-9a-f]{16}")
# What a spreadsheet makes of an identifier it took for a number, a date or a time.
_CONVERTED = re.compile(r"[+-]?\d+(?:[.,]\d+)?[Ee][+-]?\d+|\d+:\d{2}:\d{2}(?:[.,]\d+)?(?: ?[AP]M)?"
                        r"|\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}(?: \d{1,2}:\d{2}(?::\d{2})?)?")


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


def _csv_files(folder: Path) -> list[Path]:
    """The label files of a folder: every ``.csv`` whatever the case of its suffix (``wang.CSV``),
    except hidden files and the ``~$`` owner files Excel and WPS leave while a file is open."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".csv" and not p.name.startswith((".", "~$")))


def label_folders(labels_dir: str | Path) -> list[Path]:
    """The folders where every CSV is read as a label file (nothing else may be written there)."""
    root = Path(labels_dir)
    return [root / "annotations", root / "examples"]


def label_files(labels_dir: str | Path) -> dict[str, list[Path]]:
    root = Path(labels_dir)
    adjudicated = root / "adjudicated.csv"
    annotations, examples = label_folders(root)
    return {
        "annotation": _csv_files(annotations),
        "adjudicated": [adjudicated] if adjudicated.exists() else [],
        "codebook": _csv_files(examples),
    }


def ignored_files(labels_dir: str | Path) -> list[Path]:
    """Files in the label folders that are not read as label files (a spreadsheet saved as .xlsx)."""
    found = []
    for folder in label_folders(labels_dir):
        if folder.is_dir():
            found += [p for p in sorted(folder.iterdir()) if p.suffix.lower() != ".csv"
                      and not p.name.startswith((".", "~$"))]
    return found


def read_csv_records(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (row, fields) records of a CSV a person edited (a queue, an annotator's file),
    numbered as a spreadsheet numbers its rows. Whatever encoding a spreadsheet saved it in (UTF-8
    with or without BOM, GB18030/GBK, UTF-16) and whatever delimiter (comma, tab); anything that
    would lose rows is a `LabelError` naming file and row (see `pipeline.io.csv_records`)."""
    name = str(path)
    text, _ = decode_bytes(read_bytes(path, error=LabelError), name)
    return csv_records(text, name, LabelError)


def read_label_file(path: str | Path, kind: str = "annotation") -> tuple[pd.DataFrame, list[Issue]]:
    """Parse and validate one label file. Rows with errors are dropped from the returned frame."""
    path = Path(path)
    name = str(path)
    try:
        raw = read_bytes(path, error=LabelError)
    except LabelError as exc:
        return _empty(), [Issue(name, 0, "error", exc.reason)]  # type: ignore[attr-defined]
    issues: list[Issue] = []
    if not raw.startswith(b"\xef\xbb\xbf"):
        issues.append(Issue(name, 0, "warning", "no UTF-8 BOM: Excel and WPS may show the Chinese text garbled"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return _empty(), [Issue(name, line, "error", "not UTF-8 (save it as 'CSV UTF-8')")]
    try:
        header, records = csv_records(text, name, LabelError)
    except LabelError as exc:
        return _empty(), issues + [Issue(name, exc.line, "error", exc.reason)]  # type: ignore[attr-defined]
    frame, found = validate_records(header, ((line, [sheet_value(f) for f in fields]) for line, fields in records),
                                    name, kind)
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
        bad += identifier_problems(row)
        if row.get("text_hash") and _HASH.fullmatch(row["text_hash"]) and row["text_hash"] != computed:
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


def identifier_problems(row: dict[str, str]) -> list[str]:
    """What a spreadsheet did to a row's identifiers: a text hash is 16 hexadecimal digits, and a
    unit id never reads as a number in E notation, a date or a time."""
    problems = []
    value = row.get("text_hash") or ""
    if value and not _HASH.fullmatch(value):
        problems.append(f"text_hash '{value}' is not a text hash (16 hexadecimal digits): a spreadsheet turned it "
                        "into a number? Copy the row again from the original, or empty the cell")
    value = row.get("sent_id") or ""
    if value and _CONVERTED.fullmatch(value):
        problems.append(f"sent_id '{value}' looks converted by a spreadsheet into a number, date or time; copy it "
                        "again from the original")
    return problems


def hash_text(text: str) -> str:
    """The text hash of a label row's text (the same identity the segmenter gives a unit)."""
    return text_hash(fold([text])[0])


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=COLUMNS + ["source", "file", "line"])


def read_all(labels_dir: str | Path) -> tuple[dict[str, pd.DataFrame], list[Issue]]:
    """Every label file under labels_dir, by kind (annotation, adjudicated, codebook)."""
    frames: dict[str, pd.DataFrame] = {}
    issues = [Issue(str(p), 0, "warning", "ignored: label files are .csv (save it as 'CSV UTF-8')")
              for p in ignored_files(labels_dir)]
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
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise LabelError(f"{errors[0]}{more}; `policy-domains labels check` lists every label error")
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


def _cell(value: Any) -> Any:
    return "" if value is None else sheet_safe(value)


def write_label_rows(path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str] = COLUMNS,
                     cell: Callable[[str, Any], Any] = lambda column, value: _cell(value)) -> Path:
    """Write a label-format CSV atomically under the file's lock, UTF-8 with BOM (so Excel/WPS show
    the Chinese correctly), each cell made spreadsheet-safe by `cell(column, value)`."""
    with locked(path), atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: cell(c, row.get(c)) for c in columns})
    return Path(path)


def write_records(path: str | Path, header: list[str], records: Iterable[list[str]]) -> None:
    """Rewrite a CSV from records (a queue keeps its rows as the annotator left them), under its lock."""
    with locked(path), atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8-sig", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(records)


def read_annotator_file(target: str | Path) -> tuple[str, list[str], list[tuple[int, list[str]]]]:
    """Text, header and records of an annotator's file, refusing one that rows cannot be appended to
    without loss: a header missing a column (the labels would not be written) or repeating one, a
    quote left open (it would swallow the new rows), an encoding or size it cannot be read in."""
    name = str(target)
    data = read_bytes(target, error=LabelError)
    if not data.strip():
        return "", COLUMNS, []
    text, _ = decode_bytes(data, name)
    text = text.lstrip("\ufeff")
    header, records = csv_records(text, name, LabelError)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise file_error(LabelError, name, f"the header lacks {', '.join(missing)} (it has {','.join(header)}): rows "
                         f"added to it would lose those values; fix the header to {','.join(COLUMNS)} first", 1)
    return text, header, records


def append_label_rows(target: str | Path, rows: list[dict[str, Any]]) -> None:
    """Append in the file's own column order, rewriting the whole file atomically (BOM kept/added).

    The exclusive lock is held from reading the file to replacing it, so concurrent appends queue
    up instead of overwriting each other's rows."""
    target = Path(target)
    with locked(target):
        if target.exists():
            raw, header, _ = read_annotator_file(target)
        else:
            raw, header = "", COLUMNS
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\r\n")
        if not raw:
            writer.writeheader()
        elif not raw.endswith(("\n", "\r")):
            buffer.write("\r\n")
        for row in rows:
            writer.writerow({c: _cell(row.get(c, "")) for c in header})
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"\xef\xbb\xbf" + (raw + buffer.getvalue()).encode("utf-8"))
