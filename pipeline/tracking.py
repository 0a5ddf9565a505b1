"""MLflow logging for train and model selection, failing soft: outputs are written whatever MLflow does.

Default store: the embedded SQLite file `experiments/mlflow.db` (no server). Setting
`MLFLOW_TRACKING_URI` points the same code at a tracking server. An unreachable store is reported
as a warning and the stage still succeeds, because the DVC outputs are the source of truth.
"""
from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from pipeline.config import PACKAGE_ROOT, project_root


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
def mlflow_run(params: dict[str, Any], run_name: str) -> Iterator[Any]:
    """Start a run on the configured store; raises TrackingUnavailable if it cannot."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    uri = tracking_uri(params)
    _reachable(uri)
    try:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        name = params["experiment"]
        if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(name) is None:
            # the embedded store keeps its artifacts beside it, not in ./mlruns of whatever directory
            mlflow.create_experiment(name, artifact_location=(project_root() / "experiments" / "artifacts").as_uri())
        mlflow.set_experiment(name)
        run = mlflow.start_run(run_name=run_name)
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

CHAMPION = "champion"


def git_commit() -> str:
    """The commit the run was made from, with ``+dirty`` when the work tree had changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=project_root(), capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def experiment_name() -> str:
    """The DVC experiment this run belongs to (`dvc exp run` sets DVC_EXP_NAME), else "workspace"."""
    return os.environ.get("DVC_EXP_NAME") or "workspace"


def run_name(stage: str) -> str:
    """What the run was: the stage, and the DVC experiment when there is one (``train · exp-1a2b``)."""
    exp = experiment_name()
    return stage if exp == "workspace" else f"{stage} · {exp}"


@dataclass
class Logged:
    """What MLflow recorded: the run, the registered version (if any) and the champion after it."""

    run_id: str | None = None
    version: str | None = None
    champion: str | None = None


def log_training(params: dict[str, Any], card: dict[str, Any], headline: dict[str, Any] | None,
                 per_domain: dict[str, Any], artifacts: list[Path], model_dir: Path,
                 warn: Callable[[str], None], say: Callable[[str], None]) -> Logged:
    """One MLflow run for one `train`: params, tags, held-out metrics, model card and evaluation files,
    the pyfunc model; then register it and move the `champion` alias if it earned it.

    The model files are already written by then, so a tracking failure loses nothing but the log."""
    import mlflow

    logged = Logged()
    tags = {"git_commit": git_commit(), "dvc_experiment": experiment_name(), "dvc_stage": "train"}

    def log() -> None:
        with mlflow_run(params["mlflow"], run_name=run_name("train")) as run:
            logged.run_id = run.info.run_id
            mlflow.log_params(flatten("", {"train": params["train"], "segment": params["segment"]}))
            mlflow.set_tags({**tags, "protocol": (card.get("metrics") or {}).get("protocol", "")})
            mlflow.log_dict(card, "model_card.json")
            if headline:
                mlflow.log_metrics({k: v for k, v in headline.items() if isinstance(v, (int, float))})
                mlflow.log_metrics({f"{d}.f1": m["f1"] for d, m in per_domain.items()})
            for path in artifacts:
                mlflow.log_artifact(str(path), "evaluation")
            model_uri = log_model(model_dir)
            if headline:
                logged.version, logged.champion = register(params["mlflow"], model_uri, headline, tags, say)

    soft("train", log, warn)
    return logged


def register(settings: dict[str, Any], model_uri: str, headline: dict[str, Any], tags: dict[str, str],
             say: Callable[[str], None]) -> tuple[str | None, str | None]:
    """Register the model when its held-out macro-F1 clears `register_min_macro_f1`, tag the version
    with its commit, experiment and headline metrics, and point `champion` at it only when it beats
    the current champion's macro-F1 (a tie keeps the champion). Returns (version, champion)."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name, threshold = settings["registered_model"], float(settings["register_min_macro_f1"])
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no registered model or no champion yet
        current = None
    if headline["macro_f1"] < threshold:
        say(f"not registered: held-out macro-F1 {headline['macro_f1']} is below {threshold}")
        return None, current.version if current else None
    version = mlflow.register_model(model_uri, name).version
    for key, value in {**tags, **{k: str(v) for k, v in headline.items()}}.items():
        client.set_model_version_tag(name, version, key, value)
    best = float(current.tags.get("macro_f1", "-inf")) if current else float("-inf")
    if headline["macro_f1"] > best:
        client.set_registered_model_alias(name, CHAMPION, version)
        say(f"registered {name} version {version}; it is the new @{CHAMPION} (macro-F1 {headline['macro_f1']}"
            + (f" > {best} of version {current.version})" if current else ")"))
        return str(version), str(version)
    say(f"registered {name} version {version}; @{CHAMPION} stays version {current.version} "
        f"(macro-F1 {headline['macro_f1']} does not beat {best})")
    return str(version), str(current.version)


def log_selection(params: dict[str, Any], rows: list[dict[str, Any]], artifacts: list[Path],
                   warn: Callable[[str], None]) -> str | None:
    """The model selection as its own run (`select-models`): one metric per configuration and its files."""
    import mlflow

    run_ids: list[str] = []

    def log() -> None:
        with mlflow_run(params["mlflow"], run_name=run_name("select-models")) as run:
            mlflow.set_tags({"git_commit": git_commit(), "dvc_experiment": experiment_name(), "dvc_stage": "select_models"})
            for row in rows:
                key = f"{row['model'].replace(' ', '_')}{'.examples' if row['examples'] else ''}"
                mlflow.log_metrics({f"{key}.macro_f1": row["macro_f1"], f"{key}.accuracy": row["accuracy"]})
            for path in artifacts:
                mlflow.log_artifact(str(path), "selection")
            run_ids.append(run.info.run_id)

    soft("select-models", log, warn)
    return run_ids[0] if run_ids else None


# ---------------------------------------------------------------- pyfunc

PYFUNC_FILE = PACKAGE_ROOT / "pipeline" / "pyfunc_model.py"


def log_model(model_dir: Path) -> str:
    """Log the saved model directory as a pyfunc model in the active run; returns its model URI."""
    import mlflow

    return mlflow.pyfunc.log_model(name="model", **_pyfunc_spec(model_dir)).model_uri


def save_pyfunc(model_dir: str | Path, path: str | Path) -> Path:
    """The same MLflow model as a folder, without a tracking store: to ship with a Spark job or
    serve with `mlflow models serve -m PATH`."""
    import mlflow

    mlflow.pyfunc.save_model(str(path), **_pyfunc_spec(Path(model_dir)))
    return Path(path)


def _pyfunc_spec(model_dir: Path) -> dict[str, Any]:
    """"Models from code": MLflow keeps pyfunc_model.py and the package, and pickles no Python object."""
    example = pd.DataFrame({"text": ["（三）推进生态文明建设", "加快推进长江生态保护修复。"], "doc": ["report", "report"],
                            "index": [0, 1], "heading": ["", "（三）推进生态文明建设"]})
    return {"python_model": str(PYFUNC_FILE), "artifacts": {"model_dir": str(model_dir)},
            "code_paths": [str(PACKAGE_ROOT / "pipeline")], "signature": model_signature(model_dir),
            "input_example": example, "pip_requirements": _requirements()}


def model_signature(model_dir: Path) -> Any:
    """`text` required; `doc`, `index`, `heading` optional (document context, as the CLI reads it);
    the output columns of `classify.prediction_columns` for the model's own domain ids."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    from pipeline.model import load_model
    from pipeline.pyfunc_model import INPUT_COLUMNS

    ids = [str(c) for c in load_model(model_dir).classes_]
    inputs = Schema([ColSpec(kind, name, required=name == "text") for name, kind in INPUT_COLUMNS.items()])
    ranked = [ColSpec("string", "domain"), ColSpec("double", "confidence"), ColSpec("string", "domain_2"),
              ColSpec("double", "score_2"), ColSpec("string", "domain_3"), ColSpec("double", "score_3")]
    return ModelSignature(inputs, Schema(ranked + [ColSpec("double", f"score_{d}") for d in ids]))


def _requirements() -> list[str]:
    from importlib.metadata import version

    pkgs = ["scikit-learn", "pandas", "numpy", "scipy", "skops", "jieba", "opencc", "pyyaml", "mlflow"]
    return [f"{p}=={version(p)}" for p in pkgs]
