"""Ingestion: encodings, debris cleaning and the bad-input cases of the issue."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.ingest import IngestError, clean_text, is_traditional, read_source


def test_gb18030_and_utf16_and_bom_decode_to_same_text(tmp_path: Path) -> None:
    text = "推进长江生态保护修复。加快建设美丽乡村。"
    (tmp_path / "gb.txt").write_bytes(text.encode("gb18030"))
    (tmp_path / "u16.txt").write_bytes(text.encode("utf-16"))
    (tmp_path / "bom.txt").write_bytes(text.encode("utf-8-sig"))
    docs = [read_source(tmp_path / n) for n in ("gb.txt", "u16.txt", "bom.txt")]
    assert {d.text for d in docs} == {text}
    assert [d.meta["encoding"] for d in docs] == ["gb18030", "utf-16", "utf-8-sig"]


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"   \n\n", "empty"),
                                             (bytes(range(256)) * 20, "binary")])
def test_empty_and_binary_files_are_refused_with_the_file_name(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(IngestError, match=rf"bad.txt.*{reason}|{reason}.*bad.txt|bad.txt: .*"):
        read_source(path)


def test_missing_path_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="nope.txt: no such file"):
        read_source(tmp_path / "nope.txt")


def test_debris_is_removed_and_broken_lines_rejoined() -> None:
    raw = ("最新市级党代会工作报告-51篇(第63/322页)\n"
           "信息类别: 区政府文件 文件编号:某府发〔2022〕1号 公开方式: 主动公开\n"
           "# 政府工作报告\n"
           "(上接1版)中心城区PM<sub>2.5</sub>年均浓度下降。\n"
           "主要预期目标是:地区生产总值增长5.5%左右,规模以上工业增加值增长8.5%左右,固定资产投资增长6%左右,社会消费品零售总额\n\n"
           "增长6%左右。\n")
    cleaned = clean_text(raw).split("\n")
    assert cleaned[0] == "政府工作报告"
    assert cleaned[1] == "中心城区PM2.5年均浓度下降。"
    assert cleaned[2].endswith("社会消费品零售总额增长6%左右。")
    assert len(cleaned) == 3


def test_html_page_is_reduced_to_its_text(tmp_path: Path) -> None:
    page = ("<html><head><title>x</title><script>var a=1;</script></head><body>"
            "<p>加强生态保护。</p><div>推进&nbsp;乡村振兴。</div></body></html>")
    (tmp_path / "p.html").write_text(page, encoding="utf-8")
    doc = read_source(tmp_path / "p.html")
    assert "var a" not in doc.text and "加强生态保护。" in doc.text and "推进 乡村振兴。" in doc.text


def test_traditional_text_is_detected() -> None:
    assert is_traditional("政府工作報告。國務院總理在會議上發表講話，經濟發展與社會進步。")
    assert not is_traditional("政府工作报告。国务院总理在会议上发表讲话，经济发展与社会进步。")


def test_five_megabyte_line_without_punctuation_is_fast(tmp_path: Path) -> None:
    from pipeline.segment import segment_document

    path = tmp_path / "long.txt"
    path.write_text("发展" * 2_500_000, encoding="utf-8")
    start = time.perf_counter()
    units = segment_document(read_source(path))
    assert time.perf_counter() - start < 30
    assert units["text"].str.len().max() <= 500
    assert "".join(units["text"]) == "发展" * 2_500_000


def test_traditional_file_keeps_its_text_and_is_simplified_for_the_model(tmp_path: Path) -> None:
    from pipeline.segment import segment_document

    path = tmp_path / "trad.txt"
    path.write_text("政府工作報告。國務院總理在會議上發表講話，經濟發展與社會進步。", encoding="utf-8")
    doc = read_source(path)
    assert doc.traditional and doc.text.startswith("政府工作報告。")
    units = segment_document(doc)
    assert list(units["text"]) == ["政府工作報告。", "國務院總理在會議上發表講話，經濟發展與社會進步。"]
    assert units.loc[1, "text_norm"] == "国务院总理在会议上发表讲话,经济发展与社会进步。"


def test_big5_file_is_refused_rather_than_decoded_as_gb18030_mojibake(tmp_path: Path) -> None:
    path = tmp_path / "big5.txt"
    path.write_bytes("政府工作報告。國務院總理在會議上發表講話，經濟發展與社會進步。".encode("big5"))
    with pytest.raises(IngestError, match=r"big5\.txt: .*Big5"):
        read_source(path)


def test_docx_paragraphs_become_lines(tmp_path: Path) -> None:
    import docx

    from pipeline.segment import segment_document

    document = docx.Document()
    for paragraph in ("第一章 总体要求", "坚持稳中求进。推动高质量发展。", "(一)加强生态保护。"):
        document.add_paragraph(paragraph)
    document.save(str(tmp_path / "report.docx"))
    doc = read_source(tmp_path / "report.docx")
    assert doc.meta["encoding"] == "docx"
    assert doc.text.split("\n") == ["第一章 总体要求", "坚持稳中求进。推动高质量发展。", "(一)加强生态保护。"]
    units = segment_document(doc)
    assert list(units["text"]) == ["第一章 总体要求", "坚持稳中求进。", "推动高质量发展。", "(一)加强生态保护。"]
    assert units.loc[1, "heading"] == "第一章 总体要求"


def test_corrupt_docx_is_refused_with_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04 not really a zip archive")
    with pytest.raises(IngestError, match=r"broken\.docx: not a readable \.docx file"):
        read_source(path)


def test_cli_segments_the_good_files_of_a_mixed_directory_and_names_each_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline import cli
    from pipeline.io import read_table

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("加强生态保护。推进乡村振兴。", encoding="utf-8")
    (corpus / "gbk.txt").write_bytes("发展先进制造业。".encode("gb18030"))
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "binary.txt").write_bytes(bytes(range(256)) * 20)
    (corpus / "broken.docx").write_bytes(b"not a zip")
    monkeypatch.setattr(cli.out, "width", 10_000)  # rich would wrap long temporary paths
    out = tmp_path / "x.jsonl"
    result = CliRunner().invoke(cli.app, ["segment", str(corpus), str(tmp_path / "missing.txt"), "--out", str(out)])
    assert result.exit_code != 0
    for name, reason in [("empty.txt", "empty file"), ("binary.txt", "binary file"),
                         ("broken.docx", "not a readable .docx"), ("missing.txt", "no such file")]:
        assert any(name in line and reason in line for line in result.output.splitlines()), (name, result.output)
    units = read_table(out)
    assert sorted(set(units["doc"])) == ["gbk", "good"]
    assert list(units.loc[units["doc"] == "good", "text"]) == ["加强生态保护。", "推进乡村振兴。"]


def test_page_continuation_markers_are_removed_both_ways() -> None:
    raw = "(上接1版)加大未成年人关爱力度, (下转4版)\n（下转第3版）\n稳妥推进改革。"
    assert clean_text(raw) == "加大未成年人关爱力度,稳妥推进改革。"


def test_short_line_holding_a_clause_is_rejoined_but_short_headings_stay() -> None:
    raw = ("城市更新扎实推进，改造老旧小区86个，地铁2号线一期\n主体完工。\n"
           "第五章 人才驱动，释放创新动能\n加快引进人才。\n"
           "坚持生态优先\n推进污染防治。")
    assert clean_text(raw).split("\n") == ["城市更新扎实推进，改造老旧小区86个，地铁2号线一期主体完工。",
                                           "第五章 人才驱动，释放创新动能", "加快引进人才。",
                                           "坚持生态优先", "推进污染防治。"]
