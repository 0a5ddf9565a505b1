"""Shared fixtures: small documents and label files written by the team for the tests."""
from __future__ import annotations

import csv
import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.labels import COLUMNS


def write_labels(path: Path, rows: list[dict], bom: bool = True, columns: list[str] = COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


@pytest.fixture
def label_row():
    def make(text: str, domains: str, annotator: str = "tester", sent_id: str = "") -> dict:
        return {"sent_id": sent_id, "doc": "d", "text": text, "domains": domains, "annotator": annotator,
                "updated_at": "2026-11-23"}
    return make


# ---------------------------------------------------------------- a tiny trained model

TINY_PARAMS = {"classifier": "svm", "C": 4.0, "class_weight": "balanced", "char_ngram_min": 1,
               "char_ngram_max": 2, "char_features": 2 ** 14, "word_features": False,
               "heading_features": True, "calibration": "none", "seed": 0,
               "context_smoothing": 0.5, "context_window": 2, "other_weight": 1.0}
TINY_TRAINING = {
    "ecology": ["加强生态保护修复。", "治理大气污染。", "推进河湖治理与生态修复。", "打好蓝天保卫战。"],
    "industry": ["发展先进制造业集群。", "壮大制造业产业链。", "培育新兴产业集群。", "推动工业转型升级。"],
    "education": ["办好人民满意的教育。", "推进义务教育均衡发展。", "加强高校建设。", "提高教师待遇。"],
    "other": ["各位代表：", "谢谢大家。", "现在报告工作。", "请予审议。"],
}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained in a second on a few made-up sentences, saved like `dvc repro` saves one."""
    import pandas as pd

    from pipeline.model import build_estimator, save_model

    rows = [(text, dom) for dom, texts in TINY_TRAINING.items() for text in texts] * 2
    frame = pd.DataFrame(rows, columns=["text", "primary"]).assign(heading="")
    model_dir = tmp_path_factory.mktemp("tiny-model")
    save_model(build_estimator(TINY_PARAMS).fit(frame, frame["primary"]), model_dir)
    return model_dir


# ---------------------------------------------------------------- servers started by the tests

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> Iterator[subprocess.Popen]:
    """Run a server on loopback until `ready_url` answers; stop it (its whole process group) after."""
    proc = subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{cmd[0]} did not start: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield proc
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
