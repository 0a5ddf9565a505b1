"""Segmentation: boundaries, headings, ids and the spaCy component agreeing with the core."""
from __future__ import annotations

from pipeline.ingest import Document
from pipeline.segment import SegmentParams, build_nlp, iter_units, segment_document

TEXT = ("(六)坚持生态优先、绿色发展,全面筑牢长江生态屏障。毫不动摇推进“十年禁渔”。\n"
        "第五章 人才驱动,释放创新发展新动能\n"
        "一是多措并举稳增长。PM2.5浓度下降3.2%，5G基站新增1200个！他说:“要抓落实。”下一句?\n")


def test_boundaries_closers_and_numbers() -> None:
    units = [u.text for u in iter_units(TEXT)]
    assert units == ["(六)坚持生态优先、绿色发展,全面筑牢长江生态屏障。", "毫不动摇推进“十年禁渔”。",
                     "第五章 人才驱动,释放创新发展新动能", "一是多措并举稳增长。",
                     "PM2.5浓度下降3.2%，5G基站新增1200个！", "他说:“要抓落实。”", "下一句?"]


def test_clause_units_also_cut_at_semicolons() -> None:
    units = [u.text for u in iter_units("甲乙丙；丁戊己。", SegmentParams(clause_units=True))]
    assert units == ["甲乙丙；", "丁戊己。"]


def test_headings_and_context() -> None:
    frame = segment_document(Document("d", "d.txt", TEXT))
    assert frame.loc[0, "is_heading"] and frame.loc[2, "is_heading"] and frame.loc[3, "is_heading"]
    assert frame.loc[1, "heading"].startswith("(六)")
    assert frame.loc[4, "heading"] == "一是多措并举稳增长。"
    assert list(frame["sent_id"][:2]) == ["d:0", "d:1"]
    assert frame["text_hash"].str.len().eq(16).all()


def test_same_text_gets_same_hash_whatever_the_width() -> None:
    a = segment_document(Document("a", "a", "加快发展，推进改革。"))
    b = segment_document(Document("b", "b", "加快发展,推进改革。"))
    assert a.loc[0, "text_hash"] == b.loc[0, "text_hash"]


def test_spacy_component_matches_the_core() -> None:
    nlp = build_nlp()
    doc = nlp(TEXT.replace("\n", ""))
    core = [u.text for u in iter_units(TEXT.replace("\n", ""))]
    assert [s.text.strip() for s in doc.sents] == core
