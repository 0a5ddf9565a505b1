"""The Spark engine gives the default engine's rows: files via the CLI, documents in a DataFrame,
sentences through the registered MLflow model as a Spark UDF. Runs wherever pyspark and Java are
installed (`.ci/run` installs the `spark` extra, so CI runs it); skipped with the reason elsewhere."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline import classify as cl
from pipeline.cli import app
from pipeline.io import read_table

pyspark = pytest.importorskip("pyspark", reason="the Spark engine is an extra: pip install -e '.[spark]'")
if shutil.which("java") is None:
    pytest.skip("Spark needs Java 17 (java is not on PATH)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
runner = CliRunner()


@pytest.fixture(scope="module")
def spark():
    from pipeline.spark import session

    s = session("local[2]")
    yield s
    s.stop()


def _by_unit(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["doc", "sent_id"]).reset_index(drop=True)


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """The samples, a sentence table with metadata columns, and a file that cannot be read."""
    folder = tmp_path / "in"
    shutil.copytree(SAMPLES, folder)
    rows = [{"text": t, "year": y, "id": i} for i, (t, y) in
            enumerate([("加强生态保护修复。", "2021"), ("發展先進製造業集群。", "2022"), ("谢谢大家。", "2022")])]
    (folder / "table.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    (folder / "broken.txt").write_bytes(b"")
    return folder


def test_cli_spark_engine_writes_the_default_engines_rows_and_summary(spark, inputs: Path, tmp_path: Path,
                                                                       tiny_model_dir: Path) -> None:
    default = runner.invoke(app, ["classify", str(inputs), "--out", str(tmp_path / "d.parquet"), "--summary",
                                  str(tmp_path / "d.csv"), "--model", str(tiny_model_dir)])
    on_spark = runner.invoke(app, ["classify", str(inputs), "--out", str(tmp_path / "s.parquet"), "--summary",
                                   str(tmp_path / "s.csv"), "--model", str(tiny_model_dir), "--engine", "spark",
                                   "--master", "local[2]"])
    assert default.exit_code == on_spark.exit_code == 1  # the empty file fails in both, the rest is classified
    assert "broken.txt: empty file" in on_spark.output
    a, b = _by_unit(read_table(tmp_path / "d.parquet")), _by_unit(pd.read_parquet(tmp_path / "s.parquet"))
    assert (tmp_path / "s.parquet").is_dir() and len(a) == len(b) > 60
    assert list(a.columns) == list(b.columns)
    for column in ("doc", "sent_id", "text", "heading", "is_heading", "domain", "confidence", "year", "id"):
        assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column
    assert [dict(s) for s in a["scores"]] == [dict(s) for s in b["scores"]]
    assert (tmp_path / "d.csv").read_text(encoding="utf-8") == (tmp_path / "s.csv").read_text(encoding="utf-8")


def test_spark_output_is_partitioned_and_readable_everywhere(spark, inputs: Path, tmp_path: Path,
                                                             tiny_model_dir: Path) -> None:
    out = tmp_path / "by_year.parquet"
    result = runner.invoke(app, ["classify", str(inputs / "table.jsonl"), "--out", str(out), "--model",
                                 str(tiny_model_dir), "--engine", "spark", "--partition-by", "year"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["year=2021", "year=2022"]
    assert len(pd.read_parquet(out)) == 3  # pandas
    assert spark.read.parquet(str(out)).count() == 3  # Spark
    duckdb = pytest.importorskip("duckdb")
    count = duckdb.sql(f"select count(*) from read_parquet('{out}/**/*.parquet', hive_partitioning = true)").fetchall()
    assert count == [(3,)]
    again = ["classify", str(inputs / "table.jsonl"), "--out", str(out), "--model", str(tiny_model_dir), "--engine",
             "spark"]
    refused = runner.invoke(app, again)
    assert refused.exit_code == 1 and "pass --force" in refused.output  # an existing dataset needs --force
    assert runner.invoke(app, [*again, "--force"]).exit_code == 0
    assert not any(p.is_dir() for p in out.iterdir())  # replaced whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_documents_dataframe_is_classified_per_document(spark, tiny_model_dir: Path, tmp_path: Path) -> None:
    from pipeline.spark import classify_documents

    texts = {p.stem: p for p in sorted(SAMPLES.glob("*.txt"))}
    from pipeline.ingest import read_source

    docs = pd.DataFrame({"doc": list(texts), "text": [read_source(p).text for p in texts.values()],
                         "year": [2020 + i for i in range(len(texts))]})
    units = classify_documents(spark.createDataFrame(docs), tiny_model_dir).toPandas()
    cli = runner.invoke(app, ["classify", *map(str, texts.values()), "--out", str(tmp_path / "c.jsonl"), "--model",
                              str(tiny_model_dir)])
    assert cli.exit_code == 0, cli.output
    expected = _by_unit(read_table(tmp_path / "c.jsonl"))
    got = _by_unit(units)
    assert got["text"].tolist() == expected["text"].tolist()
    assert got["domain"].tolist() == expected["domain"].tolist()
    assert got["confidence"].tolist() == expected["confidence"].tolist()
    assert {"domain_2", "score_2", "score_economy", "year"} <= set(got.columns)
    assert dict(zip(got["doc"], got["year"])) == dict(zip(docs["doc"], docs["year"]))


def test_registered_model_as_a_spark_udf(spark, tiny_model_dir: Path, tmp_path: Path) -> None:
    from pyspark.sql.functions import col, struct

    from pipeline.spark import sentence_udf
    from pipeline.tracking import save_pyfunc

    model_path = save_pyfunc(tiny_model_dir, tmp_path / "pyfunc")
    texts = ["加强生态保护修复。", "发展先进制造业集群。", "谢谢大家。"]
    udf = sentence_udf(spark, str(model_path))
    frame = spark.createDataFrame(pd.DataFrame({"text": texts})).withColumn("p", udf(struct(col("text"))))
    got = frame.select("text", "p.domain", "p.confidence").toPandas()
    expected = cl.classify_texts(texts, cl.load_model(tiny_model_dir))
    assert got["domain"].tolist() == expected["domain"].tolist()
    assert got["confidence"].tolist() == expected["confidence"].tolist()
