"""Model: metrics on a hand-checked toy case, fit/predict over all ids, safe persistence."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate import lodo, metrics
from pipeline.model import ModelIntegrityError, build_estimator, load_model, save_model
from pipeline.taxonomy import domain_ids

PARAMS = {"classifier": "svm", "C": 4.0, "class_weight": "balanced", "char_ngram_min": 1, "char_ngram_max": 2,
          "char_features": 2 ** 14, "word_features": False, "heading_features": True, "calibration": "none",
          "seed": 0}

TOY = pd.DataFrame({
    "text": ["加强生态保护修复。", "治理大气污染。", "推进河湖治理与生态修复。", "发展先进制造业集群。",
             "壮大制造业产业链。", "培育新兴产业集群。", "各位代表：", "谢谢大家。", "现在报告工作。"] * 2,
    "primary": ["ecology"] * 3 + ["industry"] * 3 + ["other"] * 3 + ["ecology"] * 3 + ["industry"] * 3 + ["other"] * 3,
})
TOY["domains"] = TOY["primary"].map(lambda d: [d])
TOY["heading"] = ""
TOY["doc"] = ["a"] * 9 + ["b"] * 9
TOY["source"] = "annotation"
TOY["text_hash"] = [f"h{i}" for i in range(len(TOY))]


def test_metrics_hand_checked() -> None:
    gold = pd.Series(["ecology", "ecology", "industry", "other"])
    sets = pd.Series([["ecology"], ["ecology"], ["industry", "economy"], ["other"]])
    pred = np.array(["ecology", "industry", "economy", "other"])
    m = metrics(gold, sets, pred, min_support=2)
    assert m["accuracy"] == 0.5 and m["lenient_accuracy"] == 0.75
    # per class F1: ecology 2*1*0.5/1.5=0.6667, industry 0, other 1 -> macro 0.5556
    assert m["macro_f1"] == pytest.approx(0.5556, abs=1e-4)
    assert m["macro_f1_supported"] == pytest.approx(0.6667, abs=1e-4)
    assert m["per_domain"]["ecology"]["recall"] == 0.5


def test_model_answers_over_all_ids() -> None:
    model = build_estimator(PARAMS).fit(TOY, TOY["primary"])
    proba = model.predict_proba(TOY.head(3))
    assert proba.shape == (3, len(domain_ids()))
    assert list(model.predict(TOY.head(1))) == ["ecology"]


def test_lodo_never_tests_on_training_documents() -> None:
    seen = []

    def fitter(train):
        seen.append(set(train["doc"]))
        return build_estimator(PARAMS).fit(train, train["primary"])

    oof = lodo(TOY, fitter, use_examples=False)
    assert seen == [{"b"}, {"a"}] and len(oof) == len(TOY)


def test_save_load_roundtrip_and_tamper(tmp_path: Path) -> None:
    model = build_estimator(PARAMS).fit(TOY, TOY["primary"])
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    np.testing.assert_allclose(again.predict_proba(TOY), model.predict_proba(TOY))
    with open(tmp_path / "model.skops", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(ModelIntegrityError, match="checksum mismatch"):
        load_model(tmp_path)


@pytest.mark.parametrize("classifier", ["svm", "logreg", "cnb", "ensemble"])
def test_every_classifier_choice_saves_and_loads_within_the_trusted_types(tmp_path: Path, classifier: str) -> None:
    params = {**PARAMS, "classifier": classifier, "calibration": "sigmoid", "calibration_cv": 2}
    model = build_estimator(params).fit(TOY, TOY["primary"])
    save_model(model, tmp_path)
    np.testing.assert_allclose(load_model(tmp_path).predict_proba(TOY), model.predict_proba(TOY))
