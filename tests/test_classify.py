"""Batch classification: nothing lost, bad files reported, formats, pass-through, --jobs, API."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import pipeline
from pipeline import classify as cl
from pipeline import segment
from pipeline.cli import app
from pipeline.io import read_table
from pipeline.taxonomy import domain_ids

REPORT = ("一、生态环境\n加强生态保护修复，治理大气污染。推进河湖治理与生态修复。\n"
          "二、产业发展\n发展先进制造业集群。推动工业转型升级。办好人民满意的教育。\n")
TRADITIONAL = "各位代表：\n現在報告工作。加強生態保護修復。發展先進製造業集群。\n"
runner = CliRunner()


def units_in(path: Path) -> int:
    from pipeline.ingest import read_source
    from pipeline.segment import segment_source

    return len(segment_source(read_source(path)))


def classify(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(app, ["classify", *map(str, args)])
    return result.exit_code, result.output  # as printed: a message split over lines would not match


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """A folder with a good report, a GB18030 traditional one, an empty file and a binary one."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.txt").write_text(REPORT, encoding="utf-8")
    (folder / "trad.txt").write_bytes(TRADITIONAL.encode("gb18030"))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blob.txt").write_bytes(bytes(range(256)) * 8)
    return folder


def test_bad_files_reported_rest_classified(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    code, output = classify(batch, "--out", tmp_path / "o.jsonl", "--model", tiny_model_dir)
    assert code == 1
    assert "empty.txt: empty file" in output and "blob.txt: binary file" in output
    rows = read_table(tmp_path / "o.jsonl")
    assert set(rows["doc"]) == {"good", "trad"}
    assert len(rows) == units_in(batch / "good.txt") + units_in(batch / "trad.txt") == 11  # nothing lost
    assert list(rows.columns[:len(cl.OUTPUT_COLUMNS)]) == cl.OUTPUT_COLUMNS
    assert rows["domain"].isin(domain_ids()).all()
    assert all(sorted(s) == sorted(domain_ids()) for s in rows["scores"])
    good = rows[rows["doc"] == "good"]
    assert good["heading"].iloc[1] == "一、生态环境" and good["is_heading"].iloc[0]


def test_traditional_gb18030_text_kept_as_written(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    classify(batch / "trad.txt", "--out", tmp_path / "o.jsonl", "--model", tiny_model_dir)
    rows = read_table(tmp_path / "o.jsonl")
    assert list(rows["text"]) == ["各位代表：", "現在報告工作。", "加強生態保護修復。", "發展先進製造業集群。"]
    assert rows["domain"].iloc[2] == "ecology" and rows["domain"].iloc[3] == "industry"


def test_input_without_sentences_fails_and_leaves_no_output(tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "blank.txt").write_text(" \n\u3000\n", encoding="utf-8")
    (tmp_path / "none.jsonl").write_text("\n", encoding="utf-8")
    code, output = classify(tmp_path / "blank.txt", tmp_path / "none.jsonl", "--out", tmp_path / "o.csv",
                            "--model", tiny_model_dir)
    assert code == 1 and "blank.txt" in output and "none.jsonl" in output
    assert not (tmp_path / "o.csv").exists()  # an empty table would look like a result


def test_failing_run_leaves_no_output(batch: Path, tmp_path: Path, tiny_model_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cl, "format_chunk", boom)
    with pytest.raises(RuntimeError):
        cl.run_batch([batch], tmp_path / "o.parquet", tmp_path / "s.csv", tiny_model_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_sentence_tables_pass_columns_through(suffix: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [{"id": 7, "text": "提高教师待遇。", "source": "网站"}, {"id": 8, "text": "打好藍天保衛戰。", "source": "网站"}]
    table = tmp_path / f"sents{suffix}"
    if suffix == ".jsonl":
        table.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_csv(table, index=False)
    code, _ = classify(table, tmp_path / "report.txt", "--out", tmp_path / "o.jsonl", "--model", tiny_model_dir)
    assert code == 1  # report.txt does not exist: reported, the table is still classified
    out = read_table(tmp_path / "o.jsonl")
    assert list(out["text"]) == ["提高教师待遇。", "打好藍天保衛戰。"]  # as given, traditional kept
    assert list(out["id"].astype(int)) == [7, 8] and list(out["source"]) == ["网站", "网站"]
    assert list(out["heading"]) == ["", ""] and list(out["domain"]) == ["education", "ecology"]


def test_tables_are_read_once_and_columns_keep_input_order(tmp_path: Path, tiny_model_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-scan for pass-through columns hands the first table over instead of reading it twice;
    later tables are read again (one table in memory at a time), and columns keep the input order."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps({"text": "提高教师待遇。", "id": 1}, ensure_ascii=False) + "\n", encoding="utf-8")
    second.write_text(json.dumps({"note": "x", "text": "打好蓝天保卫战。"}, ensure_ascii=False) + "\n", encoding="utf-8")
    reads: list[str] = []
    real = cl.read_source
    for module in (cl, segment):  # the scan's reader and the classifying one
        monkeypatch.setattr(module, "read_source", lambda path, *a, **k: reads.append(Path(path).name) or real(path, *a, **k))
    cl.run_batch([first], tmp_path / "one.parquet", model_dir=tiny_model_dir)
    assert reads == ["a.jsonl"]
    reads.clear()
    cl.run_batch([first, second], tmp_path / "two.parquet", model_dir=tiny_model_dir)
    assert sorted(reads) == ["a.jsonl", "b.jsonl", "b.jsonl"]
    out = read_table(tmp_path / "two.parquet")
    assert list(out.columns[-2:]) == ["id", "note"] and list(out["doc"]) == ["a", "b"]


def test_missing_values_are_json_null(tmp_path: Path, tiny_model_dir: Path) -> None:
    """In .jsonl output a value that is missing (a CAP code for `party` or `other`, a pass-through
    column a row lacks) is null: never NaN (not JSON), never the text "<NA>"."""
    table = tmp_path / "t.jsonl"
    rows = [{"text": "提高教师待遇。", "note": "a"}, {"text": "坚持党的全面领导。"}, {"text": "谢谢大家。", "note": None}]
    table.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "o.jsonl"
    code, output = classify(table, "--cap", "--out", out, "--model", tiny_model_dir)
    assert code == 0, output

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in JSON output")

    got = [json.loads(line, parse_constant=no_constants) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["note"] for r in got] == ["a", None, None]
    codes = {r["domain"]: r["cap_code"] for r in got}
    assert all((code is None) == (domain in ("party", "other")) for domain, code in codes.items()), codes
    assert all(code is None or isinstance(code, int) for code in codes.values())


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_output_formats_hold_the_same_rows(suffix: str, batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    """A batch mixing a report and a table with extra columns: every format keeps every column."""
    (batch / "t.jsonl").write_text('{"id": "x1", "text": "提高教师待遇。", "meta": {"page": 3}}\n', encoding="utf-8")
    out = tmp_path / f"o{suffix}"
    classify(batch, "--out", out, "--model", tiny_model_dir)
    rows = read_table(out)
    assert len(rows) == 12 and list(rows.columns) == cl.OUTPUT_COLUMNS + ["id", "meta"]
    table_row = rows[rows["doc"] == "t"].iloc[0]
    assert table_row["id"] == "x1" and table_row["text"] == "提高教师待遇。"
    assert pd.isna(rows["id"].iloc[0])
    from pipeline.report import load_result

    again = load_result(out)
    assert again["scores"].iloc[0].keys() == set(domain_ids()) and again["is_heading"].iloc[0]


def test_jobs_2_gives_the_rows_of_jobs_1(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    (batch / "more.txt").write_text("发展先进制造业集群。\n提高教师待遇。\n", encoding="utf-8")
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"o{jobs}.jsonl"
        code, output = classify(batch, "--out", out, "--model", tiny_model_dir, "--jobs", jobs)
        assert code == 1 and "empty.txt" in output
        outs.append(out.read_text(encoding="utf-8"))
    assert outs[0] == outs[1] and outs[0].count("\n") == 13


def test_summary_shares_sum_to_one(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    classify(batch, "--out", tmp_path / "o.jsonl", "--summary", tmp_path / "s.csv", "--model", tiny_model_dir)
    summary = read_table(tmp_path / "s.csv").set_index("doc")
    assert list(summary.index) == ["good", "trad"] and list(summary["sentences"]) == [7, 4]
    policy = [d for d in domain_ids() if d != "other"]
    assert "share_other" not in summary  # policy shares leave `other` out of the denominator
    for prefix, ids in (("share_", policy), ("share_all_", domain_ids()), ("char_share_", domain_ids())):
        assert summary[[f"{prefix}{d}" for d in ids]].sum(axis=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-3)
        for d in ids:  # every share has its interval around it
            assert (summary[f"{prefix}{d}_low"] <= summary[f"{prefix}{d}"] + 1e-9).all()
            assert (summary[f"{prefix}{d}"] <= summary[f"{prefix}{d}_high"] + 1e-9).all()
    assert (summary["policy_sentences"] == summary["sentences"] - summary["n_other"]).all()
    assert summary.loc["trad", "chars"] == len(TRADITIONAL.replace("\n", ""))


def test_same_file_names_stay_separate_documents(tmp_path: Path, tiny_model_dir: Path) -> None:
    for year in ("2023", "2024"):
        (tmp_path / year).mkdir()
        (tmp_path / year / "report.txt").write_text(REPORT, encoding="utf-8")
    code, _ = classify(tmp_path / "2023", tmp_path / "2024", "--out", tmp_path / "o.jsonl",
                       "--summary", tmp_path / "s.jsonl", "--model", tiny_model_dir)
    assert code == 0
    assert list(read_table(tmp_path / "s.jsonl")["doc"]) == ["2023/report.txt", "2024/report.txt"]


def test_no_model_message(batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl, "default_model_dir", lambda: tmp_path / "models" / "policy-domains")
    code, output = classify(batch, "--out", tmp_path / "o.jsonl")
    assert code == 1 and "no trained model" in output and "dvc repro" in output
    assert not (tmp_path / "o.jsonl").exists()


def test_unknown_output_format_is_a_clear_error(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    code, output = classify(batch, "--out", tmp_path / "o.xlsx", "--model", tiny_model_dir)
    assert code == 1 and ".jsonl, .csv, .parquet" in output


def test_python_api(batch: Path, tiny_model_dir: Path) -> None:
    model = pipeline.load_model(tiny_model_dir)
    texts = pipeline.classify_texts(["加强生态保护修复。", "發展先進製造業集群。"], model)
    assert list(texts.columns) == ["text", "domain", "confidence", "scores"]
    assert list(texts["domain"]) == ["ecology", "industry"] and texts["confidence"].between(0, 1).all()
    # scores: a dict per row, or a column per domain, both with the row's own domain on top
    first = texts["scores"].iloc[0]
    assert isinstance(first, dict) and list(first) == [str(c) for c in model.classes_]
    per_domain = texts["scores"].struct.explode()
    assert list(per_domain.idxmax(axis=1)) == list(texts["domain"])
    assert per_domain.max(axis=1).tolist() == texts["confidence"].tolist()
    sentences, summary = pipeline.classify_reports([batch], model)
    assert len(sentences) == 11 and list(summary["doc"]) == ["good", "trad"]
    assert len(sentences.attrs["errors"]) == 2


def test_summary_keeps_counts_not_rows() -> None:
    """Memory: the summary of a batch is a few numbers per document, however many rows streamed past."""
    acc = cl.Summary(domain_ids())
    chunk = pd.DataFrame({"doc": ["d"] * 1000, "text": ["加强生态保护。"] * 1000, "domain": ["ecology"] * 1000})
    for _ in range(5):
        acc.add(chunk)
    assert len(acc.docs) == 1 and acc.docs["d"]["sentences"] == 5000
    assert all(not isinstance(v, (pd.DataFrame, list)) for v in acc.docs["d"].values())


def test_sentence_tables_are_classified_without_neighbours(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Rows of a .jsonl are unrelated sentences: each gets the same scores it gets alone."""
    from pipeline.classify import classify_texts, load_model, run_batch
    from pipeline.io import read_table

    texts = ["加强生态保护修复。", "壮大制造业产业链。", "谢谢大家。"]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts),
                                      encoding="utf-8")
    run_batch([tmp_path / "s.jsonl"], tmp_path / "out.jsonl", model_dir=tiny_model_dir)
    got = read_table(tmp_path / "out.jsonl")
    alone = [classify_texts([t], load_model(tiny_model_dir)).loc[0, "scores"] for t in texts]
    for row, single in zip(got["scores"], alone):
        assert row == pytest.approx(single, abs=1e-6)


def test_min_confidence_flags_rows_and_reports_coverage(batch: Path, tmp_path: Path, tiny_model_dir: Path) -> None:
    code, output = classify(batch / "good.txt", "--out", tmp_path / "o.csv", "--summary", tmp_path / "s.csv",
                            "--model", tiny_model_dir, "--min-confidence", "0.5")
    assert code == 0
    rows = read_table(tmp_path / "o.csv")
    assert (rows["confident"] == (rows["confidence"] >= 0.5)).all()  # the domain is kept, the row is flagged
    share = rows["confident"].mean()
    assert f"coverage: {share:.1%} of units have confidence ≥ 0.5" in output
    assert read_table(tmp_path / "s.csv")["coverage"].iloc[0] == pytest.approx(share, abs=1e-4)
    code, output = classify(batch / "good.txt", "--out", tmp_path / "o.csv", "--min-confidence", "1.5")
    assert code == 2  # a usage error: a confidence is between 0 and 1


def test_python_api_takes_the_same_options(batch: Path, tiny_model_dir: Path) -> None:
    from pipeline.enrich import BatchOptions

    model = pipeline.load_model(tiny_model_dir)
    sentences, summary = pipeline.classify_reports([batch], model, BatchOptions(min_confidence=0.3, cap=True))
    assert {"domains", "domain_2", "confident", "cap_code"} <= set(sentences.columns)
    assert {"coverage", "share_all_other", "cap_unmapped"} <= set(summary.columns)
