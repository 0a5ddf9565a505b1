"""Train and evaluate end to end on a small labelled fixture written by the team (seconds)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from conftest import TINY_PARAMS, TINY_TRAINING, write_labels
from pipeline.selection import compare_models, write_comparison
from pipeline.evaluate import evaluate, write_evaluation
from pipeline.heldout import read_heldout
from pipeline.ingest import Document
from pipeline.labels import training_table
from pipeline.model import build_estimator, load_model
from pipeline.segment import segment_document
from pipeline.train import train


def _corpus_and_labels(tmp_path: Path) -> tuple[pd.DataFrame, Path]:
    """Three short 'reports' whose every unit is labelled, plus two codebook examples."""
    docs, rows = [], []
    for i in range(3):
        sentences = [(TINY_TRAINING[d][(i + k) % 4], d) for k, d in enumerate(TINY_TRAINING) for _ in (0,)]
        text = "\n".join(s for s, _ in sentences)
        units = segment_document(Document(f"r{i}", f"r{i}.txt", text))
        docs.append(units)
        rows += [{"sent_id": u.sent_id, "doc": u.doc, "text": u.text, "domains": d, "annotator": "tester",
                  "updated_at": "2026-11-23"} for u, (_, d) in zip(units.itertuples(), sentences)]
    labels = tmp_path / "labels"
    write_labels(labels / "annotations" / "tester.csv", rows)
    write_labels(labels / "examples" / "ex.csv",
                 [{"text": "加快建设美丽乡村生态环境。", "domains": "ecology", "annotator": "writer",
                   "source": "codebook"},
                  {"text": "建设一批职业学校。", "domains": "education", "annotator": "writer", "source": "codebook"}],
                 columns=["sent_id", "text_hash", "doc", "text", "domains", "annotator", "note", "updated_at",
                          "source"])
    return pd.concat(docs, ignore_index=True), labels


def test_train_saves_a_loadable_model_with_its_card(tmp_path: Path) -> None:
    units, labels = _corpus_and_labels(tmp_path)
    trained = train(units, labels, tmp_path / "model", {**TINY_PARAMS, "use_examples": True}, min_support=1)
    model, card = trained.model, trained.card
    assert trained.evaluation is not None and trained.evaluation.headline["units"] == 12
    assert card["training_data"]["labelled_units"] == 12 and card["training_data"]["codebook_examples"] == 2
    assert card["training_data"]["documents"] == ["r0", "r1", "r2"]
    assert 0 <= card["metrics"]["accuracy"] <= 1 and set(card["metrics"]["per_document"]) == {"r0", "r1", "r2"}
    assert "## Held-out metrics" in (tmp_path / "model" / "model_card.md").read_text(encoding="utf-8")
    again = load_model(tmp_path / "model")
    assert list(again.predict(units.head(4))) == list(model.predict(units.head(4)))
    heldout = read_heldout(tmp_path / "model")  # what classify needs from the held-out run
    assert heldout is not None and heldout.confusion.sum() == 12 and heldout.confusion.shape == (17, 17)
    assert heldout.secondary_threshold in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
    assert card["metrics"]["secondary_threshold"] == heldout.secondary_threshold
    headline = trained.evaluation.headline
    assert 0 <= headline["label_set_f1"] <= 1 and headline["share_mae_raw"] >= 0 and headline["share_mae_adjusted"] >= 0


def test_evaluate_table_and_outputs(tmp_path: Path) -> None:
    units, labels = _corpus_and_labels(tmp_path)
    table = training_table(labels, units)
    assert set(table.loc[table["source"] == "codebook", "doc"]) != {"r0"}  # examples never join a real doc
    train_params = {**TINY_PARAMS, "use_examples": True}
    eval_params = {"candidates": ["cnb"], "baselines": ["majority"], "min_support": 1,
                   "learning_curve_points": [1.0], "textcat_epochs": 1}
    shipped = evaluate(table, build_estimator(train_params), use_examples=True, min_support=1)
    assert shipped.headline["units"] == 12  # only real text is ever evaluated
    comparison = compare_models(table, train_params, eval_params, shipped)
    models = {(r["model"], r["examples"]) for r in comparison.rows}
    assert {("svm", True), ("svm", False), ("cnb", True), ("cnb", False), ("majority", True)} <= models
    assert comparison.selection["shipped_beats_baselines"]
    written = write_evaluation(shipped, tmp_path / "eval", tmp_path / "metrics.json")
    written += write_comparison(comparison, tmp_path / "compare")
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8")) == shipped.headline
    detail = json.loads((tmp_path / "eval" / "evaluation.json").read_text(encoding="utf-8"))
    assert set(detail["per_domain"]["ecology"]) == {"precision", "recall", "f1", "support"}
    assert json.loads((tmp_path / "compare" / "comparison.json").read_text(encoding="utf-8"))["table"][0]["kind"] == "shipped"
    assert {p.name for p in written} >= {"table.csv", "confusion.csv", "confusion.png", "learning_curve.png"}


def test_two_trainings_write_identical_bytes(tmp_path: Path) -> None:
    """No timestamp, commit, run id or memory address in what `train` saves: `dvc repro` stays a no-op
    and `dvc.lock` unchanged when labels and params are."""
    units, labels = _corpus_and_labels(tmp_path)
    params = {**TINY_PARAMS, "use_examples": True}
    for name in ("a", "b"):
        train(units, labels, tmp_path / name, params, min_support=1)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["heldout.json", "model.sha256", "model.skops", "model_card.json", "model_card.md"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_a_domain_with_one_unit_is_a_clear_error() -> None:
    import pytest

    from pipeline.model import build_estimator

    frame = pd.DataFrame({"text": ["加强生态保护。", "治理污染。", "办好教育。"], "heading": ""})
    from pipeline.errors import LabelError

    with pytest.raises(LabelError, match=r"education \(1\)"):
        build_estimator({**TINY_PARAMS, "calibration": "sigmoid"}).fit(frame, ["ecology", "ecology", "education"])


def test_learning_curve_subsample_keeps_two_per_domain() -> None:
    from pipeline.selection import _subsample

    train = pd.DataFrame({"primary": ["a"] * 8 + ["b"] * 3 + ["c"], "x": range(12)})
    counts = _subsample(train, 0.25, seed=0)["primary"].value_counts().to_dict()
    assert counts == {"a": 2, "b": 2, "c": 1}
