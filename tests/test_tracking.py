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


def _headline(macro_f1: float) -> dict:
    return {"units": 10, "accuracy": 0.9, "lenient_accuracy": 0.95, "macro_f1": macro_f1,
            "macro_f1_supported": macro_f1, "weighted_f1": 0.9}


def _log(params: dict, model_dir: Path, macro_f1: float, said: list[str], artifacts: list[Path] = (),
         warn=pytest.fail) -> tracking.Logged:
    card = {"training_data": {"labelled_units": 18}, "metrics": {"protocol": "test"}}
    return tracking.log_training(params, card, _headline(macro_f1), {d: {"f1": 0.5} for d in domain_ids()},
                                 list(artifacts), model_dir, warn, said.append)


def test_train_run_registry_and_champion_against_a_real_server(mlflow_server: str, tiny_model_dir: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run per training with its tags; every version that clears the threshold is registered, but
    `champion` moves only to a version that beats it (a worse one and a tie leave it where it is)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)  # the env var wins over params.yaml
    monkeypatch.setenv("DVC_EXP_NAME", "exp-test")  # as `dvc exp run` sets it
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    params = _params("sqlite:///must-not-be-used.db")
    (tmp_path / "confusion.csv").write_text("actual,predicted\necology,ecology\n", encoding="utf-8")
    said: list[str] = []
    first = _log(params, model_dir, 0.80, said, [tmp_path / "confusion.csv"])
    assert (first.version, first.champion) == ("1", "1") and "new @champion" in said[-1]

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    run = client.get_run(first.run_id)
    assert run.info.run_name == "train · exp-test"
    assert run.data.params["train.classifier"] == "svm" and run.data.metrics["macro_f1"] == 0.8
    assert run.data.tags["dvc_experiment"] == "exp-test" and run.data.tags["dvc_stage"] == "train"
    assert run.data.tags["git_commit"]
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evaluation")] == ["evaluation/confusion.csv"]
    version = client.get_model_version("policy-test", "1")
    assert version.run_id == run.info.run_id
    assert version.tags["macro_f1"] == "0.8" and version.tags["dvc_experiment"] == "exp-test"
    assert version.tags["git_commit"] == run.data.tags["git_commit"]

    worse = _log(params, model_dir, 0.79, said)
    assert (worse.version, worse.champion) == ("2", "1") and "stays version 1" in said[-1]
    tie = _log(params, model_dir, 0.80, said)
    assert (tie.version, tie.champion) == ("3", "1")
    assert client.get_model_version_by_alias("policy-test", "champion").version == "1"
    better = _log(params, model_dir, 0.85, said)
    assert better.champion == "4" == client.get_model_version_by_alias("policy-test", "champion").version

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model("models:/policy-test@champion")
    pred = model.predict(pd.DataFrame({"text": ["加强生态保护修复。", "谢谢大家。"]}))
    assert list(pred.columns)[:2] == ["domain", "confidence"]
    assert pred.loc[0, "domain"] == "ecology"
    # the per-domain scores (not the runners-up score_2/score_3), each rounded to 4 decimals
    assert pred[[f"score_{d}" for d in domain_ids()]].sum(axis=1).sub(1).abs().le(17 * 5e-5).all()


def test_no_registration_below_the_threshold(mlflow_server: str, tiny_model_dir: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    said: list[str] = []
    logged = _log(_params(mlflow_server), model_dir, 0.3, said)
    assert logged.run_id and logged.version is None and logged.champion is None
    assert "not registered" in said[-1]


def test_unreachable_store_warns_and_keeps_the_outputs(tiny_model_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{_free_port()}")
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    before = sorted(p.name for p in model_dir.iterdir())
    warnings: list[str] = []
    logged = _log(_params("unused"), model_dir, 0.8, [], warn=warnings.append)
    assert logged == tracking.Logged()
    assert len(warnings) == 1 and "MLflow logging failed" in warnings[0] and "unreachable" in warnings[0]
    assert sorted(p.name for p in model_dir.iterdir()) == before  # nothing volatile is written beside the model


def test_default_store_is_sqlite_under_the_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.tracking_uri({"tracking_uri": "sqlite:///experiments/mlflow.db"})
    assert uri.startswith("sqlite:////") and uri.endswith("/experiments/mlflow.db")
