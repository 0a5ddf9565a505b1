"""The optional HanLP tokenizer: clear errors when hanlp or its model is absent, never a download.

The test that tokenizes needs `pip install -e '.[hanlp]'` and a model unpacked under $HANLP_HOME;
where either is missing it is skipped with the loader's own message, which names what is missing.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from pipeline.hanlp_tokenizer import DEFAULT_MODEL, HanLPUnavailable, hanlp_words, load_hanlp_tokenizer

HAS_HANLP = importlib.util.find_spec("hanlp") is not None


def test_an_absent_model_is_a_clear_error(tmp_path: Path) -> None:
    model_dir = tmp_path / "tok" / "no_such_model"
    with pytest.raises(HanLPUnavailable, match="no HanLP tokenizer model under") as err:
        load_hanlp_tokenizer(model_dir)
    assert str(model_dir) in str(err.value) and "HANLP_HOME" in str(err.value)


def test_the_default_model_is_looked_up_under_hanlp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANLP_HOME", str(tmp_path))
    with pytest.raises(HanLPUnavailable) as err:
        load_hanlp_tokenizer()
    assert str(tmp_path / DEFAULT_MODEL) in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing was fetched into it


def test_hanlp_not_installed_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hanlp", None)  # makes `import hanlp` fail as if not installed
    with pytest.raises(HanLPUnavailable, match=r"hanlp is not installed: pip install -e '\.\[hanlp\]'"):
        load_hanlp_tokenizer(tmp_path)


@pytest.mark.skipif(not HAS_HANLP, reason="hanlp is not installed: pip install -e '.[hanlp]'")
def test_downloads_are_refused_while_loading(tmp_path: Path) -> None:
    import hanlp
    from hanlp.utils.io_util import get_resource

    from pipeline.hanlp_tokenizer import _no_downloads

    with _no_downloads(), pytest.raises(HanLPUnavailable, match="nothing is downloaded here"):
        get_resource(hanlp.pretrained.tok.COARSE_ELECTRA_SMALL_ZH, save_dir=str(tmp_path))
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.skipif(not HAS_HANLP, reason="hanlp is not installed: pip install -e '.[hanlp]'")
def test_missing_transformer_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the config a HanLP ELECTRA tokenizer carries, no weights: the check must fail before loading.
    monkeypatch.setenv("HANLP_HOME", str(tmp_path))
    model_dir = tmp_path / DEFAULT_MODEL
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text('{"transformer": "hfl/chinese-electra-180g-small-discriminator"}')
    with pytest.raises(HanLPUnavailable, match="no transformer tokenizer files under") as err:
        load_hanlp_tokenizer(model_dir)
    assert str(tmp_path / "transformers" / "electra_zh_small_20210706_125427") in str(err.value)


def test_hanlp_words_keeps_one_list_per_text_and_drops_blanks() -> None:
    calls: list[list[str]] = []

    def by_character(texts: list[str]) -> list[list[str]]:  # a stand-in callable, to test the wrapper only
        calls.append(texts)
        return [[c for c in t] for t in texts]

    assert hanlp_words(["ab c", "", "  "], by_character) == [["a", "b", "c"], [], []]
    assert calls == [["ab c"]]
    assert hanlp_words([], by_character) == []


def test_tokenizes_with_a_local_model() -> None:
    try:
        tokenizer = load_hanlp_tokenizer()
    except HanLPUnavailable as exc:
        pytest.skip(str(exc))
    text = "加快推进长江生态保护修复。"
    [words] = hanlp_words([text], tokenizer)
    assert "".join(words) == text
    assert 3 <= len(words) < len(text) and "长江" in words


def test_word_tokenizer_hanlp_fails_with_the_clear_reason_when_unavailable(tmp_path, monkeypatch) -> None:
    """Selecting the HanLP word block without hanlp or its model stops training with the loader's message."""
    import pandas as pd

    from pipeline.features import build_features, model_input
    from pipeline.hanlp_tokenizer import HanLPUnavailable, _default_tokenizer

    monkeypatch.setenv("HANLP_HOME", str(tmp_path))
    _default_tokenizer.cache_clear()
    features = build_features(word_features=True, word_tokenizer="hanlp", char_features=1024)
    units = pd.DataFrame({"text": ["加强生态保护。"], "heading": [""]})
    try:
        import hanlp  # noqa: F401
    except ImportError:
        expected = "hanlp is not installed"
    else:
        expected = "no HanLP tokenizer model"
    with pytest.raises(HanLPUnavailable, match=expected):
        features.fit_transform(model_input(units))
