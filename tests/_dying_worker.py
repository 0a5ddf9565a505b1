"""A `classify --jobs` worker for tests/test_hostile.py that dies the way an out-of-memory kill does
(SIGKILL, no Python cleanup) on any file named ``dies.txt``, and works normally on the others.

It lives in its own small module because worker processes import it by name to run it."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from pipeline import classify


def _die(*args: object, **kwargs: object) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def worker(path: Path, doc_id: str):  # noqa: ANN201 - classify._worker's result
    if Path(path).name == "dies.txt":
        classify.classify_file = _die  # only inside this worker process
    return classify._worker(path, doc_id)
