"""Documents with metadata: document tables in every format, the metadata file joined by id and by
path, warnings for what matches nothing, and metadata in sentence rows and the summary."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.io import read_table

runner = CliRunner()
REPORTS = {  # made-up reports, one a row
    "r2019": (2019, "北京", "一、生态环境\n加强生态保护修复，治理大气污染。\n二、教育\n办好人民满意的教育。"),
    "r2021": (2021, "上海", "发展先进制造业集群。推动工业转型升级。谢谢大家。"),
    "r2022": (2022, "北京", "提高教师待遇。推进义务教育均衡发展。"),
}


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output.replace("\n", "")


def write_table(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        pd.DataFrame(rows).to_parquet(path)
    return path


def corpus_rows(id_key: str = "doc", text_key: str = "text") -> list[dict]:
    return [{id_key: doc, "year": year, "place": place, text_key: text} for doc, (year, place, text) in REPORTS.items()]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_document_tables_in_every_format(suffix: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    table = write_table(tmp_path / f"corpus{suffix}", corpus_rows())
    code, output = run("classify", table, "--documents", "--out", tmp_path / "o.parquet", "--summary",
                       tmp_path / "s.csv", "--model", tiny_model_dir)
    assert code == 0, output
    assert "from 3 document(s)" in output
    rows = read_table(tmp_path / "o.parquet")
    assert list(pd.unique(rows["doc"])) == ["r2019", "r2021", "r2022"]
    assert rows.loc[rows["doc"] == "r2019", "is_heading"].iloc[0]  # segmented like a report: headings found
    assert set(rows.loc[rows["doc"] == "r2021", "place"]) == {"上海"}  # metadata in every sentence row
    summary = read_table(tmp_path / "s.csv").set_index("doc")
    assert summary.loc["r2022", "year"] == 2022 and summary.loc["r2019", "place"] == "北京"
    assert summary.loc["r2019", "sentences"] == len(rows[rows["doc"] == "r2019"])


def test_text_and_id_columns_are_configurable_and_ids_default_to_file_and_row(tmp_path: Path,
                                                                            tiny_model_dir: Path) -> None:
    table = write_table(tmp_path / "c.jsonl", corpus_rows(id_key="code", text_key="body"))
    code, _ = run("classify", table, "--documents", "--text-column", "body", "--id-column", "code", "--out",
                  tmp_path / "o.jsonl", "--model", tiny_model_dir)
    assert code == 0 and set(read_table(tmp_path / "o.jsonl")["doc"]) == set(REPORTS)
    table = write_table(tmp_path / "plain.jsonl", [{"text": t, "year": y} for y, _, t in REPORTS.values()])
    code, _ = run("classify", table, "--documents", "--out", tmp_path / "p.jsonl", "--model", tiny_model_dir)
    assert code == 0 and list(pd.unique(read_table(tmp_path / "p.jsonl")["doc"])) == ["plain:1", "plain:2", "plain:3"]
    code, output = run("classify", table, "--text-column", "body", "--out", tmp_path / "x.jsonl")
    assert code == 1 and "add --documents" in output


def test_a_row_without_text_fails_alone(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = corpus_rows()
    rows.insert(1, {"doc": "blank", "year": 2020, "place": "北京", "text": "  "})
    rows.append({"doc": "r2019", "year": 2023, "place": "北京", "text": "谢谢大家。"})
    table = write_table(tmp_path / "c.jsonl", rows)
    code, output = run("classify", table, "--documents", "--out", tmp_path / "o.jsonl", "--model", tiny_model_dir)
    assert code == 1
    assert f"{table}: line 2: no text in column 'text'" in output
    assert f"{table}: line 5: document id 'r2019' again (first at line 1)" in output
    assert set(read_table(tmp_path / "o.jsonl")["doc"]) == set(REPORTS)  # the rest went on


def test_a_report_in_one_csv_cell_longer_than_the_csv_field_limit(tmp_path: Path, tiny_model_dir: Path) -> None:
    long_text = "加强生态保护修复，治理大气污染。" * 12000  # ~190,000 characters
    table = write_table(tmp_path / "long.csv", [{"doc": "long", "text": long_text}])
    code, output = run("classify", table, "--documents", "--out", tmp_path / "o.parquet", "--model", tiny_model_dir)
    assert code == 0, output
    assert len(read_table(tmp_path / "o.parquet")) == 12000


def _files(tmp_path: Path) -> Path:
    folder = tmp_path / "reports"
    folder.mkdir()
    for doc, (_, _, text) in REPORTS.items():
        (folder / f"{doc}.txt").write_text(text, encoding="utf-8")
    return folder


def test_meta_joins_by_doc_and_warns_both_ways(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = _files(tmp_path)
    (tmp_path / "meta.csv").write_text("doc,year,level\nr2019,2019,city\nr2021,2021,province\nr1999,1999,city\n",
                                       encoding="utf-8")
    code, output = run("classify", folder, "--meta", tmp_path / "meta.csv", "--out", tmp_path / "o.csv",
                       "--summary", tmp_path / "s.parquet", "--model", tiny_model_dir)
    assert code == 0
    assert f"{tmp_path / 'meta.csv'}:4: doc 'r1999' matches no classified document" in output
    assert "document 'r2022'" in output and "has no row in" in output
    rows = read_table(tmp_path / "o.csv")
    assert set(rows.loc[rows["doc"] == "r2021", "level"]) == {"province"}
    assert rows.loc[rows["doc"] == "r2022", "level"].isna().all()  # same columns for every row of the batch
    summary = read_table(tmp_path / "s.parquet").set_index("doc")
    assert summary.loc["r2019", "year"] == 2019 and pd.isna(summary.loc["r2022", "year"])
    assert str(summary["year"].dtype) == "Int64"


def test_meta_joins_by_path_relative_to_the_metadata_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = _files(tmp_path)
    (folder / "meta.jsonl").write_text(
        "".join(json.dumps({"path": f"{doc}.txt", "year": year}) + "\n" for doc, (year, _, _) in REPORTS.items()),
        encoding="utf-8")
    code, output = run("classify", *(folder / f"{d}.txt" for d in REPORTS), "--meta", folder / "meta.jsonl",
                       "--out", tmp_path / "o.jsonl", "--summary", tmp_path / "s.csv", "--model", tiny_model_dir)
    assert code == 0 and "warning" not in output
    assert dict(read_table(tmp_path / "s.csv")[["doc", "year"]].values) == {d: y for d, (y, _, _) in REPORTS.items()}


def test_metadata_file_overrides_a_table_and_says_so(tmp_path: Path, tiny_model_dir: Path) -> None:
    table = write_table(tmp_path / "c.csv", corpus_rows())
    (tmp_path / "meta.csv").write_text("doc,year\nr2021,2020\n", encoding="utf-8")
    code, output = run("classify", table, "--documents", "--meta", tmp_path / "meta.csv", "--out",
                       tmp_path / "o.jsonl", "--summary", tmp_path / "s.csv", "--model", tiny_model_dir)
    assert code == 0 and "year is '2021' in its table and '2020'" in output
    assert read_table(tmp_path / "s.csv").set_index("doc").loc["r2021", "year"] == 2020


def test_metadata_may_not_overwrite_output_columns(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = _files(tmp_path)
    (tmp_path / "meta.csv").write_text("doc,domain,share_economy\nr2019,x,1\n", encoding="utf-8")
    code, output = run("classify", folder, "--meta", tmp_path / "meta.csv", "--out", tmp_path / "o.jsonl",
                       "--model", tiny_model_dir)
    assert code == 1 and "domain, share_economy would overwrite output columns" in output
    (tmp_path / "bad.csv").write_text("name,year\nx,2020\n", encoding="utf-8")
    code, output = run("classify", folder, "--meta", tmp_path / "bad.csv", "--out", tmp_path / "o.jsonl")
    assert code == 1 and "needs a 'doc' (document id) or 'path'" in output
    (tmp_path / "dup.csv").write_text("doc,year\nr2019,2019\nr2019,2020\n", encoding="utf-8")
    code, output = run("classify", folder, "--meta", tmp_path / "dup.csv", "--out", tmp_path / "o.jsonl")
    assert code == 1 and "dup.csv:3: doc 'r2019' already has metadata at line 2" in output
