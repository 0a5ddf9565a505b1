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


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("reports")
    (folder / f"{LONG_NAME}.txt").write_text(REPORT, encoding="utf-8")
    (folder / "縣政報告.txt").write_text("一、產業\n發展先進製造業集群。加強生態保護修復。\n", encoding="utf-8")
    out = folder / "result.jsonl"
    run_batch([folder], out, model_dir=tiny_model_dir)
    return out


@pytest.fixture(scope="module")
def report_dir(result: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_report(result, out)
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing  # a Han character drawn as an empty box
    return out


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
    assert {p.name for p in report_dir.iterdir()} >= {"report.html", "domain_shares.png", "heatmap.png"}
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:|//)|<script|<link""", page)  # opens offline
    assert "@font-face" in page and "base64," in page  # Chinese renders without system fonts
    assert LONG_NAME in page and "發展先進製造業集群。" in page  # original (traditional) text
    assert "class='s h'" in page  # headings reach the report
    tips = re.findall(r"data-tip='([^']*)'", page)
    assert len(tips) == 14 and all(re.search(r"\d\.\d\d", t) for t in tips)  # scores on hover
    for section in ("各文件主要政策领域", "各文件政策领域构成", "政策注意力热力图", "逐句标注"):
        assert section in page


def test_report_reads_every_output_format(result: Path, tmp_path: Path) -> None:
    import pandas as pd

    from pipeline.classify import format_chunk
    from pipeline.io import read_table, write_table

    frame = read_table(result)
    for suffix in (".csv", ".parquet"):
        write_table(format_chunk(frame, suffix, []), tmp_path / f"r{suffix}")
        again = load_result(tmp_path / f"r{suffix}")
        assert again["is_heading"].tolist() == frame["is_heading"].tolist()
        assert again["scores"].iloc[0] == pytest.approx(frame["scores"].iloc[0])
    pd.DataFrame({"x": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(UsageError, match="not a classification result"):
        load_result(tmp_path / "bad.csv")


def _chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "chrome"))), None)


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report_dir: Path, tmp_path: Path) -> None:
    from matplotlib import image

    shot = tmp_path / "report.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
                    (report_dir / "report.html").as_uri()], check=True, timeout=120, capture_output=True)
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (2000, 1280)
    colours = {tuple(c) for c in (pixels[::8, ::8] * 255).astype(int).reshape(-1, 3)}
    assert len(colours) > 50 and (pixels < 0.9).mean() > 0.02  # drawn, not a blank page
    shutil.copy(shot, report_dir / "screenshot.png")


def test_the_same_result_gives_the_same_page(tmp_path: Path, tiny_model_dir: Path) -> None:
    """No timestamps inside the report (the embedded font's included), so DVC sees no spurious change."""
    from pipeline.classify import run_batch
    from pipeline.report import build_report

    (tmp_path / "r.txt").write_text("加强生态保护修复。推进义务教育均衡发展。", encoding="utf-8")
    run_batch([tmp_path / "r.txt"], tmp_path / "out.jsonl", model_dir=tiny_model_dir)
    first = build_report(tmp_path / "out.jsonl", tmp_path / "a")["html"].read_bytes()
    time.sleep(1.1)
    assert build_report(tmp_path / "out.jsonl", tmp_path / "b")["html"].read_bytes() == first
