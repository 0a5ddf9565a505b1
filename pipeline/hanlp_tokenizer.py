"""Optional word tokenizer backed by a HanLP neural model, loaded strictly from local files.

Not part of the default install: it needs `pip install -e '.[hanlp]'` (hanlp pulls in torch) and a
tokenizer model unpacked under HanLP's home directory (``$HANLP_HOME``, default ``~/.hanlp``), laid
out as HanLP itself lays out its downloads, e.g. for the default model

    $HANLP_HOME/tok/coarse_electra_small_20220616_012050/          (config.json, model weights …)
    $HANLP_HOME/transformers/electra_zh_small_20210706_125427/     (the ELECTRA tokenizer files)

HanLP's own `hanlp.load` downloads whatever is missing. The machines this project runs on cannot
reach HanLP's servers, so here nothing is ever downloaded: the files are checked before loading,
downloads are refused while loading, and everything missing is reported in one `HanLPUnavailable`
error. Set HANLP_HOME before the process starts: HanLP reads it once, when it is imported.

The default pipeline does not use this: segmentation is `pipeline.segment`'s rules, and word
features (when enabled) come from jieba unless `train.word_tokenizer: hanlp` selects this module.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

# hanlp.pretrained.tok.COARSE_ELECTRA_SMALL_ZH: coarse-grained CWS, closest to jieba's word sizes.
DEFAULT_MODEL = "tok/coarse_electra_small_20220616_012050"
INSTALL_HINT = "hanlp is not installed: pip install -e '.[hanlp]'"

Tokenizer = Callable[[list[str]], list[list[str]]]


class HanLPUnavailable(RuntimeError):
    """HanLP or one of the model files it needs is not on this machine (and will not be downloaded)."""


def hanlp_home() -> Path:
    """Where HanLP keeps its models: $HANLP_HOME, else ~/.hanlp (as `hanlp.utils.io_util.hanlp_home`)."""
    return Path(os.environ.get("HANLP_HOME") or Path.home() / ".hanlp")


def _missing_model(model_dir: Path) -> str:
    return (f"no HanLP tokenizer model under {model_dir}: download it on a machine with internet "
            f"access and set HANLP_HOME (or pass its directory)")


def _import_hanlp() -> Any | None:
    try:
        import hanlp
    except ImportError:
        return None
    return hanlp


def _transformer_dir(model_dir: Path) -> Path | None:
    """The local folder of the transformer tokenizer the model's config names, if HanLP mirrors it."""
    from hanlp.layers.transformers.resource import tokenizer_mirrors
    from hanlp.utils.io_util import path_from_url, split_if_compressed

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    url = tokenizer_mirrors.get(config.get("transformer") or "")
    if not url:
        return None  # a Hugging Face name: the offline switches below make a missing one fail, not download
    return Path(split_if_compressed(path_from_url(url, str(hanlp_home())))[0])


@contextmanager
def _no_downloads() -> Iterator[None]:
    """Refuse every download HanLP or transformers would start, naming the file it wanted instead."""
    import hanlp.utils.io_util as io_util

    def refuse(url: str, save_path: str | None = None, *args: Any, **kwargs: Any) -> str:
        raise HanLPUnavailable(f"HanLP wanted to download {url} (to {save_path}): put it there by hand "
                               f"on a machine with internet access; nothing is downloaded here")

    saved_download = io_util.download
    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    io_util.download = refuse
    os.environ.update({k: "1" for k in saved_env})
    try:
        yield
    finally:
        io_util.download = saved_download
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def load_hanlp_tokenizer(model_dir: str | Path | None = None) -> Tokenizer:
    """Load a HanLP tokenizer from local files only (default: DEFAULT_MODEL under `hanlp_home()`).

    Raises HanLPUnavailable listing everything that is missing: the hanlp package, the model folder,
    the transformer tokenizer files the model needs.
    """
    model_dir = Path(model_dir) if model_dir is not None else hanlp_home() / DEFAULT_MODEL
    hanlp = _import_hanlp()
    problems = [] if hanlp is not None else [INSTALL_HINT]
    if not (model_dir / "config.json").is_file():
        problems.append(_missing_model(model_dir))
    elif hanlp is not None:
        transformer = _transformer_dir(model_dir)
        if transformer is not None and not transformer.is_dir():
            problems.append(f"no transformer tokenizer files under {transformer}, which the model in "
                            f"{model_dir} needs: download them with it and set HANLP_HOME")
    if problems:
        raise HanLPUnavailable("; ".join(problems))
    with _no_downloads():
        try:
            return hanlp.load(str(model_dir), verbose=False)
        except HanLPUnavailable:
            raise
        except OSError as exc:  # e.g. transformers failing offline on a Hugging Face name not cached here
            raise HanLPUnavailable(f"cannot load the HanLP model in {model_dir} offline: {exc}") from exc


@lru_cache(maxsize=1)
def _default_tokenizer() -> Tokenizer:
    return load_hanlp_tokenizer()


def hanlp_words(texts: Sequence[str], tokenizer: Tokenizer | None = None) -> list[list[str]]:
    """The words of each text, whitespace tokens dropped (the same shape as jieba's words per text)."""
    texts = list(texts)
    nonempty = [i for i, t in enumerate(texts) if t.strip()]
    out: list[list[str]] = [[] for _ in texts]
    if nonempty:  # HanLP's batching does not expect empty inputs
        tok = tokenizer or _default_tokenizer()
        for i, words in zip(nonempty, tok([texts[i] for i in nonempty])):
            out[i] = [w for w in words if w.strip()]
    return out
