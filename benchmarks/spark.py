"""The Spark engine against the default engine on the national corpus ×1, ×10 and ×50, same run.

    python benchmarks/spark.py --corpus ../shared/corpus/national_reports.jsonl [--master local[2]] [--sizes 1 10 50]

Each size is the corpus (read at run time, never committed) written out N times as .txt files.
Both engines run as `policy-domains classify DIR --out X.parquet` in a fresh process, measured from
outside: wall time (start-up included), sentences/s, the child's peak RSS (for Spark, the driver's
Python; the JVM and the Python workers are further processes, reported by the OS as the process
tree's peak). Start-up overhead is each engine's time on a one-file input. The crossover is the
smallest measured size at which Spark is faster. Prints one line per engine and size.
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

# Runs the CLI in a child and reports the peak RSS of the largest waited-for descendant.
_MEASURE = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def run(folder: Path, engine: str, master: str) -> dict:
    out = Path(tempfile.mkdtemp(prefix="policy-bench-spark-")) / "result.parquet"
    cmd = [str(Path(sys.executable).parent / "policy-domains"), "classify", str(folder), "--out", str(out)]
    if engine == "spark":
        cmd += ["--engine", "spark", "--master", master]
    result = json.loads(subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        sys.exit(f"classify failed (exit {result['rc']}): {' '.join(cmd)}")
    import pandas as pd

    result["sentences"] = len(pd.read_parquet(out, columns=["doc"]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    args = parser.parse_args()
    one_dir, one = corpus_files(args.corpus)
    single = Path(tempfile.mkdtemp(prefix="policy-bench-one-"))
    (single / one[-1].name).write_text(one[-1].read_text(encoding="utf-8"), encoding="utf-8")
    startup = {e: run(single, e, args.master)["seconds"] for e in ("local", "spark")}
    print(f"start-up + one report: default {startup['local']:.1f} s, spark ({args.master}) {startup['spark']:.1f} s "
          f"→ Spark's overhead {startup['spark'] - startup['local']:.1f} s")
    crossover = None
    for size in args.sizes:
        folder = one_dir if size == 1 else corpus_files(args.corpus, copies=size)[0]
        results = {}
        for engine in ("local", "spark"):
            started = time.perf_counter()
            r = run(folder, engine, args.master)
            results[engine] = r
            print(f"x{size:<3} {engine:>6}: {r['sentences']:>9,} sentences in {r['seconds']:7.1f} s → "
                  f"{r['sentences'] / r['seconds']:>8,.0f} sentences/s, driver peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(measured in {time.perf_counter() - started:.0f} s)", flush=True)
        if crossover is None and results["spark"]["seconds"] < results["local"]["seconds"]:
            crossover = size
    print("crossover: " + (f"Spark is faster from x{crossover} of the corpus on {args.master}" if crossover
                           else f"Spark was not faster at any measured size on {args.master} (one machine)"))


if __name__ == "__main__":
    main()
