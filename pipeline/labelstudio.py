"""Exchange units and labels with Label Studio, for teams who prefer its web interface to a spreadsheet.

`export_tasks` writes ``tasks.json`` (Label Studio's task import format, optionally with the model's
guess as "predictions" pre-annotations) and ``config.xml`` (a labelling config built only from
documented tags: Text, Choices/Choice, Header, View). `import_export` reads the project's "JSON"
export back into label-file rows, one per (non-cancelled) annotation, and runs them through the
`labels check` rules; rows that fail are returned separately, never silently dropped.

Label Studio records a multiple-choice answer in its own (config) order, not in the order the
boxes were ticked, so the config has a second, single-choice control ``primary``: when an
annotator ticks more than one domain, the one chosen there goes first. Without it the first id
in the result counts as primary, as in a label file.

An export is data from outside: user names become file names only after they are reduced to
letters, digits, '_', '.' and '-' (never a path), and what is written stays inside the folder asked
for; existing files are replaced only with ``force``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd

from pipeline.errors import LabelError, UsageError
from pipeline.ingest import decode_bytes
from pipeline.io import check_output, read_bytes, write_text
from pipeline.labels import Issue, check_annotator, validate_rows, write_label_rows
from pipeline.taxonomy import load_taxonomy

FROM_NAME = "domains"
PRIMARY_NAME = "primary"
TO_NAME = "text"
MODEL_VERSION = "policy-domains"
EXPORT_FILES = ("tasks.json", "config.xml")


def label_config() -> str:
    """The labelling config: the unit, its heading for context, 17 checkboxes and a primary picker."""
    view = ET.Element("View")
    ET.SubElement(view, "Header", value="$heading", size="6")
    ET.SubElement(view, "Text", name=TO_NAME, value="$text")
    ET.SubElement(view, "Header", value="政策领域 Domains (1-3; primary = the main one)", size="5")
    choices = ET.SubElement(view, "Choices", name=FROM_NAME, toName=TO_NAME, choice="multiple",
                            showInline="true", required="true")
    ET.SubElement(view, "Header", value="主要领域 Primary (only when you ticked more than one)", size="5")
    primary = ET.SubElement(view, "Choices", name=PRIMARY_NAME, toName=TO_NAME, choice="single-radio",
                            showInline="true")
    for d in load_taxonomy():
        # value (the id) is what the export holds; html only changes what the annotator sees
        for parent in (choices, primary):
            ET.SubElement(parent, "Choice", value=d.id, html=f"{d.zh}（{d.id}）",
                          hint=d.scope)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def _choice_result(name: str, ids: list[str]) -> dict[str, Any]:
    return {"from_name": name, "to_name": TO_NAME, "type": "choices", "value": {"choices": ids}}


def tasks(units: pd.DataFrame, proba: np.ndarray | None = None, ids: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Label Studio tasks for units; with `proba`, the model's top domain as a pre-annotation."""
    out = []
    for k, u in enumerate(units.itertuples(index=False)):
        task: dict[str, Any] = {"id": k + 1, "data": {
            "text": str(u.text), "sent_id": str(u.sent_id), "doc": str(u.doc), "text_hash": str(u.text_hash),
            "heading": "" if pd.isna(u.heading) else str(u.heading)}}
        if proba is not None:
            best = int(proba[k].argmax())
            task["predictions"] = [{"model_version": MODEL_VERSION, "score": round(float(proba[k, best]), 4),
                                    "result": [_choice_result(FROM_NAME, [ids[best]])]}]
        out.append(task)
    return out


def export_tasks(units: pd.DataFrame, out_dir: str | Path, model: Any = None,
                 skip: set[str] | frozenset[str] = frozenset()) -> tuple[Path, Path, int]:
    """Write DIR/tasks.json and DIR/config.xml for the units whose text hash is not in `skip`.

    Predictions are made on all units first (in document order: the model may read neighbours),
    then repeated and skipped units are left out. Returns both paths and the number of tasks.
    """
    out_dir = Path(out_dir)
    units = units.reset_index(drop=True)
    proba = model.predict_proba(units) if model is not None and len(units) else None
    keep = (~units["text_hash"].isin(skip) & ~units["text_hash"].duplicated()).to_numpy()
    units, proba = units[keep], (proba[keep] if proba is not None else None)
    payload = tasks(units, proba, list(model.classes_) if model is not None else [])
    tasks_path, config_path = (out_dir / name for name in EXPORT_FILES)
    write_text(tasks_path, json.dumps(payload, ensure_ascii=False, indent=1))
    write_text(config_path, label_config())
    return tasks_path, config_path, len(payload)


# ---------------------------------------------------------------- import

@dataclass
class Imported:
    """Rows that pass `labels check` rules, rows that do not (with a note why), and the findings."""

    rows: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    issues: list[Issue] = field(default_factory=list)
    cancelled: int = 0


MAX_NAME = 64


def _safe_name(value: Any, fallback: str) -> str:
    """`value` reduced to a file-name-safe annotator name (no '/', no leading dot, at most MAX_NAME)."""
    name = re.sub(r"[^\w.-]", "_", str(value))[:MAX_NAME].strip("._-")
    return name or fallback


def annotator_name(completed_by: Any) -> str:
    """The Label Studio user as an annotator name: the e-mail's local part, else ``ls_user_<id>``.

    Whatever the export holds (``../../x``, ``a/b``, an object), the result is a plain name that
    `labels.check_annotator` accepts: it becomes a file name."""
    if isinstance(completed_by, dict):
        email = str(completed_by.get("email") or "")
        if email:
            return check_annotator(_safe_name(email.split("@")[0], "user"))
        completed_by = completed_by.get("id")
    return check_annotator(f"ls_user_{_safe_name(completed_by, 'unknown') if completed_by not in (None, '') else 'unknown'}")


def _chosen(result: list[dict[str, Any]]) -> list[str]:
    """Domain ids of one annotation: the `domains` answer, with the `primary` answer moved first."""
    ids: list[str] = []
    primary: list[str] = []
    for item in result if isinstance(result, list) else []:
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict) or item.get("type") != "choices":
            continue
        choices = value.get("choices")
        values = [str(v) for v in choices] if isinstance(choices, list) else []
        if item.get("from_name") == FROM_NAME:
            ids.extend(v for v in values if v not in ids)
        elif item.get("from_name") == PRIMARY_NAME:
            primary = values[:1]
    return primary + [d for d in ids if d not in primary]


def read_export(path: str | Path) -> list[dict[str, Any]]:
    """The tasks of a Label Studio "JSON" export (a list of tasks with "data" and "annotations")."""
    path = Path(path)
    text, _ = decode_bytes(read_bytes(path, error=LabelError), str(path))
    try:
        payload = json.loads(text.lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    except RecursionError:
        raise LabelError(f"{path}: JSON nested too deeply to be a Label Studio export") from None
    if isinstance(payload, dict):
        payload = [payload]
    if not isinstance(payload, list) or any(not isinstance(t, dict) or not isinstance(t.get("data"), dict)
                                            for t in payload):
        raise LabelError(f"{path}: expected Label Studio's 'JSON' export: a list of tasks with 'data'")
    if payload and all("annotations" not in t for t in payload):
        raise LabelError(f"{path}: no 'annotations' in any task; export with the 'JSON' format "
                         "(not JSON-MIN or CSV)")
    for k, task in enumerate(payload):
        annotations = task.get("annotations") or []
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            raise LabelError(f"{path}: task {task.get('id', k + 1)}: 'annotations' is not a list of annotations; "
                             "export again with the 'JSON' format")
    return payload


def import_export(path: str | Path) -> Imported:
    """Label-file rows from a Label Studio export, validated by the `labels check` rules.

    One row per annotation that was not cancelled. An annotation with no domain, more than three,
    an unknown id, or a unit its annotator already labelled in another task is rejected and reported
    with its task and annotation ids.
    """
    shown = str(path)
    candidates: list[dict[str, Any]] = []
    where: list[str] = []
    issues: list[Issue] = []
    cancelled = 0
    for task in read_export(path):
        data = task.get("data") or {}
        for ann in task.get("annotations") or []:
            if ann.get("was_cancelled"):
                cancelled += 1
                continue
            ids = _chosen(ann.get("result") or [])
            label = f"task {task.get('id')} annotation {ann.get('id')}"
            candidates.append({
                "sent_id": str(data.get("sent_id") or ""), "doc": str(data.get("doc") or ""),
                "text": str(data.get("text") or ""), "domains": "|".join(ids),
                "annotator": annotator_name(ann.get("completed_by")),
                "note": f"Label Studio {label}",
                "updated_at": str(ann.get("updated_at") or ann.get("created_at") or ""),
            })
            where.append(label)
    # validate per annotator: a label file holds one annotator's rows, and duplicate texts within one
    # annotator are errors, while two annotators labelling the same unit is the point of double coding
    valid_rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for name in dict.fromkeys(r["annotator"] for r in candidates):
        mine = [i for i, r in enumerate(candidates) if r["annotator"] == name]
        frame, found = validate_rows([candidates[i] for i in mine], f"{shown} ({name})")
        bad: dict[int, list[str]] = {}
        for issue in found:
            if issue.level == "error" and issue.line < 2:
                issues.append(Issue(shown, 0, "error", issue.message))
            elif issue.level == "error":
                k = mine[issue.line - 2]
                bad.setdefault(k, []).append(issue.message)
                issues.append(Issue(shown, 0, "error", f"{where[k]} ({name}): {issue.message}"))
        hashes = {mine[line - 2]: h for line, h in zip(frame["line"], frame["text_hash"])}
        for k in mine:
            row = dict(candidates[k])
            if k in hashes and k not in bad:
                valid_rows.append({**row, "text_hash": hashes[k]})
            else:
                rejected.append({**row, "note": f"{row['note']}: {'; '.join(bad.get(k, ['invalid']))}"})
    return Imported(valid_rows, rejected, issues, cancelled)


def write_import(imported: Imported, out: str | Path, rejects: str | Path, force: bool = False,
                 inputs: Sequence[str | Path] = ()) -> list[Path]:
    """Write the imported rows: one label file, or one ``<annotator>.ls.csv`` per annotator in a folder.

    A single file can hold only one row per unit, so several annotators of the same unit need a
    folder (the layout of ``labels/annotations/``). Rejected rows go to `rejects`, which should lie
    outside ``labels/`` (every CSV there is read as a label file); with nothing rejected it is left
    alone. Every file is checked before any is written: none may be one of `inputs` (the export),
    lie outside `out`, or exist already unless `force`.
    """
    out, rejects = Path(out), Path(rejects)
    plan: list[tuple[Path, list[dict[str, Any]]]] = []
    if out.suffix.lower() == ".csv" and not out.is_dir():
        texts: dict[str, str] = {}
        for r in imported.rows:
            other = texts.setdefault(r["text_hash"], r["annotator"])
            if other != r["annotator"]:
                raise LabelError(f"{r['sent_id'] or r['text'][:20]} was labelled by {other} and {r['annotator']}: "
                                 "one label file holds one row per unit; pass a folder as --out to get one "
                                 "file per annotator")
        plan.append((out, imported.rows))
    else:
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out}: --out is a file but not a .csv; give a .csv file or a folder")
        for name in dict.fromkeys(r["annotator"] for r in imported.rows):
            target = out / f"{check_annotator(name)}.ls.csv"
            if target.resolve().parent != out.resolve():
                raise LabelError(f"{target}: annotator name '{name}' would write outside {out}")
            plan.append((target, [r for r in imported.rows if r["annotator"] == name]))
    if imported.rejected:
        plan.append((rejects, imported.rejected))
    if len({p.resolve() for p, _ in plan}) < len(plan):
        raise UsageError(f"{rejects}: --rejected is also where the labels go; give it another name")
    for target, _ in plan:
        check_output(target, force, inputs, "--rejected" if target is rejects else "--out")
    return [write_label_rows(target, rows) for target, rows in plan]


__all__ = ["label_config", "tasks", "export_tasks", "read_export", "import_export", "write_import",
           "annotator_name", "Imported"]
