"""The trend report end to end on the national corpus (read at run time, never committed).

    python benchmarks/trends.py --corpus ../shared/corpus/national_reports.jsonl [--model DIR] [--keep]

The corpus holds one report per line (`year`, `title`, `source_url`, `text`), so it is classified
as a document table (`--documents`, ids from `year`), with a metadata file built here from the
`year` field (decade, level) joined by `--meta`. Then `compare --by year` and `report`. Prints the
wall time of each command (fresh processes, start-up included) and the sizes of what they wrote,
and checks the targets: the report's main page at most 3 MB, and (with chromium) that it loads
quickly. Everything is written to a temporary folder, removed unless `--keep`.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _corpus import DEFAULT_CORPUS

MAIN_PAGE_LIMIT = 3_000_000
BIN = Path(sys.executable).parent


def run(*args: str) -> float:
    """Run one `policy-domains` command; its wall time in seconds (exit on failure)."""
    start = time.perf_counter()
    result = subprocess.run([str(BIN / "policy-domains"), *args], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): policy-domains {' '.join(args)}\n{result.stderr[-2000:]}")
    last = [line for line in result.stderr.splitlines() if line.strip()]
    print(f"  {args[0]:<9} {seconds:6.1f} s   {last[-1] if last else ''}")
    return seconds


def write_metadata(corpus: Path, target: Path) -> int:
    """doc (the year, as `--id-column year` names documents), year, decade and level of each report."""
    with open(corpus, encoding="utf-8") as fh:
        years = [json.loads(line)["year"] for line in fh if line.strip()]
    with open(target, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["doc", "year", "decade", "level"])
        writer.writerows([year, year, f"{year // 10 * 10}s", "national"] for year in years)
    return len(years)


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def browser_load(page: Path, work: Path) -> float | None:
    """Seconds for headless chromium to load and render the page (None without chromium)."""
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if chromium is None:
        return None
    start = time.perf_counter()
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", f"--user-data-dir={work / 'chrome'}",
                    f"--screenshot={work / 'main.png'}", "--window-size=1280,2000", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the dvc repro one)")
    parser.add_argument("--keep", action="store_true", help="keep the output folder and print where it is")
    args = parser.parse_args()
    if not args.corpus.exists():
        sys.exit(f"corpus not found: {args.corpus} (pass --corpus PATH)")
    work = Path(tempfile.mkdtemp(prefix="policy-trends-"))
    model = ["--model", str(args.model)] if args.model else []
    try:
        reports = write_metadata(args.corpus, work / "meta.csv")
        print(f"{reports} reports, {args.corpus.stat().st_size / 1e6:.2f} MB → {work}")
        times = {
            "classify": run("classify", str(args.corpus), "--documents", "--id-column", "year", "--meta",
                            str(work / "meta.csv"), "--cap", "--out", str(work / "rows.parquet"), "--summary",
                            str(work / "summary.csv"), *model),
            "compare": run("compare", str(work / "summary.csv"), "--by", "year", "--groups", "1978", "2024",
                           "--out", str(work / "compare")),
            "report": run("report", str(work / "rows.parquet"), "--summary", str(work / "summary.csv"), "--out",
                          str(work / "report"), *model),
        }
        main_page = work / "report" / "report.html"
        pages = list((work / "report" / "docs").glob("*.html"))
        print(f"total {sum(times.values()):.1f} s; sentence rows {size(work / 'rows.parquet') / 1e6:.2f} MB, "
              f"summary {size(work / 'summary.csv') / 1e6:.2f} MB")
        print(f"report: main page {size(main_page) / 1e6:.2f} MB (limit {MAIN_PAGE_LIMIT / 1e6:.0f} MB), "
              f"{len(pages)} document pages {sum(map(size, pages)) / 1e6:.1f} MB (largest "
              f"{max(map(size, pages)) / 1e6:.2f} MB), shared font {size(work / 'report' / 'assets') / 1e6:.2f} MB, "
              f"folder {size(work / 'report') / 1e6:.1f} MB")
        seconds = browser_load(main_page, work)
        if seconds is not None:
            print(f"headless chromium: main page loaded and rendered in {seconds:.1f} s (browser start-up included)")
        if size(main_page) > MAIN_PAGE_LIMIT:
            sys.exit(f"FAIL: the main page is {size(main_page) / 1e6:.2f} MB, over {MAIN_PAGE_LIMIT / 1e6:.0f} MB")
        print("OK: main page within the limit")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
