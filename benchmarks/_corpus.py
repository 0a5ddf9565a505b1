"""Shared helpers of the benchmarks: reading the national corpus at run time (never committed)."""
from __future__ import annotations

import json
import resource
import sys
import tempfile
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "national_reports.jsonl"


def corpus_files(corpus: Path, copies: int = 1) -> tuple[Path, list[Path]]:
    """Write each report of the corpus (times `copies`) as a .txt file in a temp dir; return the paths."""
    if not corpus.exists():
        sys.exit(f"corpus not found: {corpus} (pass --corpus PATH)")
    tmp = Path(tempfile.mkdtemp(prefix="policy-bench-"))
    paths = []
    with open(corpus, encoding="utf-8") as fh:
        reports = [json.loads(line) for line in fh if line.strip()]
    for copy in range(copies):
        for r in reports:
            path = tmp / f"{r['year']}_{copy}.txt"
            path.write_text(r["text"], encoding="utf-8")
            paths.append(path)
    return tmp, paths


def peak_rss_mb() -> float:
    """Peak resident memory of this process (and waited-for children), in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024
