"""Batch classification speed and memory on the national corpus (read at run time, never committed).

    python benchmarks/classify.py --corpus ../shared/corpus/national_reports.jsonl [--model DIR]

For the corpus as it is and for a 10x copy, prints the end-to-end wall time of
`policy-domains classify` (a fresh process, start-up included), its sentences/s and peak RSS; then
model-only sentences/s on one core (features + classifier + smoothing over already segmented units).
Targets on a 2-core machine: corpus end-to-end <= 5 s; model-only >= 20,000 sentences/s per core;
peak RSS <= 600 MB and within +20% on the 10x input.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _corpus import DEFAULT_CORPUS, corpus_files

ROOT = Path(__file__).resolve().parents[1]

# Runs the CLI in a child and reports the child's own peak RSS (RUSAGE_CHILDREN of this wrapper).
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[1:]).returncode
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def end_to_end(folder: Path, model: Path | None, jobs: int) -> dict:
    """One `policy-domains classify` run over a folder, measured from outside."""
    out = Path(tempfile.mkdtemp(prefix="policy-bench-out-")) / "result.parquet"
    cmd = [str(Path(sys.executable).parent / "policy-domains"), "classify", str(folder), "--out", str(out),
           "--jobs", str(jobs)] + (["--model", str(model)] if model else [])
    result = json.loads(subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        sys.exit(f"classify failed (exit {result['rc']}): {' '.join(cmd)}")
    import pyarrow.parquet as pq

    result["sentences"] = pq.ParquetFile(out).metadata.num_rows
    return result


def model_only(paths: list[Path], model_dir: Path | None, repeat: int) -> tuple[int, float]:
    """Best-of-N sentences/s of predict_proba on segmented units, BLAS limited to one thread."""
    from threadpoolctl import threadpool_limits

    from pipeline.classify import load_model
    from pipeline.segment import units_from_paths

    model = load_model(model_dir)
    units = units_from_paths(paths)
    model.predict_proba(units.head(50))  # warm-up
    best = float("inf")
    with threadpool_limits(1):
        for _ in range(repeat):
            start = time.perf_counter()
            model.predict_proba(units)
            best = min(best, time.perf_counter() - start)
    return len(units), len(units) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the dvc repro one)")
    parser.add_argument("--jobs", type=int, default=1, help="--jobs passed to classify")
    parser.add_argument("--copies", type=int, default=10, help="size of the large input, in copies of the corpus")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    small_dir, small = corpus_files(args.corpus)
    big_dir, _ = corpus_files(args.corpus, copies=args.copies)
    runs = {"1x": end_to_end(small_dir, args.model, args.jobs),
            f"{args.copies}x": end_to_end(big_dir, args.model, args.jobs)}
    for name, r in runs.items():
        print(f"end-to-end {name:>4}: {r['sentences']:>8,} sentences in {r['seconds']:6.2f} s "
              f"→ {r['sentences'] / r['seconds']:>8,.0f} sentences/s, peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(--jobs {args.jobs}, start-up included)")
    base, big = runs["1x"]["peak_rss_mb"], runs[f"{args.copies}x"]["peak_rss_mb"]
    print(f"memory growth {args.copies}x vs 1x: {100 * (big / base - 1):+.1f}%")
    n, rate = model_only(small, args.model, args.repeat)
    print(f"model-only: {n:,} sentences, {rate:,.0f} sentences/s on one core (best of {args.repeat})")


if __name__ == "__main__":
    main()
