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
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri(params)
    _reachable(uri)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if run_id is None:
            name = params.get("experiment", "policy-domains")
            if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(name) is None:
                # the embedded store keeps its artifacts beside it, not in ./mlruns of whatever directory
                mlflow.create_experiment(name, artifact_location=(project_root() / "experiments" / "artifacts").as_uri())
            mlflow.set_experiment(name)
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


# ---------------------------------------------------------------- stage logging

def log_training(params: dict[str, Any], card: dict[str, Any], model_dir: Path,
                 warn: Callable[[str], None]) -> dict[str, Any]:
    """Log the train stage (params, tags, model card, pyfunc model); record the run beside the model.

    Returns ``{"run_id", "model_uri"}``, both None when the store could not be reached; the model
    files are already written by then, so a tracking failure loses nothing but the log.
    """
    import mlflow

    run_info: dict[str, Any] = {"run_id": None, "model_uri": None}

    def log() -> None:
        with mlflow_run(params["mlflow"], run_name="train") as run:
            mlflow.log_params(flatten("", {"train": params["train"], "segment": params["segment"]}))
            mlflow.set_tags({"git_commit": card["git_commit"], "dvc_stage": "train"})
            mlflow.log_dict(card, "model_card.json")
            if isinstance(card.get("metrics"), dict):
                mlflow.log_metrics({f"train_card.{k}": v for k, v in card["metrics"].items()
                                    if isinstance(v, (int, float))})
            if (Path(model_dir) / "model_card.md").exists():
                mlflow.log_artifact(str(Path(model_dir) / "model_card.md"))
            run_info.update(run_id=run.info.run_id, model_uri=log_model(model_dir))

    soft("train", log, warn)
    (Path(model_dir) / RUN_FILE).write_text(json.dumps(run_info, indent=2), encoding="utf-8")
    return run_info


def log_evaluation(params: dict[str, Any], result: dict[str, Any], artifacts: list[Path], model_dir: Path,
                   warn: Callable[[str], None], say: Callable[[str], None]) -> str | None:
    """Log the evaluation into the train stage's run and register the model if it earned it.

    Registration needs macro-F1 at or above `mlflow.register_min_macro_f1` and a win over every
    baseline. Returns the registered version, or None.
    """
    import mlflow

    run_file = Path(model_dir) / RUN_FILE
    run_info = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else {}
    headline = result["headline"]
    registered: list[str] = []

    def log() -> None:
        with mlflow_run(params["mlflow"], run_id=run_info.get("run_id"), run_name="evaluate"):
            mlflow.set_tags({"dvc_stage": "evaluate", "protocol": result["protocol"]})
            mlflow.log_metrics({k: v for k, v in headline.items() if isinstance(v, (int, float))})
            mlflow.log_metrics({f"{d}.f1": m["f1"] for d, m in result["per_domain"].items()})
            for row in result["table"]:
                key = f"table.{row['model'].replace(' ', '_')}{'.examples' if row['examples'] else ''}"
                mlflow.log_metrics({f"{key}.macro_f1": row["macro_f1"], f"{key}.accuracy": row["accuracy"]})
            for path in artifacts:
                mlflow.log_artifact(str(path), "evaluation")
            threshold = float(params["mlflow"].get("register_min_macro_f1", 0.6))
            earned = headline["macro_f1"] >= threshold and result["selection"]["shipped_beats_baselines"]
            if run_info.get("model_uri") and earned:
                version = mlflow.register_model(run_info["model_uri"], params["mlflow"]["registered_model"])
                registered.append(str(version.version))
                say(f"registered {version.name} version {version.version}")
            else:
                say(f"not registered: macro-F1 {headline['macro_f1']} (threshold {threshold}), beats baselines: "
                    f"{result['selection']['shipped_beats_baselines']}, logged model: {bool(run_info.get('model_uri'))}")

    soft("evaluate", log, warn)
    return registered[0] if registered else None


# ---------------------------------------------------------------- pyfunc

PYFUNC_FILE = PACKAGE_ROOT / "pipeline" / "pyfunc_model.py"


def log_model(model_dir: Path) -> str:
    """Log the saved model directory as a pyfunc model in the active run; returns its model URI."""
    import mlflow

    info = mlflow.pyfunc.log_model(  # "models from code": MLflow keeps the file, pickles no Python object
        name="model", python_model=str(PYFUNC_FILE), artifacts={"model_dir": str(model_dir)},
        code_paths=[str(PACKAGE_ROOT / "pipeline")],
        input_example=pd.DataFrame({"text": ["加快推进长江生态保护修复。"]}),
        pip_requirements=_requirements(),
    )
    return info.model_uri


def _requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ["scikit-learn", "pandas", "numpy", "scipy", "skops", "jieba", "opencc", "pyyaml", "mlflow"]
    return [f"{p}=={version(p)}" for p in pkgs]
