"""Turn a classification result into a report a person would rather look at than read.

`DIR/report.html` is one self-contained file (inline CSS, no scripts, no network): a table of each
document's leading domains, stacked bars of domain shares, a documents × domains heat map, and
every document's text with sentences tinted by domain and their scores shown on hover. It embeds
a subset of Noto Sans CJK holding exactly the characters on the page, so Chinese renders even on
machines without Chinese fonts. PNG versions of the charts sit beside it.
"""
from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import charts
from pipeline.errors import UsageError
from pipeline.io import read_table, write_text
from pipeline.taxonomy import domain_ids, zh_names

FONT_FAMILY = "ReportCJK"
REPORT_FILES = {"html": "report.html", "shares_png": "domain_shares.png", "heatmap_png": "heatmap.png"}
_FONT_SLOT = "/*@font-face*/"


def load_result(path: str | Path) -> pd.DataFrame:
    """A `classify` output in any of its formats, with scores as dicts and is_heading as bools."""
    frame = read_table(path)
    missing = {"doc", "text", "domain"} - set(frame.columns)
    if missing:
        raise UsageError(f"{path}: not a classification result (missing columns {sorted(missing)}); "
                         "produce one with `policy-domains classify`")
    if frame.empty:
        raise UsageError(f"{path}: no rows, so nothing to report")
    frame["doc"] = frame["doc"].astype(str)
    frame["text"] = frame["text"].fillna("").astype(str)
    frame["domain"] = frame["domain"].fillna("").astype(str)
    if "scores" in frame:
        scores = []
        for row, value in enumerate(frame["scores"], 2):
            try:
                scores.append(_scores(value))
            except (ValueError, TypeError, AttributeError) as exc:
                raise UsageError(f"{path}: row {row}: 'scores' is not an object of domain → score "
                                 f"({type(exc).__name__}); is this a `policy-domains classify` result?") from None
        frame["scores"] = scores
    else:
        frame["scores"] = [{} for _ in range(len(frame))]
    frame["is_heading"] = frame["is_heading"].map(_flag) if "is_heading" in frame else False
    return frame


def _scores(value: Any) -> dict[str, float]:
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items() if v is not None}
    if isinstance(value, str) and value.strip().startswith("{"):
        return {str(k): float(v) for k, v in json.loads(value).items()}
    return {}


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1")


def _by_doc(frame: pd.DataFrame, weights: pd.Series | None = None) -> pd.DataFrame:
    """Documents × domains shares (of sentences, or of `weights`), taxonomy order, documents as given."""
    values = weights if weights is not None else pd.Series(1, index=frame.index)
    table = values.groupby([frame["doc"], frame["domain"]], sort=False).sum().unstack(fill_value=0)
    table = table.reindex(index=pd.unique(frame["doc"]), columns=domain_ids(), fill_value=0)
    return table.div(table.sum(axis=1).replace(0, 1), axis=0)


def shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Documents × domains: share of each document's sentences, columns in taxonomy order."""
    return _by_doc(frame)


def char_shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Documents × domains: share of each document's characters (long sentences weigh more)."""
    return _by_doc(frame, frame["text"].str.len())


def build_report(result: str | Path, out_dir: str | Path, title: str = "政策领域分析报告") -> dict[str, Path]:
    """Write report.html and the PNG charts into out_dir; returns their paths."""
    frame = load_result(result)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: --out is a file; the report needs a folder (it writes report.html and PNGs)")
    names = zh_names()
    share = shares(frame)
    used = [d for d in domain_ids() if share[d].sum() > 0] or domain_ids()
    labels = {d: f"{names[d]} ({d})" for d in domain_ids()}
    paths = {
        "shares_png": charts.stacked_shares(share[used], labels, "各文件政策领域构成（按句子）", out / REPORT_FILES["shares_png"]),
        "heatmap_png": charts.heatmap((share[used] * 100).rename(columns=names), "政策注意力热力图（句子占比 %）",
                                      out / REPORT_FILES["heatmap_png"], fmt="{:.0f}", cmap="YlOrRd", colorbar="句子占比 %"),
    }
    page = render_html(frame, share, used, title)
    paths["html"] = out / REPORT_FILES["html"]
    write_text(paths["html"], page.replace(_FONT_SLOT, font_face(page), 1))
    return paths


def font_face(text: str) -> str:
    """An @font-face rule embedding the CJK font reduced to the characters of `text` (~1 MB for a
    few thousand distinct characters instead of 16 MB for the whole font)."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(str(charts.cjk_font_path()), recalcTimestamp=False)  # same page for the same result
    subsetter = subset.Subsetter(subset.Options(layout_features=["*"], name_IDs=["*"]))
    subsetter.populate(text="".join(sorted(set(text))))
    subsetter.subset(font)
    data = io.BytesIO()
    font.save(data)
    encoded = base64.b64encode(data.getvalue()).decode("ascii")
    return f'@font-face{{font-family:"{FONT_FAMILY}";src:url(data:font/otf;base64,{encoded}) format("opentype")}}'


_CSS = _FONT_SLOT + """
body{font-family:"%s","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif;margin:24px auto;
  color:#222;max-width:1200px;padding:0 24px}
h1{font-size:24px;margin-bottom:4px} h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:13px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px;margin:12px 0}
.sw{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border-radius:2px}
small{color:#777}
.row{display:flex;align-items:center;margin:5px 0;gap:10px}
.row .name{width:240px;flex:none;font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;text-align:right}
.row .n{width:60px;flex:none;font-size:12px;color:#666}
.bar{display:flex;height:24px;border-radius:3px;overflow:hidden;background:#eee;flex:1}
.bar div{height:100%%;font-size:11px;line-height:24px;text-align:center;overflow:hidden;white-space:nowrap}
table{border-collapse:collapse;font-size:13px}
table.top td,table.top th{border-bottom:1px solid #e5e5e5;padding:5px 10px;text-align:left;vertical-align:top}
table.top td.num{text-align:right;font-variant-numeric:tabular-nums}
table.top th{background:#f4f4f4;font-weight:600}
.doc-name{max-width:260px;overflow-wrap:anywhere}
table.heat td,table.heat th{border:1px solid #fff;padding:4px 6px;text-align:center;font-size:12px}
table.heat th{background:#f4f4f4;font-weight:normal}
table.heat thead th+th{writing-mode:vertical-rl;vertical-align:bottom;padding:6px 3px;height:9em;text-align:left}
table.heat thead th{vertical-align:bottom}
table.heat tbody th{text-align:right;max-width:260px;overflow-wrap:anywhere}
details.doc{margin:10px 0;border:1px solid #e5e5e5;border-radius:4px;padding:6px 12px}
details.doc summary{cursor:pointer;font-weight:600}
.text{line-height:2.1;font-size:15px}
.s{position:relative;border-bottom:3px solid;padding:1px 1px;cursor:help}
.s:hover{filter:brightness(0.92)}
.s:hover::after{content:attr(data-tip);position:absolute;left:0;top:100%%;z-index:10;white-space:pre;
  background:#222;color:#fff;font-size:12px;font-weight:normal;line-height:1.6;padding:6px 9px;border-radius:4px;
  box-shadow:0 2px 8px rgba(0,0,0,.25);pointer-events:none}
.h{display:table;font-weight:700;margin:10px 0 2px}
""" % FONT_FAMILY


def _name(d: str, names: dict[str, str]) -> str:
    return html.escape(names.get(d, d))


def _swatch(d: str) -> str:
    return f'<i class="sw" style="background:{charts.PALETTE.get(d, "#999")}"></i>'


def _tint(colour: str, alpha: float = 0.22) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _legend(used: list[str], names: dict[str, str]) -> str:
    items = "".join(f"<span>{_swatch(d)}{_name(d, names)} <small>{d}</small></span>" for d in used)
    return f"<div class='legend'>{items}</div>"


def _bars(share: pd.DataFrame, counts: pd.Series, used: list[str], names: dict[str, str]) -> str:
    rows = []
    for doc, row in share.iterrows():
        segs = "".join(
            f'<div title="{_name(d, names)} {row[d]:.1%}" style="width:{row[d] * 100:.2f}%;'
            f'background:{charts.PALETTE[d]};color:{"#fff" if charts.is_dark(charts.PALETTE[d]) else "#222"}">'
            f'{f"{row[d]:.0%}" if row[d] >= 0.06 else ""}</div>' for d in used if row[d] > 0)
        name = html.escape(str(doc))
        rows.append(f"<div class='row'><div class='name' title='{name}'>{name}</div><div class='bar'>{segs}</div>"
                    f"<div class='n'>{counts[doc]} 句</div></div>")
    return "".join(rows)


def _top_table(share: pd.DataFrame, chars: pd.DataFrame, counts: pd.Series, lengths: pd.Series,
               names: dict[str, str], top: int = 3) -> str:
    head = "".join(f"<th>第{i}领域</th>" for i in "一二三"[:top])
    rows = []
    for doc, row in share.iterrows():
        leaders = [d for d in row.sort_values(ascending=False, kind="stable").index[:top] if row[d] > 0]
        cells = "".join(
            f"<td>{_swatch(d)}{_name(d, names)}<br><small>句 {row[d]:.0%} · 字 {chars.loc[doc, d]:.0%}</small></td>"
            for d in leaders) + "<td></td>" * (top - len(leaders))
        rows.append(f"<tr><td class='doc-name'>{html.escape(str(doc))}</td><td class='num'>{counts[doc]}</td>"
                    f"<td class='num'>{lengths[doc]:,}</td>{cells}</tr>")
    return (f"<table class='top'><thead><tr><th>文件</th><th>句数</th><th>字数</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _heat_table(share: pd.DataFrame, used: list[str], names: dict[str, str]) -> str:
    top = max(float(share[used].to_numpy().max()), 1e-9)
    head = "".join(f"<th>{_name(d, names)}</th>" for d in used)
    rows = []
    for doc, row in share.iterrows():
        cells = "".join(
            f"<td style='background:rgba(215,48,31,{row[d] / top:.2f});color:{'#fff' if row[d] > 0.55 * top else '#222'}'>"
            f"{row[d] * 100:.0f}</td>" for d in used)
        rows.append(f"<tr><th>{html.escape(str(doc))}</th>{cells}</tr>")
    return (f"<table class='heat'><thead><tr><th>文件</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "<p class='meta'>数字为该领域句子占文件句子总数的百分比；颜色越深占比越高。</p>")


def _sentence(r: Any, names: dict[str, str]) -> str:
    colour = charts.PALETTE.get(r.domain, "#999999")
    ranked = sorted(((k, v) for k, v in (r.scores or {}).items() if v >= 0.01), key=lambda kv: -kv[1])[:5]
    tip = "\n".join([f"{names.get(r.domain, r.domain)}（{r.domain}）"]
                    + [f"{names.get(k, k)}  {v:.2f}" for k, v in ranked])
    return (f"<span class='s{' h' if r.is_heading else ''}' style='border-color:{colour};background:{_tint(colour)}' "
            f"data-tip='{html.escape(tip)}'>{html.escape(r.text)}</span>")


def render_html(frame: pd.DataFrame, share: pd.DataFrame, used: list[str], title: str) -> str:
    """The report page; the font rule is left as a placeholder until the page's characters are known."""
    names = zh_names()
    counts = frame.groupby("doc", sort=False).size()
    lengths = frame["text"].str.len().groupby(frame["doc"], sort=False).sum()
    parts = [f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>",
             f"<p class='meta'>{len(share)} 份文件 · {len(frame)} 个句子 · 模型自动分类；"
             "在“逐句标注”中将鼠标停在句子上可查看各领域得分。</p>",
             "<h2>各文件主要政策领域</h2>", _top_table(share, char_shares(frame), counts, lengths, names),
             "<h2>各文件政策领域构成（按句子）</h2>", _legend(used, names), _bars(share, counts, used, names),
             "<h2>政策注意力热力图（句子占比 %）</h2>", _heat_table(share, used, names),
             "<h2>逐句标注</h2>", _legend(used, names)]
    for i, (doc, group) in enumerate(frame.groupby("doc", sort=False)):
        sentences = "".join(_sentence(r, names) for r in group.itertuples(index=False))
        parts.append(f"<details class='doc'{' open' if i == 0 else ''}><summary>{html.escape(str(doc))}"
                     f"（{len(group)} 句）</summary><div class='text'>{sentences}</div></details>")
    parts.append("</body></html>")
    return "".join(parts)
