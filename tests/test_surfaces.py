"""One answer everywhere: a unit's prediction depends only on the unit and its own document.

Property tests over batches (shuffled, re-chunked, duplicated, mixed scripts, --jobs 2) and parity
between the CLI, the Python API and the MLflow model (loaded in process and served over HTTP).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import free_port, serving
from pipeline import classify as cl
from pipeline.cli import app
from pipeline.io import read_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"
SIMPLIFIED = ["加强生态保护修复。", "发展先进制造业集群。", "办好人民满意的教育。", "谢谢大家。", "推动工业转型升级。"]
TRADITIONAL = ["加強生態保護修復。", "發展先進製造業集群。", "辦好人民滿意的教育。", "現在報告工作。", "推動工業轉型升級。"]
runner = CliRunner()


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return [(r.text, r.domain, r.confidence, tuple(sorted(r.scores.items()))) for r in frame.itertuples()]


def test_bare_sentences_do_not_depend_on_the_batch(tiny_model_dir: Path) -> None:
    """Script detection is per unit: traditional sentences after 200 simplified ones, shuffled,
    split into chunks or repeated, get exactly the rows they get alone."""
    model = cl.load_model(tiny_model_dir)
    alone = {t: row for t, row in zip(TRADITIONAL + SIMPLIFIED, _rows(cl.classify_texts(TRADITIONAL + SIMPLIFIED, model)))}
    each = {t: _rows(cl.classify_texts([t], model))[0] for t in TRADITIONAL + SIMPLIFIED}
    assert alone == each
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = list(rng.choice(SIMPLIFIED, 200)) + TRADITIONAL + list(rng.choice(TRADITIONAL + SIMPLIFIED, 30))
        order = rng.permutation(len(batch))
        shuffled = [batch[i] for i in order]
        cut = int(rng.integers(1, len(shuffled)))
        rows = _rows(cl.classify_texts(shuffled[:cut], model)) + _rows(cl.classify_texts(shuffled[cut:], model))
        assert all(row == each[row[0]] for row in rows)
    # the traditional sentences are read as simplified ones: same domain as their simplified twins
    assert [each[t][1] for t in TRADITIONAL[:3]] == [each[s][1] for s in SIMPLIFIED[:3]]


def test_document_units_do_not_depend_on_order_or_company(tiny_model_dir: Path) -> None:
    """With doc + index, shuffling the rows, adding other documents or splitting by document
    changes nothing: each document is read in its own order."""
    from pipeline.segment import units_from_paths

    model = cl.load_model(tiny_model_dir)
    units = units_from_paths([SAMPLES])
    base = cl.prediction_columns(model, units)
    rng = np.random.default_rng(1)
    for _ in range(3):
        order = rng.permutation(len(units))
        shuffled = cl.prediction_columns(model, units.iloc[order]).loc[units.index]
        pd.testing.assert_frame_equal(shuffled, base)
    per_doc = pd.concat([cl.prediction_columns(model, g) for _, g in units.groupby("doc", sort=False)]).loc[units.index]
    pd.testing.assert_frame_equal(per_doc, base)


def test_sentence_table_rows_are_independent_and_keep_the_users_columns(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = [{"id": f"s{i}", "index": f"p{i}", "sent_id": f"mine:{i}", "text": t}
            for i, t in enumerate(SIMPLIFIED * 40 + TRADITIONAL)]
    table = tmp_path / "table.jsonl"
    table.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    alone = tmp_path / "alone.jsonl"
    alone.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows[-5:]), encoding="utf-8")
    for src, dst in ((table, "all.jsonl"), (alone, "alone_out.jsonl")):
        result = runner.invoke(app, ["classify", str(src), "--out", str(tmp_path / dst), "--model", str(tiny_model_dir)])
        assert result.exit_code == 0, result.output
    full, small = read_table(tmp_path / "all.jsonl"), read_table(tmp_path / "alone_out.jsonl")
    assert list(full["index"]) == [r["index"] for r in rows]  # the user's own index, not row numbers
    assert list(full["sent_id"]) == [r["sent_id"] for r in rows] and list(full["id"]) == [r["id"] for r in rows]
    tail = full.tail(5).reset_index(drop=True)
    assert list(tail["domain"]) == list(small["domain"]) and list(tail["scores"]) == list(small["scores"])
    parquet = tmp_path / "all.parquet"
    assert runner.invoke(app, ["classify", str(table), "--out", str(parquet), "--model", str(tiny_model_dir)]).exit_code == 0
    assert list(pd.read_parquet(parquet)["index"]) == [r["index"] for r in rows]


def test_jobs_2_and_chunking_give_identical_rows(tiny_model_dir: Path, tmp_path: Path) -> None:
    outs = []
    for i, extra in enumerate((["--jobs", "1", "--chunk-size", "7"], ["--jobs", "2", "--chunk-size", "1000"])):
        out = tmp_path / f"o{i}.jsonl"
        result = runner.invoke(app, ["classify", str(SAMPLES), "--out", str(out), "--model", str(tiny_model_dir), *extra])
        assert result.exit_code == 0, result.output
        outs.append(read_table(out))
    pd.testing.assert_frame_equal(outs[0], outs[1])


# ---------------------------------------------------------------- the MLflow model

def _cli_rows(model_dir: Path, tmp_path: Path) -> pd.DataFrame:
    out = tmp_path / "cli.jsonl"
    result = runner.invoke(app, ["classify", str(SAMPLES), "--out", str(out), "--model", str(model_dir)])
    assert result.exit_code == 0, result.output
    return read_table(out)


def _expected(cli: pd.DataFrame) -> pd.DataFrame:
    scores = pd.DataFrame(list(cli["scores"])).add_prefix("score_")
    return pd.concat([cli[["domain", "confidence"]], scores], axis=1)


@pytest.fixture(scope="module")
def pyfunc_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.tracking import save_pyfunc

    return save_pyfunc(tiny_model_dir, tmp_path_factory.mktemp("pyfunc") / "model")


def test_mlflow_model_with_context_equals_the_cli(pyfunc_dir: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    import mlflow

    cli = _cli_rows(tiny_model_dir, tmp_path)
    model = mlflow.pyfunc.load_model(str(pyfunc_dir))
    inputs = model.metadata.get_input_schema()
    assert [(c.name, c.required) for c in inputs.inputs] == [("text", True), ("doc", False), ("index", False),
                                                             ("heading", False)]
    got = model.predict(cli[["text", "doc", "index", "heading"]])
    expected = _expected(cli)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)  # 100% of units
    assert {"domain_2", "score_2", "domain_3", "score_3"} <= set(got.columns)
    assert (got["score_2"] <= got["confidence"]).all() and (got["domain_2"] != got["domain"]).all()
    alone = model.predict(cli[["text"]])  # without context: each row alone, as classify_texts
    texts = cl.classify_texts(cli["text"], cl.load_model(tiny_model_dir))
    assert list(alone["domain"]) == list(texts["domain"])


@pytest.mark.parametrize("bad", [{"text": [None]}, {"text": ["  "]}, {"doc": ["d"], "text": ["加强生态保护。"]},
                                 {"sentence": ["加强生态保护。"]}])
def test_mlflow_model_refuses_rows_it_cannot_read(pyfunc_dir: Path, bad: dict) -> None:
    import mlflow
    from mlflow.exceptions import MlflowException

    model = mlflow.pyfunc.load_model(str(pyfunc_dir))
    with pytest.raises(MlflowException):
        model.predict(pd.DataFrame(bad))


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.mark.slow
def test_served_model_answers_like_the_cli(tiny_model_dir: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`mlflow models serve` started as the README writes it (registry alias, venv on PATH), a real
    HTTP request, the CLI's domains and scores back; a null text is a 400 with a reason."""
    from pipeline import tracking

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    params = {"mlflow": {"experiment": "serve", "tracking_uri": store, "registered_model": "policy-domains",
                         "register_min_macro_f1": 0.0}, "train": {}, "segment": {}}
    headline = {"units": 1, "accuracy": 1.0, "lenient_accuracy": 1.0, "macro_f1": 1.0,
                "macro_f1_supported": 1.0, "weighted_f1": 1.0}
    assert tracking.log_training(params, {"metrics": {}}, headline, {}, [], model_dir, pytest.fail, print).champion == "1"
    port = free_port()
    with serving(["mlflow", "models", "serve", "-m", "models:/policy-domains@champion", "--env-manager", "local",
                  "-h", "127.0.0.1", "-p", str(port)], f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env):
        cli = _cli_rows(tiny_model_dir, tmp_path)
        frame = cli[["text", "doc", "index", "heading"]]
        status, body = _post(f"http://127.0.0.1:{port}/invocations",
                             {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}})
        assert status == 200, body
        got = pd.DataFrame(body["predictions"])
        expected = _expected(cli)
        pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
        status, body = _post(f"http://127.0.0.1:{port}/invocations", {"dataframe_records": [{"text": None}]})
        assert status == 400 and "null or empty" in json.dumps(body, ensure_ascii=False)
