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


def _axis(ax: plt.Axes, numeric: bool) -> None:
    """Shares as percentages; on a numeric axis (years) integer ticks without thousands separators."""
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if numeric:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, nbins=6))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:.0f}"))


def _band(ax: plt.Axes, share: pd.Series, low: pd.Series, high: pd.Series, colour: str, numeric: bool) -> None:
    """A share over an ordered axis with its interval: a line with a band (NaN rows are gaps, and a
    point standing alone between gaps still shows), or dots with error bars for unordered groups."""
    if numeric:
        x = share.index.to_numpy(dtype=float)
        ax.fill_between(x, low.to_numpy(dtype=float), high.to_numpy(dtype=float), color=colour, alpha=0.2,
                        linewidth=0)
        ax.plot(x, share.to_numpy(dtype=float), color=colour, marker="o", markersize=2.5, linewidth=1.4)
        alone = share.notna() & share.shift(1).isna() & share.shift(-1).isna()  # no band to draw around it
        if alone.any():
            ax.vlines(x[alone.to_numpy()], low[alone].to_numpy(dtype=float), high[alone].to_numpy(dtype=float),
                      color=colour, alpha=0.45, linewidth=2.5)
        return
    x = np.arange(len(share))
    values = share.to_numpy(dtype=float)
    ax.errorbar(x, values, yerr=[values - low.to_numpy(dtype=float), high.to_numpy(dtype=float) - values],
                fmt="o", color=colour, markersize=4, capsize=2, linewidth=1)
    ax.set_xticks(x, [shorten(g, 10) for g in share.index], rotation=60, ha="right", fontsize=7)


def small_multiples(share: pd.DataFrame, low: pd.DataFrame, high: pd.DataFrame, labels: dict[str, str],
                    title: str, path: str | Path, numeric: bool = True) -> Path:
    """One small panel per category (columns), each on its own y scale so small shares stay readable."""
    cjk_font()
    columns = list(share.columns)
    ncols = 4
    nrows = max(1, -(-len(columns) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(13, 2.3 * nrows + 0.8), sharex=True, squeeze=False)
    for ax, col in zip(axes.flat, columns):
        _band(ax, share[col], low[col], high[col], PALETTE.get(col, "#1f77b4"), numeric)
        _axis(ax, numeric)
        ax.set_title(labels.get(col, col), fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(columns):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def trend(share: pd.Series, low: pd.Series, high: pd.Series, title: str, path: str | Path, numeric: bool = True,
          xlabel: str = "") -> Path:
    """One category's share over the groups, with its interval."""
    cjk_font()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _band(ax, share, low, high, PALETTE.get(str(share.name), "#1f77b4"), numeric)
    _axis(ax, numeric)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _save(fig, path)


def difference(diff: pd.DataFrame, labels: dict[str, str], title: str, path: str | Path) -> Path:
    """Per category (index), `difference` with its `low`–`high` interval as a dot and a bar, sorted;
    intervals that exclude zero are drawn dark."""
    cjk_font()
    frame = diff.dropna(subset=["difference"]).sort_values("difference")
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.32 * len(frame)))
    y = np.arange(len(frame))
    clear = (frame["low"] > 0) | (frame["high"] < 0)
    colours = np.where(clear, "#b2182b", "#999999")
    ax.hlines(y, frame["low"], frame["high"], colors=colours, linewidth=2)
    ax.scatter(frame["difference"], y, color=colours, zorder=3, s=18)
    ax.axvline(0, color="#333333", linewidth=0.8)
    ax.set_yticks(y, [labels.get(c, c) for c in frame.index], fontsize=8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=0))
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("占比之差（百分点）")
    ax.set_title(title)
    return _save(fig, path)
