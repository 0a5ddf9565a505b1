"""Ingest + segmentation throughput on the national corpus, one core.

    python benchmarks/segment.py --corpus ../shared/corpus/national_reports.jsonl

Target: at least 2 MB of UTF-8 text per second. Prints MB/s, chars/s and units/s of ingest+segment,
then the split-only speed of the boundary rules and, when `hanlp` is importable, of HanLP's
rule-based sentence splitter on the same cleaned texts (compared, not used by the pipeline).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Callable, Iterable

from _corpus import DEFAULT_CORPUS, corpus_files

from pipeline.ingest import read_source
from pipeline.segment import SegmentParams, iter_units, segment_document


def _best_split_time(split: Callable[[str], Iterable[object]], texts: list[str], repeat: int) -> tuple[float, int]:
    """Best wall time of splitting every cleaned text, and the number of pieces produced."""
    best, pieces = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        pieces = sum(1 for text in texts for _ in split(text))
        best = min(best, time.perf_counter() - start)
    return best, pieces


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
    # Splitting alone, on the same cleaned texts, so that the comparison with HanLP is like for like.
    texts = [read_source(p).text for p in paths]
    splitters: dict[str, Callable[[str], Iterable[object]]] = {"boundary rules": lambda t: iter_units(t, params)}
    try:
        from hanlp.utils.rules import split_sentence
    except ImportError:
        print("HanLP          not installed (pip install -e '.[hanlp]' to compare its rule-based splitter)")
    else:
        splitters["HanLP rules"] = split_sentence
    for name, split in splitters.items():
        seconds, pieces = _best_split_time(split, texts, args.repeat)
        print(f"{name:<14} {seconds:.2f} s  →  {chars / seconds:,.0f} chars/s, {pieces:,} pieces (split only)")


if __name__ == "__main__":
    main()
