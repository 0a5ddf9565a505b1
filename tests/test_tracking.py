"""MLflow: a real tracking server over HTTP, the registry, the pyfunc model, and an unreachable store."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from pipeline import tracking
from pipeline.taxonomy import domain_ids

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with a SQLite backend in a temp dir; stopped after the test."""
    port = _free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"), start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def _params(tracking_uri: str) -> dict:
    return {"mlflow": {"experiment": "test", "tracking_uri": tracking_uri, "registered_model": "policy-test",
                       "register_min_macro_f1": 0.5},
            "train": {"classifier": "svm"}, "segment": {"max_chars": 500}}


def _result(macro_f1: float, baseline_f1: float) -> dict:
    headline = {"units": 10, "accuracy": 0.9, "lenient_accuracy": 0.95, "macro_f1": macro_f1,
                "macro_f1_supported": macro_f1, "weighted_f1": 0.9}
    return {"headline": headline, "protocol": "test", "per_domain": {d: {"f1": 0.5} for d in domain_ids()},
            "table": [{"model": "svm", "examples": True, "macro_f1": macro_f1, "accuracy": 0.9},
                      {"model": "majority", "examples": True, "macro_f1": baseline_f1, "accuracy": 0.2}],
            "selection": {"shipped_beats_baselines": macro_f1 > baseline_f1}}


def test_train_and_register_against_a_real_server(mlflow_server: str, tiny_model_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the env var wins over params.yaml
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    params = _params("sqlite:///must-not-be-used.db")
    warnings: list[str] = []
    card = {"git_commit": "abc123", "training_data": {"labelled_units": 18}}
    run_info = tracking.log_training(params, card, model_dir, warn=warnings.append)
    assert warnings == [] and run_info["run_id"]
    (tmp_path / "confusion.csv").write_text("actual,predicted\necology,ecology\n", encoding="utf-8")
    version = tracking.log_evaluation(params, _result(0.8, 0.1), [tmp_path / "confusion.csv"], model_dir,
                                      warn=warnings.append, say=lambda s: None)
    assert warnings == [] and version == "1"

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(run_info["run_id"])
    assert run.data.params["train.classifier"] == "svm"
    assert run.data.tags["git_commit"] == "abc123" and run.data.tags["dvc_stage"] == "evaluate"
    assert run.data.metrics["macro_f1"] == 0.8
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")] == ["evaluation/confusion.csv"]
    assert client.get_model_version("policy-test", "1").run_id == run.info.run_id

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/policy-test/1")
    pred = model.predict(pd.DataFrame({"text": ["加强生态保护修复。", "谢谢大家。"]}))
    assert list(pred.columns) == ["domain", "confidence"] + [f"score_{d}" for d in domain_ids()]
    assert pred.loc[0, "domain"] == "ecology"
    assert pred.filter(like="score_").sum(axis=1).round(6).eq(1).all()


def test_no_registration_below_the_threshold(mlflow_server: str, tiny_model_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    params = _params(mlflow_server)
    tracking.log_training(params, {"git_commit": "x"}, model_dir, warn=pytest.fail)
    said: list[str] = []
    assert tracking.log_evaluation(params, _result(0.3, 0.1), [], model_dir, pytest.fail, said.append) is None
    assert "not registered" in said[0]


def test_unreachable_store_warns_and_keeps_the_outputs(tiny_model_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    warnings: list[str] = []
    run_info = tracking.log_training(_params("unused"), {"git_commit": "x"}, model_dir, warn=warnings.append)
    assert run_info == {"run_id": None, "model_uri": None}
    assert len(warnings) == 1 and "MLflow logging failed" in warnings[0] and "unreachable" in warnings[0]
    assert (model_dir / "model.skops").exists() and (model_dir / tracking.RUN_FILE).exists()
    assert tracking.log_evaluation(_params("unused"), _result(0.8, 0.1), [], model_dir, warnings.append,
                                   lambda s: None) is None
    assert len(warnings) == 2


def test_default_store_is_sqlite_under_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.tracking_uri({"tracking_uri": "sqlite:///experiments/mlflow.db"})
    assert uri.startswith("sqlite:////") and uri.endswith("/experiments/mlflow.db")
