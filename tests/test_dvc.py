"""`dvc repro` end to end in a temporary copy of the repository: outputs, MLflow, no-op rerun,
metrics/plots commands and an experiment with a changed parameter."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    params["evaluate"].update(candidates=["cnb"], baselines=["majority"], learning_curve_points=[1.0])
    (dest / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _run(cmd, dest, env)
    return dest, env


def _git(repo: Path, env: dict[str, str], *args: str) -> str:
    return _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], repo, env).stdout


def _built(repo: Path, env: dict[str, str]) -> None:
    """`dvc repro` once per module: the tests below share its outputs."""
    if not (repo / "outputs/report/report.html").exists():
        _run([str(BIN / "dvc"), "repro"], repo, env)


def test_repro_builds_everything_leaves_the_tree_clean_and_reruns_nothing(
        repo_copy: tuple[Path, dict[str, str]]) -> None:
    repo, env = repo_copy
    _built(repo, env)
    metrics = json.loads((repo / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["units"] >= 800 and 0 < metrics["accuracy"] <= 1 and len(json.dumps(metrics)) < 400
    detail = json.loads((repo / "reports/eval/evaluation.json").read_text(encoding="utf-8"))
    assert detail["headline"] == metrics and set(detail["per_domain"]) >= {"economy", "party", "other"}
    assert (repo / "models/policy-domains/model.skops").exists() and (repo / "reports/eval/confusion.png").exists()
    sample_rows = (repo / "outputs/samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert sample_rows and all(json.loads(r)["domain"] for r in sample_rows)
    assert (repo / "outputs/report/report.html").exists()
    # the copy logs to its own embedded store, not to the checkout the package is installed from
    assert (repo / "experiments/mlflow.db").exists()
    # the fast loop does not run the model comparison
    assert not (repo / "reports/selection").exists()
    # same labels, params and code → byte-identical outputs: dvc.lock and metrics.json as committed
    assert _git(repo, env, "status", "--porcelain") == ""

    again = _run([str(BIN / "dvc"), "repro"], repo, env)
    assert "up to date" in again.stdout

    shown = _run([str(BIN / "dvc"), "metrics", "show", "--json"], repo, env)
    assert "macro_f1" in shown.stdout


def test_plots_show_renders_without_internet(repo_copy: tuple[Path, dict[str, str]]) -> None:
    repo, env = repo_copy
    _built(repo, env)
    _run([str(BIN / "dvc"), "plots", "show", "-o", "dvc_plots"], repo, env)
    page = (repo / "dvc_plots/index.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and "window.vegaEmbed=" in page and "vegaEmbed('#" in page
    assert "dvc_plots" not in _git(repo, env, "status", "--porcelain")  # generated plots are ignored
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium:  # the page really draws its charts with the network off
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--proxy-server=127.0.0.1:9",
                              "--virtual-time-budget=5000", "--dump-dom", (repo / "dvc_plots/index.html").as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        assert dom.count("<canvas") + dom.count("<svg") >= 1, dom[-2000:]


def test_experiment_is_compared_with_main(repo_copy: tuple[Path, dict[str, str]]) -> None:
    """`dvc exp run -S`, then `dvc exp show`, `dvc metrics diff` and `dvc params diff` see both sides."""
    repo, env = repo_copy
    _built(repo, env)
    _git(repo, env, "add", "-A")
    _git(repo, env, "commit", "-qm", "repro", "--allow-empty")
    _run([str(BIN / "dvc"), "exp", "run", "-S", "train.C=8"], repo, env)
    rows = json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout)
    text = json.dumps(rows)
    assert '"C": 8' in text and '"C": 16' in text
    found = []
    for row in rows:  # the baseline commit and each experiment under it carry their metrics
        for exp in [row, *[e for e in row.get("experiments") or [] for e in e.get("revs", [])]]:
            data = (exp.get("data") or {}) if isinstance(exp, dict) else {}
            metric = (data.get("metrics") or {}).get("metrics.json", {}).get("data", {})
            if "macro_f1" in metric:
                found.append(metric["macro_f1"])
    assert len(found) >= 2, text[:3000]
    diff = _run([str(BIN / "dvc"), "metrics", "diff", "--json"], repo, env).stdout
    assert "!" not in diff
    assert "train.C" in _run([str(BIN / "dvc"), "params", "diff", "HEAD", "--json"], repo, env).stdout or \
        json.loads(_run([str(BIN / "dvc"), "exp", "show", "--json"], repo, env).stdout)


def test_model_comparison_is_its_own_pipeline(repo_copy: tuple[Path, dict[str, str]]) -> None:
    repo, env = repo_copy
    _built(repo, env)
    _run([str(BIN / "dvc"), "repro", "experiments/dvc.yaml"], repo, env)
    table = (repo / "reports/selection/table.csv").read_text(encoding="utf-8")
    assert "shipped" in table and "majority" in table
    assert (repo / "reports/selection/learning_curve.png").exists()
