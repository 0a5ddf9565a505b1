"""Segmentation: boundaries, headings, ids, the spaCy component agreeing with the core, and the CLI's output."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import cli
from pipeline import segment as segment_module
from pipeline.ingest import Document, Source
from pipeline.io import read_table
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


def _write_corpus(folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.txt").write_text("第一章 总体要求\n坚持稳中求进工作总基调,完整准确全面贯彻新发展理念。推动高质量发展。\n",
                                  encoding="utf-8")
    (folder / "b.txt").write_text("加强生态保护。", encoding="utf-8")
    return folder


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_cli_segment_writes_the_format_of_the_extension(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"units{suffix}"
    result = CliRunner().invoke(cli.app, ["segment", str(_write_corpus(tmp_path / "in")), "--out", str(out)])
    assert result.exit_code == 0, result.output
    units = read_table(out)
    assert {"doc", "sent_id", "index", "text", "text_hash", "heading"} <= set(units.columns)
    assert list(units["sent_id"]) == ["a:0", "a:1", "a:2", "b:0"]
    assert list(units["text"]) == ["第一章 总体要求", "坚持稳中求进工作总基调,完整准确全面贯彻新发展理念。", "推动高质量发展。",
                                  "加强生态保护。"]
    assert list(units["heading"].fillna("")) == ["", "第一章 总体要求", "第一章 总体要求", ""]
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [out.name]  # no temporary file left


def test_cli_segment_leaves_no_partial_output_when_it_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = segment_module.segment_source
    calls: list[str] = []

    def fail_on_second_file(source: Source, params: SegmentParams | None = None) -> pd.DataFrame:
        calls.append(source.doc_id)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(source, params)

    monkeypatch.setattr(segment_module, "segment_source", fail_on_second_file)
    out = tmp_path / "units.jsonl"
    out.write_text("previous run\n", encoding="utf-8")
    result = CliRunner().invoke(cli.app, ["segment", str(_write_corpus(tmp_path / "in")), "--out", str(out), "--force"])
    assert result.exit_code != 0 and isinstance(result.exception, RuntimeError)
    assert calls == ["a", "b"]  # the first file's units had been written to the temporary file
    assert out.read_text(encoding="utf-8") == "previous run\n"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [out.name]


def test_outputs_get_the_usual_file_mode(tmp_path) -> None:
    import os

    from pipeline.io import write_text

    write_text(tmp_path / "out.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o666 & ~mask
