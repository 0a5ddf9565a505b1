"""Shared fixtures: small documents and label files written by the team for the tests."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.labels import COLUMNS


def write_labels(path: Path, rows: list[dict], bom: bool = True, columns: list[str] = COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


@pytest.fixture
def label_row():
    def make(text: str, domains: str, annotator: str = "tester", sent_id: str = "") -> dict:
        return {"sent_id": sent_id, "doc": "d", "text": text, "domains": domains, "annotator": annotator,
                "updated_at": "2026-11-23"}
    return make
