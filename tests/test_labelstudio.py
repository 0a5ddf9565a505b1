"""Label Studio exchange: the export is valid, a real-shaped export comes back as label files that pass check."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from pipeline import labels
from pipeline.errors import LabelError
from pipeline.ingest import fold
from pipeline.labelstudio import (annotator_name, export_tasks, import_export, label_config, read_export,
                                  write_import)
from pipeline.segment import text_hash
from pipeline.taxonomy import domain_ids, zh_names

FIXTURE = Path(__file__).parent / "data" / "labelstudio_export.json"

# The units behind the hand-written export fixture (sentences written for this test).
TOY_UNITS = [
    ("加快建设城市污水管网，提升污水收集处理能力。", "（三）持续改善生态环境"),
    ("新建普惠性幼儿园十所，增加学位三千个。", "（五）办好民生实事"),
    ("支持企业开展技术改造，推动传统产业提质增效。", "（一）做强实体经济"),
    ("各位代表，让我们团结一心、砥砺前行！", ""),
    ("完善农村供水保障体系，巩固脱贫攻坚成果。", "（四）全面推进乡村振兴"),
    ("深化“放管服”改革，优化营商环境。", "（二）深化改革开放"),
]


def toy_units() -> pd.DataFrame:
    texts = [t for t, _ in TOY_UNITS]
    return pd.DataFrame({"doc": "toy_ls", "sent_id": [f"toy_ls:{i}" for i in range(len(texts))], "text": texts,
                         "text_hash": [text_hash(f) for f in fold(texts)], "heading": [h for _, h in TOY_UNITS]})


class FixedModel:
    """Stands in for the classifier: always the same guess, so the test needs no training."""

    classes_ = np.array(domain_ids())

    def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
        proba = np.full((len(units), len(self.classes_)), 0.01)
        proba[:, list(self.classes_).index("ecology")] = 0.84
        return proba


def test_config_uses_documented_tags_and_every_id() -> None:
    root = ET.fromstring(label_config())
    assert root.tag == "View"
    text = root.find("Text")
    assert text.get("name") == "text" and text.get("value") == "$text"
    domains = root.find("Choices[@name='domains']")
    assert domains.get("toName") == "text" and domains.get("choice") == "multiple"
    values = [c.get("value") for c in domains.findall("Choice")]
    assert values == domain_ids()
    assert all(zh_names()[c.get("value")] in c.get("html") for c in domains.findall("Choice"))
    assert all(c.get("alias") is None for c in root.iter("Choice"))  # an alias would replace the id in results
    allowed = {"View", "Header", "Text", "Choices", "Choice"}
    assert {e.tag for e in root.iter()} <= allowed


def test_export_tasks_and_predictions(tmp_path: Path) -> None:
    tasks_path, config_path, n = export_tasks(toy_units(), tmp_path, FixedModel())
    tasks = json.loads(tasks_path.read_text(encoding="utf-8"))
    assert len(tasks) == n == len(TOY_UNITS) and config_path.exists()
    first = tasks[0]
    assert set(first["data"]) == {"text", "sent_id", "doc", "text_hash", "heading"}
    prediction = first["predictions"][0]
    assert prediction["score"] == pytest.approx(0.84)
    assert prediction["result"] == [{"from_name": "domains", "to_name": "text", "type": "choices",
                                     "value": {"choices": ["ecology"]}}]
    units = toy_units()
    plain, _, n = export_tasks(units, tmp_path / "plain", skip={units.loc[0, "text_hash"]})
    first = json.loads(plain.read_text(encoding="utf-8"))[0]
    assert "predictions" not in first and n == len(TOY_UNITS) - 1 and first["data"]["sent_id"] == "toy_ls:1"


def test_fixture_is_shaped_like_our_export(tmp_path: Path) -> None:
    """The hand-written export carries exactly the data our tasks.json would give Label Studio."""
    tasks_path, _, _ = export_tasks(toy_units(), tmp_path)
    exported = {t["data"]["sent_id"]: t["data"] for t in json.loads(tasks_path.read_text(encoding="utf-8"))}
    for task in read_export(FIXTURE):
        assert task["data"] == exported[task["data"]["sent_id"]]


def test_round_trip_import_passes_labels_check(tmp_path: Path) -> None:
    imported = import_export(FIXTURE)
    assert imported.cancelled == 1
    by = {(r["sent_id"], r["annotator"]): r for r in imported.rows}
    assert set(by) == {("toy_ls:0", "alice"), ("toy_ls:0", "ls_user_7"), ("toy_ls:1", "alice"),
                       ("toy_ls:3", "alice"), ("toy_ls:4", "alice")}
    assert by[("toy_ls:0", "alice")]["domains"] == "ecology|urban"  # the primary control puts ecology first
    assert by[("toy_ls:4", "alice")]["domains"] == "agriculture|urban"  # no primary answer: result order kept
    # four ids and an unknown id are reported with their task, and kept in the rejected file
    problems = "\n".join(str(i) for i in imported.issues)
    assert "task 103 annotation 9005" in problems and "at most 3" in problems
    assert "task 105 annotation 9008" in problems and "unknown domain id 'rural'" in problems
    assert len(imported.rejected) == 2

    annotations = tmp_path / "labels" / "annotations"
    written = write_import(imported, annotations, tmp_path / "export.rejected.csv")
    assert {p.name for p in written} == {"alice.ls.csv", "ls_user_7.ls.csv", "export.rejected.csv"}
    rejected = list(csv.DictReader((tmp_path / "export.rejected.csv").open(encoding="utf-8-sig")))
    assert {r["sent_id"] for r in rejected} == {"toy_ls:2", "toy_ls:4"} and "at most 3" in rejected[0]["note"]
    issues, merged = labels.check(tmp_path / "labels", toy_units())
    assert [str(i) for i in issues if i.level == "error"] == []
    assert merged.set_index("sent_id").loc["toy_ls:0", "domains"] == ["ecology", "urban"]
    assert len(merged) == 4


def test_single_file_refuses_two_annotators_of_one_unit(tmp_path: Path) -> None:
    imported = import_export(FIXTURE)
    with pytest.raises(LabelError, match="pass a folder"):
        write_import(imported, tmp_path / "out.csv", tmp_path / "rejected.csv")
    imported.rows = [r for r in imported.rows if r["annotator"] == "alice"]
    written = write_import(imported, tmp_path / "alice.csv", tmp_path / "rejected.csv")
    assert written[0].read_bytes().startswith(b"\xef\xbb\xbf")
    assert (tmp_path / "rejected.csv").exists()
    frame, issues = labels.read_label_file(tmp_path / "alice.csv")
    assert issues == [] and len(frame) == 4


def test_annotator_names() -> None:
    assert annotator_name({"id": 3, "email": "wang.li@example.org"}) == "wang.li"
    assert annotator_name(12) == "ls_user_12"
    assert annotator_name({"id": 5, "email": ""}) == "ls_user_5"


def test_json_min_export_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "min.json"
    path.write_text(json.dumps([{"data": {"text": "某句。"}, "domains": {"choices": ["economy"]}}]), encoding="utf-8")
    with pytest.raises(LabelError, match="'JSON' format"):
        read_export(path)
