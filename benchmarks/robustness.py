"""Robustness on reports far from the training data, read at run time: the national work reports
(1954-2024) and the national party-congress reports (1969-1997).

    python benchmarks/robustness.py --corpus ../shared/corpus/national_reports.jsonl [--model DIR]
    python benchmarks/robustness.py --congress ../shared/corpus/party_congress_reports.jsonl \
        --model DIR --before OLD_MODEL_DIR --reading 60 --reading-out /tmp/reading.csv

There are no labels for these reports (none of their text may enter the project), so this prints
what can be checked without them:
1. per decade: units, the share predicted `other` (real reports are mostly policy; a large share
   means the model does not recognise the period's language), mean confidence and the top domains;
2. invariance: the same reports re-encoded as GB18030, with punctuation swapped between full and
   half width, wrapped in an HTML page, and converted to traditional characters must give the same
   units and the same domains. Prints the share of units whose domain is unchanged.
3. with `--congress`: per congress report, the share predicted `other` and the mean confidence, for
   `--model` and (with `--before`) an earlier model side by side; `--reading N` writes N random
   congress units with both models' domains, in random A/B order, to a CSV outside the project for a
   person to judge (defensible or not) without knowing which model said what.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from _corpus import DEFAULT_CORPUS

from pipeline.classify import classify_reports, load_model

DEFAULT_CONGRESS = DEFAULT_CORPUS.with_name("party_congress_reports.jsonl")

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


def congress(path: Path, model_dir: Path | None, before_dir: Path | None, reading: int, reading_out: Path | None,
             seed: int) -> None:
    """Per congress report: `other` share and mean confidence, now (and before); a blind reading sample."""
    import numpy as np

    reports = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="policy-congress-"))
    for r in reports:
        (tmp / f"{r['congress']}_{r['year']}.txt").write_text(r["text"], encoding="utf-8")
    models = {"now": load_model(model_dir)} | ({"before": load_model(before_dir)} if before_dir else {})
    rows = {name: classify_reports([tmp], m)[0] for name, m in models.items()}
    names = list(rows)
    print("congress report   units  " + "  ".join(f"{n}: other  confidence" for n in names))
    docs = list(dict.fromkeys(rows["now"]["doc"]))
    for doc in docs + ["all"]:
        parts = []
        for n in names:
            g = rows[n] if doc == "all" else rows[n][rows[n]["doc"] == doc]
            parts.append(f"{(g['domain'] == 'other').mean():>9.0%}  {g['confidence'].mean():>10.2f}")
        size = len(rows["now"]) if doc == "all" else int((rows["now"]["doc"] == doc).sum())
        print(f"{doc:<16} {size:>6}  " + "  ".join(parts))
    for n in names:
        top = ", ".join(f"{d} {s:.0%}" for d, s in rows[n]["domain"].value_counts(normalize=True).head(6).items())
        print(f"top domains ({n}): {top}")
    if len(names) == 2:
        changed = (rows["now"]["domain"].to_numpy() != rows["before"]["domain"].to_numpy()).mean()
        print(f"units whose domain changed: {changed:.1%}")
    if reading and reading_out:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(rows["now"]), size=reading, replace=False)
        out = rows["now"].iloc[pick][["doc", "index", "heading", "text"]].reset_index(drop=True)
        swap = rng.random(reading) < 0.5
        first = [names[1] if s and len(names) == 2 else names[0] for s in swap]
        out["A"] = [rows[f]["domain"].iloc[i] for f, i in zip(first, pick)]
        out["B"] = [rows[names[0] if f != names[0] else names[-1]]["domain"].iloc[i] for f, i in zip(first, pick)]
        out["A_is"] = first
        reading_out.parent.mkdir(parents=True, exist_ok=True)
        out.to_csv(reading_out, index=False, encoding="utf-8-sig")
        print(f"{reading} units for a blind reading → {reading_out} (outside the project; never commit it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--sample", type=int, default=12, help="reports used for the invariance checks")
    parser.add_argument("--congress", type=Path, nargs="?", const=DEFAULT_CONGRESS, default=None,
                        help="measure the party-congress corpus instead")
    parser.add_argument("--before", type=Path, default=None, help="an earlier model to compare with (--congress)")
    parser.add_argument("--reading", type=int, default=0, help="units to sample for a blind reading (--congress)")
    parser.add_argument("--reading-out", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.congress:
        congress(args.congress, args.model, args.before, args.reading, args.reading_out, args.seed)
        return
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
