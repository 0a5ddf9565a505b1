"""The annotation loop: suggest picks informative, new, varied units; accept moves only finished valid rows;
audit finds a planted wrong label. Every sentence here was written for these tests."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_labels
from pipeline import annotate, audit, labels
from pipeline.errors import LabelError
from pipeline.ingest import fold
from pipeline.labels import COLUMNS
from pipeline.model import build_estimator, save_model
from pipeline.segment import text_hash
from pipeline.taxonomy import domain_ids

PARAMS = {"classifier": "svm", "C": 4.0, "class_weight": "balanced", "char_ngram_min": 1, "char_ngram_max": 2,
          "char_features": 2 ** 14, "word_features": False, "heading_features": False, "calibration": "none",
          "seed": 0, "use_examples": False}

SENTENCES = {
    "ecology": ["加强生态保护修复。", "治理大气污染。", "推进河湖治理与生态修复。", "打好蓝天保卫战。",
                "开展土壤污染防治。", "推进垃圾分类和污水处理。"],
    "industry": ["发展先进制造业集群。", "壮大制造业产业链。", "培育新兴产业集群。", "推动工业转型升级。",
                 "推进制造业数字化改造。", "做强汽车产业链。"],
    "education": ["办好人民满意的教育。", "推进义务教育均衡发展。", "加强高校学科建设。", "提高教师待遇。",
                  "扩大普惠性学前教育。", "发展职业教育。"],
}


def units_frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    """(doc, text) pairs as a units frame like the segment stage writes."""
    docs, texts = [d for d, _ in rows], [t for _, t in rows]
    index = pd.Series(docs).groupby(docs).cumcount().tolist()
    return pd.DataFrame({"doc": docs, "sent_id": [f"{d}:{i}" for d, i in zip(docs, index)], "index": index,
                         "text": texts, "text_hash": [text_hash(f) for f in fold(texts)], "heading": ""})


class TableModel:
    """A stand-in classifier whose probabilities are set per text, to test selection exactly."""

    classes_ = np.array(domain_ids())

    def __init__(self, guesses: dict[str, tuple[str, float]]) -> None:
        self.guesses = guesses

    def predict_proba(self, units: pd.DataFrame) -> np.ndarray:
        self.seen = units["text"].tolist()
        proba = np.zeros((len(units), len(self.classes_)))
        for k, text in enumerate(units["text"]):
            domain, p = self.guesses[text]
            proba[k] = (1 - p) / (len(self.classes_) - 1)
            proba[k, list(self.classes_).index(domain)] = p
        return proba


@pytest.fixture(scope="module")
def tiny_model():
    rows = [(t, d) for d, ts in SENTENCES.items() for t in ts]
    frame = pd.DataFrame(rows, columns=["text", "primary"]).assign(heading="")
    return build_estimator(PARAMS).fit(frame, frame["primary"])


NO_LABELS = pd.DataFrame(columns=["text_hash", "text"])


# ---------------------------------------------------------------- suggest

def test_suggest_skips_labelled_and_duplicate_units(tmp_path: Path, tiny_model, label_row) -> None:
    write_labels(tmp_path / "annotations" / "a.csv", [label_row("加快发展现代服务业。", "industry")])
    write_labels(tmp_path / "examples" / "e.csv", [label_row("建设美丽乡村。", "agriculture")])
    pool = units_frame([("d1", "加快发展现代服务业。"),         # labelled
                        ("d1", "加快发展现代服务业！"),         # near-identical to a labelled unit
                        ("d1", "建设美丽乡村。"),               # a codebook example
                        ("d1", "稳步推进城市更新行动。"),
                        ("d2", "稳步推进城市更新行动。"),       # the same text in another document
                        ("d2", "完善公共法律服务体系。"),
                        ("d2", "提升基层社会治理水平。")])
    result = annotate.suggest(pool, tiny_model, labels.labelled_texts(tmp_path), n=10)
    queue = result.queue
    assert sorted(queue["text"]) == sorted(["稳步推进城市更新行动。", "完善公共法律服务体系。", "提升基层社会治理水平。"])
    assert result.skipped_labelled == 3 and result.skipped_duplicates == 1
    assert (queue["domains"] == "").all() and (queue["annotator"] == "").all()
    assert set(queue["suggested"]) <= set(domain_ids())
    assert list(queue.columns) == COLUMNS + ["suggested", "confidence", "heading"]


def test_near_duplicates_inside_the_pool_are_picked_once() -> None:
    text = "全面推进城镇老旧小区改造，完善社区养老托育等配套设施"
    pool = units_frame([("d1", text + "。"), ("d2", text + "！"), ("d3", "加强粮食生产能力建设。")])
    model = TableModel({text + "。": ("urban", 0.2), text + "！": ("urban", 0.21), "加强粮食生产能力建设。": ("agriculture", 0.9)})
    queue = annotate.suggest(pool, model, NO_LABELS, n=3).queue
    assert len(queue) == 2 and queue["doc"].tolist() == ["d1", "d3"]
    assert model.seen == pool["text"].tolist()  # the whole pool, in order: the model may read neighbours


def test_suggest_spreads_over_domains_and_documents() -> None:
    rows, guesses = [], {}
    for i in range(6):  # doc A: the six most uncertain units, all guessed 'ecology'
        text = f"甲文件第{i}句关于环境的表述{'一二三四五六'[i]}。"
        rows.append(("A", text))
        guesses[text] = ("ecology", 0.20 + i / 100)
    for i, domain in enumerate(["industry", "education", "health"] * 2):  # doc B: others, a little surer
        text = f"乙文件第{i}句{domain}相关的内容{'七八九十百千'[i]}。"
        rows.append(("B", text))
        guesses[text] = (domain, 0.40 + i / 100)
    pool = units_frame(rows)
    model = TableModel(guesses)
    by_domain = annotate.suggest(pool, model, NO_LABELS, n=4, max_per_doc=4).queue
    assert by_domain["suggested"].nunique() == 4  # pure uncertainty would give four 'ecology' units
    assert by_domain["confidence"].iloc[0] == pytest.approx(0.20)  # the most uncertain unit leads
    queue = annotate.suggest(pool, model, NO_LABELS, n=4).queue  # default cap: an even share per document
    assert queue["doc"].value_counts().to_dict() == {"A": 2, "B": 2} and queue["suggested"].nunique() == 3
    margin = annotate.uncertainty_scores(np.array([[0.5, 0.45, 0.05], [0.4, 0.3, 0.3]]), "margin")
    assert margin[0] > margin[1]  # a 0.05 gap is less sure than a 0.1 gap, though its top is higher


def test_diverse_picks_from_different_clusters() -> None:
    water = ["加强黄河流域水污染治理。", "加强长江流域水污染治理。", "加强珠江流域水污染治理。", "加强淮河流域水污染治理。"]
    school = ["推进县域高中教育振兴。", "推进县域初中教育振兴。", "推进县域小学教育振兴。", "推进县域幼儿教育振兴。"]
    guesses = {t: ("other", 0.30 - i / 100) for i, t in enumerate(water)}
    guesses.update({t: ("other", 0.25 - i / 100) for i, t in enumerate(school)})
    pool = units_frame([("d", t) for t in water + school])
    plain = annotate.suggest(pool, TableModel(guesses), NO_LABELS, n=2, threshold=0.99).queue
    diverse = annotate.suggest(pool, TableModel(guesses), NO_LABELS, n=2, strategy="diverse", threshold=0.99).queue
    assert set(plain["text"]) <= set(school)  # the two most uncertain units say nearly the same thing
    assert {t in water for t in diverse["text"]} == {True, False}


def test_cli_suggest_then_accept(tmp_path: Path, tiny_model) -> None:
    from pipeline.cli import app

    model_dir = tmp_path / "model"
    save_model(tiny_model, model_dir)
    report = tmp_path / "pool" / "toy_report.txt"
    report.parent.mkdir()
    report.write_text("一、环境\n加强湿地保护修复。推进工业园区污染治理。\n二、教育\n扩大优质高中教育资源。\n",
                      encoding="utf-8")
    labels_dir = tmp_path / "labels"
    write_labels(labels_dir / "annotations" / "other.csv", [
        {"text": "加强湿地保护修复。", "domains": "ecology", "annotator": "other"}])
    queue = tmp_path / "queue.csv"
    runner = CliRunner()
    result = runner.invoke(app, ["suggest", "--pool", str(report.parent), "--n", "3", "--out", str(queue),
                                 "--model", str(model_dir), "--labels-dir", str(labels_dir)])
    assert result.exit_code == 0, result.output
    assert queue.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(queue.open(encoding="utf-8-sig")))
    assert "加强湿地保护修复。" not in {r["text"] for r in rows} and all(r["domains"] == "" for r in rows)
    rows[0]["domains"] = rows[0]["suggested"]
    with open(queue, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    again = runner.invoke(app, ["suggest", "--pool", str(report.parent), "--n", "3", "--out", str(queue),
                                "--model", str(model_dir), "--labels-dir", str(labels_dir)])
    assert again.exit_code == 1 and "completed row" in again.output  # would overwrite finished work
    accepted = runner.invoke(app, ["labels", "accept", str(queue), "--annotator", "wang", "--labels-dir",
                                   str(labels_dir)])
    assert accepted.exit_code == 0, accepted.output
    assert len(list(csv.DictReader(queue.open(encoding="utf-8-sig")))) == len(rows) - 1


# ---------------------------------------------------------------- accept

def write_queue(path: Path, rows: list[dict]) -> Path:
    return write_labels(path, rows, columns=annotate.QUEUE_COLUMNS)


def test_accept_moves_complete_valid_rows_only(tmp_path: Path) -> None:
    labels_dir = tmp_path / "labels"
    queue = write_queue(tmp_path / "queue.csv", [
        {"sent_id": "r:1", "doc": "r", "text": "推进污水管网建设。", "domains": "urban|ecology", "suggested": "urban",
         "confidence": "0.41", "heading": "（二）城市建设"},
        {"sent_id": "r:2", "doc": "r", "text": "稳定粮食播种面积。", "domains": "", "suggested": "agriculture"},
        {"sent_id": "r:3", "doc": "r", "text": "加强森林防火。", "domains": "ecolgy", "suggested": "ecology"},
        {"sent_id": "r:4", "doc": "r", "text": "一句话四个领域。", "domains": "economy|industry|urban|risk"},
    ])
    result = annotate.accept(queue, "wang", labels_dir, now="2026-11-24")
    assert (result.moved, result.kept) == (1, 3)
    messages = [str(i) for i in result.issues]
    assert any(m.startswith(f"{queue}:4:") and "did you mean 'ecology'" in m for m in messages)
    assert any(m.startswith(f"{queue}:5:") and "at most 3" in m for m in messages)

    target = labels_dir / "annotations" / "wang.csv"
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    moved = list(csv.DictReader(target.open(encoding="utf-8-sig")))
    assert list(moved[0]) == COLUMNS  # suggested, confidence and heading are dropped
    assert moved[0]["annotator"] == "wang" and moved[0]["updated_at"] == "2026-11-24"
    assert moved[0]["text_hash"] == text_hash(fold(["推进污水管网建设。"])[0])
    assert moved[0]["domains"] == "urban|ecology"
    left = annotate.read_queue(queue)  # the values, without the apostrophes that keep a spreadsheet off them
    assert [r["sent_id"] for r in left] == ["r:2", "r:3", "r:4"] and "suggested" in left[0]

    # fix one row and accept again: it is appended under the same header
    left[1]["domains"] = "ecology"
    write_queue(queue, left)
    second = annotate.accept(queue, "wang", labels_dir, now="2026-11-25")
    assert second.moved == 1 and second.kept == 2
    text = target.read_text(encoding="utf-8-sig")
    assert text.count("sent_id,text_hash") == 1 and "加强森林防火" in text
    issues, merged = labels.check(labels_dir)
    assert [str(i) for i in issues if i.level == "error"] == [] and len(merged) == 2


def test_accept_refuses_a_unit_already_in_the_annotators_file(tmp_path: Path) -> None:
    labels_dir = tmp_path / "labels"
    write_labels(labels_dir / "annotations" / "wang.csv", [
        {"text": "推进污水管网建设。", "domains": "urban", "annotator": "wang"}])
    queue = write_queue(tmp_path / "q.csv", [{"sent_id": "r:1", "text": "推进污水管网建设。", "domains": "ecology"}])
    result = annotate.accept(queue, "wang", labels_dir)
    assert result.moved == 0 and result.kept == 1
    assert any("wang.csv:2" in str(i) for i in result.issues)


def test_accept_rejects_unsafe_annotator_names(tmp_path: Path) -> None:
    queue = write_queue(tmp_path / "q.csv", [])
    with pytest.raises(LabelError, match="names a file"):
        annotate.accept(queue, "../evil", tmp_path)


# ---------------------------------------------------------------- audit

def test_audit_ranks_a_planted_wrong_label_first(tmp_path: Path) -> None:
    rows, units = [], []
    for doc, part in (("docA", slice(0, 3)), ("docB", slice(3, 6))):
        for domain, texts in SENTENCES.items():
            for k, text in enumerate(texts[part]):
                rows.append({"sent_id": f"{doc}:{domain}{k}", "doc": doc, "text": text, "annotator": "t",
                             "domains": domain})
                units.append((doc, text))
    wrong = "推进河湖治理与生态修复。"  # clearly ecology: labelled as education on purpose
    for r in rows:
        if r["text"] == wrong:
            r["domains"] = "education"
    labels_dir = tmp_path / "labels"
    write_labels(labels_dir / "annotations" / "t.csv", rows)
    before = (labels_dir / "annotations" / "t.csv").read_bytes()
    queue = audit.audit(labels_dir, units_frame(units), PARAMS)
    assert queue.iloc[0]["text"] == wrong and queue.iloc[0]["rank"] == 1
    assert queue.iloc[0]["given"] == "education" and queue.iloc[0]["suggestion"] == "ecology"
    assert queue.iloc[0]["label_quality"] == queue["label_quality"].min()
    assert (labels_dir / "annotations" / "t.csv").read_bytes() == before  # audit never edits labels
    out = audit.write_audit(queue, tmp_path / "audit.csv")
    assert list(pd.read_csv(out, encoding="utf-8-sig").columns) == audit.AUDIT_COLUMNS
