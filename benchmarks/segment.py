"""Ingest + segmentation throughput on the national corpus, one core.

    python benchmarks/segment.py --corpus ../shared/corpus/national_reports.jsonl

Target: at least 2 MB of UTF-8 text per second. Prints chars/s, MB/s and units/s, and the same for
HanLP's rule-based sentence splitter when `hanlp` is importable (compared, not used by default).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _corpus import DEFAULT_CORPUS, corpus_files

from pipeline.ingest import read_source
from pipeline.segment import SegmentParams, segment_document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3, help="best of N timed passes")
    args = parser.parse_args()
    _, paths = corpus_files(args.corpus)
    raw_bytes = sum(p.stat().st_size for p in paths)
    params = SegmentParams()
    read_source(paths[0])  # warm-up: imports, OpenCC dictionaries
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        units = chars = 0
        for p in paths:
            doc = read_source(p)
            chars += len(doc.text)
            units += len(segment_document(doc, params))
        best = min(best, time.perf_counter() - start)
    print(f"documents      {len(paths)}")
    print(f"input          {raw_bytes / 1e6:.2f} MB UTF-8, {chars:,} chars after cleaning, {units:,} units")
    print(f"ingest+segment {best:.2f} s  →  {raw_bytes / 1e6 / best:.2f} MB/s, {chars / best:,.0f} chars/s, "
          f"{units / best:,.0f} units/s (one core, best of {args.repeat})")


if __name__ == "__main__":
    main()
