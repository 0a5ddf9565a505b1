"""Robustness on reports far from the training data: the national corpus, 1954-2024 (read at run time).

    python benchmarks/robustness.py --corpus ../shared/corpus/national_reports.jsonl [--model DIR]

There are no labels for these reports (none of their text may enter the project), so this prints
what can be checked without them:
1. per decade: units, the share predicted `other` (real reports are mostly policy; a large share
   means the model does not recognise the period's language), mean confidence and the top domains;
2. invariance: the same reports re-encoded as GB18030, with punctuation swapped between full and
   half width, wrapped in an HTML page, and converted to traditional characters must give the same
   units and the same domains. Prints the share of units whose domain is unchanged.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from _corpus import DEFAULT_CORPUS

from pipeline.classify import classify_reports, load_model

_WIDTH = str.maketrans("，：；！？（）", ",:;!?()")


def _variants(text: str) -> dict[str, tuple[str, bytes]]:
    """(suffix, bytes) of each re-written form of one report."""
    import html

    import opencc

    return {
        "gb18030": (".txt", text.encode("gb18030", errors="strict")),
        "half-width punctuation": (".txt", text.translate(_WIDTH).encode("utf-8")),
        "html page": (".html", ("<html><body>" + "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n"))
                                + "</body></html>").encode("utf-8")),
        "traditional characters": (".txt", opencc.OpenCC("s2t").convert(text).encode("utf-8")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--sample", type=int, default=12, help="reports used for the invariance checks")
    args = parser.parse_args()
    reports = [json.loads(line) for line in open(args.corpus, encoding="utf-8") if line.strip()]
    model = load_model(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="policy-robust-"))
    for r in reports:
        (tmp / f"{r['year']}.txt").write_text(r["text"], encoding="utf-8")
    rows, _ = classify_reports([tmp], model)
    rows["decade"] = rows["doc"].astype(int) // 10 * 10
    print("decade  reports  units  other  confidence  top domains")
    for decade, g in rows.groupby("decade"):
        top = ", ".join(f"{d} {s:.0%}" for d, s in g["domain"].value_counts(normalize=True).head(3).items())
        print(f"{decade}s  {g['doc'].nunique():>7}  {len(g):>5}  {(g['domain'] == 'other').mean():>5.0%}  "
              f"{g['confidence'].mean():>10.2f}  {top}")
    print(f"all     {rows['doc'].nunique():>7}  {len(rows):>5}  {(rows['domain'] == 'other').mean():>5.0%}  "
          f"{rows['confidence'].mean():>10.2f}")

    step = max(1, len(reports) // args.sample)
    chosen = reports[::step][: args.sample]
    base = rows[rows["doc"].isin({str(r["year"]) for r in chosen})].set_index(["doc", "index"])["domain"]
    for name in _variants("").keys():
        folder = tmp / name.replace(" ", "_")
        folder.mkdir()
        for r in chosen:
            suffix, data = _variants(r["text"])[name]
            (folder / f"{r['year']}{suffix}").write_bytes(data)
        other, _ = classify_reports([folder], model)
        other = other.set_index(["doc", "index"])["domain"]
        same_units = len(other) == len(base)
        agree = (other.reindex(base.index) == base).mean()
        print(f"invariance, {name:<24} units {'same' if same_units else f'{len(other)} vs {len(base)}'}, "
              f"domain unchanged for {agree:.1%} of {len(base):,} units ({len(chosen)} reports)")


if __name__ == "__main__":
    pd.set_option("display.width", 160)
    main()
