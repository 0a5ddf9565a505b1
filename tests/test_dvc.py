"""`dvc repro` end to end in a temporary copy of the repository: outputs, MLflow, no-op rerun,
metrics/plots commands and an experiment with a changed parameter."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The committed and working-tree files git knows (not outputs, caches or .venv), as a fresh git repo."""
    if shutil.which("dvc", path=str(BIN)) is None:
        pytest.skip("dvc is not installed in this environment")
    dest = tmp_path_factory.mktemp("repo")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    params = yaml.safe_load((dest / "params.yaml").read_text(encoding="utf-8"))
    params["evaluate"].update(candidates=[], baselines=["majority"], learning_curve_points=[1.0])
    (dest / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _run(cmd, dest, env)
    return dest, env


def test_repro_builds_everything_then_is_a_no_op(repo_copy: tuple[Path, dict[str, str]]) -> None:
    repo, env = repo_copy
    _run([str(BIN / "dvc"), "repro"], repo, env)
    metrics = json.loads((repo / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["headline"]["units"] >= 800 and 0 < metrics["headline"]["accuracy"] <= 1
    assert {row["model"] for row in metrics["table"]} >= {"svm", "majority"}
    assert (repo / "models/policy-domains/model.skops").exists()
    assert (repo / "reports/eval/confusion.png").exists() and (repo / "reports/eval/learning_curve.csv").exists()
    sample_rows = (repo / "outputs/samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert sample_rows and all(json.loads(r)["domain"] for r in sample_rows)
    assert (repo / "outputs/report/report.html").exists()
    # the copy logs to its own embedded store, not to the checkout the package is installed from
    assert (repo / "experiments/mlflow.db").exists()
    assert json.loads((repo / "models/policy-domains/mlflow_run.json").read_text())["run_id"]

    start = time.monotonic()
    again = _run([str(BIN / "dvc"), "repro"], repo, env)
    assert "up to date" in again.stdout and time.monotonic() - start < 60

    shown = _run([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env)
    assert "accuracy" in shown.stdout
    _run([str(BIN / "dvc"), "plots", "show", "-o", "plots_html"], repo, env)
    assert (repo / "plots_html/index.html").exists()


def test_experiment_with_a_changed_parameter(repo_copy: tuple[Path, dict[str, str]]) -> None:
    repo, env = repo_copy
    if not (repo / "metrics.json").exists():
        _run([str(BIN / "dvc"), "repro"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "repro", "--allow-empty"], repo, env)
    _run([str(BIN / "dvc"), "exp", "run", "-S", "train.C=2"], repo, env)
    shown = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout)
    assert "'C': 2" in str(shown) or '"C": 2' in json.dumps(shown)
