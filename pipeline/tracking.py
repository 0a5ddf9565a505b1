"""MLflow logging for train and evaluate, failing soft: outputs are written whatever MLflow does.

Default store: the embedded SQLite file `experiments/mlflow.db` (no server). Setting
`MLFLOW_TRACKING_URI` points the same code at a tracking server. An unreachable store is reported
as a warning and the stage still succeeds, because the DVC outputs are the source of truth.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from pipeline.config import PACKAGE_ROOT, project_root
from pipeline.taxonomy import domain_ids

RUN_FILE = "mlflow_run.json"


class TrackingUnavailable(Exception):
    """The tracking store could not be reached or written."""


def tracking_uri(params: dict[str, Any]) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.get("tracking_uri", "sqlite:///experiments/mlflow.db")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        db = project_root() / uri[len("sqlite:///"):]
        db.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{db}"
    return uri


def _reachable(uri: str, timeout: float = 3.0) -> None:
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).read()
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingUnavailable(f"MLflow tracking server {uri} is unreachable ({exc})") from exc


@contextmanager
def mlflow_run(params: dict[str, Any], run_id: str | None = None, run_name: str | None = None) -> Iterator[Any]:
    """Start (or resume) a run on the configured store; raises TrackingUnavailable if it cannot."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    import mlflow

    uri = tracking_uri(params)
    _reachable(uri)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if run_id is None:
            mlflow.set_experiment(params.get("experiment", "policy-domains"))
        run = mlflow.start_run(run_id=run_id, run_name=run_name)
    except Exception as exc:  # noqa: BLE001 - any store failure must not lose the stage's outputs
        raise TrackingUnavailable(f"cannot start an MLflow run on {uri}: {exc}") from exc
    try:
        yield run
    finally:
        mlflow.end_run()


def soft(action: str, fn: Callable[[], Any], warn: Callable[[str], None]) -> Any:
    """Run an MLflow action; on failure say clearly that logging failed and carry on."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001
        warn(f"MLflow logging failed during {action}: {exc}. The DVC outputs were written; the run is not tracked.")
        return None


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    return {prefix: value if isinstance(value, (int, float, str, bool)) else json.dumps(value)}


# ---------------------------------------------------------------- pyfunc

try:
    import mlflow.pyfunc as _pyfunc

    _Base: Any = _pyfunc.PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    _Base = object


class PolicyDomainsPyfunc(_Base):
    """MLflow pyfunc: DataFrame with a `text` column (optional `heading`) → domain, confidence, scores."""

    def load_context(self, context: Any) -> None:
        from pipeline.model import load_model

        self.model = load_model(context.artifacts["model_dir"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from pipeline.classify import predictions_frame

        return predictions_frame(self.model, pd.DataFrame(model_input))


def log_model(model_dir: Path, params: dict[str, Any]) -> str:
    """Log the saved model directory as a pyfunc model in the active run; returns its model URI."""
    import mlflow

    info = mlflow.pyfunc.log_model(
        name="model", python_model=PolicyDomainsPyfunc(), artifacts={"model_dir": str(model_dir)},
        code_paths=[str(PACKAGE_ROOT / "pipeline")],
        input_example=pd.DataFrame({"text": ["加快推进长江生态保护修复。"]}),
        pip_requirements=_requirements(),
    )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ["scikit-learn", "pandas", "numpy", "scipy", "skops", "jieba", "opencc", "pyyaml", "mlflow"]
    return [f"{p}=={version(p)}" for p in pkgs]


def score_columns() -> list[str]:
    return [f"score_{d}" for d in domain_ids()]
