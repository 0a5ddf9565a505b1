"""Speed of the bare-sentence path beside two baselines, measured in the same run on one core.

    python benchmarks/bare_sentences.py --corpus ../shared/corpus/national_reports.jsonl [--n 20000]

Sentences are units of the national corpus (read at run time, never committed), classified each
alone. Our bare-sentence surfaces: `classify_texts` (Python API), a `.jsonl` sentence table through
`classify.run_batch` (what `policy-domains classify table.jsonl --out ...` does after start-up),
written as Parquet and as JSON lines, and the MLflow pyfunc model (`predict` on a DataFrame of text). The peers, trained on the same labelled
rows: a ten-line scikit-learn baseline (char 1-3 TF-IDF + logistic regression) and spaCy's textcat
(bag of words over jieba tokens). Targets: ours ≥ 2x the scikit-learn baseline and ≥ 3x spaCy.
Prints best-of-N sentences/s for each and the ratios.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Callable

import pandas as pd
from threadpoolctl import threadpool_limits

from _corpus import DEFAULT_CORPUS, corpus_files

ROOT = Path(__file__).resolve().parents[1]


def best_rates(contenders: dict[str, Callable[[], object]], n: int, repeat: int) -> dict[str, float]:
    """Best-of-`repeat` sentences/s of each contender, run in turns (one round runs every contender
    once), so that a slow spell of a shared machine falls on all of them alike."""
    for fn in contenders.values():
        fn()  # warm-up: imports, caches, first-call costs
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(repeat):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: n / seconds for name, seconds in best.items()}


def sklearn_baseline(train: pd.DataFrame):
    """The ten-line baseline a reviewer would write first."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True),
                          LogisticRegression(max_iter=1000))
    return model.fit(train["text"], train["primary"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the dvc repro one)")
    parser.add_argument("--n", type=int, default=20000, help="sentences to classify")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from pipeline import classify as cl
    from pipeline.labels import training_table
    from pipeline.segment import units_from_paths
    from pipeline.selection import TextcatModel
    from pipeline.tracking import save_pyfunc

    _, paths = corpus_files(args.corpus)
    texts = units_from_paths(paths)["text"].tolist()
    texts = (texts * (args.n // len(texts) + 1))[: args.n]
    model = cl.load_model(args.model)
    train = training_table(ROOT / "labels", pd.read_parquet(ROOT / "data/interim/sentences.parquet"))
    print(f"{len(texts):,} national-corpus sentences, each classified alone; baselines trained on "
          f"{len(train):,} labelled rows; one core")

    tmp = Path(tempfile.mkdtemp(prefix="policy-bench-bare-"))
    table = tmp / "sentences.jsonl"
    table.write_text("\n".join(json.dumps({"text": t}, ensure_ascii=False) for t in texts), encoding="utf-8")
    import mlflow

    pyfunc = mlflow.pyfunc.load_model(str(save_pyfunc(cl.resolve_model_dir(args.model), tmp / "pyfunc")))
    frame = pd.DataFrame({"text": texts})
    baseline = sklearn_baseline(train)
    textcat = TextcatModel(tuple(str(c) for c in model.classes_), epochs=1).fit(train, train["primary"])
    units = pd.DataFrame({"text": texts})

    with threadpool_limits(1):
        rates = best_rates({
            "classify_texts (Python API)": lambda: cl.classify_texts(texts, model),
            "sentence table (.jsonl → .parquet)": lambda: cl.run_batch([table], tmp / "out.parquet", model=model),
            "sentence table (.jsonl → .jsonl)": lambda: cl.run_batch([table], tmp / "out.jsonl", model=model),
            "MLflow pyfunc predict": lambda: pyfunc.predict(frame),
            "scikit-learn baseline (char TF-IDF + logreg)": lambda: baseline.predict_proba(texts),
            "spaCy textcat BOW": lambda: textcat.predict_proba(units),
        }, len(texts), args.repeat)
    for name, rate in rates.items():
        print(f"{name:<46} {rate:>9,.0f} sentences/s")
    sk, sp = rates["scikit-learn baseline (char TF-IDF + logreg)"], rates["spaCy textcat BOW"]
    for name in list(rates)[:4]:
        print(f"{name:<46} {rates[name] / sk:4.1f}x the scikit-learn baseline (target 2x), "
              f"{rates[name] / sp:4.1f}x spaCy (target 3x)")


if __name__ == "__main__":
    main()
