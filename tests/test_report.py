"""Report: charts render Chinese, the HTML is self-contained and readable in a real browser."""
from __future__ import annotations

import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

from pipeline import charts
from pipeline.errors import UsageError
from pipeline.classify import run_batch
from pipeline.report import build_report, load_result

LONG_NAME = "2024年某市人民政府工作报告（在市第十七届人民代表大会第三次会议上）"
REPORT = ("各位代表：\n现在报告工作。\n一、生态环境\n加强生态保护修复，治理大气污染。推进河湖治理与生态修复。\n"
          "二、产业发展\n发展先进制造业集群。推动工业转型升级。\n三、教育\n办好人民满意的教育。提高教师待遇。\n")


YEARS = {LONG_NAME: 2021, "縣政報告": 2023, "第三份报告": 2024}  # 2022 is missing: a gap, not a line


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from pipeline.enrich import BatchOptions
    from pipeline.metadata import MetadataTable

    folder = tmp_path_factory.mktemp("reports")
    (folder / f"{LONG_NAME}.txt").write_text(REPORT, encoding="utf-8")
    (folder / "縣政報告.txt").write_text("一、產業\n發展先進製造業集群。加強生態保護修復。\n", encoding="utf-8")
    (folder / "第三份报告.txt").write_text("办好人民满意的教育。治理大气污染。谢谢大家。\n", encoding="utf-8")
    (folder / "meta.csv").write_text("doc,year,level\n" + "".join(f"{d},{y},city\n" for d, y in YEARS.items()),
                                     encoding="utf-8")
    out = folder / "result.jsonl"
    run_batch([folder / f"{d}.txt" for d in YEARS], out, model_dir=tiny_model_dir,
              options=BatchOptions(metadata=MetadataTable(folder / "meta.csv")))
    return out


@pytest.fixture(scope="module")
def report_dir(result: Path, tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("report")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_report(result, out, model_dir=tiny_model_dir)
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing  # a Han character drawn as an empty box
    return out


def _doc_pages(report_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted((report_dir / "docs").glob("*.html"))}


def test_cjk_font_has_han_glyphs_without_fallback() -> None:
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    family = charts.cjk_font()
    found = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    assert Path(found) == charts.cjk_font_path()
    font = FT2Font(found)
    assert all(font.get_char_index(ord(ch)) for ch in "政策领域热力图縣報告")


def test_chart_with_chinese_raises_no_glyph_warning(tmp_path: Path) -> None:
    import pandas as pd

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*missing from font.*")
        charts.heatmap(pd.DataFrame({"生态环境与绿色低碳": [40.0], "教育": [60.0]}, index=["縣政報告"]),
                       "政策注意力热力图", tmp_path / "h.png", colorbar="句子占比 %")
    assert (tmp_path / "h.png").stat().st_size > 5000


def test_report_files_and_content(report_dir: Path) -> None:
    assert {p.name for p in report_dir.iterdir()} >= {"report.html", "domain_shares.png", "heatmap.png", "docs",
                                                      "assets", "compare"}
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    pages = _doc_pages(report_dir)
    for html_text in [page, *pages.values()]:
        assert not re.search(r"""(src|href)=["']?(https?:|//)|<script|<link""", html_text)  # opens offline
    assert "url(assets/cjk.woff)" in page and all("url(../assets/cjk.woff)" in p for p in pages.values())
    assert LONG_NAME in page and "發展先進製造業集群。" not in page  # the overview carries no sentences
    for section in ("模型来源与可信度", "按 year 比较", "各文件主要政策领域", "各文件政策内容的领域构成", "政策注意力热力图"):
        assert section in page
    links = re.findall(r"href='(docs/[^']+\.html)'", page)
    assert len(set(links)) == 3 and all((report_dir / link).exists() for link in links)
    text = "".join(pages.values())
    assert "發展先進製造業集群。" in text  # original (traditional) text, on its document's page
    assert "class='s d-" in text and re.search(r"class='s d-\w+ h", text)  # tinted by domain; headings reach it
    tips = re.findall(r"data-tip='([^']*)'", text)
    assert len(tips) == 14 + 3 and all(re.search(r"\d\.\d\d", t) for t in tips)  # every unit, scores on hover
    assert all("← 返回总览" in p and "领域占比" in p for p in pages.values())


def test_one_shared_font_holds_every_character_of_every_page(report_dir: Path) -> None:
    from fontTools.ttLib import TTFont

    text = (report_dir / "report.html").read_text(encoding="utf-8") + "".join(_doc_pages(report_dir).values())
    han = {ch for ch in text if "\u3400" <= ch <= "\u9fff"}
    cmap = TTFont(str(report_dir / "assets" / "cjk.woff")).getBestCmap()
    assert han and all(ord(ch) in cmap for ch in han)
    assert len(list((report_dir / "assets").iterdir())) == 1  # one font file, not one per page


def test_comparison_by_year_has_gaps_and_its_files(report_dir: Path) -> None:
    import pandas as pd

    table = pd.read_csv(report_dir / "compare" / "shares_by_year.csv")
    assert sorted(table["group"].unique()) == [2021, 2023, 2024]
    assert (table["documents"] == 1).all() and (table["low"] <= table["share"] + 1e-9).all()
    assert (report_dir / "compare" / "small_multiples.png").exists()
    assert (report_dir / "compare" / "difference_2021_vs_2024.png").exists()
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert "src='compare/small_multiples.png'" in page and "缺少的年份留空" in page


def test_provenance_names_the_model(report_dir: Path, tiny_model_dir: Path, result: Path, tmp_path: Path) -> None:
    sha = (tiny_model_dir / "model.sha256").read_text(encoding="utf-8").split()[0]
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert sha in page and "训练时间" in page
    again = build_report(result, tmp_path / "r", model_dir=tiny_model_dir, reproducible=True)["html"]
    assert sha in again.read_text(encoding="utf-8") and "训练时间" not in again.read_text(encoding="utf-8")


def test_overview_grows_with_documents_not_sentences(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The 47 national reports must give an overview of a few hundred KB: it holds no sentence, so
    forty times the sentences leave its size nearly unchanged."""
    sizes = []
    for repeat in (1, 40):
        folder = tmp_path / f"in{repeat}"
        folder.mkdir()
        for i in range(12):
            (folder / f"报告{i:02d}.txt").write_text(REPORT * repeat, encoding="utf-8")
        run_batch([folder], tmp_path / f"r{repeat}.parquet", model_dir=tiny_model_dir)
        paths = build_report(tmp_path / f"r{repeat}.parquet", tmp_path / f"out{repeat}", model_dir=tiny_model_dir)
        sizes.append(paths["html"].stat().st_size)
        assert len(list(paths["docs"].glob("*.html"))) == 12
    assert sizes[1] < 1.1 * sizes[0] and sizes[0] < 100_000


def test_report_reads_every_output_format(result: Path, tmp_path: Path) -> None:
    import pandas as pd

    from pipeline.classify import format_chunk
    from pipeline.io import read_table, write_table

    frame = read_table(result)
    for suffix in (".csv", ".parquet"):
        write_table(format_chunk(frame, suffix, ["year", "level"]), tmp_path / f"r{suffix}")
        again = load_result(tmp_path / f"r{suffix}")
        assert again["is_heading"].tolist() == frame["is_heading"].tolist()
        assert again["scores"].iloc[0] == pytest.approx(frame["scores"].iloc[0])
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UsageError, match="not a classification result"):
        load_result(tmp_path / "bad.csv")


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome"))), None)


def _screenshot(page: Path, shot: Path, profile: Path) -> "object":
    from matplotlib import image

    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1280,2000",
                    page.as_uri()], check=True, timeout=120, capture_output=True)
    return image.imread(shot)[..., :3]


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    import numpy as np

    pixels = _screenshot(report_dir / "report.html", tmp_path / "report.png", tmp_path / "profile")
    assert pixels.shape[:2] == (2000, 1280)
    colours = {tuple(c) for c in (pixels[::8, ::8] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50 and (pixels < 0.9).mean() > 0.02  # drawn, not a blank page
    shutil.copy(tmp_path / "report.png", report_dir / "screenshot.png")
    # a document page draws its Chinese with the shared font file: without it the glyphs change
    doc = next(iter(sorted((report_dir / "docs").glob("*.html"))))
    with_font = _screenshot(doc, tmp_path / "doc.png", tmp_path / "profile")
    assert (with_font < 0.9).mean() > 0.01
    broken = doc.with_name("no-font.html")
    broken.write_text(doc.read_text(encoding="utf-8").replace("cjk.woff", "missing.woff"), encoding="utf-8")
    try:
        without = _screenshot(broken, tmp_path / "nofont.png", tmp_path / "profile")
    finally:
        broken.unlink()
    assert not np.array_equal(with_font, without)


def test_the_same_result_gives_the_same_page(tmp_path: Path, tiny_model_dir: Path) -> None:
    """No timestamps inside the report (the embedded font's included), so DVC sees no spurious change."""
    from pipeline.classify import run_batch
    from pipeline.report import build_report

    (tmp_path / "r.txt").write_text("加强生态保护修复。推进义务教育均衡发展。", encoding="utf-8")
    run_batch([tmp_path / "r.txt"], tmp_path / "out.jsonl", model_dir=tiny_model_dir)
    first = build_report(tmp_path / "out.jsonl", tmp_path / "a", model_dir=tiny_model_dir)
    time.sleep(1.1)
    second = build_report(tmp_path / "out.jsonl", tmp_path / "b", model_dir=tiny_model_dir)
    for key in ("html", "font"):
        assert second[key].read_bytes() == first[key].read_bytes(), key
    assert [p.read_bytes() for p in sorted(second["docs"].iterdir())] == \
        [p.read_bytes() for p in sorted(first["docs"].iterdir())]
