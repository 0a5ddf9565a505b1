"""Classify a corpus on Spark: the same rows as the default engine, from one machine to a cluster.

Spark only schedules; every document is read, cut and classified by the project's own functions
inside one task (`classify.classify_file` for files, `segment_document` for rows of a DataFrame),
so a unit still sees its neighbours and its document's own script verdict, and the rows are the
ones `policy-domains classify` writes. The model is shipped to the executors with
`SparkContext.addFile` (or read from the MLflow registry), verified there by its SHA-256 like
everywhere else, and loaded once per Python worker.

Install with ``pip install -e '.[spark]'`` (pyspark; Java 17 on the machine).
"""
from __future__ import annotations

import os
import shutil
import sys
import uuid
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from pipeline import config
from pipeline.classify import (OUTPUT_COLUMNS, FileResult, classify_file, doc_ids, format_chunk, load_model,
                               passthrough_columns, prediction_columns, resolve_model_dir)
from pipeline.enrich import BatchOptions, Enricher
from pipeline.errors import UsageError
from pipeline.ingest import document_from_text, iter_paths
from pipeline.io import TableWriter
from pipeline.segment import UNIT_COLUMNS, SegmentParams, segment_document
from pipeline.shares import ShareSettings

ERROR = "_error"


def session(master: str | None = None, app_name: str = "policy-domains") -> Any:
    """A SparkSession; with a local master the executors run this interpreter (and its packages)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise UsageError("the Spark engine needs pyspark: pip install -e '.[spark]' (and Java 17)") from exc
    builder = SparkSession.builder.appName(app_name).config("spark.ui.enabled", "false") \
        .config("spark.ui.showConsoleProgress", "false").config("spark.sql.execution.arrow.pyspark.enabled", "true")
    if master:
        builder = builder.master(master)
    if (master or "local").startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # pyspark 4 warns on every worker that pandas 3 is newer than it was tested with
        os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def ship_model(spark: Any, model: str | Path | None) -> tuple[str, list[str]]:
    """Make the model readable on every executor; returns the name to find it by (`SparkFiles`) and
    its domain ids. `model` is a model folder, an MLflow URI (``models:/policy-domains@champion``,
    ``runs:/…``) or None for the one `dvc repro` trained."""
    folder = resolve_model_dir(model)
    domains = [str(c) for c in load_model(folder).classes_]  # fails here, with the usual message, not in a task
    spark.sparkContext.addFile(str(folder), recursive=True)
    return folder.name, domains


@lru_cache(maxsize=2)
def _executor_model(name: str) -> Any:
    from pyspark import SparkFiles

    return load_model(SparkFiles.get(name))


# ---------------------------------------------------------------- files (the CLI's --engine spark)

def _score_struct(ids: list[str]) -> str:
    return "struct<" + ", ".join(f"`{d}`: double" for d in ids) + ">"


def _file_schema(ids: list[str], extra: list[str]) -> str:
    index = "string" if "index" in extra else "bigint"
    columns = [f"doc string, sent_id string, `index` {index}, text string, heading string, is_heading boolean",
               "domain string, confidence double, domains string, domain_2 string, score_2 double, domain_3 string",
               f"score_3 double, scores {_score_struct(ids)}"]
    columns += [f"`{c}` string" for c in extra if c not in OUTPUT_COLUMNS]
    return ", ".join(columns + [f"{ERROR} string"])


def _classify_paths(model_name: str, seg: SegmentParams, extra: list[str], columns: list[str],
                    enricher: Enricher) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """The task: each file through the default engine's `classify_file` and `Enricher.rows`."""
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _executor_model(model_name)
        for batch in batches:
            for path, doc in zip(batch["path"], batch["doc"]):
                result, chunks = classify_file(model, Path(path), doc, seg, chunk_size=1 << 30)
                if not result.ok:
                    yield pd.DataFrame([{**dict.fromkeys(columns), "doc": doc, ERROR: result.error}], columns=columns)
                for chunk in chunks:
                    rows = format_chunk(enricher.rows(chunk, path), ".parquet", extra, enricher.optional_columns)
                    yield rows.assign(**{ERROR: None}).reindex(columns=columns)
    return run


def run_batch(inputs: list[str | Path], out: str | Path, summary: str | Path | None = None,
              model: str | Path | None = None, master: str | None = None, seg: SegmentParams | None = None,
              partition_by: str | None = None,
              on_file: Callable[[FileResult], None] = lambda r: None) -> list[FileResult]:
    """`classify --engine spark`: every input file becomes a task; rows go to a Parquet dataset.

    `out` must end in .parquet and becomes a folder of part files (readable by pandas, DuckDB and
    Spark), replaced atomically: written beside it under a hidden name, then renamed. The summary
    is the default engine's, computed from the written rows."""
    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"{out}: the Spark engine writes a Parquet dataset; give --out a .parquet name")
    seg = seg or SegmentParams.from_dict(config.section("segment"))
    paths = list(iter_paths(inputs))
    if not paths:
        return []
    ids = doc_ids(paths)
    extra = passthrough_columns(paths)
    if partition_by and partition_by not in extra:
        raise UsageError(f"--partition-by {partition_by}: not a column of the inputs (columns: {', '.join(extra)})")
    spark = session(master)
    name, domains = ship_model(spark, model)
    enricher = Enricher.build(BatchOptions(shares=ShareSettings.from_dict(config.section("shares"))), domains, paths,
                              resolve_model_dir(model), OUTPUT_COLUMNS + UNIT_COLUMNS)
    schema = _file_schema(domains, extra)
    columns = _columns_of(schema)
    files = spark.createDataFrame(pd.DataFrame({"path": [str(p) for p in paths], "doc": [ids[p] for p in paths]}))
    files = files.repartition(min(len(paths), spark.sparkContext.defaultParallelism * 4))
    rows = files.mapInPandas(_classify_paths(name, seg, extra, columns, enricher), schema).cache()
    try:
        failures = {r["doc"]: r[ERROR] for r in rows.filter(rows[ERROR].isNotNull()).select("doc", ERROR).collect()}
        units = rows.filter(rows[ERROR].isNull()).drop(ERROR)
        counts = {r["doc"]: r["count"] for r in units.groupBy("doc").count().collect()}
        results = []
        for path in paths:
            doc = ids[path]
            result = FileResult(str(path), doc not in failures, counts.get(doc, 0), failures.get(doc, ""))
            results.append(result)
            on_file(result)
        if not counts:
            return results
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
        try:
            writer = units.write.mode("overwrite")
            (writer.partitionBy(partition_by) if partition_by else writer).parquet(str(tmp))
            if summary:
                _write_summary(tmp, summary, enricher, [ids[p] for p in paths])
            _replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return results
    finally:
        rows.unpersist()


def _columns_of(schema: str) -> list[str]:
    """Top-level column names of a DDL schema string (struct fields are not columns)."""
    names, depth, token = [], 0, ""
    for ch in schema + ",":
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        if ch == "," and depth == 0:
            names.append(token.strip().split(" ")[0].strip("`"))
            token = ""
        else:
            token += ch
    return names


def _write_summary(dataset: Path, summary: str | Path, enricher: Enricher, order: list[str]) -> None:
    """The default engine's summary, from the written rows (streamed, a batch at a time)."""
    import pyarrow.dataset as ds

    acc = enricher.summary()
    for batch in ds.dataset(str(dataset), format="parquet", partitioning="hive").to_batches():
        acc.add(batch.to_pandas())
    frame = acc.frame()
    frame = frame.set_index("doc").loc[[d for d in order if d in set(frame["doc"])]].reset_index()
    with TableWriter(summary) as writer:
        writer.write(frame)


def _replace(tmp: Path, target: Path) -> None:
    """Move a finished dataset folder onto `target` (a file or folder from an earlier run)."""
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    if target.exists() or target.is_symlink():
        os.replace(target, old)
    try:
        os.replace(tmp, target)
    finally:
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists():
            old.unlink()


# ---------------------------------------------------------------- DataFrames (the Python API)

def classify_documents(documents: Any, model: str | Path | None = None, text_column: str = "text",
                       id_column: str = "doc", seg: SegmentParams | None = None) -> Any:
    """A Spark DataFrame of whole documents (an id, the text, any metadata columns) → a DataFrame
    of their units: ``doc, sent_id, index, text, heading, is_heading``, the prediction columns
    (``domain, confidence, domain_2, score_2, domain_3, score_3, score_<id>``) and the metadata.

    Each document is cut and classified inside one task (grouped by `id_column`), so document
    context works exactly as in `policy-domains classify`."""
    seg = seg or SegmentParams.from_dict(config.section("segment"))
    name, domains = ship_model(documents.sparkSession, model)
    for column in (id_column, text_column):
        if column not in documents.columns:
            raise UsageError(f"no '{column}' column in the documents (columns: {', '.join(documents.columns)})")
    meta = [f for f in documents.schema.fields if f.name not in (id_column, text_column)]
    ranked = "domain string, confidence double, domain_2 string, score_2 double, domain_3 string, score_3 double"
    schema = ", ".join(["doc string, sent_id string, `index` bigint, text string, heading string, is_heading boolean",
                        ranked, *(f"`score_{d}` double" for d in domains),
                        *(f"`{f.name}` {f.dataType.simpleString()}" for f in meta)])
    meta_names = [f.name for f in meta]

    def per_document(group: pd.DataFrame) -> pd.DataFrame:
        model_ = _executor_model(name)
        frames = []
        for row in group.to_dict(orient="records"):
            doc = str(row[id_column])
            units = segment_document(document_from_text(doc, str(row[text_column] or ""), doc,
                                                        seg.heading_max_chars), seg)
            head = units[["doc", "sent_id", "index", "text", "heading", "is_heading"]]
            frames.append(pd.concat([head, prediction_columns(model_, units)], axis=1)
                          .assign(**{m: row[m] for m in meta_names}))
        return pd.concat(frames, ignore_index=True)

    return documents.groupBy(id_column).applyInPandas(per_document, schema)


def sentence_udf(spark: Any, model_uri: str) -> Any:
    """The registered MLflow model as a Spark UDF over sentence rows, returning a struct
    (``domain, confidence, domain_2, score_2, domain_3, score_3, score_<id>``). Call it on
    ``struct("text")`` for bare sentences, or ``struct("text", "doc", "index")`` when each batch
    holds whole documents (document context is only as good as the batch)."""
    import mlflow

    info = mlflow.models.get_model_info(model_uri)
    fields = ", ".join(f"`{c.name}` {'string' if c.type.name == 'string' else 'double'}"
                       for c in info.signature.outputs.inputs)
    return mlflow.pyfunc.spark_udf(spark, model_uri, result_type=f"struct<{fields}>", env_manager="local")
