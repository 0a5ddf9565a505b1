"""Matplotlib set-up and the few chart kinds the project draws, with a CJK font that really renders.

Chinese labels in PNGs need a font with Han glyphs; the project depends on `mplfonts`, which ships
Noto Sans CJK SC, and registers it here, so charts never fall back to empty boxes.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors  # noqa: E402
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# One colour per domain id, stable across every chart and the HTML report.
PALETTE = {
    "economy": "#1f77b4", "industry": "#ff7f0e", "innovation": "#9467bd", "reform_opening": "#17becf",
    "agriculture": "#8c6d31", "urban": "#7f7f7f", "ecology": "#2ca02c", "employment": "#e377c2",
    "education": "#bcbd22", "health": "#d62728", "social_welfare": "#ff9896", "culture": "#c5b0d5",
    "risk": "#843c39", "governance": "#393b79", "party": "#e7298a", "defense_foreign": "#637939",
    "other": "#d9d9d9",
}


def cjk_font_path() -> Path:
    """Noto Sans CJK SC as shipped by mplfonts (the PNGs use it; the HTML report embeds a subset)."""
    import mplfonts

    path = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
    if not path.exists():
        raise RuntimeError(f"CJK font missing at {path}; reinstall the project (pip install -e .)")
    return path


@lru_cache(maxsize=1)
def cjk_font() -> str:
    """Register the bundled Noto Sans CJK SC with matplotlib and return its family name."""
    from matplotlib import font_manager

    path = cjk_font_path()
    font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    plt.rcParams["font.family"] = [name, "DejaVu Sans"]
    plt.rcParams["axes.unicode_minus"] = False
    return name


def _save(fig: plt.Figure, path: str | Path) -> Path:
    from pipeline.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def shorten(label: object, limit: int = 18) -> str:
    """A document name short enough for an axis: long report titles would squeeze the plot away."""
    text = str(label)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def heatmap(matrix: pd.DataFrame, title: str, path: str | Path, fmt: str = "{:.0f}",
            xlabel: str = "", ylabel: str = "", cmap: str = "Blues", colorbar: str = "") -> Path:
    cjk_font()
    fig, ax = plt.subplots(figsize=(2.5 + 0.55 * matrix.shape[1], 1.6 + 0.45 * matrix.shape[0]))
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, cmap=cmap, aspect="auto", vmin=0)
    ax.set_xticks(range(matrix.shape[1]), [shorten(c) for c in matrix.columns], rotation=60, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [shorten(i) for i in matrix.index])
    top = values.max() if values.size else 0
    for (i, j), v in np.ndenumerate(values):
        if v:
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=7,
                    color="white" if v > 0.6 * top else "black")
    if colorbar:
        fig.colorbar(image, ax=ax, label=colorbar, fraction=0.04, pad=0.02)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def stacked_shares(shares: pd.DataFrame, labels: dict[str, str], title: str, path: str | Path) -> Path:
    """One horizontal bar per document, split by domain share (columns are domain ids), with the
    percentage written on every segment wide enough to hold it."""
    cjk_font()
    fig, ax = plt.subplots(figsize=(11, 1.4 + 0.5 * len(shares)))
    left = np.zeros(len(shares))
    for dom in shares.columns:
        vals = shares[dom].to_numpy(dtype=float)
        bars = ax.barh(range(len(shares)), vals, left=left, color=PALETTE.get(dom, "#999"),
                       label=labels.get(dom, dom), edgecolor="white", linewidth=0.5)
        ax.bar_label(bars, labels=[f"{v:.0%}" if v >= 0.06 else "" for v in vals], label_type="center",
                     fontsize=8, color="white" if is_dark(PALETTE.get(dom, "#999")) else "black")
        left += vals
    ax.set_yticks(range(len(shares)), [shorten(i, 24) for i in shares.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("句子占比")
    ax.set_title(title)
    ax.legend(ncol=1 if shares.shape[1] <= 9 else 2, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    return _save(fig, path)


def is_dark(colour: str) -> bool:
    """Whether white text reads better than black on this colour (relative luminance)."""
    r, g, b = matplotlib.colors.to_rgb(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5


def lines(frame: pd.DataFrame, x: str, ys: Sequence[str], title: str, path: str | Path, xlabel: str) -> Path:
    cjk_font()
    fig, ax = plt.subplots(figsize=(6, 4))
    for y in ys:
        ax.plot(frame[x], frame[y], marker="o", label=y)
    ax.set_xlabel(xlabel)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)
